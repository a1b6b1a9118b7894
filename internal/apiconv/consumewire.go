package apiconv

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/consumer"
)

// The deliveries of the Consume stream are its hot path: a member receives
// every event of its share of the group in them. Building a protobuf
// message per event on the server, marshalling it by reflection, then
// unmarshalling it into another message on the client and converting that
// to a rewind.RecordedEvent cost more CPU than everything else on the
// event's way (about 20 allocations per event). So the server writes the
// wire form of a batch straight from the engine's deliveries
// (AppendConsumeDeliveries) and the client reads it straight into
// consumer.Delivery values (ConsumeFrame). Both speak the protocol exactly:
// the bytes written are those proto.Marshal (deterministic) writes for
// ConsumeResponseOf's message, and the reader accepts what proto.Unmarshal
// accepts, giving what RecordedFromProto gives (tests and a fuzz test hold
// both to that).

// Field numbers of the messages written and read here (api/rewind/v1).
const (
	respStarted, respDeliveries, respErrors = 1, 2, 3

	delivID, delivEvent, delivAttempt, delivReplay = 1, 2, 3, 4

	recID, recType, recSchema, recContentType, recData, recMetadata, recOccurred,
	recStream, recVersion, recPosition, recRecorded = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11

	tsSeconds, tsNanos = 1, 2
	mapKey, mapValue   = 1, 2
)

// ConsumeResponseOf builds the message carrying ds, as the JSON codecs
// (and tests) need it.
func ConsumeResponseOf(ds []consumer.Delivery) *rewindv1.ConsumeResponse {
	msg := &rewindv1.ConsumeResponse{Deliveries: make([]*rewindv1.Delivery, len(ds))}
	for i, d := range ds {
		msg.Deliveries[i] = &rewindv1.Delivery{Id: uint64(d.ID), Event: RecordedToProto(d.Event),
			Attempt: uint32(d.Attempt), Replay: d.Replay}
	}
	return msg
}

