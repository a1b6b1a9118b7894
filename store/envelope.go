package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unsafe"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// The payload of an event record (the envelope):
//
//	offset  size     field
//	0       1        envelope format (1)
//	1       1        flags: flagGeneratedID when the store made the id up,
//	                 flagOccurredAt when occurred-at is set
//	2       16       event id
//	18      8        stream version (little endian; set when the append is ordered)
//	26      8        occurred-at, Unix nanoseconds (0 when absent)
//	34      uvarint  schema version
//	        uvarint  stream name length, then the name
//	        uvarint  event type length, then the type
//	        uvarint  content type length, then the content type ("" is application/json)
//	        uvarint  metadata entry count, then per entry: key length, key, value length, value
//	        rest     data
//
// Fixed fields come first so that the version can be patched in place and
// the id read without decoding the rest.
const (
	envelopeFormat  = 1
	flagGeneratedID = 1
	flagOccurredAt  = 2
	knownFlags      = flagGeneratedID | flagOccurredAt
	idOffset        = 2
	versionOffset   = 18
	occurredOffset  = 26
	envelopeFixed   = 34
	kindEvent       = 1
	kindTombstone   = 2
)

// encodeEnvelope appends e's envelope to dst, with version 0.
func encodeEnvelope(dst []byte, stream string, id uuid.UUID, generated bool, e *rewind.Event) []byte {
	var flags byte
	if generated {
		flags |= flagGeneratedID
	}
	var occurred int64
	if !e.OccurredAt.IsZero() {
		flags |= flagOccurredAt
		occurred = e.OccurredAt.UnixNano()
	}
	dst = append(dst, envelopeFormat, flags)
	dst = append(dst, id[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(occurred))
	sv := e.SchemaVersion
	if sv == 0 {
		sv = 1
	}
	dst = binary.AppendUvarint(dst, uint64(sv))
	dst = appendString(dst, stream)
	dst = appendString(dst, e.Type)
	ct := e.ContentType
	if ct == rewind.DefaultContentType {
		ct = ""
	}
	dst = appendString(dst, ct)
	dst = binary.AppendUvarint(dst, uint64(len(e.Metadata)))
	for _, k := range sortedKeys(e.Metadata) {
		dst = appendString(dst, k)
		dst = appendString(dst, e.Metadata[k])
	}
	return append(dst, e.Data...)
}

// envelopeSize is len(encodeEnvelope(nil, stream, …, e)), counted without
// encoding (the key order does not change the size).
func envelopeSize(stream string, e *rewind.Event) int {
	sv := max(e.SchemaVersion, 1)
	ct := e.ContentType
	if ct == rewind.DefaultContentType {
		ct = ""
	}
	n := 2 + len(uuid.UUID{}) + 8 + 8 + uvarintSize(uint64(sv)) + stringSize(stream) + stringSize(e.Type) +
		stringSize(ct) + uvarintSize(uint64(len(e.Metadata)))
	for k, v := range e.Metadata {
		n += stringSize(k) + stringSize(v)
	}
	return n + len(e.Data)
}

func stringSize(s string) int { return uvarintSize(uint64(len(s))) + len(s) }

func uvarintSize(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

func setVersion(payload []byte, v uint64) { binary.LittleEndian.PutUint64(payload[versionOffset:], v) }

func envelopeID(payload []byte) (id uuid.UUID) {
	copy(id[:], payload[idOffset:])
	return id
}

// clientID reports whether the envelope's id came from the client, which
// makes it matter for idempotency.
func clientID(payload []byte) bool { return payload[1]&flagGeneratedID == 0 }

var errEnvelope = errors.New("malformed event envelope")

// interner turns byte strings that repeat, such as stream names and event
// types, into strings without allocating each time. Consecutive events
// often share their stream and type, so the last string of each kind is
// checked before the map. When the map mostly misses (a replay over more
// streams than it holds), it steps aside for a while and strings are
// simply allocated: a miss then costs one allocation, not a lookup too.
type interner struct {
	m             map[string]string
	last          [4]string // by kind: stream, type, metadata key, content type
	hits, lookups int
	bypass        int
	// reuseMaps makes decodeEnvelope refill the event's metadata map
	// rather than make a new one, with interned keys: for batch reads,
	// whose events are only valid until the next batch.
	reuseMaps bool
	// lastTs and lastAt are the last record timestamp converted and its
	// time: the records of one append share their timestamp.
	lastTs int64
	lastAt time.Time
	haveAt bool
}

// recordedAt returns the time of a record's timestamp, in UTC. A nil
// interner converts every time.
func (in *interner) recordedAt(ts int64) time.Time {
	if in != nil && ts == in.lastTs && in.haveAt { // small enough to be inlined
		return in.lastAt
	}
	return in.convertTime(ts)
}

func (in *interner) convertTime(ts int64) time.Time {
	t := time.Unix(0, ts).UTC()
	if in != nil {
		in.lastTs, in.lastAt, in.haveAt = ts, t, true
	}
	return t
}

const (
	internMax    = 1 << 16 // strings kept
	internWindow = 4096    // lookups between two looks at the hit rate
)

func newInterner() *interner { return &interner{m: make(map[string]string)} }

func (in *interner) get(b []byte, kind int) string {
	if last := in.last[kind]; last == string(b) { // no allocation for the comparison; inlined
		return last
	}
	return in.lookup(b, kind)
}

// sameBytes reports whether b spells s. Names of 8 to 16 bytes, the usual
// stream and type, are compared as two overlapping words in line, without
// the call to the runtime's memequal that s == string(b) makes.
func sameBytes(s string, b []byte) bool {
	n := len(b)
	if len(s) != n {
		return false
	}
	if n < 8 || n > 16 {
		return s == string(b)
	}
	w := unsafe.Slice(unsafe.StringData(s), n) // read only
	return binary.LittleEndian.Uint64(w) == binary.LittleEndian.Uint64(b) &&
		binary.LittleEndian.Uint64(w[n-8:]) == binary.LittleEndian.Uint64(b[n-8:])
}

func (in *interner) lookup(b []byte, kind int) string {
	if in.bypass > 0 {
		in.bypass--
		s := string(b)
		in.last[kind] = s
		return s
	}
	s, ok := in.m[string(b)] // nor for the lookup
	if ok {
		in.hits++
	} else {
		s = string(b)
		if len(in.m) < internMax {
			in.m[s] = s
		}
	}
	if in.lookups++; in.lookups == internWindow {
		if in.hits < internWindow/4 && len(in.m) == internMax {
			in.bypass = internMax
		}
		in.hits, in.lookups = 0, 0
	}
	in.last[kind] = s
	return s
}

// decodeEnvelope fills ev from a record payload. Data aliases payload;
// strings are copies (through in, when given).
//
// It is on the path of every read, once per event. The usual envelope
// (every varint of the header one byte long: names under 128 bytes, fewer
// than 128 metadata entries) is decoded here in a straight line, without a
// call per field; any other goes to decodeEnvelopeLong, which decodes them
// all and which FuzzDecodeEnvelope holds this one to.
func decodeEnvelope(payload []byte, ev *rewind.RecordedEvent, in *interner) error {
	if len(payload) < envelopeFixed+5 || payload[0] != envelopeFormat || payload[1]&^knownFlags != 0 {
		return decodeEnvelopeLong(payload, ev, in)
	}
	b := payload[envelopeFixed:]
	if b[0]|b[1] >= 0x80 || b[1] == 0 { // schema version, stream name length
		return decodeEnvelopeLong(payload, ev, in)
	}
	t := 2 + int(b[1]) // the event type's length
	if t >= len(b) || b[t] == 0 || b[t] >= 0x80 {
		return decodeEnvelopeLong(payload, ev, in)
	}
	c := t + 1 + int(b[t]) // the content type's length
	if c >= len(b) || b[c] >= 0x80 {
		return decodeEnvelopeLong(payload, ev, in)
	}
	m := c + 1 + int(b[c]) // the metadata entry count
	if m >= len(b) || b[m] >= 0x80 || int(b[m]) >= len(b)-m {
		return decodeEnvelopeLong(payload, ev, in)
	}
	copy(ev.ID[:], payload[idOffset:])
	ev.Version = binary.LittleEndian.Uint64(payload[versionOffset:])
	if payload[1]&flagOccurredAt != 0 {
		ev.OccurredAt = unixUTC(int64(binary.LittleEndian.Uint64(payload[occurredOffset:])))
	} else if ev.OccurredAt != (time.Time{}) {
		ev.OccurredAt = time.Time{}
	}
	ev.SchemaVersion = uint32(b[0])
	if in != nil {
		// in.get, with the comparison to the last string in line
		if stream := b[2:t]; sameBytes(in.last[0], stream) {
			ev.Stream = in.last[0]
		} else {
			ev.Stream = in.lookup(stream, 0)
		}
		if typ := b[t+1 : c]; sameBytes(in.last[1], typ) {
			ev.Type = in.last[1]
		} else {
			ev.Type = in.lookup(typ, 1)
		}
	} else {
		ev.Stream, ev.Type = string(b[2:t]), string(b[t+1:c])
	}
	switch {
	case c+1 == m:
		ev.ContentType = rewind.DefaultContentType
	case in != nil:
		ev.ContentType = in.get(b[c+1:m], 3)
	default:
		ev.ContentType = string(b[c+1 : m])
	}
	if b[m] == 0 {
		ev.Metadata = nil
		ev.Data = b[m+1:]
		return nil
	}
	return decodeMetadata(b[m+1:], uint64(b[m]), ev, in)
}

// decodeEnvelopeLong is decodeEnvelope for any envelope: a call per field.
func decodeEnvelopeLong(payload []byte, ev *rewind.RecordedEvent, in *interner) error {
	if len(payload) < envelopeFixed || payload[0] != envelopeFormat {
		return fmt.Errorf("%w: format %d", errEnvelope, firstByte(payload))
	}
	if payload[1]&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %02x", errEnvelope, payload[1])
	}
	copy(ev.ID[:], payload[idOffset:])
	ev.Version = binary.LittleEndian.Uint64(payload[versionOffset:])
	ev.OccurredAt = time.Time{}
	if payload[1]&flagOccurredAt != 0 {
		ev.OccurredAt = unixUTC(int64(binary.LittleEndian.Uint64(payload[occurredOffset:])))
	}
	d := decoder{b: payload[envelopeFixed:]}
	sv := d.uvarint()
	stream, typ, ct := d.bytes(), d.bytes(), d.bytes()
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return fmt.Errorf("%w: header fields", errEnvelope)
	}
	if sv > 1<<32-1 {
		return fmt.Errorf("%w: schema version %d", errEnvelope, sv)
	}
	if len(stream) == 0 || len(typ) == 0 {
		return fmt.Errorf("%w: empty or invalid stream or type", errEnvelope)
	}
	ev.SchemaVersion = uint32(sv)
	if in != nil {
		ev.Stream, ev.Type = in.get(stream, 0), in.get(typ, 1)
	} else {
		ev.Stream, ev.Type = string(stream), string(typ)
	}
	switch {
	case len(ct) == 0:
		ev.ContentType = rewind.DefaultContentType
	case in != nil:
		ev.ContentType = in.get(ct, 3)
	default:
		ev.ContentType = string(ct)
	}
	if n == 0 {
		ev.Metadata = nil
		ev.Data = d.b
		return nil
	}
	return decodeMetadata(d.b, n, ev, in)
}

