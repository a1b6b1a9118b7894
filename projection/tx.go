package projection

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// Tx is a handler's view of the batch transaction: its writes are queued
// and sent together when the batch commits (COPY for CopyRow, one pipeline
// for Queue), in the order they were made, in the transaction that also
// advances the checkpoint. Reads go through PG, which sends the queued
// writes first so that a read sees them.
//
// Arguments of type []byte are copied when queued, so an event's Data may
// be passed as it is.
type Tx struct {
	pg      pgx.Tx
	schema  string // quoted
	name    string
	version int
	ops     []op
	// live is true when the current event's effects are recorded: the
	// version is the one that fires effects at this position.
	live bool
	ev   *rewind.RecordedEvent
	seq  int // effects recorded for the current event
	// effects counts the effects recorded in the batch.
	effects int
	// ctx is the batch's context, for a COPY streamed while handlers run.
	ctx context.Context
	// stream, when not nil, is a COPY under way that CopyRow feeds while
	// the batch goes on, so that PostgreSQL ingests rows while the next
	// events are read and handled. noStream turns it off (the careful
	// path sends each event's writes at once anyway).
	stream   *copyStream
	noStream bool
}

// copyStream is a COPY running in its own goroutine on the batch's
// connection, fed rows in chunks. Nothing else may use the connection
// until it ended (endStream).
type copyStream struct {
	ident pgx.Identifier
	cols  []string
	buf   [][]any
	ch    chan [][]any
	done  chan error
	err   error // the COPY's error, once it ended
	ended bool
}

// copyChunk is how many rows go to the COPY goroutine at once.
const copyChunk = 512

// chanSource adapts a copyStream's chunks to pgx.CopyFromSource.
type chanSource struct {
	ch   chan [][]any
	rows [][]any
	i    int
}

func (s *chanSource) Next() bool {
	s.i++
	for s.i >= len(s.rows) {
		rows, ok := <-s.ch
		if !ok {
			return false
		}
		s.rows, s.i = rows, 0
	}
	return true
}

func (s *chanSource) Values() ([]any, error) { return s.rows[s.i], nil }
func (s *chanSource) Err() error             { return nil }

// startStream starts a COPY into ident fed by later CopyRow calls.
func (t *Tx) startStream(ident pgx.Identifier, cols []string) {
	c := &copyStream{ident: ident, cols: cols, ch: make(chan [][]any, 4), done: make(chan error, 1)}
	ctx := t.ctx
	go func() {
		_, err := t.pg.CopyFrom(ctx, ident, cols, &chanSource{ch: c.ch, i: -1})
		c.done <- err
	}()
	t.stream = c
}

// send hands the buffered rows to the COPY, unless it ended already.
func (c *copyStream) send() {
	if len(c.buf) == 0 || c.ended {
		c.buf = c.buf[:0]
		return
	}
	select {
	case c.ch <- c.buf:
	case c.err = <-c.done:
		c.ended = true
	}
	c.buf = make([][]any, 0, copyChunk)
}

// endStream ends the COPY under way, if any, and returns its error.
func (t *Tx) endStream() error {
	c := t.stream
	if c == nil {
		return nil
	}
	t.stream = nil
	c.send()
	close(c.ch)
	if !c.ended {
		c.err = <-c.done
	}
	if c.err != nil {
		return fmt.Errorf("copy into %s: %w", c.ident.Sanitize(), c.err)
	}
	return nil
}

// op is one queued write: a statement, or a row for COPY into ident.
type op struct {
	sql   string
	args  []any
	ident pgx.Identifier
	cols  []string
}

// Schema returns the version's schema, quoted, to build statements with.
func (t *Tx) Schema() string { return t.schema }

// Table returns the quoted, schema-qualified name of a table of the
// projection.
func (t *Tx) Table(name string) string { return t.schema + "." + pgx.Identifier{name}.Sanitize() }