// AppendConsumeDeliveries appends the wire form of the ConsumeResponse
// carrying ds to b.
func AppendConsumeDeliveries(b []byte, ds []consumer.Delivery) []byte {
	var keys []string // reused for the metadata of each event
	for _, d := range ds {
		evSize := recordedSize(d.Event)
		size := protowire.SizeTag(delivEvent) + protowire.SizeBytes(evSize)
		if d.ID != 0 {
			size += protowire.SizeTag(delivID) + protowire.SizeVarint(uint64(d.ID))
		}
		if d.Attempt != 0 {
			size += protowire.SizeTag(delivAttempt) + protowire.SizeVarint(uint64(uint32(d.Attempt)))
		}
		if d.Replay {
			size += protowire.SizeTag(delivReplay) + 1
		}
		b = protowire.AppendTag(b, respDeliveries, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		if d.ID != 0 {
			b = appendVarintField(b, delivID, uint64(d.ID))
		}
		b = protowire.AppendTag(b, delivEvent, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(evSize))
		b, keys = appendRecorded(b, d.Event, keys)
		if d.Attempt != 0 {
			b = appendVarintField(b, delivAttempt, uint64(uint32(d.Attempt)))
		}
		if d.Replay {
			b = appendVarintField(b, delivReplay, 1)
		}
	}
	return b
}

// recordedSize is the size of RecordedToProto(ev) on the wire.
func recordedSize(ev *rewind.RecordedEvent) int {
	n := protowire.SizeTag(recID) + protowire.SizeBytes(36)
	n += stringSize(recType, ev.Type)
	if ev.SchemaVersion != 0 {
		n += protowire.SizeTag(recSchema) + protowire.SizeVarint(uint64(ev.SchemaVersion))
	}
	n += stringSize(recContentType, ev.ContentType)
	if len(ev.Data) > 0 {
		n += protowire.SizeTag(recData) + protowire.SizeBytes(len(ev.Data))
	}
	for k, v := range ev.Metadata {
		n += protowire.SizeTag(recMetadata) + protowire.SizeBytes(mapEntrySize(k, v))
	}
	if !ev.OccurredAt.IsZero() {
		n += protowire.SizeTag(recOccurred) + protowire.SizeBytes(timestampSize(ev.OccurredAt))
	}
	n += stringSize(recStream, ev.Stream)
	if ev.Version != 0 {
		n += protowire.SizeTag(recVersion) + protowire.SizeVarint(ev.Version)
	}
	if ev.Position != 0 {
		n += protowire.SizeTag(recPosition) + protowire.SizeVarint(uint64(ev.Position))
	}
	return n + protowire.SizeTag(recRecorded) + protowire.SizeBytes(timestampSize(ev.RecordedAt))
}

func appendRecorded(b []byte, ev *rewind.RecordedEvent, keys []string) ([]byte, []string) {
	b = protowire.AppendTag(b, recID, protowire.BytesType)
	b = append(b, 36)
	b = appendUUID(b, ev.ID)
	b = appendStringField(b, recType, ev.Type)
	if ev.SchemaVersion != 0 {
		b = appendVarintField(b, recSchema, uint64(ev.SchemaVersion))
	}
	b = appendStringField(b, recContentType, ev.ContentType)
	if len(ev.Data) > 0 {
		b = protowire.AppendTag(b, recData, protowire.BytesType)
		b = protowire.AppendBytes(b, ev.Data)
	}
	if len(ev.Metadata) > 0 {
		// In key order, as a deterministic marshal writes a map.
		keys = slices.AppendSeq(keys[:0], maps.Keys(ev.Metadata))
		slices.Sort(keys)
		for _, k := range keys {
			v := ev.Metadata[k]
			b = protowire.AppendTag(b, recMetadata, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(mapEntrySize(k, v)))
			b = protowire.AppendTag(b, mapKey, protowire.BytesType)
			b = protowire.AppendString(b, k)
			b = protowire.AppendTag(b, mapValue, protowire.BytesType)
			b = protowire.AppendString(b, v)
		}
	}
	if !ev.OccurredAt.IsZero() {
		b = appendTimestamp(b, recOccurred, ev.OccurredAt)
	}
	b = appendStringField(b, recStream, ev.Stream)
	if ev.Version != 0 {
		b = appendVarintField(b, recVersion, ev.Version)
	}
	if ev.Position != 0 {
		b = appendVarintField(b, recPosition, uint64(ev.Position))
	}
	return appendTimestamp(b, recRecorded, ev.RecordedAt), keys
}

func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

// mapEntrySize is the size of a map<string, string> entry: both fields are
// always written.
func mapEntrySize(k, v string) int {
	return protowire.SizeTag(mapKey) + protowire.SizeBytes(len(k)) + protowire.SizeTag(mapValue) +
		protowire.SizeBytes(len(v))
}

// timestampSize is the size of timestamppb.New(t).
func timestampSize(t time.Time) int {
	n := 0
	if s := t.Unix(); s != 0 {
		n += protowire.SizeTag(tsSeconds) + protowire.SizeVarint(uint64(s))
	}
	if ns := t.Nanosecond(); ns != 0 {
		n += protowire.SizeTag(tsNanos) + protowire.SizeVarint(uint64(ns))
	}
	return n
}

func appendTimestamp(b []byte, num protowire.Number, t time.Time) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampSize(t)))
	if s := t.Unix(); s != 0 {
		b = appendVarintField(b, tsSeconds, uint64(s))
	}
	if ns := t.Nanosecond(); ns != 0 {
		b = appendVarintField(b, tsNanos, uint64(ns))
	}
	return b
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

// appendUUID appends id's canonical text form (uuid.UUID.String's).
func appendUUID(b []byte, id uuid.UUID) []byte {
	const hex = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return b
}

// ConsumeFrame is a ConsumeResponse as a client reads it: its deliveries
// decoded straight into consumer.Delivery values (the events' data shares
// one buffer per frame), its other fields as protobuf messages. Decode
// with UnmarshalProto; a codec calls it for a frame.
type ConsumeFrame struct {
	Deliveries []consumer.Delivery
	Started    *rewindv1.ConsumeStarted
	Errors     []*rewindv1.ConsumeError
	// Complete: the member's bounded group delivered its whole window.
	Complete bool
	// Strings, when set, interns the events' types, content types and
	// streams, which repeat from event to event.
	Strings *Interner
}

