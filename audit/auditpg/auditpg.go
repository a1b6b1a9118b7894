// Package auditpg keeps an audit ledger (package audit) in PostgreSQL.
//
// Entries live in a table (by default rewind.audit_log) guarded by triggers
// that reject UPDATE, DELETE and TRUNCATE, so the database itself refuses
// to change history; only someone who can disable triggers (a superuser or
// the table's owner) can tamper, and Verify then names the entry. The head
// of the chain is kept in a one-row table beside it. Appends are serialized
// by a transaction-scoped advisory lock and stamped with the database's
// clock, so every writer of one ledger shares one order and one time source.
package auditpg

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
)

// DB is what the ledger needs from a connection or pool.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config names where the ledger lives. The zero value is the default.
type Config struct {
	// Schema holds the ledger's tables. Defaults to "rewind".
	Schema string
	// Table is the entries' table; the head is kept in Table+"_head".
	// Defaults to "audit_log".
	Table string
	// IdleTimeout bounds how long a transaction that appended may then sit
	// idle (its process frozen, say) while it holds the ledger's append
	// lock, which every writer of the ledger waits for: the server ends
	// such a transaction after this long. Defaults to 1m.
	IdleTimeout time.Duration
}

var ident = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (c Config) withDefaults() (Config, error) {
	if c.Schema == "" {
		c.Schema = "rewind"
	}
	if c.Table == "" {
		c.Table = "audit_log"
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = time.Minute
	}
	if c.IdleTimeout < time.Millisecond {
		return c, &rewind.ValidationError{Field: "audit ledger idle timeout", Value: c.IdleTimeout.String(), Reason: "must be at least 1ms"}
	}
	for _, f := range []struct{ name, v string }{{"schema", c.Schema}, {"table", c.Table}} {
		if !ident.MatchString(f.v) {
			return c, &rewind.ValidationError{Field: "audit ledger " + f.name, Value: f.v,
				Reason: "must be a lower-case SQL identifier"}
		}
	}
	return c, nil
}

// Ledger is an audit ledger in PostgreSQL. It is safe for concurrent use.
type Ledger struct {
	db       DB
	log      string // schema.table
	head     string
	lockKey  int64 // serializes appends
	setupKey int64 // serializes DDL in the schema
	idle     string
}

// New returns the ledger in db without touching the database. Call Setup
// once before the first Append.
func New(db DB, cfg Config) (*Ledger, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	key := func(s string) int64 {
		h := fnv.New64a()
		h.Write([]byte(s))
		return int64(h.Sum64())
	}
	return &Ledger{db: db, log: c.Schema + "." + c.Table, head: c.Schema + "." + c.Table + "_head",
		lockKey: key("rewind.audit:" + c.Schema + "." + c.Table), setupKey: key("rewind.setup:" + c.Schema),
		idle: fmt.Sprintf("%dms", c.IdleTimeout.Milliseconds())}, nil
}

// Setup creates the ledger's schema, tables and guard triggers if they do
// not exist. It is safe to call concurrently and repeatedly.
func (l *Ledger) Setup(ctx context.Context) error {
	if ok, err := l.Exists(ctx); err == nil && ok {
		return nil
	}
	tx, err := l.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("set up audit ledger: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := l.SetupTx(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("set up audit ledger %s: %w", l.log, err)
	}
	return nil
}

