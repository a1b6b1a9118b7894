package store

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

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
