package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

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
