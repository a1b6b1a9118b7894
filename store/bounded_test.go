package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// countdownCtx is a context whose Err turns to Canceled after a number of
// calls: a cancellation that arrives in the middle of a scan, without
// depending on how fast the scan runs.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// skippable appends n events of stream "skip-1", then one of "keep-1".
func skippable(t *testing.T, s *Store, n int) rewind.Position {
	t.Helper()
	for n > 0 {
		batch := make([]rewind.Event, min(n, 1000))
		for i := range batch {
			batch[i] = ev("T", "x")
		}
		if _, err := s.Append(ctx, "skip-1", rewind.Any, batch...); err != nil {
			t.Fatal(err)
		}
		n -= len(batch)
	}
	res, err := s.Append(ctx, "keep-1", rewind.Any, ev("T", "kept"))
	if err != nil {
		t.Fatal(err)
	}
	return res.FirstPosition
}

// A filtered subscription over many events it skips hands control back
// every scanBudget events: TryNext returns nothing yet, having moved on,
// and Next checks its context in between. Before, TryNext scanned to the
// next match (or the end) in one go and Next saw no cancellation until
// then: over millions of skipped events, seconds.
func TestFilteredSubscriptionChecksCancellationWhileSkipping(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{Log: eventlog.Config{Durability: eventlog.None}})
	const n = 20 * scanBudget
	kept := skippable(t, s, n)
	sub := subscribe(t, s, rewind.SubscribeOptions{Filter: rewind.Filter{StreamPrefix: "keep-"}})
	ev, err := sub.TryNext()
	if err != nil || ev != nil {
		t.Fatalf("try next over %d skipped events: %v, %v; want nothing yet", n, ev, err)
	}
	if p := sub.Position(); p == 0 || p > scanBudget {
		t.Fatalf("try next skipped to position %d, want at most %d", p, scanBudget)
	}
	cctx := &countdownCtx{Context: ctx}
	cctx.left.Store(3)
	before := sub.Position()
	if ev, err := sub.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("next cancelled during a scan of %d events: %v, %v", n, ev, err)
	}
	if p := sub.Position(); p-before > 3*scanBudget {
		t.Fatalf("next scanned %d events before it saw the cancellation, want at most %d", p-before, 3*scanBudget)
	}
	// Not cancelled, it gets there.
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Position != kept {
			t.Fatalf("next delivered position %d, want %d", ev.Position, kept)
		}
		break
	}
}

// The stream-name arena has a limit (4 GiB, its 32-bit offsets); a full one
// refuses new streams. Before, names were never removed, so once full it
// refused new streams for ever, even after retention had emptied most of
// the streams. Now the names of streams retention emptied are reclaimed.
// The arena is limited to two of its 1 MiB chunks here.
func TestNameArenaIsReclaimedAfterRetention(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{SnapshotEvery: -1, Log: eventlog.Config{Durability: eventlog.None, SegmentSize: 1 << 20,
		MaxBytes: 6 << 20, RetentionInterval: time.Hour}})
	s.mu.Lock()
	s.idx.names.limit = 3 << arenaChunkBits
	s.mu.Unlock()
	name := func(i int) string { return fmt.Sprintf("%0200d", i) }
	if _, err := s.Append(ctx, "filler", rewind.Any, ev("T", "x")); err != nil {
		t.Fatal(err)
	}
	created := 0
	for ; ; created++ {
		_, err := s.Append(ctx, name(created), rewind.Any, ev("T", "x"))
		if errors.Is(err, rewind.ErrLimitExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if created > 1e6 {
			t.Fatal("the arena never filled up")
		}
	}
	// Push every one of those streams out of the log.
	for range 80 {
		batch := make([]rewind.Event, 100)
		for i := range batch {
			batch[i] = ev("T", strings.Repeat("f", 1000))
		}
		if _, err := s.Append(ctx, "filler", rewind.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if first, err := s.ApplyRetention(ctx); err != nil || uint64(first) <= uint64(created) {
		t.Fatalf("retention: first position %d, %v; it should have removed the %d named streams", first, err, created)
	}
	for i := range created {
		if _, err := s.Append(ctx, name(1e6+i), rewind.Any, ev("T", "x")); err != nil {
			t.Fatalf("new stream %d of %d after retention emptied the old ones: %v", i, created, err)
		}
	}
}
