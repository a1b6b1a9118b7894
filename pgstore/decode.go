package pgstore

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rewindhq/rewind"
)

// Reading events fast. A catch-up reads the log in pages of readPage rows;
// scanned through pgx's Scan, each row cost about forty allocations (a
// pointer per nullable column, a string per text column, a slice for the
// data, the metadata's JSON decoded by reflection) and a scan plan per
// column per page. An eventDecoder reads the rows' raw values instead: the
// fixed-width columns in PostgreSQL's binary format (pgx asks for it under
// its default statement cache), decoded in place; text and jsonb as pgx
// asks for them (text). The events' data is copied into shared blocks (one
// allocation for many events), the strings that repeat along a log (stream
// names, types, content types) are made once, and metadata repeated by
// consecutive events is decoded once. What remains per event is its
// metadata map, when it has one.

// The columns of eventCols, by their index after a query's prefix.
const (
	colPosition = iota
	colStream
	colVersion
	colEventID
	colGenerated
	colType
	colSchemaVersion
	colContentType
	colData
	colMetadata
	colOccurredAt
	colRecordedAt
	colBatchFirst
	colBatchLast
	eventColCount
)

// eventColTypes are the PostgreSQL types of eventCols, in their order.
var eventColTypes = [eventColCount]uint32{pgtype.Int8OID, pgtype.TextOID, pgtype.Int8OID, pgtype.UUIDOID,
	pgtype.BoolOID, pgtype.TextOID, pgtype.Int4OID, pgtype.TextOID, pgtype.ByteaOID, pgtype.JSONBOID, pgtype.Int8OID,
	pgtype.TimestamptzOID, pgtype.Int8OID, pgtype.Int8OID}

const (
	// dataBlock is the size of the blocks events' data is copied into.
	// A kept event keeps its block alive (Clone copies what it keeps).
	dataBlock = 32 << 10
	// maxStrings bounds the strings a decoder remembers; past it, it
	// forgets them all and starts again.
	maxStrings = 4096
)

// eventDecoder turns rows of eventCols (after bigint prefix columns) into
// events. One decoder serves one reader (a subscription, one ReadAll) across
// its queries; it is not safe for concurrent use.
type eventDecoder struct {
	raw         bool              // the current query's columns came as next decodes them
	jsonbBinary bool              // and its metadata in binary (else as JSON text)
	strs        map[string]string // strings already made, by their bytes
	block       []byte            // the unused rest of the current data block
	lastMD      []byte            // the last metadata decoded, as read
	lastMap     map[string]string // and as decoded
}

// start prepares the decoder for rows, a query whose columns are prefix
// bigint columns followed by eventCols.
func (d *eventDecoder) start(rows pgx.Rows, prefix int) {
	d.raw, d.jsonbBinary = rawReadable(rows.FieldDescriptions(), prefix)
}

// rawReadable reports whether every column came with the type and in the
// format next decodes: the prefix's as bigint, then eventCols', the
// fixed-width ones in binary, text and jsonb in either format (pgx asks
// for them in text; a text's bytes are the same in both). jsonbBinary
// says which the metadata came in. (A connection string that asks for the
// simple protocol gets text throughout; such rows go through pgx's Scan.)
func rawReadable(fds []pgconn.FieldDescription, prefix int) (ok, jsonbBinary bool) {
	if len(fds) != prefix+eventColCount {
		return false, false
	}
	for i, fd := range fds {
		want := uint32(pgtype.Int8OID)
		if i >= prefix {
			want = eventColTypes[i-prefix]
		}
		if fd.DataTypeOID != want {
			return false, false
		}
		switch want {
		case pgtype.TextOID:
		case pgtype.JSONBOID:
			jsonbBinary = fd.Format == pgtype.BinaryFormatCode
		default:
			if fd.Format != pgtype.BinaryFormatCode {
				return false, false
			}
		}
	}
	return true, jsonbBinary
}

// next reads the current row of rows into r, and its prefix columns into
// prefix. It reports false when the event's columns are NULL: the outer
// side of a LEFT JOIN found no event.
func (d *eventDecoder) next(rows pgx.Rows, r *row, prefix ...*int64) (bool, error) {
	if !d.raw {
		dest := make([]any, len(prefix))
		for i, p := range prefix {
			dest[i] = p
		}
		return scanInto(rows, r, dest...)
	}
	vals := rows.RawValues()
	for i, p := range prefix {
		v, err := int8Value(vals[i])
		if err != nil {
			return false, fmt.Errorf("column %d: %w", i, err)
		}
		*p = v
	}
	return d.decode(vals[len(prefix):], r)
}

