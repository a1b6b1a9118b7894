package pgstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/store"
)

// Store is a rewind.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	cfg      Config
	pool     *pgxpool.Pool
	location string
	q        sqlText
	lk1, lk2 int32 // the append lock's keys

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the log may have grown
	closed  chan struct{}
	isOpen  bool

	health healthCache // the last probe of PostgreSQL, for Health

	reqs    chan *appendReq // to the committer
	grouped atomic.Int64    // group transactions of more than one append, for tests
	workers sync.WaitGroup  // the listener and the committer
	stop    context.CancelFunc

	// testFate, when set (by tests), decides for each append and delete
	// whether PostgreSQL pauses between its write and its COMMIT, and
	// whether it rolls back instead.
	testFate func(ctx context.Context) (sleep time.Duration, rollback bool)
	// testKillAfterCommit, when set (by tests), decides for each append
	// and delete whether its session is terminated right after its COMMIT
	// was answered, as pg_terminate_backend or a fast shutdown may do.
	testKillAfterCommit func(ctx context.Context) bool
}

var _ interface {
	rewind.Store
	rewind.LastPositioner
	rewind.Describer
	rewind.HealthReporter
} = (*Store)(nil)

// Open opens the store in the schema cfg names of the database connString
// names (a postgres:// URL or a key=value string). It writes nothing: the
// schema must have been made by Migrate at this binary's version, or Open
// fails with a *SchemaError saying what to do.
func Open(ctx context.Context, connString string, cfg Config) (*Store, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, &rewind.ValidationError{Field: "store", Reason: "is not a PostgreSQL connection string (not shown: " +
			"it may hold a password): " + audit.DSNProblem(err) + "; write it as postgres://user@host:5432/db or key=value pairs"}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	have, err := readVersion(ctx, pool, c.Schema)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if want := SchemaVersion(); have != want {
		pool.Close()
		return nil, &SchemaError{Schema: c.Schema, Database: have, Binary: want}
	}
	s := &Store{cfg: c, pool: pool, q: newSQL(c.Schema), changed: make(chan struct{}), closed: make(chan struct{}),
		isOpen: true, location: locationOf(pc.ConnConfig, c.Schema)}
	s.lk1, s.lk2 = lockKeys(c.Schema, lockAppend)
	lctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.reqs = make(chan *appendReq)
	s.workers.Go(func() { s.listen(lctx, pc.ConnConfig) })
	s.workers.Go(func() { s.committer(lctx) })
	return s, nil
}

func locationOf(cc *pgx.ConnConfig, schema string) string {
	return fmt.Sprintf("postgres://%s:%d/%s (schema %s)", cc.Host, cc.Port, cc.Database, schema)
}

// Close stops the store's listener and closes its connections. Calls after
// Close fail with rewind.ErrClosed, and so does Next of its subscriptions.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.isOpen {
		s.mu.Unlock()
		return nil
	}
	s.isOpen = false
	close(s.closed)
	s.mu.Unlock()
	s.stop()
	s.workers.Wait()
	s.pool.Close()
	return nil
}

func (s *Store) checkOpen() error {
	select {
	case <-s.closed:
		return fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
	default:
		return nil
	}
}

// signal wakes the subscriptions waiting for the log to grow.
func (s *Store) signal() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// wait returns the channel the next signal closes.
func (s *Store) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// batch is an append's events as columns, ready for unnest.
type batch struct {
	size      int // encoded bytes, as MaxBatchBytes counts them
	ids       []uuid.UUID
	generated []bool
	types     []string
	schemas   []int32
	contents  []string
	data      [][]byte
	metadata  []*string
	occurred  []*int64
}

