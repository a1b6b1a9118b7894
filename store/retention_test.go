package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Retention through the store: whole segments are dropped, First moves,
// reads and subscriptions before it fail with *rewind.TruncatedError,
// stream reads skip the removed versions, StreamInfo reports what is left,
// and all of it holds again after a reopen with or without the snapshot.

// segmentBases lists the base positions of the segment files in dir.
func segmentBases(t *testing.T, dir string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var bases []uint64
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".seg"); ok {
			base, err := strconv.ParseUint(name, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	return bases
}

func kib(i int) string { return fmt.Sprintf("%01000d", i) }

func TestRetentionByBytes(t *testing.T) {
	t.Parallel()
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("reopen with snapshot=%v", snapshot), func(t *testing.T) {
			t.Parallel()
			cfg := Config{Log: eventlog.Config{SegmentSize: 64 << 10, MaxBytes: 4 * 64 << 10, RetentionInterval: time.Hour}}
			s, b := setup(t, cfg)
			for i := range 5 {
				mustAppend(t, s, "early", ev("T", kib(i)))
			}
			fresh := subscribe(t, s, rewind.SubscribeOptions{}) // will not have read anything
			mid := subscribe(t, s, rewind.SubscribeOptions{})   // holds the first segment
			for range 3 {
				if e, err := mid.TryNext(); err != nil || e == nil {
					t.Fatalf("subscription: %v, %v", e, err)
				}
			}
			for i := range 600 {
				mustAppend(t, s, []string{"keep", "other"}[i%2], ev("T", kib(i)))
			}
			if _, err := s.ApplyRetention(ctx); err != nil { // the background retainer may have run already
				t.Fatal(err)
			}
			first := rewind.Position(s.Log().First())
			if bases := segmentBases(t, b.dir); first <= 6 || rewind.Position(bases[0]) != first {
				t.Fatalf("first position %d, segment files from %v: retention should have dropped the first segments", first, bases)
			}
			if st := s.Log().Stats(); st.Bytes > cfg.Log.MaxBytes && st.Segments > 1 {
				t.Fatalf("the log holds %d bytes in %d segments, more than %d", st.Bytes, st.Segments, cfg.Log.MaxBytes)
			}
			checkTruncatedReads(t, s, first)

			// A subscription that never read fails at once; one inside the
			// first segment finishes it, then fails the same way.
			if _, err := fresh.TryNext(); !isTruncated(err, first) {
				t.Fatalf("fresh subscription: %v, want truncated at %d", err, first)
			}
			last := mid.Position()
			for {
				e, err := mid.TryNext()
				if err != nil {
					if !isTruncated(err, first) {
						t.Fatalf("subscription in a removed segment: %v", err)
					}
					break
				}
				if e == nil { // only the first segment was removed: it read on
					if last < first-1 {
						t.Fatalf("subscription stopped at %d, before the first position %d", last, first)
					}
					break
				}
				if e.Position != last+1 {
					t.Fatalf("subscription in a removed segment: %d after %d", e.Position, last)
				}
				last = e.Position
			}

			want := retentionView(t, s, first)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if !snapshot {
				if err := os.Remove(filepath.Join(b.dir, snapshotName)); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(b.dir, b.cfg)
			if err != nil {
				t.Fatalf("reopen after retention (snapshot %v): %v", snapshot, err)
			}
			defer s.Close()
			if got := rewind.Position(s.Log().First()); got != first {
				t.Fatalf("first position %d after reopen, was %d", got, first)
			}
			checkTruncatedReads(t, s, first)
			got := retentionView(t, s, first)
			for _, stream := range []string{"keep", "other"} {
				if fmt.Sprint(got[stream]) != fmt.Sprint(want[stream]) {
					t.Fatalf("%s after reopen:\n%v\nbefore:\n%v", stream, got[stream], want[stream])
				}
			}
			res, err := s.Append(ctx, "keep", rewind.Exactly(300), ev("T", "after"))
			if err != nil || res.FirstVersion != 301 || uint64(res.FirstPosition) != s.Log().Last() {
				t.Fatalf("append after retention and reopen: %+v, %v", res, err)
			}
		})
	}
}

