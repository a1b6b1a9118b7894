package rewind

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Position is an event's place in the whole log. Positions start at 1 and
// strictly increase; position 0 means "before the first event", so reading
// or subscribing from 0 starts at the beginning.
type Position uint64

// String returns the position in decimal.
func (p Position) String() string { return strconv.FormatUint(uint64(p), 10) }

// DefaultContentType is the content type of an event whose ContentType is empty.
const DefaultContentType = "application/json"

// Event is what a caller appends: an immutable fact with a type, a schema
// version and an opaque body.
type Event struct {
	// ID identifies the event for idempotent appends: retrying an append with
	// the same ids writes nothing and returns the original positions. A zero
	// ID is replaced by a new UUID v7, which makes that append non-retryable.
	ID uuid.UUID
	// Type names what happened, such as "OrderPlaced".
	Type string
	// SchemaVersion is the version of Data's schema. Defaults to 1.
	SchemaVersion uint32
	// ContentType describes Data. Defaults to "application/json".
	ContentType string
	// Data is the event's body.
	Data []byte
	// Metadata carries context such as correlation id, causation id or actor.
	Metadata map[string]string
	// OccurredAt is the optional client-side time of the event. The store
	// keeps it as given; it never orders anything by it.
	OccurredAt time.Time
}

// RecordedEvent is an event as the store recorded it.
type RecordedEvent struct {
	Event
	// Stream is the stream the event was appended to.
	Stream string
	// Version is the event's version within its stream, starting at 1.
	Version uint64
	// Position is the event's global position in the log.
	Position Position
	// RecordedAt is the store's clock when the event was written. It never
	// decreases along the log, so it can be searched.
	RecordedAt time.Time
}

// Clone returns a deep copy of e. Events handed to a scan callback are only
// valid until the callback returns; Clone keeps one.
func (e *RecordedEvent) Clone() RecordedEvent {
	c := *e
	c.Data = slices.Clone(e.Data)
	c.Metadata = maps.Clone(e.Metadata)
	return c
}

// Well-known event types of records the store writes itself.
const (
	// TypeStreamDeleted is the type of the record a soft delete writes. It
	// appears in whole-log reads so that projections learn of the delete.
	TypeStreamDeleted = "$stream-deleted"
)

// AppendResult says where an append's events landed.
type AppendResult struct {
	// FirstPosition and LastPosition bound the batch in the global log.
	FirstPosition, LastPosition Position
	// FirstVersion and LastVersion bound the batch in its stream.
	FirstVersion, LastVersion uint64
	// Duplicate is true when every event id was already in the log: nothing
	// was written and the positions are the original ones.
	Duplicate bool
}

// StreamInfo describes one stream.
type StreamInfo struct {
	Stream string
	// Version is the stream's last version (0 if nothing was ever appended).
	Version uint64
	// FirstVersion is the first version still readable (after deletes and retention).
	FirstVersion uint64
	// FirstPosition and LastPosition are the global positions of the first and
	// last readable events (0 when the stream has none).
	FirstPosition, LastPosition Position
	// Count is the number of readable events.
	Count uint64
	// Deleted is true when the stream was soft-deleted and nothing was appended since.
	Deleted bool
}