func (s *Store) encode(stream string, events []rewind.Event) (*batch, error) {
	n := len(events)
	switch {
	case n == 0:
		return nil, &rewind.ValidationError{Field: "events", Reason: "an append needs at least one event"}
	case n > s.cfg.MaxBatchEvents:
		return nil, &rewind.LimitError{Limit: "batch size (events)", Max: int64(s.cfg.MaxBatchEvents), Got: int64(n),
			Hint: "split the append into several batches"}
	}
	b := &batch{ids: make([]uuid.UUID, n), generated: make([]bool, n), types: make([]string, n),
		schemas: make([]int32, n), contents: make([]string, n), data: make([][]byte, n), metadata: make([]*string, n),
		occurred: make([]*int64, n)}
	seen := make(map[uuid.UUID]int, n)
	var base uuid.UUID
	total := 0
	for i := range events {
		e := &events[i]
		if err := store.ValidateEvent(e); err != nil {
			var ve *rewind.ValidationError
			if errors.As(err, &ve) {
				ve.Field = strings.Replace(ve.Field, "events[0]", fmt.Sprintf("events[%d]", i), 1)
			}
			return nil, err
		}
		size := store.EncodedSize(stream, e)
		if size > s.cfg.MaxEventSize {
			return nil, &rewind.LimitError{Limit: fmt.Sprintf("events[%d] size (bytes)", i), Max: int64(s.cfg.MaxEventSize),
				Got: int64(size), Hint: "store large bodies elsewhere and put a reference in the event"}
		}
		if total += size; total > s.cfg.MaxBatchBytes {
			return nil, &rewind.LimitError{Limit: "batch size (bytes)", Max: int64(s.cfg.MaxBatchBytes), Got: int64(total),
				Hint: "split the append into several batches"}
		}
		id := e.ID
		if id == (uuid.UUID{}) {
			if base == (uuid.UUID{}) {
				var err error
				if base, err = uuid.NewV7(); err != nil {
					return nil, fmt.Errorf("generate event id: %w", err)
				}
			}
			id, b.generated[i] = nextID(base, i), true
		} else if j, dup := seen[id]; dup {
			return nil, &rewind.ValidationError{Field: fmt.Sprintf("events[%d].id", i), Value: id.String(),
				Reason: fmt.Sprintf("repeats the id of events[%d]; every event needs its own id", j)}
		} else {
			seen[id] = i
		}
		b.ids[i] = id
		b.size = total
		b.types[i] = e.Type
		b.schemas[i] = int32(max(e.SchemaVersion, 1))
		if e.SchemaVersion > 1<<31-1 {
			return nil, &rewind.ValidationError{Field: fmt.Sprintf("events[%d].schema_version", i),
				Value: fmt.Sprint(e.SchemaVersion), Reason: "must be at most 2147483647"}
		}
		b.contents[i] = e.ContentType
		if b.contents[i] == "" {
			b.contents[i] = rewind.DefaultContentType
		}
		b.data[i] = e.Data
		if b.data[i] == nil {
			b.data[i] = []byte{}
		}
		switch {
		case len(e.Metadata) == 0:
		case i > 0 && b.metadata[i-1] != nil && maps.Equal(e.Metadata, events[i-1].Metadata):
			b.metadata[i] = b.metadata[i-1] // events of a batch often carry the same metadata
		default:
			js, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, err
			}
			m := string(js)
			b.metadata[i] = &m
		}
		if !e.OccurredAt.IsZero() {
			ns := e.OccurredAt.UnixNano()
			b.occurred[i] = &ns
		}
	}
	return b, nil
}

// nextID returns the i-th id of a batch whose ids the store makes up, as
// the embedded store does: the batch's UUID v7 with i added to its random
// bits, unique and increasing.
func nextID(base uuid.UUID, i int) uuid.UUID {
	lo := binary.BigEndian.Uint64(base[8:])
	const randBits = 1<<62 - 1
	lo = lo&^randBits | (lo+uint64(i))&randBits
	binary.BigEndian.PutUint64(base[8:], lo)
	return base
}

// Append appends events to stream as one atomic batch if the stream is in
// the expected state; see rewind.Store.
//
// The store's committer writes it, with the other appends waiting at that
// moment (group.go), in one transaction that takes two round trips: BEGIN
// and the locks of the streams' rows; then — once the expected versions
// are checked — the write and the COMMIT sent together, so that the append
// lock the write takes is held only while PostgreSQL runs the write and
// the commit, never while a packet travels back to this process. Under the
// lock the write takes positions from the head row, inserts the events and
// updates the streams. An id already recorded fails the write on its
// unique index; the append is then answered from the recorded events: a
// duplicate or a conflict.
func (s *Store) Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return rewind.AppendResult{}, err
	}
	if err := s.checkOpen(); err != nil {
		return rewind.AppendResult{}, err
	}
	if err := store.ValidateStreamName(stream); err != nil {
		return rewind.AppendResult{}, err
	}
	if !expected.Valid() {
		return rewind.AppendResult{}, &rewind.ValidationError{Field: "expected version", Value: expected.String(),
			Reason: "must be any, no-stream, stream-exists or a version number"}
	}
	b, err := s.encode(stream, events)
	if err != nil {
		return rewind.AppendResult{}, err
	}
	r := &appendReq{ctx: ctx, stream: stream, expected: expected, events: events, b: b, size: b.size,
		done: make(chan struct{})}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return rewind.AppendResult{}, ctx.Err()
	case <-s.closed:
		return rewind.AppendResult{}, fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
	}
	// The committer has it: it answers, also when the store closes.
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return rewind.AppendResult{}, ctx.Err()
	}
}

