// Package pgstore is the PostgreSQL backend of rewind: a rewind.Store whose
// log, streams and event ids live in tables of one PostgreSQL schema. It
// passes the conformance suite of package storetest, as the embedded store
// does, and adds what a shared database needs: versioned migrations
// (Migrate, `rewind migrate --store postgres://…`), and a view of what
// holds readers back (Horizon).
//
// # What it promises
//
// An acknowledged append has been committed by PostgreSQL (with the
// server's default synchronous_commit, flushed to its WAL). Positions are
// gapless and strictly increasing, and they are given out in commit order:
// every append takes a transaction-scoped advisory lock (the append lock)
// just before it takes its positions from a one-row counter, and holds it
// until it commits. A transaction that rolls back gives its positions
// back, and a reader that sees position p sees every position before it.
// So a subscriber never passes a position a still-open transaction could
// fill, and never needs a timer to decide that a gap is a gap: there are
// none. The price is that appends take turns for the end of their
// transaction (the insert and the commit's WAL flush), which the store
// offsets by writing the appends waiting at one moment in one transaction
// (group commit); see docs/postgres.md for the measured cost.
//
// Expected versions are checked under a lock on the stream's row and
// enforced by a unique (stream, version) index; event ids are unique in the
// whole log (a unique index), so a retry with the same ids is answered
// from the recorded events, as a duplicate or a conflict, even when two
// retries race. Positions, versions and ids are data: they survive
// pg_dump and pg_restore into another cluster unchanged.
//
// Because positions have no gaps by design, a reader of the whole log
// that finds one (a row deleted behind the store's back) stops there with a
// *GapError, which matches rewind.ErrCorruption. Rows carry no checksum:
// beyond that, their integrity is PostgreSQL's. The log's epoch is always
// 1 (nothing cuts it back), reported and checked as the embedded store's.
//
// Open never changes the schema: it refuses with a *SchemaError when the
// database's schema is older (run migrate) or newer (this binary is too
// old) than the binary's.
package pgstore