// SetupTx is Setup inside the caller's transaction. It first takes a
// transaction-scoped advisory lock that serializes setups in the ledger's
// schema (callers creating other tables in that schema can rely on it),
// then creates what is missing. It runs no DDL when the ledger exists:
// DDL on a table in use takes locks that deadlock with appends.
func (l *Ledger) SetupTx(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", l.setupKey); err != nil {
		return fmt.Errorf("set up audit ledger %s: %w", l.log, err)
	}
	var ok bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL", l.log, l.head).Scan(&ok); err != nil {
		return fmt.Errorf("set up audit ledger %s: %w", l.log, err)
	}
	if ok {
		return nil
	}
	schema, table, _ := cutDot(l.log)
	fn := schema + "." + table + "_append_only"
	stmts := []string{
		"CREATE SCHEMA IF NOT EXISTS " + schema,
		`CREATE TABLE IF NOT EXISTS ` + l.log + ` (
			seq       bigint PRIMARY KEY,
			at        timestamptz NOT NULL,
			kind      text NOT NULL,
			subject   text NOT NULL,
			actor     text NOT NULL,
			body      text NOT NULL,
			prev_hash text NOT NULL,
			hash      text NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + table + `_subject ON ` + l.log + ` (subject, seq)`,
		`CREATE TABLE IF NOT EXISTS ` + l.head + ` (
			one  boolean PRIMARY KEY DEFAULT true CHECK (one),
			seq  bigint NOT NULL,
			hash text NOT NULL)`,
		`INSERT INTO ` + l.head + ` (seq, hash) VALUES (0, '` + audit.Genesis + `') ON CONFLICT DO NOTHING`,
		`CREATE OR REPLACE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			RAISE EXCEPTION 'the audit ledger % is append-only: % rejected', TG_TABLE_NAME, TG_OP
				USING ERRCODE = 'insufficient_privilege';
		END $$`,
		`CREATE OR REPLACE TRIGGER ` + table + `_no_update_delete BEFORE UPDATE OR DELETE ON ` + l.log +
			` FOR EACH ROW EXECUTE FUNCTION ` + fn + `()`,
		`CREATE OR REPLACE TRIGGER ` + table + `_no_truncate BEFORE TRUNCATE ON ` + l.log +
			` FOR EACH STATEMENT EXECUTE FUNCTION ` + fn + `()`,
		// A trigger fires by default only in origin sessions: one with
		// session_replication_role = replica would skip the guards.
		`ALTER TABLE ` + l.log + ` ENABLE ALWAYS TRIGGER ` + table + `_no_update_delete`,
		`ALTER TABLE ` + l.log + ` ENABLE ALWAYS TRIGGER ` + table + `_no_truncate`,
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("set up audit ledger %s: %w", l.log, err)
		}
	}
	return nil
}

// Exists reports whether Setup has created the ledger in the database.
func (l *Ledger) Exists(ctx context.Context) (bool, error) {
	var ok bool
	err := l.db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL", l.log, l.head).Scan(&ok)
	return ok, err
}

// Append appends e in its own transaction and returns it sealed, with its
// sequence number, time and hashes.
func (l *Ledger) Append(ctx context.Context, e audit.Entry) (audit.Entry, error) {
	tx, err := l.db.Begin(ctx)
	if err != nil {
		return e, fmt.Errorf("append to audit ledger: %w", err)
	}
	defer tx.Rollback(ctx)
	e, err = l.AppendTx(ctx, tx, e)
	if err != nil {
		return e, err
	}
	if err := tx.Commit(ctx); err != nil {
		return e, fmt.Errorf("append to audit ledger: %w", err)
	}
	return e, nil
}

// AppendTx appends e inside the caller's transaction, so that the entry
// commits or rolls back with the work it records. It holds the ledger's
// append lock until tx ends: keep what follows it in tx short; tx may not
// sit idle longer than Config.IdleTimeout from then on. tx must be READ
// COMMITTED, so that it sees the head the previous append committed.
// A zero e.Time is set to the database's clock.
func (l *Ledger) AppendTx(ctx context.Context, tx pgx.Tx, e audit.Entry) (audit.Entry, error) {
	if e.Time.IsZero() {
		if err := tx.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&e.Time); err != nil {
			return e, fmt.Errorf("append to audit ledger %s: %w", l.log, err)
		}
	}
	b := &pgx.Batch{}
	out, err := l.QueueAppend(b, e)
	if err != nil {
		return e, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return e, fmt.Errorf("append to audit ledger %s: %w", l.log, err)
	}
	return *out, nil
}

// QueueAppend queues the append of e to b, to be sent in the caller's
// transaction together with other work in one round trip. e.Time must be
// set (use the database's clock). The returned entry is filled in with its
// sequence number and hashes when the batch has run. The database assigns
// the sequence number, completes the body with it ({"seq":N, then
// e.BodyTail()), stores those bytes verbatim and computes the hash,
// sha256(previous hash ‖ body), exactly as audit.Entry.Seal does.
//
// Every append passes here: the entry's texts are masked first
// (audit.MaskEntry), so that the password of a connection string reaches
// the ledger in no field, whatever path it took into the entry. The
// returned entry is the masked one, as stored.
func (l *Ledger) QueueAppend(b *pgx.Batch, e audit.Entry) (*audit.Entry, error) {
	e = audit.MaskEntry(e)
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.Time.IsZero() {
		return nil, &rewind.ValidationError{Field: "audit entry time", Reason: "must be set"}
	}
	e.Time = e.Time.Truncate(time.Microsecond)
	out := &e
	tail := string(e.BodyTail())
	// The lock is taken by a statement of its own, so that the insert's
	// snapshot, taken after it, sees the head the previous append committed.
	// From then on the transaction may not sit idle for long: a frozen
	// process must not hold up every writer of the ledger.
	b.Queue("SELECT set_config('idle_in_transaction_session_timeout', $1, true)", l.idle)
	b.Queue("SELECT pg_advisory_xact_lock($1)", l.lockKey)
	b.Queue(l.appendSQL(), e.Time, e.Kind, e.Subject, e.Actor, tail).QueryRow(func(row pgx.Row) error {
		return row.Scan(&out.Seq, &out.PrevHash, &out.Hash)
	})
	return out, nil
}

// appendSQL appends an entry ($1 time, $2 kind, $3 subject, $4 actor, $5
// the body's tail) after the head and moves the head, in one statement.
// The head is read with LIMIT 1: it holds one row, but a head table with
// dead row versions and no statistics yet is estimated at thousands of
// rows, and the join of two such estimates cost enough for PostgreSQL to
// JIT-compile every append (about 30 ms each, where 0.3 ms does).
func (l *Ledger) appendSQL() string {
	return `WITH h AS (SELECT seq + 1 AS seq, hash AS prev, '{"seq":' || (seq + 1)::text || ',' || $5 AS body FROM ` + l.head + ` LIMIT 1),
		i AS (INSERT INTO ` + l.log + ` (seq, at, kind, subject, actor, body, prev_hash, hash)
			SELECT h.seq, $1, $2, $3, $4, h.body, h.prev, encode(sha256(decode(h.prev, 'hex') || convert_to(h.body, 'UTF8')), 'hex') FROM h
			RETURNING seq, prev_hash, hash)
		UPDATE ` + l.head + ` SET seq = i.seq, hash = i.hash FROM i RETURNING i.seq, i.prev_hash, i.hash`
}

// Filter selects entries to list.
type Filter struct {
	// Subject keeps entries about one subject (a run id). Empty keeps all.
	Subject string
	// AfterSeq lists entries after this sequence number.
	AfterSeq int64
	// Limit caps the number of entries; 0 means no cap.
	Limit int
}

// Entries yields entries in sequence order. It decodes them without
// checking the chain; use Verify for that.
func (l *Ledger) Entries(ctx context.Context, f Filter) iter.Seq2[audit.Entry, error] {
	return func(yield func(audit.Entry, error) bool) {
		q := "SELECT seq, at, kind, subject, actor, body, prev_hash, hash FROM " + l.log + " WHERE seq > $1"
		args := []any{f.AfterSeq}
		if f.Subject != "" {
			q += " AND subject = $2"
			args = append(args, f.Subject)
		}
		q += " ORDER BY seq"
		if f.Limit > 0 {
			q += fmt.Sprintf(" LIMIT %d", f.Limit)
		}
		rows, err := l.db.Query(ctx, q, args...)
		if err != nil {
			yield(audit.Entry{}, l.readErr(err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.seq, &r.at, &r.kind, &r.subject, &r.actor, &r.body, &r.prev, &r.hash); err != nil {
				yield(audit.Entry{}, l.readErr(err))
				return
			}
			e, err := r.entry()
			if !yield(e, err) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(audit.Entry{}, l.readErr(err))
		}
	}
}

func (l *Ledger) readErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return fmt.Errorf("%w: no audit ledger %s in this database (nothing was ever recorded)", errNotFound, l.log)
	}
	return fmt.Errorf("read audit ledger %s: %w", l.log, err)
}

var errNotFound = &notFoundError{}

type notFoundError struct{}

func (*notFoundError) Error() string        { return "audit: ledger not found" }
func (*notFoundError) Is(target error) bool { return target == rewind.ErrStreamNotFound }

// Summary is what a successful Verify checked.
type Summary struct {
	Entries  int64  `json:"entries"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// Anchors are the heads recorded outside the ledger that were checked.
	Anchors []audit.Head `json:"anchors,omitempty"`
}