// begin starts a transaction on conn and runs the stream's lock, which
// scans into version and deleted, in one round trip.
func (s *Store) begin(ctx context.Context, conn *pgxpool.Conn, lock, stream string, version, deleted *uint64) error {
	var bb pgx.Batch
	bb.Queue("BEGIN")
	bb.Queue(lock, stream)
	br := conn.SendBatch(ctx, &bb)
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(version, deleted)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		rollback(ctx, conn)
	}
	return err
}

// errTestRollback is what an append rolled back by a test's fate returns.
var errTestRollback = errors.New("pgstore: rolled back by the test hook")

// queueEnd queues the end of a write's transaction: COMMIT, or what the
// test hook asks for (a pause in PostgreSQL before COMMIT, or ROLLBACK).
// It returns how many statements it queued and whether it queued a
// rollback.
func (s *Store) queueEnd(ctx context.Context, b *pgx.Batch) (int, bool) {
	n := 1
	if s.testFate != nil {
		sleep, rollback := s.testFate(ctx)
		if sleep > 0 {
			b.Queue("SELECT pg_sleep($1::float8)", sleep.Seconds())
			n++
		}
		if rollback {
			b.Queue("ROLLBACK")
			return n, true
		}
	}
	b.Queue("COMMIT")
	if s.testKillAfterCommit != nil && s.testKillAfterCommit(ctx) {
		b.Queue(killSelf) // not an end: read by the batch's Close
	}
	return n, false
}

// killSelf ends the session it runs in with PostgreSQL's FATAL 57P01, for
// tests.
const killSelf = "SELECT pg_terminate_backend(pg_backend_pid())"

// closeAfterEnd is the error of closing a write's batch results, given
// the error of reading them (err). Once the COMMIT answered (err nil),
// the write is committed whatever follows: a session PostgreSQL ends
// after it (a FATAL before the next ReadyForQuery) loses the connection,
// not the write.
func closeAfterEnd(br pgx.BatchResults, err error) error {
	br.Close()
	return err
}

// endResults reads the n results queued by queueEnd. An error of the last
// one, the COMMIT, is wrapped in a commitError.
func endResults(br pgx.BatchResults, n int) error {
	for i := range n {
		if _, err := br.Exec(); err != nil {
			if i == n-1 {
				return &commitError{err}
			}
			return err
		}
	}
	return nil
}

// commitError is an error PostgreSQL answered a COMMIT with.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// rollback ends conn's transaction; a connection that cannot is closed by
// Release.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
}

// dropIfReadOnly closes conn when err says its server refuses writes
// (25006: a standby, or a primary turned read-only without a restart), so
// that Release drops it and the pool connects anew — with a DSN listing
// several hosts and target_session_attrs=read-write, to the one that takes
// writes now — instead of failing on it for as long as it lives.
func dropIfReadOnly(ctx context.Context, conn *pgxpool.Conn, err error) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "25006" {
		conn.Conn().Close(context.WithoutCancel(ctx))
	}
}

// writeError is the error of a write sent with its COMMIT. PostgreSQL's
// error for a statement before the COMMIT means the COMMIT never ran
// (PostgreSQL skips the rest of a pipeline after an error, and runs
// nothing after a FATAL one): nothing was written. So does an ERROR for
// the COMMIT itself. A FATAL answer to the COMMIT (a backend terminated
// while it waited for a synchronous standby, which PostgreSQL answers
// "already committed locally"), a lost connection or a cancelled context
// leave the outcome unknown.
func (s *Store) writeError(ctx context.Context, conn *pgxpool.Conn, err error) error {
	var pe *pgconn.PgError
	var ce *commitError
	if errors.As(err, &pe) && !(errors.As(err, &ce) && (pe.Severity == "FATAL" || pe.Severity == "PANIC")) {
		rollback(ctx, conn)
		dropIfReadOnly(ctx, conn, err)
		return s.dbError("write (nothing was written)", err)
	}
	return fmt.Errorf("%w: the write and its commit got no answer from PostgreSQL (%w); retry with the same event ids",
		rewind.ErrOutcomeUnknown, err)
}

