package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Focused regression tests for bugs the model-based and crash tests found;
// each names the test that found it.

// Found by TestModel: a subscription with events still to read when the
// store closed spun forever in the log's reader instead of failing.
func TestSubscriptionAfterClose(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{Log: eventlog.Config{SegmentSize: 64 << 10}})
	for i := range 100 {
		if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i%3), rewind.Any, ev("T", string(make([]byte, 2000)))); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{Filter: rewind.Filter{StreamPrefix: "none-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sub.Next(cctx); !errors.Is(err, rewind.ErrClosed) {
		t.Fatalf("next after close: %v, want ErrClosed", err)
	}
}

// Found by TestModel: a retry of a contiguous part of an earlier append, or
// of two adjacent appends as one, was taken for a duplicate (returning
// positions that were never one append) although the contract says it is
// an idempotency conflict.
func TestPartialRetryIsAConflict(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	evs := make([]rewind.Event, 4)
	for i := range evs {
		evs[i] = ev("T", fmt.Sprint(i))
		evs[i].ID = uuid.New()
	}
	if _, err := s.Append(ctx, "s", rewind.NoStream, evs[:3]...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s", rewind.Exactly(3), evs[3]); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for _, tc := range []struct {
			name     string
			events   []rewind.Event
			first    rewind.Position
			conflict bool
		}{
			{"whole first append", evs[:3], 1, false},
			{"whole second append", evs[3:], 4, false},
			{"head of an append", evs[:2], 1, true},
			{"tail of an append", evs[1:3], 2, true},
			{"middle of an append", evs[1:2], 2, true},
			{"two appends as one", evs[2:4], 3, true},
			{"all four as one", evs, 1, true},
		} {
			res, err := s.Append(ctx, "s", rewind.Any, tc.events...)
			var ic *rewind.IdempotencyConflictError
			switch {
			case tc.conflict && (!errors.As(err, &ic) || ic.Position != tc.first || ic.EventID != tc.events[0].ID.String()):
				t.Fatalf("round %d, %s: %+v, %v; want a conflict at %d", round, tc.name, res, err, tc.first)
			case !tc.conflict && (err != nil || !res.Duplicate || res.FirstPosition != tc.first):
				t.Fatalf("round %d, %s: %+v, %v; want a duplicate at %d", round, tc.name, res, err, tc.first)
			}
		}
		if info, _ := s.StreamInfo(ctx, "s"); info.Version != 4 {
			t.Fatalf("version %d after the retries, want 4", info.Version)
		}
		s = reopen(t, s, b)
	}
}

