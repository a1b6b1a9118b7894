package backfill

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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
// roles) and whether triggers fire (session_replication_role). The job's
// SQL may call a function that changes them (set_config in a PL/pgSQL
// body, which the check of the job's SQL cannot see), for the rest of the
// chunk or of the session; such a chunk fails, and its rollback undoes
// the change. A function declared with SET search_path = … restores it
// on return, and is fine.
const sessionSQL = `SELECT current_setting('search_path'), current_user::text, session_user::text,
	current_setting('session_replication_role')`

// session is what sessionSQL reads.
type session struct{ searchPath, user, sessionUser, replicationRole string }

func (s *session) scan(row pgx.Row) error {
	return row.Scan(&s.searchPath, &s.user, &s.sessionUser, &s.replicationRole)
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
		"session_replication_role alone (a function may declare SET search_path = …)"
}

func (s session) compare(after session) error {
	for _, c := range []struct{ what, before, after string }{
		{"search_path", s.searchPath, after.searchPath},
		{"the current role", s.user, after.user},
		{"the session role", s.sessionUser, after.sessionUser},
		{"session_replication_role", s.replicationRole, after.replicationRole},
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