// errBadWire is what malformed input fails with (proto.Unmarshal fails on
// the same input).
var errBadWire = errors.New("rewind: the server sent a consume message that does not decode (bad protobuf wire data)")

// UnmarshalProto decodes b, a ConsumeResponse in the protobuf wire format,
// into f. Like proto.Unmarshal it replaces what f held, skips unknown
// fields (and known ones of another wire type), and fails on malformed
// data and on strings that are not UTF-8; like RecordedFromProto it fails
// on an event whose id is not a UUID.
func (f *ConsumeFrame) UnmarshalProto(b []byte) error {
	strs := f.Strings
	if strs == nil {
		strs = &Interner{}
	}
	*f = ConsumeFrame{Strings: f.Strings}
	n, err := countDeliveries(b)
	if err != nil {
		return err
	}
	var rest []byte // the other fields, for proto.Unmarshal
	if n > 0 {
		f.Deliveries = make([]consumer.Delivery, n)
	}
	evs := make([]rewind.RecordedEvent, n)
	d := decoder{strs: strs, arena: make([]byte, 0, len(b))}
	i := 0
	for len(b) > 0 {
		num, typ, tn := protowire.ConsumeTag(b)
		if tn < 0 {
			return errBadWire
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[tn:])
		if vn < 0 {
			return errBadWire
		}
		field := b[:tn+vn]
		b = b[tn+vn:]
		if num != respDeliveries || typ != protowire.BytesType {
			rest = append(rest, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[tn:])
		if err := d.delivery(v, &f.Deliveries[i], &evs[i]); err != nil {
			return err
		}
		i++
	}
	if len(rest) > 0 {
		var other rewindv1.ConsumeResponse
		if err := proto.Unmarshal(rest, &other); err != nil {
			return fmt.Errorf("%w: %w", errBadWire, err)
		}
		f.Started, f.Errors, f.Complete = other.Started, other.Errors, other.Complete
	}
	return nil
}

// countDeliveries counts the deliveries of a ConsumeResponse, checking
// its top-level framing.
func countDeliveries(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		num, typ, tn := protowire.ConsumeTag(b)
		if tn < 0 {
			return 0, errBadWire
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[tn:])
		if vn < 0 {
			return 0, errBadWire
		}
		if num == respDeliveries && typ == protowire.BytesType {
			n++
		}
		b = b[tn+vn:]
	}
	return n, nil
}

type decoder struct {
	strs  *Interner
	arena []byte // the frame's event data
}

// next reads one field of b: its number and wire type, its value (a
// varint's in v, a length-delimited one's in val) and the rest of b. A
// field of another wire type is consumed whole.
func next(b []byte) (num protowire.Number, typ protowire.Type, v uint64, val, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, 0, nil, nil, errBadWire
	}
	b = b[n:]
	switch typ {
	case protowire.VarintType:
		v, n = protowire.ConsumeVarint(b)
	case protowire.BytesType:
		val, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return 0, 0, 0, nil, nil, errBadWire
	}
	return num, typ, v, val, b[n:], nil
}

func (d *decoder) delivery(b []byte, out *consumer.Delivery, ev *rewind.RecordedEvent) error {
	var st eventState
	for len(b) > 0 {
		num, typ, v, val, rest, err := next(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case num == delivID && typ == protowire.VarintType:
			out.ID = consumer.DeliveryID(v)
		case num == delivAttempt && typ == protowire.VarintType:
			out.Attempt = int(uint32(v))
		case num == delivReplay && typ == protowire.VarintType:
			out.Replay = v != 0
		case num == delivEvent && typ == protowire.BytesType:
			// A second one merges into the first, as in protobuf.
			st.event = true
			if err := d.recorded(val, ev, &st); err != nil {
				return err
			}
		}
	}
	u, err := uuid.ParseBytes(st.id)
	if err != nil {
		what := "a bad id"
		if !st.event {
			what = "no event"
		}
		return fmt.Errorf("rewind: the server sent event %d with %s %q: %w", ev.Position, what, st.id, err)
	}
	ev.ID = u
	if st.occurred.set {
		ev.OccurredAt = st.occurred.time()
	}
	if st.recorded.set {
		ev.RecordedAt = st.recorded.time()
	}
	out.Event = ev
	return nil
}