// decodeMetadata decodes the n metadata entries at the start of b into
// ev.Metadata, reusing its map when in says so, and sets ev.Data to the
// bytes that follow.
func decodeMetadata(b []byte, n uint64, ev *rewind.RecordedEvent, in *interner) error {
	meta := ev.Metadata
	reuse := in != nil && in.reuseMaps
	if reuse && meta != nil {
		clear(meta)
	} else {
		meta = make(map[string]string, n)
	}
	ev.Metadata = meta
	d := decoder{b: b}
	for range n {
		k, v := d.bytes(), d.bytes()
		if d.err != nil {
			ev.Metadata = nil
			return fmt.Errorf("%w: metadata", errEnvelope)
		}
		if reuse {
			meta[in.get(k, 2)] = string(v)
		} else {
			meta[string(k)] = string(v)
		}
	}
	ev.Data = d.b
	return nil
}

func unixUTC(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

type decoder struct {
	b   []byte
	err error
}

// uvarint reads one uvarint. The one-byte case, by far the usual one, is
// small enough to be inlined.
func (d *decoder) uvarint() uint64 {
	if len(d.b) > 0 && d.b[0] < 0x80 {
		v := uint64(d.b[0])
		d.b = d.b[1:]
		return v
	}
	return d.uvarintSlow()
}

func (d *decoder) uvarintSlow() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errEnvelope
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errEnvelope
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
