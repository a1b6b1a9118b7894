package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Fuzz targets for the store's decoders: the event envelope and the index
// snapshot. Their seed corpus is in testdata/fuzz, written from a real
// store by -update-fuzz-seeds.
//
//	go test ./store -run '^$' -fuzz FuzzDecodeEnvelope -fuzztime 5m

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz from a real store")

// FuzzDecodeEnvelope: decodeEnvelope never panics; with or without the
// interner it decodes the same event; envelopeStreamVersion agrees with it;
// and a decoded event encodes back to an envelope that decodes to the same
// event.
func FuzzDecodeEnvelope(f *testing.F) {
	e := rewind.Event{Type: "Placed", Data: []byte(`{"n":1}`), Metadata: map[string]string{"k": "v"}, OccurredAt: time.Unix(5, 6)}
	f.Add(encodeEnvelope(nil, "orders-1", uuid.New(), false, &e))
	f.Add(encodeEnvelope(nil, "s", uuid.New(), true, &rewind.Event{Type: rewind.TypeStreamDeleted}))
	// Envelopes off decodeEnvelope's straight line: a varint of two bytes
	// in each header field in turn.
	long := strings.Repeat("x", 130)
	f.Add(encodeEnvelope(nil, "s-"+long, uuid.New(), false, &rewind.Event{Type: "T", Data: []byte("d")}))
	f.Add(encodeEnvelope(nil, "s", uuid.New(), false, &rewind.Event{Type: "T" + long, SchemaVersion: 300}))
	f.Add(encodeEnvelope(nil, "s", uuid.New(), false, &rewind.Event{Type: "T", ContentType: "text/" + long}))
	many := make(map[string]string, 130)
	for i := range 130 {
		many[fmt.Sprint("k", i)] = "v"
	}
	f.Add(encodeEnvelope(nil, "s", uuid.New(), false, &rewind.Event{Type: "T", ContentType: "text/plain", Metadata: many}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev, interned, slow rewind.RecordedEvent
		err := decodeEnvelope(b, &ev, nil)
		errInterned := decodeEnvelope(b, &interned, newInterner())
		if (err == nil) != (errInterned == nil) {
			t.Fatalf("with the interner: %v, without: %v", errInterned, err)
		}
		// The straight line for the usual envelope decodes exactly as the
		// general decoder does, errors included.
		errSlow := decodeEnvelopeLong(b, &slow, nil)
		if fmt.Sprint(err) != fmt.Sprint(errSlow) {
			t.Fatalf("decodeEnvelope: %v, decodeEnvelopeLong: %v", err, errSlow)
		}
		if err != nil {
			return
		}
		if d := diffDecoded(&ev, &slow); d != "" || (ev.Metadata == nil) != (slow.Metadata == nil) || !reflect.DeepEqual(ev, slow) {
			t.Fatalf("decodeEnvelope and decodeEnvelopeLong differ: %s\n%+v\n%+v", d, ev, slow)
		}
		if d := diffDecoded(&ev, &interned); d != "" {
			t.Fatalf("the interner changes the event: %s", d)
		}
		stream, version, err := envelopeStreamVersion(b)
		if err != nil || string(stream) != ev.Stream || version != ev.Version {
			t.Fatalf("envelopeStreamVersion = %q, %d, %v; the envelope has %q, %d", stream, version, err, ev.Stream, ev.Version)
		}
		if envelopeID(b) != ev.ID {
			t.Fatalf("envelopeID = %s, the envelope has %s", envelopeID(b), ev.ID)
		}
		again := encodeEnvelope(nil, ev.Stream, ev.ID, !clientID(b), &ev.Event)
		if n := EncodedSize(ev.Stream, &ev.Event); n != len(again) {
			t.Fatalf("EncodedSize = %d, the envelope has %d bytes", n, len(again))
		}
		setVersion(again, ev.Version)
		var back rewind.RecordedEvent
		if err := decodeEnvelope(again, &back, nil); err != nil {
			t.Fatalf("a decoded event does not encode back: %v", err)
		}
		want := ev
		want.SchemaVersion = max(ev.SchemaVersion, 1) // the encoder writes 0 as 1
		if d := diffDecoded(&back, &want); d != "" || clientID(again) != clientID(b) {
			t.Fatalf("round trip changes the event: %s", d)
		}
	})
}