// Head is the ledger's head as SEQ:HASH.
func (s Summary) Head() audit.Head { return audit.Head{Seq: s.HeadSeq, Hash: s.HeadHash} }

// Verify hashes every entry's stored bytes, checks every link and
// position, and checks the chain's end against the recorded head and
// against anchors, heads recorded outside the ledger earlier (see
// audit.Verifier.Expect). It returns a *audit.TamperError naming the
// first entry that was altered, removed, inserted or moved.
func (l *Ledger) Verify(ctx context.Context, anchors ...audit.Head) (Summary, error) {
	// One repeatable-read snapshot, so that appends during the walk neither
	// break the chain's end nor the head comparison.
	tx, err := l.db.Begin(ctx)
	if err != nil {
		return Summary{}, fmt.Errorf("verify audit ledger: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return Summary{}, fmt.Errorf("verify audit ledger: %w", err)
	}
	s := Summary{Anchors: anchors}
	if err := l.checkTables(ctx, tx, anchors); err != nil {
		return s, err
	}
	if err := tx.QueryRow(ctx, "SELECT seq, hash FROM "+l.head).Scan(&s.HeadSeq, &s.HeadHash); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return s, &audit.TamperError{Seq: 1, Problem: audit.Removed, Reason: "the ledger's head row is missing"}
		}
		return s, l.readErr(err)
	}
	v := audit.NewVerifier()
	for _, a := range anchors {
		v.Expect(a)
	}
	rows, err := tx.Query(ctx, "SELECT seq, at, kind, subject, actor, body, prev_hash, hash FROM "+l.log+" ORDER BY seq")
	if err != nil {
		return s, l.readErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.at, &r.kind, &r.subject, &r.actor, &r.body, &r.prev, &r.hash); err != nil {
			return s, l.readErr(err)
		}
		if err := v.Add(audit.Stored{Seq: r.seq, Body: []byte(r.body), PrevHash: r.prev, Hash: r.hash}); err != nil {
			return s, err
		}
		if e := v.Last(); e != nil && e.Seq == r.seq {
			if err := r.columns(e); err != nil {
				return s, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return s, l.readErr(err)
	}
	s.Entries = v.Count()
	return s, v.End(s.HeadSeq, s.HeadHash)
}

