package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/store"
)

// fakeClock is the engine's clock in tests that move time by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// bundle is an engine over an embedded store in a temporary directory.
type bundle struct {
	t      testing.TB
	dir    string
	scfg   store.Config
	cfg    Config
	store  *store.Store
	engine *Engine
	clock  *fakeClock
}

// setup opens a store (without fsync unless sync is asked for: the tests
// restart cleanly or abandon the engine, never crash the machine) and an
// engine on it with a fake clock and manual ticks.
func setup(t testing.TB, cfg Config) *bundle {
	t.Helper()
	b := &bundle{t: t, dir: t.TempDir(), clock: newFakeClock()}
	b.scfg = store.Config{Logger: slog.New(slog.DiscardHandler),
		Log: eventlog.Config{Durability: eventlog.None, SegmentSize: 1 << 20}}
	if cfg.Now == nil {
		cfg.Now = b.clock.Now
		cfg.manualTicks = true
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b.cfg = cfg
	b.openStore()
	b.openEngine()
	t.Cleanup(func() {
		if b.engine != nil {
			b.engine.Close(context.Background())
		}
		if b.store != nil {
			b.store.Close()
		}
	})
	return b
}

func (b *bundle) openStore() {
	b.t.Helper()
	s, err := store.Open(b.dir, b.scfg)
	if err != nil {
		b.t.Fatalf("open store: %v", err)
	}
	b.store = s
}

func (b *bundle) openEngine() {
	b.t.Helper()
	e, err := Open(context.Background(), b.store, b.cfg)
	if err != nil {
		b.t.Fatalf("open engine: %v", err)
	}
	b.engine = e
}

// restart closes the engine (flushing, or abandoning what it had not
// written when crash is set) and the store, and opens both again.
func (b *bundle) restart(crash bool) {
	b.t.Helper()
	if crash {
		b.engine.abandon()
	} else if err := b.engine.Close(context.Background()); err != nil {
		b.t.Fatalf("close engine: %v", err)
	}
	if err := b.store.Close(); err != nil {
		b.t.Fatalf("close store: %v", err)
	}
	b.openStore()
	b.openEngine()
}

// appendN appends n events to stream, of type typ.
func (b *bundle) appendN(stream, typ string, n int) rewind.AppendResult {
	b.t.Helper()
	evs := make([]rewind.Event, n)
	for i := range evs {
		evs[i] = rewind.Event{Type: typ, Data: fmt.Appendf(nil, `{"i":%d}`, i)}
	}
	res, err := b.store.Append(context.Background(), stream, rewind.Any, evs...)
	if err != nil {
		b.t.Fatalf("append: %v", err)
	}
	return res
}

func (b *bundle) create(cfg GroupConfig) *group {
	b.t.Helper()
	if _, err := b.engine.CreateGroup(context.Background(), cfg); err != nil {
		b.t.Fatalf("create group: %v", err)
	}
	return b.group(cfg.Name)
}

func (b *bundle) group(name string) *group {
	b.engine.mu.Lock()
	defer b.engine.mu.Unlock()
	return b.engine.groups[name]
}

func (b *bundle) join(group string, max int) *Member {
	b.t.Helper()
	m, err := b.engine.Join(context.Background(), group, MemberOptions{MaxAckPending: max})
	if err != nil {
		b.t.Fatalf("join: %v", err)
	}
	return m
}

// waitRead waits until g's reader has taken everything up to p, or holds
// as many events as it may.
func waitRead(t testing.TB, g *group, p rewind.Position) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.mu.Lock()
		done := g.cursor >= p || g.full() || g.failed != nil
		g.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s did not read up to %d", g.name, p)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitReplay waits until g's replay has handed back all it can now.
func waitReplay(t testing.TB, g *group) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.mu.Lock()
		idle := !g.replay.active || g.failed != nil
		if !idle && len(g.replaying) >= g.cfg.ReplayChunk {
			idle = true
		}
		if !idle {
			more := false
			more = g.replayLeft()
			idle = !more
		}
		g.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: replay did not settle", g.name)
		}
		time.Sleep(time.Millisecond)
	}
}

// fetchNow fetches what is ready now (nothing if nothing is).
func fetchNow(t testing.TB, m *Member, n int) []Delivery {
	t.Helper()
	ds, err := m.TryFetch(bg, n)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return ds
}

var bg = context.Background()
