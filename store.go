package rewind

import (
	"context"
	"iter"
)

// Store is the contract every rewind backend keeps: the embedded store
// (package store), the client of a rewind server (package client) and any
// future one. Package storetest checks each guarantee below; a backend is
// one because it passes storetest, not because it has these methods.
//
// All methods are safe for concurrent use.
//
// # What every answer means
//
// A store answers only from acknowledged state: an event is acknowledged
// when its append has returned (or could return) success. No answer —
// success, conflict, read, stream info or list — ever reveals an append
// that is still waiting for durability, so that once an answer is given, a
// read started after it sees at least the state the answer described, and
// a crash cannot take back anything an answer showed. Histories of
// concurrent calls are linearizable: each call appears to take effect at
// one instant between its start and its return.
//
// Errors match one of the sentinels of this package with errors.Is (see
// CodeOf). Bad input fails with a *ValidationError or *LimitError and
// changes nothing.
type Store interface {
	// Append appends events to stream as one atomic batch if the stream is
	// in the expected state. On success the events have consecutive
	// positions and consecutive versions following the stream's last, and
	// are acknowledged under the store's durability. A batch is all or
	// nothing, also across a crash.
	//
	// If the stream is not in the expected state it fails with a
	// *WrongExpectedVersionError whose Actual and Exists describe the
	// stream as a reader could see it at that moment. An append whose
	// event ids are all recorded already, with the same bodies, as one
	// earlier append writes nothing and returns that append's positions
	// and versions with Duplicate set, whatever the expected version
	// (within the store's dedup window). Reusing an id for a different
	// event, or retrying part of an earlier append, fails with an
	// *IdempotencyConflictError. A zero event id is replaced by a new one.
	//
	// On any error nothing was written, except errors matching
	// ErrOutcomeUnknown and ctx's error returned while waiting for
	// durability: then the events may or may not be recorded, and
	// retrying with the same ids is safe.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...Event) (AppendResult, error)

	// ReadStream returns the readable events of a stream in version order
	// (reverse order when reading backward); see ReadStreamOptions. A
	// stream that was never written, or was deleted and not written since,
	// fails with ErrStreamNotFound. The caller owns the events. A damaged
	// event ends the read where a reader meets it in the order it reads:
	// the events before it in that order are returned together with an
	// error matching ErrCorruption that names it; a read from the next
	// version on (the previous one, backward) goes past it. With any other
	// error no event is returned.
	ReadStream(ctx context.Context, stream string, opts ReadStreamOptions) ([]RecordedEvent, error)

	// ReadAll iterates over the whole log in position order, from the
	// start opts gives to the last position acknowledged at one moment of
	// the iteration, normally its start: events appended after that moment
	// are left out, so that a read always ends. See ReadAllOptions. Deletes appear as events of
	// type TypeStreamDeleted. A start that retention removed fails with a
	// *TruncatedError. The event yielded is valid until the next step;
	// Clone it to keep it.
	ReadAll(ctx context.Context, opts ReadAllOptions) iter.Seq2[*RecordedEvent, error]

	// StreamInfo describes a stream. A stream that was never written fails
	// with ErrStreamNotFound; a deleted one is described with Deleted set.
	StreamInfo(ctx context.Context, stream string) (StreamInfo, error)

	// ListStreams returns streams sorted by name; see ListStreamsOptions.
	ListStreams(ctx context.Context, opts ListStreamsOptions) ([]StreamInfo, error)

	// DeleteStream soft-deletes a stream if it is in the expected state
	// (Any, StreamExists or an exact version; never NoStream): its events
	// disappear from stream reads and listings but stay in the whole log,
	// where a record of type TypeStreamDeleted marks the delete, and
	// appending again continues its versions. It returns the position of
	// that record. (A store with retention forgets a stream once all of
	// its events are removed: writing to it again starts at version 1.) A stream with no readable events fails with
	// ErrStreamNotFound; a wrong expected version as in Append.
	DeleteStream(ctx context.Context, stream string, expected ExpectedVersion) (Position, error)

	// Subscribe starts a subscription of the whole log; see
	// SubscribeOptions and Subscription. A bad start fails here, not in
	// Next.
	Subscribe(ctx context.Context, opts SubscribeOptions) (Subscription, error)

	// Close releases the store. Calls after Close fail with ErrClosed, and
	// so does Next of its subscriptions. Close may be called more than once.
	Close() error
}