// dbError wraps an error of PostgreSQL or of the connection to it.
func (s *Store) dbError(op string, err error) error {
	if s.checkOpen() != nil {
		return fmt.Errorf("%w: %s: %w", rewind.ErrClosed, op, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return classify(s.cfg.Schema, op, err)
}

// classify gives an error of PostgreSQL the type callers act on:
// unavailable (retry), permission denied (grant), or as it is.
func classify(schema, op string, err error) error {
	if unavailable(err) {
		return &UnavailableError{Op: op, Err: err}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return &PermissionError{Schema: schema, Op: op, Err: err}
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// PermissionError is the error of an operation PostgreSQL refused the
// connection's role (SQLSTATE 42501, insufficient privilege). Nothing was
// done. It matches rewind.ErrPermissionDenied (exit status 8 in the CLI).
type PermissionError struct {
	Schema string // the store's schema
	Op     string // what the store was doing
	Err    error  // the driver's error
	// Hint says what to grant; empty, the privileges a store's role needs.
	Hint string
}

func (e *PermissionError) Error() string {
	hint := e.Hint
	if hint == "" {
		hint = fmt.Sprintf("grant it USAGE on schema %s and SELECT, INSERT, UPDATE on its tables (SELECT alone to "+
			"read), or connect as the role that ran rewind migrate", e.Schema)
	}
	return fmt.Sprintf("pgstore: PostgreSQL refused the connection's role: %s: %v; %s", e.Op, e.Err, hint)
}

// Is makes it match rewind.ErrPermissionDenied.
func (e *PermissionError) Is(target error) bool { return target == rewind.ErrPermissionDenied }

func (e *PermissionError) Unwrap() error { return e.Err }

// UnavailableError is the error of an operation PostgreSQL could not take:
// it cannot be reached, is starting up or shutting down, ended the session,
// or is a standby that refuses writes. The operation was not done (an
// append whose outcome is unknown is rewind.ErrOutcomeUnknown instead). It
// matches rewind.ErrClosed, whose code is "unavailable": retry, with the
// same event ids for an append; the store reconnects by itself.
type UnavailableError struct {
	Op  string // what the store was doing
	Err error  // the driver's error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("pgstore: PostgreSQL is unavailable: %s: %v; retry once it is back (the store reconnects by itself)",
		e.Op, e.Err)
}

// Is makes it match rewind.ErrClosed (code "unavailable", which clients
// retry).
func (e *UnavailableError) Is(target error) bool { return target == rewind.ErrClosed }

func (e *UnavailableError) Unwrap() error { return e.Err }

// unavailable reports whether err says PostgreSQL is out of reach rather
// than refusing the operation itself: no connection could be made, the
// connection broke, or the server ended the session or refuses writes
// (SQLSTATE class 08, 57P01–57P03 admin/crash shutdown and cannot connect
// now, 25006 read-only transaction, 53300 too many connections). A login
// PostgreSQL refuses (a wrong password, a database that does not exist)
// is not: retrying does not help.
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", "25006", "53300":
			return true
		}
		return strings.HasPrefix(pe.Code, "08")
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || pgconn.SafeToRetry(err)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// resolve answers an append some of whose ids are recorded: known is false
// when none is. All of them, as one whole earlier append with the same
// bodies, is a duplicate; anything else is a conflict.
func (s *Store) resolve(ctx context.Context, q querier, stream string, events []rewind.Event, b *batch) (
	res rewind.AppendResult, known bool, err error) {
	var client []uuid.UUID
	for i, id := range b.ids {
		if !b.generated[i] {
			client = append(client, id)
		}
	}
	if len(client) == 0 {
		return res, false, nil
	}
	rows, err := q.Query(ctx, s.q.selectCols+" WHERE event_id = ANY($1)", client)
	if err != nil {
		return res, false, s.dbError("look up event ids", err)
	}
	recorded := map[uuid.UUID]*row{}
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return res, false, s.dbError("look up event ids", err)
		}
		recorded[r.ev.ID] = r
	}
	if err := rows.Err(); err != nil {
		return res, false, s.dbError("look up event ids", err)
	}
	if len(recorded) == 0 {
		return res, false, nil
	}
	conflict := func(id uuid.UUID, pos rewind.Position, reason string) (rewind.AppendResult, bool, error) {
		return rewind.AppendResult{}, true, &rewind.IdempotencyConflictError{EventID: id.String(), Position: pos, Reason: reason}
	}
	count := 0
	var first *row
	var firstID uuid.UUID
	for i := range events {
		if b.generated[i] {
			continue
		}
		r := recorded[b.ids[i]]
		if r == nil {
			continue
		}
		if !sameBody(r, stream, b, i) {
			return conflict(b.ids[i], r.ev.Position, "the event recorded with this id differs (stream, type, schema "+
				"version, content type, data, metadata or occurred-at)")
		}
		if count == 0 {
			first, firstID = r, b.ids[i]
			res.FirstPosition, res.FirstVersion = r.ev.Position, r.ev.Version
		} else if res.LastPosition+1 != r.ev.Position {
			return conflict(b.ids[i], r.ev.Position, "the ids are recorded in another order or in several appends")
		}
		res.LastPosition, res.LastVersion = r.ev.Position, r.ev.Version
		count++
	}
	if count < len(events) {
		return conflict(firstID, res.FirstPosition, "the append mixes recorded ids with new events; "+
			"retry the earlier append exactly as it was")
	}
	if first.batchFirst != int64(res.FirstPosition) || first.batchLast != int64(res.LastPosition) {
		return conflict(firstID, res.FirstPosition, "the ids are only part of an earlier append, or of several; "+
			"retry the earlier append exactly as it was")
	}
	res.Duplicate = true
	return res, true, nil
}

