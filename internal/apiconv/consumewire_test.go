package apiconv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/consumer"
)

// randomDeliveries makes deliveries with every field set, unset or at an
// edge (negative and zero times, empty strings, many metadata keys).
func randomDeliveries(r *rand.Rand, n int) []consumer.Delivery {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	times := func() time.Time {
		switch r.IntN(5) {
		case 0:
			return time.Time{}
		case 1:
			return time.Unix(0, 0)
		case 2:
			return time.Unix(-r.Int64N(1<<40), r.Int64N(1e9))
		case 3:
			return time.Unix(r.Int64N(1<<35), 0)
		}
		return time.Unix(r.Int64N(1<<35), r.Int64N(1e9)).In(time.FixedZone("x", 3600))
	}
	ds := make([]consumer.Delivery, n)
	for i := range ds {
		ev := &rewind.RecordedEvent{Event: rewind.Event{Type: pick("", "OrderPlaced", "é", "t"),
			SchemaVersion: uint32(r.IntN(3)) * uint32(r.Int64N(1<<32)), ContentType: pick("", "application/json"),
			OccurredAt: times()},
			Stream: pick("", "orders-1", "a-"+fmt.Sprint(r.IntN(100))), Version: uint64(r.IntN(2)) * r.Uint64(),
			Position: rewind.Position(uint64(r.IntN(2)) * r.Uint64()), RecordedAt: times()}
		if r.IntN(4) > 0 {
			ev.ID = uuid.New()
		}
		if r.IntN(3) > 0 {
			ev.Data = make([]byte, r.IntN(300))
			for j := range ev.Data {
				ev.Data[j] = byte(r.IntN(256))
			}
		}
		for range r.IntN(4) {
			if ev.Metadata == nil {
				ev.Metadata = map[string]string{}
			}
			ev.Metadata[pick("", "k", "correlation-id", "ü", fmt.Sprint(r.IntN(9)))] = pick("", "v", "123")
		}
		ds[i] = consumer.Delivery{ID: consumer.DeliveryID(uint64(r.IntN(2)) * r.Uint64()), Event: ev,
			Attempt: r.IntN(3) * r.IntN(1<<20), Replay: r.IntN(2) == 0}
	}
	return ds
}

// The server's bytes are proto.Marshal's, byte for byte.
func TestAppendConsumeDeliveriesIsProtoMarshal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		ds := randomDeliveries(r, i%7)
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(ConsumeResponseOf(ds))
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("prefix")
		got := AppendConsumeDeliveries(bytes.Clone(prefix), ds)
		if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("case %d: wire form differs from proto.Marshal\n got %x\nwant %x", i, got[len(prefix):], want)
		}
	}
}

// The client reads back what the server wrote, and what proto.Marshal
// writes for the other fields.
func TestConsumeFrameRoundTrip(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	in := &Interner{}
	for i := range 300 {
		ds := randomDeliveries(r, i%7)
		b := AppendConsumeDeliveries(nil, ds)
		other := &rewindv1.ConsumeResponse{Errors: []*rewindv1.ConsumeError{{DeliveryId: 7, Op: "ack", Kind: "stale"}}}
		if i%2 == 0 {
			other.Started = &rewindv1.ConsumeStarted{MemberId: 3, MaxAckPending: 10, Mode: "at-least-once"}
		}
		ob, err := proto.Marshal(other)
		if err != nil {
			t.Fatal(err)
		}
		b = append(ob, b...)
		f := ConsumeFrame{Strings: in}
		if err := f.UnmarshalProto(b); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(f.Deliveries) != len(ds) {
			t.Fatalf("case %d: %d deliveries, want %d", i, len(f.Deliveries), len(ds))
		}
		for j, d := range ds {
			want := *d.Event
			want.OccurredAt, want.RecordedAt = asTime(want.OccurredAt), want.RecordedAt.UTC()
			if want.OccurredAt.IsZero() {
				want.OccurredAt = time.Time{}
			}
			if len(want.Data) == 0 {
				want.Data = nil
			}
			got := f.Deliveries[j]
			if got.ID != d.ID || got.Attempt != d.Attempt || got.Replay != d.Replay || !reflect.DeepEqual(*got.Event, want) {
				t.Fatalf("case %d, delivery %d:\n got %+v %+v\nwant %+v %+v", i, j, got, *got.Event, d, want)
			}
		}
		if !proto.Equal(f.Started, other.Started) || len(f.Errors) != 1 || !proto.Equal(f.Errors[0], other.Errors[0]) {
			t.Fatalf("case %d: other fields %v %v", i, f.Started, f.Errors)
		}
	}
}

func asTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// FuzzConsumeFrame holds the client's reader to proto.Unmarshal followed
// by RecordedFromProto, on any input: the same result, or both fail.
func FuzzConsumeFrame(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 8 {
		f.Add(AppendConsumeDeliveries(nil, randomDeliveries(r, i%3)))
	}
	started, _ := proto.Marshal(&rewindv1.ConsumeResponse{Started: &rewindv1.ConsumeStarted{MemberId: 1, Mode: "x"}})
	f.Add(started)
	f.Add([]byte{0x12, 0x02, 0x08, 0x01}) // a delivery without an event
	f.Fuzz(func(t *testing.T, b []byte) {
		var ref rewindv1.ConsumeResponse
		refErr := proto.Unmarshal(b, &ref)
		var want []consumer.Delivery
		if refErr == nil {
			for _, p := range ref.GetDeliveries() {
				ev, err := RecordedFromProto(p.GetEvent())
				if err != nil {
					refErr = err
					break
				}
				want = append(want, consumer.Delivery{ID: consumer.DeliveryID(p.GetId()), Event: &ev,
					Attempt: int(p.GetAttempt()), Replay: p.GetReplay()})
			}
		}
		var got ConsumeFrame
		err := got.UnmarshalProto(b)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("UnmarshalProto: %v; proto.Unmarshal and RecordedFromProto: %v", err, refErr)
		}
		if err != nil {
			return
		}
		if len(got.Deliveries) != len(want) {
			t.Fatalf("%d deliveries, want %d", len(got.Deliveries), len(want))
		}
		for i, w := range want {
			g := got.Deliveries[i]
			if len(w.Event.Data) == 0 {
				w.Event.Data = nil
			}
			if g.ID != w.ID || g.Attempt != w.Attempt || g.Replay != w.Replay || !reflect.DeepEqual(*g.Event, *w.Event) {
				t.Fatalf("delivery %d:\n got %+v %+v\nwant %+v %+v", i, g, *g.Event, w, *w.Event)
			}
		}
		if !proto.Equal(got.Started, ref.Started) || len(got.Errors) != len(ref.Errors) {
			t.Fatalf("other fields: got %v %v, want %v %v", got.Started, got.Errors, ref.Started, ref.Errors)
		}
		for i := range ref.Errors {
			if !proto.Equal(got.Errors[i], ref.Errors[i]) {
				t.Fatalf("error %d: got %v, want %v", i, got.Errors[i], ref.Errors[i])
			}
		}
	})
}

func BenchmarkConsumeWire(b *testing.B) {
	data := make([]byte, 128)
	ds := make([]consumer.Delivery, 256)
	for i := range ds {
		ds[i] = consumer.Delivery{ID: consumer.DeliveryID(1e18 + i), Attempt: 1, Event: &rewind.RecordedEvent{
			Event: rewind.Event{ID: uuid.New(), Type: "BenchEvent", SchemaVersion: 1, ContentType: "application/json",
				Data: data}, Stream: fmt.Sprint("s-", i%50), Version: uint64(i), Position: rewind.Position(i + 1),
			RecordedAt: time.Now()}}
	}
	wire := AppendConsumeDeliveries(nil, ds)
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendConsumeDeliveries(buf[:0], ds)
		}
	})
	b.Run("proto.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := proto.Marshal(ConsumeResponseOf(ds)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		in := &Interner{}
		for b.Loop() {
			f := ConsumeFrame{Strings: in}
			if err := f.UnmarshalProto(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var m rewindv1.ConsumeResponse
			if err := proto.Unmarshal(wire, &m); err != nil {
				b.Fatal(err)
			}
			for _, p := range m.Deliveries {
				if _, err := RecordedFromProto(p.GetEvent()); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
