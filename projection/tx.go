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
	t.ops = append(t.ops, op{ident: pgx.Identifier{t.schema[1 : len(t.schema)-1], table}, cols: columns, args: ownArgs(values)})
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
