package middleware

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rewindhq/rewind/consumer"
)

func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	calls := 0
	failing := true
	mw := CircuitBreaker(BreakerConfig{ConsecutiveFailures: 3, OpenFor: 50 * time.Millisecond})
	h := mw(func(context.Context, *consumer.Message) error {
		calls++
		if failing {
			return errors.New("db down")
		}
		return nil
	})
	for range 3 {
		h(context.Background(), msg(nil))
	}
	// Open: the handler is not called, the event comes back after OpenFor.
	err := h(context.Background(), msg(nil))
	var retry *consumer.RetryError
	if !errors.As(err, &retry) || retry.Delay != 50*time.Millisecond || !errors.Is(err, ErrBreakerOpen) || calls != 3 {
		t.Fatalf("open breaker: %v, %d calls", err, calls)
	}
	// After OpenFor, a trial goes through and closes it.
	failing = false
	time.Sleep(60 * time.Millisecond)
	if err := h(context.Background(), msg(nil)); err != nil || calls != 4 {
		t.Fatalf("trial: %v, %d calls", err, calls)
	}
	// Parks do not count as failures.
	hp := mw(func(context.Context, *consumer.Message) error { return consumer.Park("bad", nil) })
	for range 5 {
		hp(context.Background(), msg(nil))
	}
	if err := h(context.Background(), msg(nil)); err != nil {
		t.Fatalf("parks opened the breaker: %v", err)
	}
}
