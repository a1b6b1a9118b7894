package backfill

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is what reading needs: a pool, a connection or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Source is what a job iterates in key order: a *Table or an *Events
// window. Chunks are found by keyset (the next N keys after the last one),
// never by OFFSET.
type Source interface {
	describe() map[string]any
	// prepare checks the source against the database and loads its shape.
	prepare(ctx context.Context, db querier, args pgx.NamedArgs) error
	// end returns the last key to process, fixed when a run starts so that
	// the run has an end; nil when there is nothing to process.
	end(ctx context.Context, db querier, args pgx.NamedArgs) (Key, error)
	// next returns the next chunk after `after` (nil: from the start), up
	// to end, of at most size items.
	next(ctx context.Context, db querier, args pgx.NamedArgs, after, end Key, size int) (Bounds, bool, error)
	// count counts the items to process, or estimates them when !exact.
	count(ctx context.Context, db querier, args pgx.NamedArgs, exact bool) (n int64, estimated bool, err error)
	// fingerprint hashes the input (every item to process), for plan hashes.
	fingerprint(ctx context.Context, db querier, args pgx.NamedArgs) (string, error)
	// read reads the chunk's items; in tx, locking them where the source can.
	read(ctx context.Context, q querier, args pgx.NamedArgs, b Bounds, lock bool) ([]Item, error)
	// keys lists the keys of a chunk's items, in order.
	keys(ctx context.Context, q querier, args pgx.NamedArgs, b Bounds) ([]Key, error)
}

// Sink is where a process function's changes go: a *TableSink or a
// *StoreSink.
type Sink interface {
	describe() map[string]any
	prepare(ctx context.Context, db querier) error
}