func diffDecoded(a, b *rewind.RecordedEvent) string {
	switch {
	case a.ID != b.ID, a.Version != b.Version, a.Stream != b.Stream, a.Type != b.Type:
		return fmt.Sprintf("%s/%d/%q/%q vs %s/%d/%q/%q", a.ID, a.Version, a.Stream, a.Type, b.ID, b.Version, b.Stream, b.Type)
	case a.SchemaVersion != b.SchemaVersion, a.ContentType != b.ContentType:
		return fmt.Sprintf("%d %q vs %d %q", a.SchemaVersion, a.ContentType, b.SchemaVersion, b.ContentType)
	case !a.OccurredAt.Equal(b.OccurredAt), a.OccurredAt.IsZero() != b.OccurredAt.IsZero():
		return fmt.Sprintf("occurred %v vs %v", a.OccurredAt, b.OccurredAt)
	case !maps.Equal(a.Metadata, b.Metadata), !bytes.Equal(a.Data, b.Data):
		return fmt.Sprintf("metadata %v, %d bytes vs %v, %d bytes", a.Metadata, len(a.Data), b.Metadata, len(b.Data))
	}
	return ""
}

// FuzzSnapshot gives loadSnapshot a file whose header and checksum are
// right and whose body is fuzz bytes: it must never panic, and an index it
// accepts must be usable: every stream found by its name, every version's
// position computable.
func FuzzSnapshot(f *testing.F) {
	l, err := eventlog.Open(f.TempDir(), eventlog.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	path := filepath.Join(f.TempDir(), snapshotName)
	f.Add(uint32(0), []byte{})
	f.Add(uint32(snapshotHasDedup), make([]byte, 64))
	f.Fuzz(func(t *testing.T, flags uint32, body []byte) {
		if err := os.WriteFile(path, snapshotFile(flags, body), 0o644); err != nil {
			t.Fatal(err)
		}
		x, d, pos, err := loadSnapshot(path, l)
		if err != nil || x == nil {
			return
		}
		if pos != 0 {
			t.Fatalf("snapshot at position %d accepted for an empty log", pos)
		}
		for slot := range x.streams.len() {
			name := x.name(uint32(slot))
			st, got, ok := x.lookup(name)
			if !ok || x.name(got) != name {
				t.Fatalf("stream %d (%q) is not found by its name", slot, name)
			}
			for _, v := range []uint64{1, st.version / 2, st.version, st.version + 1} {
				x.positionOf(got, st, v, 1)
			}
		}
		if d != nil {
			d.find(uuid.UUID{1})
		}
	})
}

// snapshotFile frames a snapshot body as a file at position 0.
func snapshotFile(flags uint32, body []byte) []byte {
	b := []byte(snapshotMagic)
	b = binary.LittleEndian.AppendUint32(b, snapshotFormat)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = append(b, make([]byte, 16)...)
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var fuzzTargets = map[string]int{"FuzzDecodeEnvelope": 1, "FuzzSnapshot": 2} // target -> arguments

// TestFuzzSeeds checks that the seed corpus is committed; with
// -update-fuzz-seeds it first writes it again from a real store.
func TestFuzzSeeds(t *testing.T) {
	if *updateFuzzSeeds {
		writeFuzzSeeds(t)
	}
	for target, args := range fuzzTargets {
		dir := filepath.Join("testdata", "fuzz", target)
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < 3 {
			t.Errorf("%s: %d seed files in %s (%v); run with -update-fuzz-seeds", target, len(entries), dir, err)
			continue
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if err != nil || lines[0] != "go test fuzz v1" || len(lines) != 1+args {
				t.Errorf("%s/%s is not a seed of %d values: %v", target, e.Name(), args, err)
			}
		}
	}
}

func writeFuzzSeeds(t *testing.T) {
	s, b := setup(t, Config{SnapshotEvery: -1})
	ids := []uuid.UUID{uuid.New(), uuid.New()}
	events := []rewind.Event{
		{ID: ids[0], Type: "Placed", Data: []byte(`{"order":1}`)},
		{ID: ids[1], Type: "Paid", SchemaVersion: 3, ContentType: "text/plain", Data: []byte("paid"),
			Metadata: map[string]string{"correlation": "c-1", "actor": "ann"}, OccurredAt: time.Unix(1_700_000_000, 123)},
		{Type: "Generated", Data: nil},
	}
	for _, e := range events {
		if _, err := s.Append(ctx, "orders-1", rewind.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteStream(ctx, "orders-1", rewind.Any); err != nil {
		t.Fatal(err)
	}
	// A long stream, so that the snapshot holds anchors, and a few others.
	for i := range 2100 {
		if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i%3/2), rewind.Any, ev("T", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for e, err := range s.ReadAll(ctx, rewind.ReadAllOptions{Limit: 5}) {
		if err != nil {
			t.Fatal(err)
		}
		rec, err := s.log.Read(uint64(e.Position))
		if err != nil {
			t.Fatal(err)
		}
		writeFuzzSeed(t, "FuzzDecodeEnvelope", fmt.Sprintf("event-%d", n), rec.Payload)
		writeFuzzSeed(t, "FuzzDecodeEnvelope", fmt.Sprintf("event-%d-cut", n), rec.Payload[:len(rec.Payload)*2/3])
		n++
	}
	// Snapshot bodies as the store writes them, but without the chain's
	// chunks (64Ki entries each, 256 KiB), which would make every input of
	// the fuzzer that large; their reading is a plain loop.
	s.mu.Lock()
	v := s.captureLocked(true)
	s.mu.Unlock()
	if v == nil {
		t.Fatal("nothing to snapshot")
	}
	v.chain.chunks = nil
	v.chain.far = map[uint64]uint64{7: 3, 1 << 40: 5}
	for _, withDedup := range []bool{true, false} {
		if !withDedup {
			v.dedup = nil
		}
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		writeSnapshot(w, v)
		w.Flush()
		raw := buf.Bytes()
		flags, body := binary.LittleEndian.Uint32(raw[12:]), raw[40:]
		name := fmt.Sprintf("store-dedup-%v", withDedup)
		writeFuzzSeed(t, "FuzzSnapshot", name, flags, body)
		writeFuzzSeed(t, "FuzzSnapshot", name+"-cut", flags, body[:len(body)/2])
		writeFuzzSeed(t, "FuzzSnapshot", name+"-flag-flipped", flags^snapshotHasDedup, body)
	}
	writeFuzzSeed(t, "FuzzSnapshot", "empty", uint32(0), make([]byte, 40))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A whole snapshot, chunks and all, must load in the fuzz harness.
	raw, err := os.ReadFile(filepath.Join(b.dir, snapshotName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "check.snapshot"), snapshotFile(binary.LittleEndian.Uint32(raw[12:]), raw[40:len(raw)-4]), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(t.TempDir(), eventlog.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if x, _, _, err := loadSnapshot(filepath.Join(b.dir, "check.snapshot"), l); err != nil || x == nil || x.streams.len() != 3 {
		t.Fatalf("the harness does not load a real snapshot: %v", err)
	}
}

// writeFuzzSeed writes one corpus file in the format of testing.F.
func writeFuzzSeed(t *testing.T, target, name string, args ...any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		default:
			t.Fatalf("seed argument of type %T", a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSameBytes: the interner's in-line comparison agrees with == for every
// length around its word-sized path and a difference at every byte.
func TestSameBytes(t *testing.T) {
	for n := 0; n <= 24; n++ {
		s := strings.Repeat("x", n)
		if !sameBytes(s, []byte(s)) {
			t.Fatalf("%q differs from itself", s)
		}
		for i := range n {
			b := []byte(s)
			b[i] = 'y'
			if sameBytes(s, b) {
				t.Fatalf("%q equals %q", s, b)
			}
		}
		if sameBytes(s, []byte(s+"x")) || (n > 0 && sameBytes(s, []byte(s[1:]))) {
			t.Fatalf("lengths differ but %q is taken as equal", s)
		}
	}
}
