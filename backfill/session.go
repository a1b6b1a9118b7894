package backfill

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
	current_setting('IntervalStyle'), current_setting('standard_conforming_strings'),
	current_setting('client_encoding'), current_setting('extra_float_digits'),
	array_to_string(current_schemas(false), ', '), current_setting('bytea_output')`

// session is what sessionSQL reads.
type session struct {
	searchPath, user, sessionUser, replicationRole      string
	timeZone, dateStyle, intervalStyle, standardStrings string
	clientEncoding, floatDigits, byteaOutput            string
	// schemas is the search_path as it resolves: the schemas that exist
	// and that the role may use, "$user" replaced by the current role's
	// schema (current_schemas(false)).
	schemas string
}

func (s *session) scan(row pgx.Row) error {
	return row.Scan(&s.searchPath, &s.user, &s.sessionUser, &s.replicationRole, &s.timeZone, &s.dateStyle,
		&s.intervalStyle, &s.standardStrings, &s.clientEncoding, &s.floatDigits, &s.schemas, &s.byteaOutput)
}

// check refuses a session whose settings change what the job's SQL says
// or how the runner's values read back (see SessionParams), or that
// skips triggers and foreign keys (session_replication_role = replica).
func (s session) check(database string) error {
	bad := func(setting, value, want, why string) error {
		return &SessionSettingsError{Database: database, Setting: setting, Value: value, Want: want, Why: why}
	}
	switch {
	case s.standardStrings != "on":
		return bad("standard_conforming_strings", s.standardStrings, "on",
			"PostgreSQL would read the job's SQL otherwise than the check of it did (a backslash in a '…' string would escape the quote)")
	case !strings.EqualFold(s.clientEncoding, "UTF8"):
		return bad("client_encoding", s.clientEncoding, "UTF8",
			"PostgreSQL would read the job's SQL and the ledger's text in another encoding than they are written in "+
				"(a multibyte character can swallow a quote's backslash, and the ledger's entries would be stored garbled)")
	case !strings.HasPrefix(s.dateStyle, "ISO"):
		return bad("DateStyle", s.dateStyle, "ISO, MDY",
			"dates and times would print in a form another session reads otherwise (checkpoint keys such as 01/03/2031)")
	case s.intervalStyle != "postgres":
		return bad("IntervalStyle", s.intervalStyle, "postgres",
			"intervals would print in a form another session reads otherwise (checkpoint keys)")
	case s.byteaOutput != "hex":
		return bad("bytea_output", s.byteaOutput, "hex",
			"bytea values would print in another form (checkpoint keys, and the checksums of values hashed as their text)")
	case floatDigits(s.floatDigits) < 1:
		return bad("extra_float_digits", s.floatDigits, "3",
			"floating-point values would print rounded, so that distinct keys print alike and a run over them never ends")
	case s.replicationRole == "replica":
		return bad("session_replication_role", s.replicationRole, "origin",
			"triggers and foreign keys would not fire: the job's writes would skip the table's checks and triggers, "+
				"and the ledger's append-only triggers")
	}
	return nil
}

func floatDigits(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
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
//
// The other settings decide how text is read and how values print:
// client_encoding (the job's SQL and the ledger's text are UTF-8),
// DateStyle and IntervalStyle (checkpoint keys are stored as text and
// read back by a later process, which must read them as they were
// written) and extra_float_digits (a float key printed rounded reads
// back as another value), bytea_output (a bytea key, or a bytea inside a
// value a checksum hashes as text). They are set to fixed values on every
// connection, and a session with other values is refused.
// session_replication_role cannot be set here (only a superuser may);
// a session with it set to replica is refused.
var SessionParams = map[string]string{"standard_conforming_strings": "on", "backslash_quote": "safe_encoding",
	"client_encoding": "UTF8", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "3",
	"bytea_output": "hex"}

// ConfigurePool sets SessionParams on cfg: connections then start with
// them whatever the database's or role's defaults.
func ConfigurePool(cfg *pgxpool.Config) {
	for k, v := range SessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	// The throttle's load signal leaves the backfill's own sessions out
	// by this name (see throttle.Load).
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "rewind backfill"
	}
}

// SessionSettingsError is a database session the runner cannot work in:
// one that lexes SQL otherwise than the check of the job's SQL does.
type SessionSettingsError struct {
	// Database is "target" or "ledger".
	Database string
	Setting  string
	Value    string
	// Want is the value the runner works with; Why says what the
	// setting would break.
	Want, Why string
}

func (e *SessionSettingsError) Error() string {
	how := fmt.Sprintf("connect with options '-c %s=%s' (the rewind command does: backfill.ConfigurePool)",
		e.Setting, strings.ReplaceAll(e.Want, " ", ""))
	if e.Setting == "session_replication_role" {
		how = "reset it where it is set (ALTER DATABASE … RESET session_replication_role, ALTER ROLE …, the DSN's options)"
	}
	return fmt.Sprintf("the %s database's session has %s = %s, so %s; refusing to run: %s, or ALTER DATABASE … SET %s = '%s'",
		e.Database, e.Setting, e.Value, e.Why, how, e.Setting, e.Want)
}

// Is makes errors.Is match ErrSessionSettings and rewind.ErrInvalidArgument.
func (e *SessionSettingsError) Is(target error) bool {
	return target == ErrSessionSettings || target == rewind.ErrInvalidArgument
}

// checkSession refuses a session the runner cannot work in (session.check).
func checkSession(ctx context.Context, db querier, database string) error {
	var s session
	if err := s.scan(db.QueryRow(ctx, sessionSQL)); err != nil {
		return fmt.Errorf("read the %s database's session: %w", database, err)
	}
	return s.check(database)
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
		"session_replication_role, TimeZone, DateStyle, IntervalStyle, standard_conforming_strings, client_encoding, " +
		"extra_float_digits and bytea_output alone " +
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
		{"client_encoding", s.clientEncoding, after.clientEncoding},
		{"extra_float_digits", s.floatDigits, after.floatDigits},
		{"bytea_output", s.byteaOutput, after.byteaOutput},
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

// recorded is what a run records of the settings that give its job its
// meaning and are not pinned (Run.Session): the TimeZone (a timestamptz
// parameter or literal written without an offset is read in it), the
// search_path as written and as it resolved (the schemas the job's SQL
// finds its functions and types in: "$user" names the current role's
// schema, and a schema created since resolves too), the job's table as
// the search_path resolved it, and the role (current_user: whose rights
// the job's SQL runs with, which rows row-level security lets it see,
// and what "$user" names).
func (p *prepared) recorded() map[string]string {
	m := map[string]string{"time_zone": p.session.timeZone, "search_path": p.session.searchPath,
		"schemas": p.session.schemas, "role": p.session.user}
	if t, ok := p.src.(*Table); ok {
		m["table"] = t.ref
	}
	if _, ok := p.ch.(*setChange); ok {
		m["checksum"] = checksumColumns // how its chunks hash rows (hashRow)
	}
	return m
}

// RunSettingsError is a run resumed (or retried, or taken over) on a
// session that gives its job another meaning than the session it started
// on: another role, the job's table resolved to another schema's table,
// the search_path resolved to other schemas, or a timestamp without an
// offset read in another time zone. Nothing is written.
type RunSettingsError struct {
	RunID, Setting, Recorded, Now string
	// Action is what was refused: "resume" when empty.
	Action string
}

func (e *RunSettingsError) Error() string {
	what := map[string]string{
		"role": "the job's SQL would run with another role's rights, see the rows that role's row-level security " +
			"policies let it see, and resolve \"$user\" in the search_path to that role's schema, so the rest of the " +
			"run could change other rows, or the same rows otherwise, than its first chunks did",
		"table": "the job's table resolves to another table (through the search_path), so the rest of the run " +
			"would change another table than its first chunks did",
		"search_path": "the job's SQL would resolve its tables, functions and types in other schemas",
		"schemas": "the search_path resolves to other schemas than it did (a schema named by it, such as \"$user\", " +
			"was created, dropped or made unusable since), so the job's SQL would resolve its tables, functions and " +
			"types elsewhere",
		"time_zone": "a timestamp without an offset in the job or its parameters would be read as another instant",
	}[e.Setting]
	if e.Action != "" {
		what = "the run's before-images hold values as text, read back and compared in this session (a timestamptz " +
			"inside a composite or array prints in the TimeZone, a regclass by the search_path), so unchanged rows " +
			"would show as conflicts"
	}
	how := map[string]string{
		"role":        "connect as role " + e.Recorded + " (the user in --dsn, or its options' role)",
		"table":       "connect with the run's search_path",
		"search_path": "connect with options '-c search_path=" + e.Recorded + "' (or PGOPTIONS)",
		"schemas":     "restore the schemas as they were, or cancel the run and start a new one",
		"time_zone":   "connect with options '-c TimeZone=" + e.Recorded + "' (or PGOPTIONS)",
	}[e.Setting]
	if e.Action != "" && e.Setting == "schemas" {
		how = "restore the schemas as they were (a schema created since, such as one named for the role, dropped), " +
			"then roll it back"
	}
	setting := e.Setting + " ="
	if e.Setting == "schemas" {
		setting = "its search_path resolving to"
	}
	action := e.Action
	if action == "" {
		action = "resume"
	}
	return fmt.Sprintf("run %s started with %s %s, and this session has %s: %s; refusing to %s (nothing was "+
		"written): %s", e.RunID, setting, e.Recorded, e.Now, what, action, how)
}

// Is makes errors.Is match ErrRunSettings and rewind.ErrWrongExpectedVersion.
func (e *RunSettingsError) Is(target error) bool {
	return target == ErrRunSettings || target == rewind.ErrWrongExpectedVersion
}

// checkRecorded refuses to continue run on a session that gives its job
// another meaning (RunSettingsError). --allow-changed-job does not lift
// it: the job did not change, the database it reaches did. A setting a
// run of an earlier version did not record is not checked.
//
// It also makes p's chunks hash rows as run's did (pinChecksum), as every
// caller goes on with run.
func checkRecorded(run *Run, p *prepared) error {
	now := p.recorded()
	for _, k := range []string{"role", "table", "search_path", "schemas", "time_zone"} {
		was, ok := run.Session[k]
		if ok && was != now[k] {
			return &RunSettingsError{RunID: run.ID, Setting: k, Recorded: was, Now: now[k]}
		}
	}
	if s, ok := p.ch.(*setChange); ok {
		s.pinChecksum(run)
	}
	return nil
}

// checkRowSecurity refuses a table that row-level security filters for
// this session's role (row_security_active: enabled on the table, and
// the role neither its owner, unless forced, nor a superuser or BYPASSRLS
// role): the run would find and change only the rows the policies let
// the role see, and report the job finished with the others unchanged.
func checkRowSecurity(ctx context.Context, db querier, t *Table, role string) error {
	var active bool
	if err := db.QueryRow(ctx, "SELECT row_security_active($1::text::regclass)", t.ref).Scan(&active); err != nil {
		return fmt.Errorf("read whether row-level security applies to %s: %w", t.ref, err)
	}
	if !active {
		return nil
	}
	return &rewind.ValidationError{Field: "table", Value: t.Name, Reason: fmt.Sprintf("has row-level security "+
		"enabled, and role %s is subject to it: the run would find and change only the rows its policies let %s "+
		"see, and report the job finished with the others unchanged; run the job as the table's owner (if the "+
		"table does not FORCE ROW LEVEL SECURITY), a superuser or a role with BYPASSRLS", role, role)}
}