// Found by TestModel: a forward stream read with a Limit counted the
// versions retention had removed, so paging from the start of a stream
// whose first events were gone returned nothing at all.
func TestForwardReadAfterRetention(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{Log: eventlog.Config{SegmentSize: 64 << 10, MaxBytes: 3 * 64 << 10, RetentionInterval: time.Hour}})
	for i := range 400 {
		if _, err := s.Append(ctx, "s", rewind.Any, ev("T", fmt.Sprintf("%0999d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ApplyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := s.StreamInfo(ctx, "s")
	if err != nil || info.FirstVersion < 2 || info.Version != 400 {
		t.Fatalf("retention left %+v, %v; want the first versions removed", info, err)
	}
	for _, from := range []uint64{0, 1, info.FirstVersion - 1, info.FirstVersion} {
		evs, err := s.ReadStream(ctx, "s", rewind.ReadStreamOptions{From: from, Limit: 10})
		if err != nil || len(evs) != 10 || evs[0].Version != info.FirstVersion || evs[9].Version != info.FirstVersion+9 {
			t.Fatalf("read from %d, limit 10: %d events at positions %v, %v; want versions %d..%d",
				from, len(evs), positionsOf(evs), err, info.FirstVersion, info.FirstVersion+9)
		}
	}
}

// Found while checking the partial replay TestModel exercises: when
// retention had removed a deleted stream's events but not the record of the
// delete, an open without a snapshot set the stream's version one too low,
// and the next append reused a version the stream already had. Since
// streams retention emptied are forgotten, such a stream reads as never
// written and starts again at version 1, with or without the snapshot, and
// a reopen replaying the old delete record and the new events agrees.
func TestDeletedStreamVersionAfterRetention(t *testing.T) {
	t.Parallel()
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			t.Parallel()
			s, b := setup(t, Config{Log: eventlog.Config{SegmentSize: 64 << 10, MaxBytes: 3 * 64 << 10, RetentionInterval: time.Hour}})
			if _, err := s.Append(ctx, "d", rewind.NoStream, ev("A", "1"), ev("A", "2"), ev("A", "3")); err != nil {
				t.Fatal(err)
			}
			filler := func(n int) {
				for i := range n {
					if _, err := s.Append(ctx, "filler", rewind.Any, ev("T", fmt.Sprintf("%0999d", i))); err != nil {
						t.Fatal(err)
					}
				}
			}
			filler(100) // under 3 segments: retention, run on each seal, keeps them
			del, err := s.DeleteStream(ctx, "d", rewind.Exactly(3))
			if err != nil {
				t.Fatal(err)
			}
			filler(100)
			if _, err := s.ApplyRetention(ctx); err != nil {
				t.Fatal(err)
			}
			if first := s.Log().First(); first <= 3 || first > uint64(del) {
				t.Fatalf("first position %d: the test needs the events of d removed and its delete kept (at %d)", first, del)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if !snapshot {
				if err := os.Remove(filepath.Join(b.dir, snapshotName)); err != nil {
					t.Fatal(err)
				}
			}
			if s, err = Open(b.dir, b.cfg); err != nil {
				t.Fatal(err)
			}
			info, err := s.StreamInfo(ctx, "d")
			if !errors.Is(err, rewind.ErrStreamNotFound) {
				t.Fatalf("stream info after reopen: %+v, %v; want not found", info, err)
			}
			res, err := s.Append(ctx, "d", rewind.NoStream, ev("B", "again"))
			if err != nil || res.FirstVersion != 1 {
				t.Fatalf("append after the delete: %+v, %v; want version 1", res, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if !snapshot {
				os.Remove(filepath.Join(b.dir, snapshotName))
			}
			if s, err = Open(b.dir, b.cfg); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if info, err := s.StreamInfo(ctx, "d"); err != nil || info.Version != 1 || info.Count != 1 {
				t.Fatalf("stream info after another reopen: %+v, %v; want version 1", info, err)
			}
		})
	}
}

// Found while writing the model-based test's event generator: an
// occurred-at time outside the range of int64 Unix nanoseconds (before
// 1677 or after 2262) was stored wrapped around, as another time, without
// an error. It is now refused like any other invalid input.
func TestOccurredAtOutOfRange(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	for _, at := range []time.Time{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)} {
		e := ev("T", "x")
		e.OccurredAt = at
		if _, err := s.Append(ctx, "s", rewind.Any, e); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Fatalf("occurred at %v: %v, want an invalid argument", at, err)
		}
	}
	for _, at := range []time.Time{time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64), time.Date(2200, 5, 6, 7, 8, 9, 10, time.UTC)} {
		e := ev("T", "x")
		e.OccurredAt = at
		res, err := s.Append(ctx, "s", rewind.Any, e)
		if err != nil {
			t.Fatalf("occurred at %v: %v", at, err)
		}
		evs, err := s.ReadStream(ctx, "s", rewind.ReadStreamOptions{From: res.FirstVersion, Limit: 1})
		if err != nil || !evs[0].OccurredAt.Equal(at) {
			t.Fatalf("occurred at %v read back as %v, %v", at, evs[0].OccurredAt, err)
		}
	}
	if info, _ := s.StreamInfo(ctx, "s"); info.Version != 3 {
		t.Fatalf("version %d: a refused append wrote something", info.Version)
	}
}

