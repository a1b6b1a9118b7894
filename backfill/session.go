package backfill

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
)

// A job's SQL runs on the runner's pooled connections, and a change it
// makes to the session (set_config(…, false), SET in a function) would
// outlive the query: the later queries would reach other tables (another
// search_path) or run with other rights (another role). The functions
// that do this are refused where the job's SQL calls them (sessionFuncs);
// what the parser cannot see (a function's body) is caught here, by
// comparing the session before and after.

// sessionSQL reads what a chunk's transaction must leave as it found it:
// the settings that decide what the chunk's statements reach
// (search_path), with whose rights they run (the current and session
// roles), whether triggers fire (session_replication_role), how values
// read and print (TimeZone, DateStyle, IntervalStyle: a timestamp
// written under another TimeZone is another instant) and how the job's
// SQL is lexed (standard_conforming_strings, see SessionParams). The
// job's SQL may call a function that changes them (set_config in a
// PL/pgSQL body, which the check of the job's SQL cannot see), for the
// rest of the chunk or of the session; such a chunk fails, and its
// rollback undoes the change. A function declared with SET search_path =
// … restores it on return, and is fine.
const sessionSQL = `SELECT current_setting('search_path'), current_user::text, session_user::text,
	current_setting('session_replication_role'), current_setting('TimeZone'), current_setting('DateStyle'),
	current_setting('IntervalStyle'), current_setting('standard_conforming_strings')`

// session is what sessionSQL reads.
type session struct {
	searchPath, user, sessionUser, replicationRole      string
	timeZone, dateStyle, intervalStyle, standardStrings string
}

func (s *session) scan(row pgx.Row) error {
	return row.Scan(&s.searchPath, &s.user, &s.sessionUser, &s.replicationRole, &s.timeZone, &s.dateStyle,
		&s.intervalStyle, &s.standardStrings)
}

// SessionParams are the settings every connection the runner and the
// ledger use must start with, as pgx RuntimeParams (see ConfigurePool).
// The job's SQL is checked by PostgreSQL's parser as PostgreSQL lexes it
// by default, with standard_conforming_strings on: a backslash in '…' is
// an ordinary character. A server that reads it off (a database or role
// set so) lexes the same text otherwise: '\' = ' || ' is one string to
// the parser and a string followed by more SQL to the server, so a where
// the parser found bounded by the chunk could reach every row. The
// runner therefore refuses a session without it (*SessionSettingsError).
// backslash_quote is set to the parser's own default (safe_encoding); it
// only decides whether a backslash before a quote in an E'…' string is refused,
// not how text is split.
var SessionParams = map[string]string{"standard_conforming_strings": "on", "backslash_quote": "safe_encoding"}

// ConfigurePool sets SessionParams on cfg: connections then start with
// them whatever the database's or role's defaults.
func ConfigurePool(cfg *pgxpool.Config) {
	for k, v := range SessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
}

// SessionSettingsError is a database session the runner cannot work in:
// one that lexes SQL otherwise than the check of the job's SQL does.
type SessionSettingsError struct {
	// Database is "target" or "ledger".
	Database string
	Setting  string
	Value    string
}

func (e *SessionSettingsError) Error() string {
	return fmt.Sprintf("the %s database's session has %s = %s, so PostgreSQL would read the job's SQL otherwise than "+
		"the check of it did (a backslash in a '…' string would escape the quote); refusing to run: connect with "+
		"options '-c %s=on' (the rewind command does), or ALTER DATABASE … SET %s = on", e.Database, e.Setting, e.Value,
		e.Setting, e.Setting)
}

// Is makes errors.Is match ErrSessionSettings and rewind.ErrInvalidArgument.
func (e *SessionSettingsError) Is(target error) bool {
	return target == ErrSessionSettings || target == rewind.ErrInvalidArgument
}

// checkLexing refuses a session that lexes SQL otherwise than the parser.
func checkLexing(ctx context.Context, db querier, database string) error {
	var v string
	if err := db.QueryRow(ctx, "SELECT current_setting('standard_conforming_strings')").Scan(&v); err != nil {
		return fmt.Errorf("read the %s database's session: %w", database, err)
	}
	if v != "on" {
		return &SessionSettingsError{Database: database, Setting: "standard_conforming_strings", Value: v}
	}
	return nil
}

