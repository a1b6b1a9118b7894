package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
)

// A Next whose context ends while the subscription reconnects returns the
// context's error, and the subscription goes on: found by the conformance
// model, where such a Next returned "context canceled" (the cancelled
// connect's error), or kept a stream its ending context had cancelled, so
// that the next Next failed with it.
func TestSubscriptionNextDeadlineDuringReconnect(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	c, err := client.New(s.URL(), client.Config{Token: s.AdminSecret(), MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 60 {
		for j := range 4 {
			short, cancel := context.WithTimeout(ctx, time.Duration(1+(i*7+j*13)%12)*time.Millisecond)
			_, err := sub.Next(short)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("round %d: next with a short deadline: %v, want the deadline", i, err)
			}
		}
		res, err := c.Append(ctx, "s", rewind.Any, rewind.Event{Type: "T"})
		if err != nil {
			t.Fatal(err)
		}
		long, cancel := context.WithTimeout(ctx, time.Minute)
		ev, err := sub.Next(long)
		cancel()
		if err != nil || ev.Position != res.FirstPosition {
			t.Fatalf("round %d: next after the append: %v, %v; want position %d", i, ev, err, res.FirstPosition)
		}
	}
}
