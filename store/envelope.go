package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

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
	last          [3]string
	hits, lookups int
	bypass        int
	// reuseMaps makes decodeEnvelope refill the event's metadata map
	// rather than make a new one, with interned keys: for batch reads,
	// whose events are only valid until the next batch.
	reuseMaps bool
}

const (
	internMax    = 1 << 16 // strings kept
	internWindow = 4096    // lookups between two looks at the hit rate
)

func newInterner() *interner { return &interner{m: make(map[string]string)} }

func (in *interner) get(b []byte, kind int) string {
	if last := in.last[kind]; last == string(b) { // no allocation for the comparison
		return last
	}
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
func decodeEnvelope(payload []byte, ev *rewind.RecordedEvent, in *interner) error {
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
		ev.OccurredAt = time.Unix(0, int64(binary.LittleEndian.Uint64(payload[occurredOffset:]))).UTC()
	}
	sv, stream, typ, ct, n, rest, ok := shortHeader(payload[envelopeFixed:])
	d := decoder{b: rest}
	if !ok { // some field needs a longer varint
		d.b = payload[envelopeFixed:]
		sv = d.uvarint()
		stream, typ, ct = d.bytes(), d.bytes(), d.bytes()
		n = d.uvarint()
		if d.err != nil || n > uint64(len(d.b)) {
			return fmt.Errorf("%w: header fields", errEnvelope)
		}
	}
	if sv > 1<<32-1 {
		return fmt.Errorf("%w: schema version %d", errEnvelope, sv)
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
		ev.ContentType = in.get(ct, 1)
	default:
		ev.ContentType = string(ct)
	}
	meta := ev.Metadata
	ev.Metadata = nil
	if n > 0 {
		reuse := in != nil && in.reuseMaps
		if reuse && meta != nil {
			clear(meta)
			ev.Metadata = meta
		} else {
			ev.Metadata = make(map[string]string, n)
		}
		for range n {
			k, v := d.bytes(), d.bytes()
			if d.err != nil {
				return fmt.Errorf("%w: metadata", errEnvelope)
			}
			if reuse {
				ev.Metadata[in.get(k, 2)] = string(v)
			} else {
				ev.Metadata[string(k)] = string(v)
			}
		}
	}
	ev.Data = d.b
	if len(stream) == 0 || len(typ) == 0 {
		return fmt.Errorf("%w: empty or invalid stream or type", errEnvelope)
	}
	return nil
}

// shortHeader parses the variable header fields when each of their
// varints is one byte long (names under 128 bytes, fewer than 128
// metadata entries), the usual case, without a call per field. ok is
// false otherwise, or when the bytes run out.
func shortHeader(b []byte) (sv uint64, stream, typ, ct []byte, n uint64, rest []byte, ok bool) {
	if len(b) < 5 || b[0] >= 0x80 {
		return
	}
	sv, p := uint64(b[0]), 1
	var f [3][]byte
	for i := range f {
		if p >= len(b) || b[p] >= 0x80 {
			return
		}
		l := int(b[p])
		if p+1+l > len(b) {
			return
		}
		f[i] = b[p+1 : p+1+l : p+1+l]
		p += 1 + l
	}
	if p >= len(b) || b[p] >= 0x80 {
		return
	}
	n, rest = uint64(b[p]), b[p+1:]
	if n > uint64(len(rest)) {
		return
	}
	return sv, f[0], f[1], f[2], n, rest, true
}

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
