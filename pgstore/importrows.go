package pgstore

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rewindhq/rewind"
)

// importRows are an import's records as the rows its COPY writes
// (copyColumns), checked and made one at a time as pgx sends them: the
// checks that need the target's state (positions follow head.last,
// recorded-at times never go back, each record is its stream's next
// version) run while PostgreSQL writes the rows before, instead of before
// the COPY starts. A record refused stops the COPY; its transaction rolls
// back, so nothing is written. Every row is made in the same values, typed
// for pgx's encoders (no allocation per row), and records that carry the
// same metadata as the one before share its JSON.
type importRows struct {
	records []rewind.LogRecord
	states  map[string]*importedStream
	last    int64     // head.last before the import
	at      time.Time // the last recorded-at so far (zero: the log is empty)
	i       int       // the record of the current row; -1 before the first
	batch   [2]int64  // the positions of the current record's batch
	err     error     // why a record was refused

	// The current row's values, pointed to by vals in copyColumns' order.
	pos, version, occurred, batchFirst, batchLast pgtype.Int8
	kind                                          pgtype.Int2
	stream, typ, contentType                      pgtype.Text
	id                                            pgtype.UUID
	generated                                     pgtype.Bool
	schemaVersion                                 pgtype.Int4
	data                                          byteaValue
	recordedAt                                    pgtype.Timestamptz
	md                                            map[string]string // the metadata last encoded
	vals                                          []any
}

// byteaValue is a bytea for pgx's encoder.
type byteaValue []byte

func (b *byteaValue) BytesValue() ([]byte, error) { return *b, nil }

// newImportRows returns the rows of records, which follow head.last
// (recorded at lastAt, nil for an empty log) and write to the streams
// states holds, locked.
func newImportRows(records []rewind.LogRecord, states map[string]*importedStream, last int64, lastAt *time.Time) *importRows {
	c := &importRows{records: records, states: states, last: last, i: -1}
	if lastAt != nil {
		c.at = *lastAt
	}
	c.vals = []any{&c.pos, &c.stream, &c.version, &c.kind, &c.id, &c.generated, &c.typ, &c.schemaVersion,
		&c.contentType, &c.data, nil, &c.occurred, &c.recordedAt, &c.batchFirst, &c.batchLast}
	return c
}

// Next moves to the next record; see pgx.CopyFromSource.
func (c *importRows) Next() bool {
	if c.err != nil {
		return false
	}
	c.i++
	return c.i < len(c.records)
}

// Values checks the current record and returns its row, valid until the
// next call; see pgx.CopyFromSource.
func (c *importRows) Values() ([]any, error) {
	if err := c.fill(); err != nil {
		c.err = err
		return nil, err
	}
	return c.vals, nil
}

// Err returns why a record was refused; see pgx.CopyFromSource.
func (c *importRows) Err() error { return c.err }

// colMetadataCopy is the metadata's index in copyColumns.
const colMetadataCopy = 10

func (c *importRows) fill() error {
	i, r := c.i, &c.records[c.i]
	pos := int64(r.Position)
	if pos != c.last+1+int64(i) {
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(r.Position),
			Reason: fmt.Sprintf("positions must follow each other: expected %d", c.last+1+int64(i))}
	}
	rec := r.RecordedAt.UTC().Truncate(time.Microsecond)
	if rec.Before(c.at) {
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(r.Position),
			Reason: fmt.Sprintf("recorded-at %s goes back in time (the log is at %s)", rec.Format(time.RFC3339Nano),
				c.at.Format(time.RFC3339Nano))}
	}
	c.at = rec
	st := c.states[r.Stream]
	exists := st.version > st.deleted
	kind := int16(0)
	switch {
	case r.Delete && (!exists || int64(r.Version) != st.version):
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(r.Position), Reason: fmt.Sprintf(
			"deletes stream %q at version %d, which here is at version %d (exists: %v)", r.Stream, r.Version, st.version, exists)}
	case !r.Delete && int64(r.Version) != st.version+1:
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(r.Position), Reason: fmt.Sprintf(
			"is version %d of stream %q, which here is at version %d", r.Version, r.Stream, st.version)}
	case r.Delete:
		kind = 1
		st.deleted, st.first, st.last = st.version, 0, 0
	default:
		st.version++
		if st.first == 0 {
			st.first = pos
		}
		st.last = pos
	}
	if pos > c.batch[1] { // the first record of a batch: find its end
		j := i
		for !c.records[j].BatchEnd { // the last record ends a batch (ImportLog checks)
			j++
		}
		c.batch = [2]int64{pos, c.last + 1 + int64(j)}
	}
	ct := r.ContentType
	if ct == "" {
		ct = rewind.DefaultContentType
	}
	c.data = r.Data
	if c.data == nil {
		c.data = []byte{}
	}
	c.pos, c.version = pgtype.Int8{Int64: pos, Valid: true}, pgtype.Int8{Int64: int64(r.Version), Valid: true}
	c.kind = pgtype.Int2{Int16: kind, Valid: true}
	c.stream, c.typ = pgtype.Text{String: r.Stream, Valid: true}, pgtype.Text{String: r.Type, Valid: true}
	c.contentType = pgtype.Text{String: ct, Valid: true}
	c.id = pgtype.UUID{Bytes: r.ID, Valid: true}
	c.generated = pgtype.Bool{Bool: r.GeneratedID || r.Delete, Valid: true}
	c.schemaVersion = pgtype.Int4{Int32: int32(max(r.SchemaVersion, 1)), Valid: true}
	c.occurred = pgtype.Int8{Int64: r.OccurredAt.UnixNano(), Valid: !r.OccurredAt.IsZero()}
	c.recordedAt = pgtype.Timestamptz{Time: rec, Valid: true}
	c.batchFirst, c.batchLast = pgtype.Int8{Int64: c.batch[0], Valid: true}, pgtype.Int8{Int64: c.batch[1], Valid: true}
	switch {
	case len(r.Metadata) == 0:
		c.vals[colMetadataCopy], c.md = nil, nil
	case c.md == nil || !maps.Equal(c.md, r.Metadata):
		b, err := json.Marshal(r.Metadata)
		if err != nil {
			return fmt.Errorf("pgstore: import: metadata of the record at position %d: %w", r.Position, err)
		}
		c.vals[colMetadataCopy], c.md = b, r.Metadata
	}
	return nil
}