// sameBody reports whether the recorded r is events[i] appended to stream.
func sameBody(r *row, stream string, b *batch, i int) bool {
	e := &r.ev
	if e.Stream != stream || e.Type != b.types[i] || e.SchemaVersion != uint32(b.schemas[i]) ||
		e.ContentType != b.contents[i] || string(e.Data) != string(b.data[i]) || r.generated {
		return false
	}
	var md map[string]string
	if b.metadata[i] != nil {
		json.Unmarshal([]byte(*b.metadata[i]), &md)
	}
	if len(md) != len(e.Metadata) {
		return false
	}
	for k, v := range md {
		if w, ok := e.Metadata[k]; !ok || w != v {
			return false
		}
	}
	var ns *int64
	if !e.OccurredAt.IsZero() {
		v := e.OccurredAt.UnixNano()
		ns = &v
	}
	return (ns == nil) == (b.occurred[i] == nil) && (ns == nil || *ns == *b.occurred[i])
}

// DeleteStream soft-deletes a stream; see rewind.Store. Its record is
// written like an append, under the same locks.
func (s *Store) DeleteStream(ctx context.Context, stream string, expected rewind.ExpectedVersion) (rewind.Position, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if err := store.ValidateStreamName(stream); err != nil {
		return 0, err
	}
	if !expected.Valid() || expected == rewind.NoStream {
		return 0, &rewind.ValidationError{Field: "expected version", Value: expected.String(),
			Reason: "must be any, stream-exists or a version number"}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return 0, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, s.dbError("connect", err)
	}
	defer conn.Release()
	var version, deleted uint64
	err = s.begin(ctx, conn, s.q.lockStreamForDelete, stream, &version, &deleted)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && version == deleted {
		rollback(ctx, conn)
		return 0, notFound(stream, version)
	}
	if err != nil {
		dropIfReadOnly(ctx, conn, err)
		return 0, s.dbError("lock stream", err)
	}
	if err := expected.Check(stream, version, true); err != nil {
		rollback(ctx, conn)
		return 0, err
	}
	var wb pgx.Batch
	wb.Queue(s.q.tombstone, stream, id, int64(version), s.lk1, s.lk2, channel(s.cfg.Schema))
	ends, rolledBack := s.queueEnd(ctx, &wb)
	br := conn.SendBatch(ctx, &wb)
	var pos int64
	err = br.QueryRow().Scan(&pos)
	if err == nil {
		err = endResults(br, ends)
	}
	if err = closeAfterEnd(br, err); err != nil {
		return 0, s.writeError(ctx, conn, err)
	}
	if rolledBack {
		return 0, errTestRollback
	}
	s.signal()
	return rewind.Position(pos), nil
}

func notFound(stream string, version uint64) error {
	if version > 0 {
		return fmt.Errorf("%w: stream %q was deleted at version %d", rewind.ErrStreamNotFound, stream, version)
	}
	return fmt.Errorf("%w: stream %q has no events", rewind.ErrStreamNotFound, stream)
}
