// Package rewind holds the vocabulary shared by every part of rewind: the
// events that are appended and read back, log positions, expected versions
// and the errors a caller can act on.
//
// It imports nothing else of rewind's, so a client, a server and the embedded
// store can all speak the same types. The embedded store itself lives in
// package store; the durable log under it in package eventlog.
//
// # Guarantees
//
// Within a stream, versions start at 1 and are gapless and ordered. Across the
// whole log, global positions start at 1 and are strictly increasing. A
// subscriber that resumes from position P sees every event after P exactly
// once, in order. A retried append with the same event ids writes nothing and
// returns the original positions. Package store documents what an
// acknowledgement means in each durability mode.
package rewind
