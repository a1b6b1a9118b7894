// Package projection keeps read models in PostgreSQL up to date from the
// log, and rebuilds them blue/green.
//
// A Projection is a named, versioned set of handlers per event type; each
// version writes into its own schema (SchemaName). A Runner applies events
// in batches: a batch's writes, the events it parked, the effects it
// recorded and the version's checkpoint commit in one transaction, so a
// crash or a cancellation never applies an event twice nor loses one.
// The checkpoint advances across ranges of events the projection does not
// handle. An event whose handler fails, or whose payload cannot be decoded,
// is parked (position, type, error) and the projection goes on.
//
// Side effects go through Tx.Effect into an outbox, in the batch's
// transaction, and are suppressed while a version replays history. A new
// version is built in a shadow schema while the serving one runs, kept
// behind it, and Swap hands over at one position: the old version records
// effects up to it, the new one after it, so no effect is recorded twice
// or lost. docs/projections.md explains the protocol and its limits.
package projection
