// Package eventlog is rewind's durable log: an append-only sequence of
// checksummed records in segment files, with group commit, crash recovery,
// sparse position and time indexes, and retention by whole segments. It
// knows nothing of events; package store builds the event store on it.
//
// # What an acknowledgement means
//
// Append assigns positions to a batch of records and returns at once;
// Appended.Wait returns when the batch is acknowledged under the log's
// Durability. With Sync (the default) that is after fdatasync, shared by
// all appends that arrived while the previous fsync ran (group commit): an
// acknowledged batch survives a power loss. With Interval it is after the
// write to the operating system, with an fsync every SyncInterval; with
// None, after the write, fsyncing only when a segment is sealed or the log
// closed. Readers never see a record before it is acknowledged.
//
// # What survives a crash
//
// A batch is atomic: its last record carries a batch-end flag, and Open
// cuts everything after the last complete batch of the last segment — a
// torn write, a record failing its CRC-32C, the records of an unfinished
// batch — and reports each cut (Recovery). A record whose checksum fails is
// never returned by a Reader: it returns a *rewind.CorruptionError naming
// the segment, offset and position. Verify checks a whole log without
// changing it.
//
// # Positions and time
//
// Positions start at 1 and have no gaps. Timestamps never decrease along
// the log, so SeekTime is a binary search. Retention never drops the active
// segment, and reading a removed position fails with a
// *rewind.TruncatedError instead of skipping it.
package eventlog
