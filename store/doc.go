// Package store is rewind's embedded event store: streams of immutable
// events on top of the durable log in package eventlog, in one directory
// that one process opens at a time. A *Store keeps the rewind.Store
// contract and every optional capability of package rewind.
//
// # Guarantees
//
//   - An append is atomic and acknowledged under the log's durability mode
//     (Sync by default: fsynced, with concurrent appends sharing fsyncs).
//   - Within a stream, versions start at 1 and have no gaps; an append with
//     an expected version writes nothing unless the stream is in that state,
//     and fails with a *rewind.WrongExpectedVersionError carrying the actual
//     version.
//   - Every answer describes acknowledged state only: no success, conflict,
//     read or stream info reveals an append still waiting for its fsync, so
//     concurrent calls are linearizable (see rewind.Store).
//   - Global positions start at 1 and strictly increase. A Subscription
//     delivers every event after its starting position exactly once, in
//     order, from history and then live, through one reader.
//   - An append whose client-given event ids are all recorded already, with
//     the same bodies, writes nothing and returns the original positions
//     (Duplicate), for ids in the dedup window (Config.DedupWindow,
//     Config.DedupMaxIDs), also after a restart.
//   - Invalid input is rejected with a *rewind.ValidationError or
//     *rewind.LimitError before anything is written.
//   - Nothing whose checksum fails is ever returned.
//
// Events handed out by ReadAll and Subscription.Next are reused by the next
// step; Clone one to keep it. ReadStream returns events the caller owns.
package store
