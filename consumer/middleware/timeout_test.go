package middleware

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rewindhq/rewind/consumer"
)

func TestTimeout(t *testing.T) {
	t.Parallel()
	h := Timeout(time.Millisecond)(func(ctx context.Context, _ *consumer.Message) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err := h(context.Background(), msg(nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	h = Timeout(time.Hour)(func(ctx context.Context, _ *consumer.Message) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("no deadline")
		}
		return nil
	})
	if err := h(context.Background(), msg(nil)); err != nil {
		t.Fatal(err)
	}
}
