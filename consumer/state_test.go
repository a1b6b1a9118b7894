package consumer

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
)

// TestLargeStateSplits: thousands of parked events with long errors make
// commits and snapshots far larger than one event may be; they are split
// into records and appends the store takes, and read back whole.
func TestLargeStateSplits(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{manualCommits: true})
	const n = 2000
	b.appendN("s", "T", n)
	g := b.create(GroupConfig{Name: "g", MaxParked: n, MaxAckPending: n, MaxPending: n, MemberMaxAckPending: n})
	waitRead(t, g, n)
	m := b.join("g", n)
	long := strings.Repeat("\"x\\", 1000) // long, and longer once escaped
	for _, d := range fetchNow(t, m, n) {
		if err := m.Term(bg, d.ID, strings.Repeat("r", 300), long); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.engine.Flush(bg); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := g.commit(bg, true); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	b.restart(false)
	ps, err := b.engine.Parked(bg, "g", ParkedOptions{Limit: 10_000})
	if err != nil || len(ps) != n {
		t.Fatalf("%d parked after restart, %v", len(ps), err)
	}
	if ps[0].LastError != long[:maxLastError]+"…" || ps[n-1].Position != n {
		t.Fatalf("parked entry %+v", ps[0])
	}
}

// TestIncompleteSnapshot: a snapshot a crash cut short (its header and
// only some of its parts written) does not reset the state; the facts in
// its parts still count.
func TestIncompleteSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{manualCommits: true})
	b.appendN("s", "T", 5)
	g := b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 5)
	m := b.join("g", 0)
	ds := fetchNow(t, m, 5)
	m.Ack(bg, ds[0].ID)
	m.Ack(bg, ds[1].ID)
	m.Term(bg, ds[2].ID, "bad", "")
	if err := b.engine.Flush(bg); err != nil {
		t.Fatal(err)
	}
	version := g.version
	b.engine.abandon()
	// What a crash in the middle of a snapshot leaves: the header says two
	// parts, one made it (saying event 4 is done).
	h, _ := encodeEvent(typeSnapshot, &snapshotHeader{Config: g.cfg, Floor: 5, Cursor: 5, Parts: 2})
	p, _ := encodeEvent(typeSnapshotPart, &delta{Done: []span{{From: 3, To: 4}}})
	if _, err := b.store.Append(bg, g.stream, rewind.Exactly(version), h, p); err != nil {
		t.Fatal(err)
	}
	b.openEngine()
	g = b.group("g")
	waitRead(t, g, 5)
	m = b.join("g", 0)
	if got := positions(fetchNow(t, m, 10)); !slices.Equal(got, []rewind.Position{5}) {
		t.Fatalf("after an incomplete snapshot delivered %v, want [5]", got)
	}
	if ps, _ := b.engine.Parked(bg, "g", ParkedOptions{}); len(ps) != 1 || ps[0].Position != 3 {
		t.Fatalf("parked %+v", ps)
	}
}

// TestSkippedSpansFromCompleteSnapshotsOnly: the skipped spans (never
// delivered, at or below the floor) hold with their snapshot's floor, so
// only a complete snapshot's parts set them: those of a snapshot a crash
// cut short, whose floor was never taken, and of a commit are ignored.
func TestSkippedSpansFromCompleteSnapshotsOnly(t *testing.T) {
	t.Parallel()
	rec := func(typ string, v any) rewind.RecordedEvent {
		ev, err := encodeEvent(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		return rewind.RecordedEvent{Event: ev}
	}
	evs := []rewind.RecordedEvent{
		rec(typeSnapshot, &snapshotHeader{Config: GroupConfig{Name: "g"}, Floor: 50, Cursor: 50, Parts: 2}),
		rec(typeSnapshotPart, &delta{Skipped: []span{{From: 5, To: 20}}}),
		rec(typeSnapshotPart, &delta{Skipped: []span{{From: 20, To: 50}}}),
		rec(typeCommit, &delta{Floor: 60, Skipped: []span{{From: 50, To: 60}}}),
		// Cut short: one part of two.
		rec(typeSnapshot, &snapshotHeader{Config: GroupConfig{Name: "g"}, Floor: 90, Cursor: 90, Parts: 2}),
		rec(typeSnapshotPart, &delta{Skipped: []span{{From: 60, To: 90}}}),
	}
	r, err := decodeRecords(evs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []span{{From: 5, To: 50}}; !slices.Equal(r.skipped, want) || r.floor != 60 {
		t.Fatalf("skipped %v floor %d, want %v and 60", r.skipped, r.floor, want)
	}
}

// FuzzDecodeRecords: whatever a state record holds, decoding it returns
// a state or an error matching rewind.ErrCorruption, never a panic.
func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte(`{"config":{"name":"g"},"floor":3,"cursor":4,"parts":1}`), []byte(`{"done":[{"f":1,"t":9}]}`), uint8(0))
	f.Add([]byte(`{"parts":2}`), []byte(`{"floor":7,"parked":[{"position":9}],"unparked":[9]}`), uint8(1))
	f.Add([]byte(`{}`), []byte(`{"attempts":[{"p":4,"n":2}]}`), uint8(2))
	f.Add([]byte(`{"floor":9,"parts":1}`), []byte(`{"skipped":[{"f":9,"t":2},{"f":0,"t":5}]}`), uint8(0))
	f.Fuzz(func(t *testing.T, header, record []byte, kind uint8) {
		types := []string{typeSnapshotPart, typeCommit, typeSnapshot, "Other"}
		evs := []rewind.RecordedEvent{
			{Event: rewind.Event{Type: typeSnapshot, Data: header}, Version: 1},
			{Event: rewind.Event{Type: types[int(kind)%len(types)], Data: record}, Version: 2},
		}
		r, err := decodeRecords(evs)
		if err != nil && !errors.Is(err, rewind.ErrCorruption) {
			t.Fatalf("error %v is not corruption", err)
		}
		if err == nil {
			for _, s := range r.done {
				if s.To <= r.floor {
					t.Fatalf("span %v at or below the floor %d kept", s, r.floor)
				}
			}
		}
	})
}