// Subscription delivers the events of the whole log after its start, in
// position order: first those already acknowledged (catch-up), then new
// ones as they are acknowledged (live). It delivers each event exactly
// once, with no gap and no repeat, including across the switch from
// catch-up to live; a subscription resumed after Position continues exactly
// there. Events its filter rejects are skipped but still advance Position.
//
// A Subscription is not safe for concurrent use.
type Subscription interface {
	// Next waits for the next event. The event is valid until the next
	// call; Clone it to keep it. It fails with ctx's error (the next call
	// continues where the subscription stood), with ErrClosed once the
	// subscription or its store is closed, or with a *TruncatedError when
	// retention removed events it had still to deliver.
	Next(ctx context.Context) (*RecordedEvent, error)
	// Position returns the last position delivered or skipped. Subscribing
	// again with After set to it continues exactly after it.
	Position() Position
	// Close releases the subscription.
	Close() error
}

// Optional capabilities. A Store or Subscription may implement any of
// these; callers discover them with a type assertion, as database/sql does
// with its driver's optional interfaces, and manage without them.

// LastPositioner reports the position of the last acknowledged event
// cheaply: every event at or before it is readable (unless retention
// removed it). The server uses it for subscription lag and to tell a reader
// that skipped everything where the log ends.
type LastPositioner interface {
	LastPosition(ctx context.Context) (Position, error)
}

// Describer describes the store as a whole.
type Describer interface {
	Describe(ctx context.Context) (StoreInfo, error)
}

// StoreInfo describes a store as a whole.
type StoreInfo struct {
	// Location is where the events are: a data directory or a server URL.
	Location string `json:"location"`
	// Durability is the acknowledgement mode: "sync", "interval" or "none".
	Durability string `json:"durability"`
	// FirstPosition is the first position still in the log, LastPosition
	// the last acknowledged one (FirstPosition is LastPosition+1 when the
	// log holds nothing).
	FirstPosition Position `json:"first_position"`
	LastPosition  Position `json:"last_position"`
	// Streams counts the streams the store knows, deleted ones included.
	Streams int `json:"streams"`
	// Segments and Bytes describe the log's files, when it has any.
	Segments int   `json:"segments,omitempty"`
	Bytes    int64 `json:"bytes,omitempty"`
	// Version is the server's build, for a remote store.
	Version string `json:"version,omitempty"`
}

// Retainer applies the store's retention policy on demand (stores without
// retention remove nothing). It returns the first position still in the
// log; reads and subscriptions before it fail with a *TruncatedError.
type Retainer interface {
	ApplyRetention(ctx context.Context) (Position, error)
}

// Verifier checks every stored record against its checksum. It returns nil
// when everything is intact and an error matching ErrCorruption that names
// each damaged place otherwise.
type Verifier interface {
	Verify(ctx context.Context) error
}

// EpochReporter is a Subscription that tells the log epoch its events were
// read in. Keep it with Position, and resume with both (SubscribeOptions
// Epoch), so that a recovery cut in between is noticed: in interval or none
// durability a power cut can take back positions a subscriber saw, and
// recovery gives them to new events.
type EpochReporter interface {
	Epoch() uint64
}

// Poller is a Subscription that can hand out an event without waiting.
// TryNext returns the next event if one is acknowledged now, or nil. It
// also returns nil, having advanced Position, after skipping a few thousand
// events its filter rejects, so that a caller looping on it can check for
// cancellation; call it again to go on.
type Poller interface {
	TryNext() (*RecordedEvent, error)
}

// BatchReader is a Store that reads the whole log into a buffer the caller
// owns and reuses, without an allocation per event in the steady state: the
// fast path of replays. Package replay uses it when the store has it and
// ReadAll otherwise.
type BatchReader interface {
	// ReadBatches returns a cursor over the log from opts.From to opts.To.
	// A From that retention removed fails with a *TruncatedError; bad
	// options fail with a *ValidationError.
	ReadBatches(ctx context.Context, opts BatchReadOptions) (BatchCursor, error)
}

// BatchReadOptions selects a range of the whole log for a BatchReader.
type BatchReadOptions struct {
	// From is the first position to read; 0 means the first position the
	// log still holds.
	From Position
	// To is the last position to read. 0, or a position beyond the end,
	// means the last position acknowledged when the cursor is made: a
	// cursor never waits for events to come.
	To Position
	// Filter selects events; skipped ones still advance the cursor.
	Filter Filter
}

// BatchCursor reads consecutive batches of the log. It is not safe for
// concurrent use.
type BatchCursor interface {
	// NextBatch fills buf[:0] with up to cap(buf) events that follow, in
	// position order, and returns it. It returns an empty batch and io.EOF
	// once every position up to the cursor's end has been read. The
	// events' Data and Metadata are valid until the next call (a slot's
	// Metadata map is reused); their strings stay valid. Clone an event to
	// keep it.
	NextBatch(ctx context.Context, buf []RecordedEvent) ([]RecordedEvent, error)
	// Position returns the last position read, delivered or skipped by the
	// filter (From-1 before the first call).
	Position() Position
	// Close releases the cursor.
	Close() error
}
