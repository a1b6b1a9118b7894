// Package replay replays bounded windows of the whole log into a handler,
// deterministically, and reads the state of a stream as of a version, a
// time or a position.
//
// A Window is a range of global positions or of recording times, both ends
// inclusive, with stream and type filters. Run resolves it to positions
// once, when it starts, and delivers the events in log order up to its end
// and never beyond, even while appends continue: a bounded replay never
// waits for the future, so a To beyond the end is cut at the last position
// acknowledged then, and Result says where. Replaying the same window over
// the same log delivers the same events, byte for byte; Result.Digest, a
// SHA-256 over what was delivered, lets two replays be compared.
//
// Pacing delivers as fast as possible (the default), at the original
// timing of the events' RecordedAt times a speed factor, or under a rate
// limit. IntoStore is a handler that copies the window into another store,
// idempotently by event id.
//
// Run works on every rewind.Store through ReadAll; on a store that offers
// rewind.BatchReader (the embedded store) it reads batches into a buffer it
// reuses, without an allocation per event. Fold and AsOf read one stream up
// to a version, a time or a position. Package replay/template runs replays
// described in YAML templates, recorded in the audit ledger, and package
// replay/mask masks sensitive fields on the way. docs/replay.md explains the
// limits.
package replay
