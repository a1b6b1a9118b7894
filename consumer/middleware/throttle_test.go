package middleware

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/rewindhq/rewind/consumer"
)

func TestThrottle(t *testing.T) {
	t.Parallel()
	lim := rate.NewLimiter(rate.Every(time.Hour), 2)
	calls := 0
	h := Throttle(lim)(func(context.Context, *consumer.Message) error { calls++; return nil })
	for range 2 {
		if err := h(context.Background(), msg(nil)); err != nil {
			t.Fatal(err)
		}
	}
	// The burst is spent: the next waits, and its context ends first.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := h(ctx, msg(nil)); err == nil || calls != 2 {
		t.Fatalf("third call: %v, %d calls", err, calls)
	}
}
