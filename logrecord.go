package rewind

import "context"

// LogRecord is one record of a store's log as `rewind copy` moves it
// between stores: an event or the record of a soft delete, with what its
// position, idempotency and batch need to come out the same in another
// store.
type LogRecord struct {
	// RecordedEvent is the event with its position, stream version and
	// recorded-at time. A delete record has Type TypeStreamDeleted and the
	// stream's version at the delete.
	RecordedEvent
	// Delete marks the record of a soft delete.
	Delete bool
	// GeneratedID is true when the store made the id up (the append gave
	// none): such ids do not count for idempotent retries.
	GeneratedID bool
	// BatchEnd marks the last record of the atomic append it came in; a
	// retry of a whole batch is told from a retry of part of one by it.
	BatchEnd bool
}

// LogExporter is a Store that hands out its log record by record, deletes
// included, for a copy to another store.
type LogExporter interface {
	// ExportLog returns up to max records from position from on, in
	// position order, without gaps; fewer (none) at the end of the log.
	// Data and Metadata are the caller's to keep.
	ExportLog(ctx context.Context, from Position, max int) ([]LogRecord, error)
}

// LogImporter is a Store that takes records at the positions they had in
// another store. records must follow the store's last position without
// gaps, start and end at batch boundaries, and agree with its streams
// (each event the next version of its stream, each delete of a stream that
// exists, at its version); recorded-at times must not go back. It writes
// all of the records or, on an error, none of those of the failing batch
// (earlier batches of the call may be written).
type LogImporter interface {
	ImportLog(ctx context.Context, records []LogRecord) error
}
