package middleware

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/store"
)

// TestThroughTheEngine runs a chain of middleware under consumer.Consume
// against a real group: a poison event is parked at once with its error,
// a panicking one is recovered and parked after its deliveries, and the
// rest are handled once, marked, and acked.
func TestThroughTheEngine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := store.Open(t.TempDir(), store.Config{Logger: slog.New(slog.DiscardHandler),
		Log: eventlog.Config{Durability: eventlog.None, SegmentSize: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var evs []rewind.Event
	for _, typ := range []string{"Ok", "Poison", "Panic", "Ok", "Ok"} {
		evs = append(evs, rewind.Event{Type: typ, Data: []byte(`{}`)})
	}
	if _, err := s.Append(ctx, "s", rewind.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	e, err := consumer.Open(ctx, s, consumer.Config{Logger: slog.New(slog.DiscardHandler), TickInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	if _, err := e.CreateGroup(ctx, consumer.GroupConfig{Name: "g", MaxDeliveries: 2,
		Backoff: []time.Duration{0}}); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int32
	dedup := NewMemoryDedup(0)
	h := consumer.Chain(func(_ context.Context, m *consumer.Message) error {
		switch m.Event.Type {
		case "Poison":
			return errDecode
		case "Panic":
			panic("boom")
		}
		handled.Add(1)
		return nil
	}, Recover(), Correlation(), Dedup(dedup, DedupConfig{}), Poison(func(err error) bool {
		return errors.Is(err, errDecode)
	}), Retry(RetryConfig{MaxTries: 2, InitialInterval: time.Millisecond}), Timeout(time.Second))
	m, err := e.Join(ctx, "g", consumer.MemberOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		for runCtx.Err() == nil {
			if in, _ := e.Info("g"); in.Acked == 3 && in.Parked == 2 {
				cancel()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if err := consumer.Consume(runCtx, m, h, consumer.ConsumeOptions{Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	ps, _ := e.Parked(ctx, "g", consumer.ParkedOptions{})
	if len(ps) != 2 || ps[0].Type != "Poison" || ps[0].Reason != "poison" || ps[0].Attempts != 1 ||
		ps[1].Type != "Panic" || ps[1].Reason != "max deliveries reached" || ps[1].LastError != "handler panicked: boom" {
		t.Fatalf("parked %+v", ps)
	}
	// Each Ok event is handled once, and marked.
	if handled.Load() != 3 || dedup.Len() != 3 {
		t.Fatalf("handled %d, dedup holds %d", handled.Load(), dedup.Len())
	}
}
