package middleware

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rewindhq/rewind/consumer"
)

func TestRetry(t *testing.T) {
	t.Parallel()
	calls := 0
	h := Retry(RetryConfig{MaxTries: 4, InitialInterval: time.Millisecond})(func(context.Context, *consumer.Message) error {
		calls++
		if calls < 3 {
			return errors.New("transient")
		}
		return nil
	})
	if err := h(context.Background(), msg(nil)); err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls", err, calls)
	}

	calls = 0
	h = Retry(RetryConfig{MaxTries: 3, InitialInterval: time.Millisecond})(func(context.Context, *consumer.Message) error {
		calls++
		return errors.New("down")
	})
	if err := h(context.Background(), msg(nil)); err == nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want the error after 3", err, calls)
	}

	// An error that parks the event is not retried.
	calls = 0
	h = Retry(RetryConfig{MaxTries: 5, InitialInterval: time.Millisecond})(func(context.Context, *consumer.Message) error {
		calls++
		return consumer.Park("bad", nil)
	})
	var park *consumer.ParkError
	if err := h(context.Background(), msg(nil)); !errors.As(err, &park) || calls != 1 {
		t.Fatalf("park: %v after %d calls", err, calls)
	}
}