// subscribe starts a subscription closed at the end of the test.
func subscribe(t *testing.T, s *Store, opts rewind.SubscribeOptions) *Subscription {
	t.Helper()
	sub, err := s.Subscribe(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub.(*Subscription)
}

func mustAppend(t *testing.T, s *Store, stream string, e rewind.Event) rewind.AppendResult {
	t.Helper()
	res, err := s.Append(ctx, stream, rewind.Any, e)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func isTruncated(err error, first rewind.Position) bool {
	var te *rewind.TruncatedError
	return errors.As(err, &te) && te.FirstAvailable == first && te.Requested < first
}

// checkTruncatedReads checks the whole-log reads and subscriptions around
// the first position.
func checkTruncatedReads(t *testing.T, s *Store, first rewind.Position) {
	t.Helper()
	for _, from := range []rewind.Position{1, first - 1} {
		n := 0
		for _, err := range s.ReadAll(ctx, rewind.ReadAllOptions{From: from}) {
			if !isTruncated(err, first) {
				t.Fatalf("read all from %d (first %d): %v", from, first, err)
			}
			n++
		}
		if n != 1 {
			t.Fatalf("read all from %d yielded %d times", from, n)
		}
	}
	for _, opts := range []rewind.ReadAllOptions{{}, {From: first}, {FromTime: time.Unix(1, 0)}} {
		var got []rewind.Position
		for e, err := range s.ReadAll(ctx, opts) {
			if err != nil {
				t.Fatalf("read all %+v: %v", opts, err)
			}
			got = append(got, e.Position)
		}
		if len(got) == 0 || got[0] != first || uint64(got[len(got)-1]) != s.Log().Last() || len(got) != int(got[len(got)-1]-first)+1 {
			t.Fatalf("read all %+v: %d events from %v, want %d..%d", opts, len(got), got[:min(3, len(got))], first, s.Log().Last())
		}
	}
	if _, err := s.Subscribe(ctx, rewind.SubscribeOptions{After: first - 2}); !isTruncated(err, first) {
		t.Fatalf("subscribe after %d (first %d): %v", first-2, first, err)
	}
	sub := subscribe(t, s, rewind.SubscribeOptions{After: first - 1})
	if e, err := sub.TryNext(); err != nil || e == nil || e.Position != first {
		t.Fatalf("subscription after %d: %v, %v", first-1, e, err)
	}
}

// streamView is what a reader can learn of a stream.
type streamView struct {
	info     rewind.StreamInfo
	versions []uint64
}

// retentionView reads every stream and checks it against its info: only
// events at or after first, consecutive versions up to the last, a forward
// read with a limit starting at the first version left, a backward read
// ending at the last.
func retentionView(t *testing.T, s *Store, first rewind.Position) map[string]streamView {
	t.Helper()
	out := map[string]streamView{}
	for _, stream := range []string{"early", "keep", "other"} {
		info, err := s.StreamInfo(ctx, stream)
		if errors.Is(err, rewind.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		evs, err := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{})
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		v := streamView{info: info}
		for i, e := range evs {
			if e.Position < first || e.Version != info.FirstVersion+uint64(i) {
				t.Fatalf("%s: event %d is version %d at %d (first version %d, first position %d)", stream, i, e.Version, e.Position, info.FirstVersion, first)
			}
			v.versions = append(v.versions, e.Version)
		}
		want := rewind.StreamInfo{Stream: stream, Version: info.Version}
		if len(evs) > 0 {
			want.FirstVersion, want.FirstPosition, want.LastPosition = evs[0].Version, evs[0].Position, evs[len(evs)-1].Position
			want.Count = uint64(len(evs))
			if evs[len(evs)-1].Version != info.Version {
				t.Fatalf("%s: last version read %d, info says %d", stream, evs[len(evs)-1].Version, info.Version)
			}
		}
		if info != want {
			t.Fatalf("%s: info %+v, the events read say %+v", stream, info, want)
		}
		page, err := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{From: 1, Limit: 5})
		if err != nil || len(page) != min(5, len(evs)) || len(page) > 0 && page[0].Version != info.FirstVersion {
			t.Fatalf("%s: first page %v, %v; want 5 events from version %d", stream, positionsOf(page), err, info.FirstVersion)
		}
		back, err := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{Backward: true, Limit: 5})
		if err != nil || len(back) != min(5, len(evs)) || len(back) > 0 && back[0].Version != info.Version {
			t.Fatalf("%s: backward page %v, %v", stream, positionsOf(back), err)
		}
		out[stream] = v
	}
	if v, ok := out["early"]; ok {
		t.Fatalf("early: %+v; retention removed all of its events, so it should be forgotten", v.info)
	}
	return out
}