// SessionChangedError is the job's SQL changing the session's settings.
// Changed in a chunk, the chunk's transaction is rolled back, which undoes
// the change; changed outside one (the where finding the chunks), the
// connection is closed. Either way the run stops.
type SessionChangedError struct {
	// What changed, such as `search_path from "\"$user\", public" to "other"`.
	What string
	// When is empty for a change in a chunk's transaction, else says
	// where the change was found.
	When string
}

func (e *SessionChangedError) Error() string {
	undo := "the chunk was rolled back, which undoes the change"
	when := "during the chunk"
	if e.When != "" {
		undo, when = "the connection was closed", e.When
	}
	return "the job's SQL changed the session " + when + " (" + e.What + "), as set_config() or SET in a function it " +
		"calls would; " + undo + ", and the run stopped: a job's SQL must leave search_path, the role and " +
		"session_replication_role, TimeZone, DateStyle, IntervalStyle and standard_conforming_strings alone " +
		"(a function may declare SET search_path = … or SET TimeZone = …)"
}

func (s session) compare(after session) error {
	for _, c := range []struct{ what, before, after string }{
		{"search_path", s.searchPath, after.searchPath},
		{"the current role", s.user, after.user},
		{"the session role", s.sessionUser, after.sessionUser},
		{"session_replication_role", s.replicationRole, after.replicationRole},
		{"TimeZone", s.timeZone, after.timeZone},
		{"DateStyle", s.dateStyle, after.dateStyle},
		{"IntervalStyle", s.intervalStyle, after.intervalStyle},
		{"standard_conforming_strings", s.standardStrings, after.standardStrings},
	} {
		if c.before != c.after {
			return &SessionChangedError{What: fmt.Sprintf("%s from %q to %q", c.what, c.before, c.after)}
		}
	}
	return nil
}

// guard returns a querier that runs the job's SQL outside a chunk's
// transaction (finding and counting the chunks evaluates its where) on
// the target database, checking after each query that the session is
// still as the job was prepared: a connection the query changed is
// closed, so that the pool does not hand it out again, and the query
// fails with a *SessionChangedError.
func (r *Runner) guard(p *prepared) querier { return &guarded{pool: r.cfg.DB, want: p.session} }

type guarded struct {
	pool *pgxpool.Pool
	want session
}

func (g *guarded) run(ctx context.Context, fn func(c *pgxpool.Conn) error) error {
	c, err := g.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	if err := fn(c); err != nil {
		return err
	}
	var got session
	if err := got.scan(c.QueryRow(ctx, sessionSQL)); err != nil {
		return err
	}
	if err := g.want.compare(got); err != nil {
		c.Conn().Close(context.WithoutCancel(ctx))
		err.(*SessionChangedError).When = "outside a chunk, in the SQL that finds or counts the chunks"
		return err
	}
	return nil
}

func (g *guarded) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := g.run(ctx, func(c *pgxpool.Conn) error {
		var err error
		tag, err = c.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// Query is not offered: its rows would be read after the check.
func (g *guarded) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errors.New("backfill: internal error: Query on a guarded querier")
}

func (g *guarded) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return guardedRow{g: g, ctx: ctx, sql: sql, args: args}
}

// guardedRow runs its query when scanned, then checks the session.
type guardedRow struct {
	g    *guarded
	ctx  context.Context
	sql  string
	args []any
}

func (r guardedRow) Scan(dest ...any) error {
	return r.g.run(r.ctx, func(c *pgxpool.Conn) error { return c.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...) })
}

// unchangedSession runs fn in tx and fails with a *SessionChangedError if
// the session's settings differ afterwards: a check of the job's SQL, run
// read-only and rolled back, finds out so whether it changes the session.
func unchangedSession(ctx context.Context, tx querier, fn func() error) error {
	var before, after session
	if err := before.scan(tx.QueryRow(ctx, sessionSQL)); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	if err := after.scan(tx.QueryRow(ctx, sessionSQL)); err != nil {
		return err
	}
	return before.compare(after)
}