// checkTables checks that the ledger's two tables exist. Neither of them
// is "not found" (nothing was ever recorded) unless a head recorded
// outside the ledger is given: then the ledger was dropped. One without
// the other is tampering in any case.
func (l *Ledger) checkTables(ctx context.Context, tx pgx.Tx, anchors []audit.Head) error {
	var log, head bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL", l.log, l.head).Scan(&log, &head); err != nil {
		return fmt.Errorf("verify audit ledger: %w", err)
	}
	switch {
	case !log && !head && len(anchors) > 0:
		return &audit.TamperError{Seq: 1, Problem: audit.Removed, Reason: fmt.Sprintf(
			"the ledger's tables %s and %s are gone, but its head %s was recorded outside the ledger: the ledger was dropped",
			l.log, l.head, anchors[0])}
	case !log && !head:
		return fmt.Errorf("%w: no audit ledger %s in this database: nothing was recorded here, or the ledger was dropped "+
			"(verify with --expect-head SEQ:HASH, a head recorded earlier, to tell)", errNotFound, l.log)
	case !log:
		return &audit.TamperError{Seq: 1, Problem: audit.Removed, Reason: fmt.Sprintf(
			"the ledger's entries table %s is gone, but its head table %s remains", l.log, l.head)}
	case !head:
		return &audit.TamperError{Seq: 1, Problem: audit.Removed, Reason: fmt.Sprintf(
			"the ledger's head table %s is gone, but its entries table %s remains", l.head, l.log)}
	}
	return nil
}

type row struct {
	seq                                    int64
	at                                     time.Time
	kind, subject, actor, body, prev, hash string
}

// entry decodes the row from its body, and marks it altered when its
// body is not in canonical form or the columns kept for queries disagree
// with the body the hash covers. Its Seq is the row's position.
func (r *row) entry() (audit.Entry, error) {
	e := audit.Entry{Seq: r.seq, PrevHash: r.prev, Hash: r.hash}
	if err := audit.ParseBody([]byte(r.body), &e); err != nil {
		return e, &audit.TamperError{Seq: r.seq, Problem: audit.Altered, Reason: "its body is not a valid entry: " + err.Error()}
	}
	e.Seq = r.seq
	return e, r.columns(&e)
}

// columns checks the columns kept for queries against the hashed body.
func (r *row) columns(e *audit.Entry) error {
	if e.Kind != r.kind || e.Subject != r.subject || e.Actor != r.actor || !e.Time.Equal(r.at) {
		return &audit.TamperError{Seq: r.seq, Problem: audit.Altered,
			Reason: "its kind, subject, actor or time column differs from what its hash covers"}
	}
	return nil
}

func cutDot(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}