// Found by FuzzSnapshot: a snapshot (with a right checksum) whose stream
// had fewer anchors than its version calls for passed the load check, and
// the first read of that stream indexed past the anchors and panicked. The
// check now requires one anchor per anchorEvery versions; real snapshots,
// including those of streams retention shortened, still load.
func TestSnapshotAnchorsChecked(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{Log: eventlog.Config{SegmentSize: 64 << 10, MaxBytes: 4 * 64 << 10, RetentionInterval: time.Hour}})
	for i := range 3*anchorEvery + 10 {
		if _, err := s.Append(ctx, "long", rewind.Any, ev("T", fmt.Sprintf("%0100d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ApplyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	// Replay without a snapshot (versions skipped), then use the snapshot
	// the close writes.
	s.Close()
	os.Remove(filepath.Join(b.dir, snapshotName))
	for round := range 2 {
		var err error
		if s, err = Open(b.dir, b.cfg); err != nil {
			t.Fatal(err)
		}
		if round == 1 && s.replayed != 0 {
			t.Fatalf("the snapshot was not used: %d events replayed", s.replayed)
		}
		info, err := s.StreamInfo(ctx, "long")
		if err != nil || info.Version != 3*anchorEvery+10 || info.FirstVersion < 2 {
			t.Fatalf("info %+v, %v", info, err)
		}
		for _, v := range []uint64{info.FirstVersion, anchorEvery * 2, anchorEvery*2 + 1, info.Version} {
			evs, err := s.ReadStream(ctx, "long", rewind.ReadStreamOptions{From: v, Limit: 1})
			if err != nil || len(evs) != 1 || evs[0].Version != v || string(evs[0].Data) != fmt.Sprintf("%0100d", v-1) {
				t.Fatalf("round %d: version %d: %v, %v", round, v, positionsOf(evs), err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// An index with an anchor missing is refused.
	x := &index{anchors: map[uint32][]uint64{0: {3}}}
	x.streams.add(streamState{nameLen: 4, version: 2 * anchorEvery, last: 5})
	x.names.add("long")
	if err := x.check(); err == nil {
		t.Fatal("a stream at version 2048 with one anchor passed the check")
	}
}

// Reported by the logtests branch: an occurred-at of exactly the Unix epoch
// read back as no time at all, since 0 meant absent. A flag says it is set.
func TestOccurredAtEpochRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	e := ev("T", "x")
	e.OccurredAt = time.Unix(0, 0)
	if _, err := s.Append(ctx, "epoch", rewind.NoStream, e, ev("T", "no time")); err != nil {
		t.Fatal(err)
	}
	evs, err := s.ReadStream(ctx, "epoch", rewind.ReadStreamOptions{})
	if err != nil || len(evs) != 2 || !evs[0].OccurredAt.Equal(time.Unix(0, 0)) || evs[0].OccurredAt.IsZero() || !evs[1].OccurredAt.IsZero() {
		t.Fatalf("read back %+v, %v", evs, err)
	}
}

// Found in review: After near the top of the position range wrapped around
// to 0 and was reported as removed by retention.
func TestSubscribeAfterTheEndIsInvalid(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	mustAppend(t, s, "s", ev("T", "x"))
	for _, after := range []rewind.Position{2, 1 << 40, math.MaxUint64} {
		if _, err := s.Subscribe(ctx, rewind.SubscribeOptions{After: after}); !errors.Is(err, rewind.ErrInvalidArgument) ||
			!strings.Contains(err.Error(), "beyond the end") {
			t.Errorf("subscribe after %d: %v, want beyond the end of the log", after, err)
		}
	}
	for _, after := range []rewind.Position{0, 1} {
		sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{After: after})
		if err != nil {
			t.Fatalf("subscribe after %d: %v", after, err)
		}
		sub.Close()
	}
}

// Found by TestCrashRecoveryStore: after a crash that left the newest
// segment empty (the log had just rolled), reopening without a snapshot
// refilled the dedup window from nothing, because the seek by time
// behind the window's start skipped the full segments. Retries of
// acknowledged batches were then appended a second time.
func TestRetryAfterACrashThatEmptiedTheNewestSegment(t *testing.T) {
	t.Parallel()
	cfg := Config{Log: eventlog.Config{SegmentSize: 64 << 10}, Logger: slog.New(slog.DiscardHandler)}
	s, b := setup(t, cfg)
	segments := func() []string {
		names, err := filepath.Glob(filepath.Join(b.dir, "*.seg"))
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	type batch struct {
		stream string
		events []rewind.Event
		res    rewind.AppendResult
	}
	var batches []batch
	for i := 0; len(segments()) < 2; i++ {
		bt := batch{stream: fmt.Sprintf("s-%d", i%7)}
		for range 1 + i%3 {
			e := ev("T", strings.Repeat("x", 1000))
			e.ID = uuid.New()
			bt.events = append(bt.events, e)
		}
		res, err := s.Append(ctx, bt.stream, rewind.Any, bt.events...)
		if err != nil {
			t.Fatal(err)
		}
		bt.res = res
		batches = append(batches, bt)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The state a crash leaves when the new segment's file was created
	// but nothing in it reached the disk, and no snapshot was written.
	newest := segments()[1]
	for _, path := range []string{filepath.Join(b.dir, snapshotName), strings.TrimSuffix(newest, ".seg") + ".idx"} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(newest, 0); err != nil {
		t.Fatal(err)
	}
	s, err := Open(b.dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last := rewind.Position(s.Log().Last())
	if len(s.Recovery()) != 1 || last != batches[len(batches)-1].res.FirstPosition-1 {
		t.Fatalf("recovery cut %+v and left the log at %d; want the last batch (from %d) cut",
			s.Recovery(), last, batches[len(batches)-1].res.FirstPosition)
	}
	for _, bt := range batches[:len(batches)-1] {
		res, err := s.Append(ctx, bt.stream, rewind.Any, bt.events...)
		if want := withDup(bt.res); err != nil || res != want {
			t.Fatalf("retry of the batch at %d: %+v, %v; want %+v", bt.res.FirstPosition, res, err, want)
		}
	}
	if got := rewind.Position(s.Log().Last()); got != last {
		t.Fatalf("retries appended: the log is at %d, was at %d", got, last)
	}
}