func (d *eventDecoder) decode(v [][]byte, r *row) (bool, error) {
	if v[colPosition] == nil {
		return false, nil
	}
	var ints [eventColCount]int64
	for _, c := range [...]int{colPosition, colVersion, colBatchFirst, colBatchLast} {
		n, err := int8Value(v[c])
		if err != nil {
			return false, fmt.Errorf("column %d: %w", c, err)
		}
		ints[c] = n
	}
	switch {
	case len(v[colEventID]) != 16:
		return false, fmt.Errorf("event_id: %d bytes, not a uuid", len(v[colEventID]))
	case len(v[colGenerated]) != 1:
		return false, fmt.Errorf("generated: %d bytes, not a boolean", len(v[colGenerated]))
	case len(v[colSchemaVersion]) != 4:
		return false, fmt.Errorf("schema_version: %d bytes, not an integer", len(v[colSchemaVersion]))
	case v[colStream] == nil || v[colType] == nil || v[colContentType] == nil || v[colData] == nil:
		return false, fmt.Errorf("event at position %d: a NOT NULL column is NULL", ints[colPosition])
	}
	rec, err := int8Value(v[colRecordedAt])
	if err != nil {
		return false, fmt.Errorf("recorded_at: %w", err)
	}
	if rec == 1<<63-1 || rec == -1<<63 {
		return false, fmt.Errorf("event at position %d: recorded_at is infinite", ints[colPosition])
	}
	r.ev = rewind.RecordedEvent{
		Event: rewind.Event{Type: d.str(v[colType]), SchemaVersion: binary.BigEndian.Uint32(v[colSchemaVersion]),
			ContentType: d.str(v[colContentType]), Data: d.bytes(v[colData])},
		Stream: d.str(v[colStream]), Version: uint64(ints[colVersion]), Position: rewind.Position(ints[colPosition]),
		// timestamptz is microseconds since 2000-01-01 UTC.
		RecordedAt: time.UnixMicro(rec + pgEpochMicros).UTC(),
	}
	copy(r.ev.ID[:], v[colEventID])
	r.generated, r.batchFirst, r.batchLast = v[colGenerated][0] != 0, ints[colBatchFirst], ints[colBatchLast]
	if v[colOccurredAt] != nil {
		n, err := int8Value(v[colOccurredAt])
		if err != nil {
			return false, fmt.Errorf("occurred_at: %w", err)
		}
		r.ev.OccurredAt = time.Unix(0, n).UTC()
	}
	if md := v[colMetadata]; md != nil {
		if r.ev.Metadata, err = d.metadata(md); err != nil {
			return false, fmt.Errorf("event at position %d: metadata: %w", ints[colPosition], err)
		}
	}
	return true, nil
}

// pgEpochMicros is 2000-01-01 UTC in Unix microseconds.
const pgEpochMicros = 946_684_800_000_000

// int8Value decodes a binary bigint.
func int8Value(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%d bytes, not a bigint", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// str returns b as a string, the same string for the same bytes while the
// decoder remembers it.
func (d *eventDecoder) str(b []byte) string {
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if d.strs == nil || len(d.strs) >= maxStrings {
		d.strs = make(map[string]string, 64)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

// bytes returns a copy of b, in the current data block when it fits.
func (d *eventDecoder) bytes(b []byte) []byte {
	if len(b) == 0 {
		return []byte{}
	}
	if len(b) > len(d.block) {
		if len(b) > dataBlock/4 {
			return append([]byte(nil), b...)
		}
		d.block = make([]byte, dataBlock)
	}
	out := d.block[:len(b):len(b)]
	copy(out, b)
	d.block = d.block[len(b):]
	return out
}

// metadata decodes a jsonb object of strings. Events appended
// together usually carry the same metadata: from the second row in a row
// with the same bytes, the decoder keeps a decoded map of its own and
// hands out copies of it, cheaper than decoding. Each event gets a map of
// its own, as a caller may change it.
func (d *eventDecoder) metadata(b []byte) (map[string]string, error) {
	if d.jsonbBinary {
		if len(b) == 0 || b[0] != 1 {
			return nil, fmt.Errorf("not jsonb in binary format version 1")
		}
		b = b[1:]
	}
	same := string(b) == string(d.lastMD)
	if same && d.lastMap != nil {
		return maps.Clone(d.lastMap), nil
	}
	var md map[string]string
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, err
	}
	if len(md) == 0 {
		return nil, nil
	}
	if same {
		d.lastMap = md
		return maps.Clone(md), nil
	}
	d.lastMD, d.lastMap = append(d.lastMD[:0], b...), nil
	return md, nil
}
