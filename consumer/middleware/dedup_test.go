package middleware

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rewindhq/rewind/consumer"
)

// dedupContract checks a DedupStore through the middleware: a handled
// event is skipped when it comes again, a failed one is not, and a mark
// expires with its TTL.
func dedupContract(t *testing.T, store DedupStore, advance func(time.Duration)) {
	calls := 0
	fail := false
	h := Dedup(store, DedupConfig{TTL: time.Minute})(func(context.Context, *consumer.Message) error {
		calls++
		if fail {
			return errors.New("failed")
		}
		return nil
	})
	ctx := context.Background()
	m := msg(nil)
	if err := h(ctx, m); err != nil || calls != 1 {
		t.Fatalf("first: %v %d", err, calls)
	}
	if err := h(ctx, m); err != nil || calls != 1 {
		t.Fatalf("duplicate handled again: %v %d", err, calls)
	}
	fail = true
	m2 := msg(nil)
	if err := h(ctx, m2); err == nil {
		t.Fatal("failure swallowed")
	}
	fail = false
	if err := h(ctx, m2); err != nil || calls != 3 {
		t.Fatalf("a failed event was marked: %v %d", err, calls)
	}
	advance(2 * time.Minute)
	if err := h(ctx, m); err != nil || calls != 4 {
		t.Fatalf("an expired mark still skipped: %v %d", err, calls)
	}
}

func TestDedupMemory(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewMemoryDedup(3)
	s.Now = func() time.Time { return now }
	dedupContract(t, s, func(d time.Duration) { now = now.Add(d) })
	// Bounded: the oldest marks go first.
	for _, k := range []string{"a", "b", "c", "d"} {
		s.Mark(context.Background(), k, time.Hour)
	}
	if seen, _ := s.Seen(context.Background(), "a"); seen || s.Len() != 3 {
		t.Fatalf("cap not kept: a seen %v, %d keys", seen, s.Len())
	}
}
