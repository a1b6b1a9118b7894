// Package rewind holds the vocabulary shared by every part of rewind: the
// events that are appended and read back, log positions, expected versions,
// the errors a caller can act on, and the contract every backend keeps —
// the Store and Subscription interfaces, with optional capabilities found
// by type assertion (LastPositioner, Describer, Retainer, Verifier,
// Poller).
//
// It imports nothing else of rewind's, so a client, a server and the embedded
// store can all speak the same types. The embedded store lives in package
// store, the durable log under it in package eventlog, the client of a
// server in package client; package storetest is the conformance suite
// each of them passes.
//
// # Guarantees
//
// Within a stream, versions start at 1 and are gapless and ordered. Across the
// whole log, global positions start at 1 and are strictly increasing. A
// subscriber that resumes from position P sees every event after P exactly
// once, in order. A retried append with the same event ids writes nothing and
// returns the original positions. No answer reveals an append that is not
// acknowledged, so concurrent calls are linearizable. Package store
// documents what an acknowledgement means in each durability mode.
package rewind
