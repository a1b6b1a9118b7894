package replay_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/store"
)

var ctx = context.Background()

// clock is the store's clock in tests: it moves only when told, so that
// every event's RecordedAt is known.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type bundle struct {
	clock *clock
	// events are the log's events, cloned, in position order.
	events []rewind.RecordedEvent
}

func open(t testing.TB, c *clock) *store.Store {
	t.Helper()
	cfg := store.Config{Logger: slog.New(slog.DiscardHandler), Log: eventlog.Config{Durability: eventlog.None}}
	if c != nil {
		cfg.Log.Now = c.now
	}
	s, err := store.Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// setup returns a store holding 60 events over the streams orders-1,
// orders-10, orders-2 and users-1, of types Placed and Paid, one second
// apart in RecordedAt (three events share each second from position 31),
// with a soft delete of orders-2 at the end.
func setup(t testing.TB) (*store.Store, *bundle) {
	t.Helper()
	b := &bundle{clock: &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}}
	s := open(t, b.clock)
	streams := []string{"orders-1", "orders-10", "orders-2", "users-1"}
	for i := range 60 {
		e := rewind.Event{Type: []string{"Placed", "Paid"}[i%2], Data: fmt.Appendf(nil, `{"n":%d}`, i)}
		if i%5 == 0 {
			e.Metadata = map[string]string{"correlation-id": fmt.Sprint(i)}
		}
		if _, err := s.Append(ctx, streams[i%len(streams)], rewind.Any, e); err != nil {
			t.Fatal(err)
		}
		if i < 30 || i%3 == 2 {
			b.clock.advance(time.Second)
		}
	}
	if _, err := s.DeleteStream(ctx, "orders-2", rewind.Any); err != nil {
		t.Fatal(err)
	}
	for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		b.events = append(b.events, ev.Clone())
	}
	return s, b
}

// collect replays w into a handler that keeps every event.
func collect(t testing.TB, s rewind.Store, w replay.Window, opts replay.Options) ([]rewind.RecordedEvent, replay.Result) {
	t.Helper()
	var got []rewind.RecordedEvent
	res, err := replay.Run(ctx, s, w, func(_ context.Context, ev *rewind.RecordedEvent) error {
		got = append(got, ev.Clone())
		return nil
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return got, res
}

func positions(evs []rewind.RecordedEvent) []rewind.Position {
	out := make([]rewind.Position, len(evs))
	for i := range evs {
		out[i] = evs[i].Position
	}
	return out
}

// contractOnly hides the store's batch fast path, so that Run takes the
// generic path over ReadAll.
type contractOnly struct {
	rewind.Store
	rewind.Describer
}

func generic(s *store.Store) rewind.Store { return contractOnly{s, s} }

// model is what a window must deliver, computed from the log's events.
func model(evs []rewind.RecordedEvent, keep func(*rewind.RecordedEvent) bool) []rewind.Position {
	var out []rewind.Position
	for i := range evs {
		if keep(&evs[i]) {
			out = append(out, evs[i].Position)
		}
	}
	return out
}