// eventState is what decoding an event keeps until its end: the fields
// that are converted once all its parts are merged.
type eventState struct {
	event              bool
	id                 []byte
	occurred, recorded timestampState
}

// timestampState is a google.protobuf.Timestamp being decoded.
type timestampState struct {
	set   bool
	sec   int64
	nanos int32
}

// time converts t as AsTime does.
func (t timestampState) time() time.Time { return time.Unix(t.sec, int64(t.nanos)).UTC() }

// recorded decodes a RecordedEvent into ev and st, merging into what they
// hold (as protobuf merges a message field that comes twice).
func (d *decoder) recorded(b []byte, ev *rewind.RecordedEvent, st *eventState) error {
	for len(b) > 0 {
		num, typ, v, val, rest, err := next(b)
		if err != nil {
			return err
		}
		b = rest
		if typ == protowire.VarintType {
			switch num {
			case recSchema:
				ev.SchemaVersion = uint32(v)
			case recVersion:
				ev.Version = v
			case recPosition:
				ev.Position = rewind.Position(v)
			}
			continue
		}
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case recID:
			if !utf8.Valid(val) {
				return errBadWire
			}
			st.id = val
		case recType:
			if ev.Type, err = d.strs.get(val); err != nil {
				return err
			}
		case recContentType:
			if ev.ContentType, err = d.strs.get(val); err != nil {
				return err
			}
		case recStream:
			if ev.Stream, err = d.strs.get(val); err != nil {
				return err
			}
		case recData:
			start := len(d.arena)
			d.arena = append(d.arena, val...)
			ev.Data = d.arena[start:len(d.arena):len(d.arena)]
		case recMetadata:
			if err := mapEntry(val, ev); err != nil {
				return err
			}
		case recOccurred:
			if err := st.occurred.merge(val); err != nil {
				return err
			}
		case recRecorded:
			if err := st.recorded.merge(val); err != nil {
				return err
			}
		}
	}
	return nil
}

// mapEntry adds one metadata entry to ev.
func mapEntry(b []byte, ev *rewind.RecordedEvent) error {
	var k, v []byte
	for len(b) > 0 {
		num, typ, _, val, rest, err := next(b)
		if err != nil {
			return err
		}
		b = rest
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case mapKey:
			k = val
		case mapValue:
			v = val
		}
	}
	if !utf8.Valid(k) || !utf8.Valid(v) {
		return errBadWire
	}
	if ev.Metadata == nil {
		ev.Metadata = map[string]string{}
	}
	ev.Metadata[string(k)] = string(v)
	return nil
}

// merge decodes a google.protobuf.Timestamp into t.
func (t *timestampState) merge(b []byte) error {
	t.set = true
	for len(b) > 0 {
		num, typ, v, _, rest, err := next(b)
		if err != nil {
			return err
		}
		b = rest
		if typ != protowire.VarintType {
			continue
		}
		switch num {
		case tsSeconds:
			t.sec = int64(v)
		case tsNanos:
			t.nanos = int32(v)
		}
	}
	return nil
}

// Interner hands out one string per distinct value it is given, so that
// the type, content type and stream repeated from event to event are not
// allocated again each time. It holds a bounded number of strings.
type Interner struct{ m map[string]string }

// maxInterned bounds an Interner: when full it starts again.
const maxInterned = 16384

// get returns b as a string, failing when it is not UTF-8.
func (in *Interner) get(b []byte) (string, error) {
	if s, ok := in.m[string(b)]; ok {
		return s, nil
	}
	if !utf8.Valid(b) {
		return "", errBadWire
	}
	if in.m == nil || len(in.m) >= maxInterned {
		in.m = make(map[string]string, 64)
	}
	s := string(b)
	in.m[s] = s
	return s, nil
}