// Queue queues a statement. Its errors surface when the batch is sent;
// the event that queued a failing statement is then parked.
func (t *Tx) Queue(sql string, args ...any) {
	t.ops = append(t.ops, op{sql: sql, args: ownArgs(args)})
}

// CopyRow queues a row for table (a table of the projection's schema,
// unquoted) with the given columns: consecutive rows for the same table
// and columns are sent with one COPY, the fastest way into PostgreSQL.
func (t *Tx) CopyRow(table string, columns []string, values ...any) {
	values = ownArgs(values)
	// Rows join the COPY under way only while nothing else was queued
	// after it, so that writes keep their order.
	if c := t.stream; c != nil && len(t.ops) == 0 && c.ident[1] == table && slices.Equal(c.cols, columns) {
		c.buf = append(c.buf, values)
		if len(c.buf) == copyChunk {
			c.send()
		}
		return
	}
	ident := pgx.Identifier{t.schema[1 : len(t.schema)-1], table}
	if t.stream == nil && len(t.ops) == 0 && !t.noStream && t.ctx != nil {
		t.startStream(ident, columns)
		t.stream.buf = append(make([][]any, 0, copyChunk), values)
		return
	}
	t.ops = append(t.ops, op{ident: ident, cols: columns, args: values})
}

// PG sends the queued writes and returns the transaction itself, for reads
// (and for writes that need an answer). Do not commit or roll it back.
func (t *Tx) PG(ctx context.Context) (pgx.Tx, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.pg, nil
}

// Replaying reports whether the current event is history for this version:
// its effects are suppressed (Effect records nothing).
func (t *Tx) Replaying() bool { return !t.live }

// Effect records a side effect of the current event (an outbound event, a
// call to make) in the outbox, in the batch's transaction, keyed by the
// projection's name, the event's position and the effect's sequence
// within the event, unless the event is history for this version: then it
// records nothing and returns false. Dispatch hands recorded effects out.
//
// Exactly one version of a projection records the effects of a position:
// the serving one up to the swap position, its successor after (see Swap).
func (t *Tx) Effect(kind string, payload []byte) bool {
	if !t.live {
		return false
	}
	t.seq++
	t.effects++
	t.ops = append(t.ops, op{ident: outboxIdent, cols: outboxCols,
		args: []any{t.name, int64(t.ev.Position), t.seq, t.version, kind, slices.Clone(payload)}})
	return true
}

// ownArgs copies the byte slices among args, which may be an event's
// buffers reused after the handler returns.
func ownArgs(args []any) []any {
	for i, a := range args {
		if b, ok := a.([]byte); ok {
			args[i] = slices.Clone(b)
		}
	}
	return args
}

// flush sends the queued writes in order: runs of rows for one table with
// COPY, runs of statements in one pipeline.
func (t *Tx) flush(ctx context.Context) error {
	if err := t.endStream(); err != nil {
		return err
	}
	ops := t.ops
	for i := 0; i < len(ops); {
		j := i + 1
		if ops[i].ident != nil {
			for j < len(ops) && ops[j].ident != nil && slices.Equal(ops[j].ident, ops[i].ident) && slices.Equal(ops[j].cols, ops[i].cols) {
				j++
			}
			rows := make([][]any, j-i)
			for k := range rows {
				rows[k] = ops[i+k].args
			}
			if _, err := t.pg.CopyFrom(ctx, ops[i].ident, ops[i].cols, pgx.CopyFromRows(rows)); err != nil {
				return fmt.Errorf("copy into %s: %w", ops[i].ident.Sanitize(), err)
			}
		} else {
			for j < len(ops) && ops[j].ident == nil {
				j++
			}
			b := &pgx.Batch{}
			for _, o := range ops[i:j] {
				b.Queue(o.sql, o.args...)
			}
			if err := t.pg.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		i = j
	}
	clear(t.ops)
	t.ops = t.ops[:0]
	return nil
}