// Retention by age, by the background retainer: sealed segments whose
// newest record is older than MaxAge go, the others stay.
func TestRetentionByAge(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	setClock := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	const maxAge = time.Hour
	cfg := Config{Log: eventlog.Config{SegmentSize: 64 << 10, MaxAge: maxAge, RetentionInterval: 10 * time.Millisecond, Now: clock}}
	s, b := setup(t, cfg)
	start := clock()
	for i := range 400 { // position p is recorded at start + (p-1) seconds
		mustAppend(t, s, "aging", ev("T", kib(i)))
		setClock(start.Add(time.Duration(i+1) * time.Second))
	}
	bases := segmentBases(t, b.dir)
	if len(bases) < 4 {
		t.Fatalf("%d segments, the test needs at least 4", len(bases))
	}
	if s.Log().First() != 1 {
		t.Fatalf("retention removed segments of records younger than %v", maxAge)
	}
	// Make the second segment's newest record just too old, the third's not.
	newest := func(seg int) time.Time { return start.Add(time.Duration(bases[seg+1]-2) * time.Second) }
	setClock(newest(1).Add(maxAge + time.Second/2))
	want := rewind.Position(bases[2])
	deadline := time.Now().Add(30 * time.Second)
	for rewind.Position(s.Log().First()) != want {
		if time.Now().After(deadline) {
			t.Fatalf("first position %d after 30 s, want %d: the background retainer did not remove the two old segments", s.Log().First(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	checkTruncatedReads(t, s, want)
	info, err := s.StreamInfo(ctx, "aging")
	if err != nil || info.FirstVersion != bases[2] || info.Count != 400-bases[2]+1 {
		t.Fatalf("info after retention: %+v, %v; want versions from %d", info, err, bases[2])
	}
	for _, snapshot := range []bool{true, false} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Files are removed after First moves; Close waits for the retainer.
		if got := segmentBases(t, b.dir); got[0] != bases[2] {
			t.Fatalf("segment files from %d after retention, want %d", got[0], bases[2])
		}
		if !snapshot {
			os.Remove(filepath.Join(b.dir, snapshotName))
		}
		var err error
		if s, err = Open(b.dir, b.cfg); err != nil {
			t.Fatalf("reopen (snapshot %v): %v", snapshot, err)
		}
		t.Cleanup(func() { s.Close() })
		again, err := s.StreamInfo(ctx, "aging")
		if err != nil || again != info || rewind.Position(s.Log().First()) != want {
			t.Fatalf("reopen (snapshot %v): %+v, %v, first %d; want %+v, first %d", snapshot, again, err, s.Log().First(), info, want)
		}
	}
	// Time before the first record left starts at it.
	if p, err := s.FirstPositionAt(start); err != nil || p != want {
		t.Fatalf("first position at the start time: %d, %v; want %d", p, err, want)
	}
}

// A stream whose events retention removed all of is forgotten: it reads
// as never written, leaves the list and the count of streams, and writing
// to it starts it anew at version 1 — also when its delete record is still
// in the log — and a reopen after a crash, without the snapshot, rebuilds
// exactly that. Before, such streams stayed in the index for ever, holding
// their name and slot.
func TestRetentionForgetsEmptiedStreams(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{SnapshotEvery: -1, Log: eventlog.Config{SegmentSize: 64 << 10, MaxBytes: 3 * 64 << 10,
		RetentionInterval: time.Hour}})
	for range 3 {
		mustAppend(t, s, "early", ev("T", "x"))
		mustAppend(t, s, "gone", ev("T", "x"))
	}
	for i := range 150 {
		mustAppend(t, s, "later", ev("T", kib(i)))
	}
	// Deleted after its events: its delete record outlives them.
	if _, err := s.DeleteStream(ctx, "gone", rewind.Exactly(3)); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		mustAppend(t, s, "later", ev("T", kib(i)))
	}
	first, err := s.ApplyRetention(ctx)
	if err != nil || first <= 6 {
		t.Fatalf("retention: first position %d, %v; it should have removed the first segments", first, err)
	}
	check := func(what string, s *Store, want map[string]uint64) {
		t.Helper()
		for _, stream := range []string{"early", "gone"} {
			info, err := s.StreamInfo(ctx, stream)
			if v, ok := want[stream]; ok {
				if err != nil || info.Version != v || info.Count != 1 {
					t.Fatalf("%s: %s: %+v, %v; want version %d", what, stream, info, err, v)
				}
				continue
			}
			if !errors.Is(err, rewind.ErrStreamNotFound) {
				t.Fatalf("%s: info of %s, emptied by retention: %+v, %v; want not found", what, stream, info, err)
			}
			if _, err := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrStreamNotFound) {
				t.Fatalf("%s: read of %s, emptied by retention: %v; want not found", what, stream, err)
			}
		}
		list, err := s.ListStreams(ctx, rewind.ListStreamsOptions{IncludeDeleted: true})
		if err != nil || len(list) != 1+len(want) || s.Info().Streams != 1+len(want) {
			t.Fatalf("%s: list %+v, %v; %d streams counted; want later and %v", what, list, err, s.Info().Streams, want)
		}
	}
	check("after retention", s, nil)
	if res, err := s.Append(ctx, "early", rewind.NoStream, ev("T", "again")); err != nil || res.FirstVersion != 1 {
		t.Fatalf("append to a forgotten stream: %+v, %v; want version 1", res, err)
	}
	if res, err := s.Append(ctx, "gone", rewind.Exactly(0), ev("T", "again")); err != nil || res.FirstVersion != 1 {
		t.Fatalf("append to a forgotten stream with its delete record left: %+v, %v; want version 1", res, err)
	}
	want := map[string]uint64{"early": 1, "gone": 1}
	check("written again", s, want)
	// A crash: no snapshot on close; the log is replayed from its start.
	s.closeOnce.Do(func() { close(s.closed) })
	s.wg.Wait()
	if err := s.log.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(b.dir, snapshotName))
	s2, err := Open(b.dir, b.cfg)
	if err != nil {
		t.Fatalf("reopen after a crash with retention: %v", err)
	}
	check("after a crash", s2, want)
	check("after a clean reopen", reopen(t, s2, b), want)
}
