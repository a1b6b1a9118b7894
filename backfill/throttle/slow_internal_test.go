package throttle

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Throttler's clock: a sleep advances it at once and is
// recorded, so that the tests count the rests instead of timing them.
type fakeClock struct {
	mu     sync.Mutex
	at     time.Time
	sleeps []time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
	c.sleeps = append(c.sleeps, d)
	return ctx.Err()
}

func (c *fakeClock) slept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum time.Duration
	for _, d := range c.sleeps {
		sum += d
	}
	return sum
}

// level is a signal whose reading is whatever util holds now.
type level struct {
	mu   sync.Mutex
	util float64
}

func (l *level) Name() string { return "load" }
func (l *level) set(u float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.util = u
}
func (l *level) Read(context.Context) (Reading, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Reading{Util: l.util}, nil
}

func slowThrottler(t *testing.T, cfg Config) (*Throttler, *fakeClock, *level) {
	t.Helper()
	sig := &level{}
	cfg.Signals = append(cfg.Signals, sig)
	cfg.ReadEvery = -1 // every chunk reads: the level follows the readings set
	thr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeClock{at: time.Unix(1_000_000, 0)}
	thr.now, thr.sleep = c.now, c.sleep
	return thr, c, sig
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The curve: full speed below SlowFrom, then the share of time worked
// falls with the square of how far the level is toward the max, and the
// chunks get short.
func TestSlowDownCurve(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		level, from, x, duty float64
	}{
		{0, 0.25, 0, 1}, {0.25, 0.25, 0, 1}, {0.625, 0.25, 0.5, 0.25}, {1, 0.25, maxSlow, (1 - maxSlow) * (1 - maxSlow)},
		{5, 0.25, maxSlow, (1 - maxSlow) * (1 - maxSlow)}, {0.9, 1, 0, 1}, {math.NaN(), 0.25, 0, 1},
	} {
		x := slowness(c.level, c.from)
		if !near(x, c.x) || !near(duty(x), c.duty) {
			t.Errorf("level %g from %g: slowness %g duty %g, want %g and %g", c.level, c.from, x, duty(x), c.x, c.duty)
		}
	}
	// A chunk of 100ms at half slowness (a quarter of the time worked)
	// rests 300ms; at full speed none.
	if got := restAfter(100*time.Millisecond, 0.5); got != 300*time.Millisecond {
		t.Errorf("rest after 100ms at x 0.5: %s, want 300ms", got)
	}
	if got := restAfter(100*time.Millisecond, 0); got != 0 {
		t.Errorf("rest at full speed: %s", got)
	}
	for _, c := range []struct {
		target time.Duration
		x      float64
		want   time.Duration
	}{
		{500 * time.Millisecond, 0, 500 * time.Millisecond},     // full speed: the target as configured
		{500 * time.Millisecond, 0.01, maxSlowChunkTime},        // any load: short chunks at once
		{500 * time.Millisecond, 0.6, 12800 * time.Microsecond}, // 500 ms × 0.4⁴
		{500 * time.Millisecond, maxSlow, minSlowChunkTime},
		{50 * time.Millisecond, 0.5, minSlowChunkTime},
		{20 * time.Millisecond, 0.1, 13122 * time.Microsecond}, // 20 ms × 0.9⁴, under the cap
		{5 * time.Millisecond, 0.9, 5 * time.Millisecond},      // never longer than configured
	} {
		if got := chunkTarget(c.target, c.x); got != c.want {
			t.Errorf("chunk target %s at x %g: %s, want %s", c.target, c.x, got, c.want)
		}
	}
}

// Between SlowFrom and the max each chunk is followed by a rest in
// proportion to its time, which status counts as throttled, with its
// reason; below SlowFrom, none.
func TestWaitAfterRestsInProportion(t *testing.T) {
	t.Parallel()
	thr, clock, sig := slowThrottler(t, Config{Interval: 100 * time.Millisecond, SlowFrom: 0.25})
	ctx := t.Context()
	sig.set(0.1)
	if err := thr.WaitAfter(ctx, 100, 200*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if st := thr.Status(); clock.slept() != 0 || st.Waits != 0 || st.Throttled != 0 {
		t.Fatalf("below slow_from: slept %s, status %+v; want no rest", clock.slept(), st)
	}
	// The level is an average of the reads: readings of 0.625 bring it
	// near 0.625, half-way from 0.25 to the max.
	sig.set(0.625)
	for range 40 {
		thr.check(ctx)
	}
	if x := thr.Slowness(); math.Abs(x-0.5) > 0.01 {
		t.Fatalf("slowness %g after readings of 0.625, want 0.5", x)
	}
	var reasons []string
	between := func() error {
		reasons = append(reasons, thr.Status().Reason)
		return nil
	}
	if err := thr.WaitAfter(ctx, 100, 200*time.Millisecond, between); err != nil {
		t.Fatal(err)
	}
	// 200ms worked at a quarter of the time: 600ms of rest, in steps of
	// at most the interval, each at a chunk boundary.
	if got := clock.slept(); got < 590*time.Millisecond || got > 610*time.Millisecond {
		t.Errorf("rested %s after a 200ms chunk at slowness 0.5, want 600ms", got)
	}
	if len(clock.sleeps) < 6 || len(reasons) != len(clock.sleeps) {
		t.Errorf("rest in %d steps with %d boundaries, want steps of at most 100ms, each after a boundary", len(clock.sleeps), len(reasons))
	}
	for _, r := range reasons {
		if !strings.Contains(r, "slowing down: load at 6") || !strings.Contains(r, "working 25% of the time") {
			t.Errorf("reason while resting: %q", r)
		}
	}
	st := thr.Status()
	if st.Waits != 1 || st.Throttled != clock.slept() || st.Rows != 200 || st.Reason != "" {
		t.Errorf("status after the rest: %+v, want one wait of %s, 200 rows, no reason left", st, clock.slept())
	}
	// The first chunk (took 0) does not rest.
	before := clock.slept()
	if err := thr.WaitAfter(ctx, 100, 0, nil); err != nil || clock.slept() != before {
		t.Errorf("first chunk: %v, rested %s", err, clock.slept()-before)
	}
	// A boundary that stops (a pause asked for) ends the rest with its error.
	stop := context.Canceled
	if err := thr.WaitAfter(ctx, 100, 200*time.Millisecond, func() error { return stop }); err != stop {
		t.Errorf("rest with a stopping boundary: %v, want its error", err)
	}
}

// slow_from 1 turns the slow-down off: workers run at full speed until a
// signal reaches its max.
func TestSlowDownOff(t *testing.T) {
	t.Parallel()
	thr, clock, sig := slowThrottler(t, Config{SlowFrom: 1})
	sig.set(0.99)
	for range 10 {
		if err := thr.WaitAfter(t.Context(), 100, time.Second, nil); err != nil {
			t.Fatal(err)
		}
	}
	if clock.slept() != 0 || thr.Slowness() != 0 {
		t.Errorf("slow_from 1 at 99%% of the max: rested %s, slowness %g; want none", clock.slept(), thr.Slowness())
	}
	if _, err := New(Config{SlowFrom: 1.5}); err == nil || !strings.Contains(err.Error(), "slow_from") {
		t.Errorf("slow_from 1.5: %v, want an error naming slow_from", err)
	}
}

// While the throttler slows down, an adaptive Sizer's chunks are shorter
// in proportion to the shorter target; a fixed size is the job's own.
func TestSizerShortensChunksWhileSlowingDown(t *testing.T) {
	t.Parallel()
	thr, _, sig := slowThrottler(t, Config{ChunkTime: 500 * time.Millisecond, SlowFrom: 0.25})
	s, fixed := thr.NewSizer(0, 1000), thr.NewSizer(1000, 0)
	for range 20 { // 10,000 rows/s: 5,000-row chunks at 500ms
		s.Observe(s.Size(), time.Duration(float64(s.Size())/10_000*float64(time.Second)))
	}
	if got := s.Size(); got < 4900 || got > 5100 {
		t.Fatalf("settled at %d, want about 5000", got)
	}
	sig.set(0.625)
	for range 40 {
		thr.check(t.Context())
	}
	// Slowness 0.5: chunks of 500ms × 0.5⁴ = 31.25ms, capped at 25ms.
	if got := s.Size(); got < 240 || got > 260 {
		t.Errorf("while slowing down: %d rows, want about 250 (25ms at 10,000 rows/s)", got)
	}
	if fixed.Size() != 1000 {
		t.Errorf("a fixed chunk while slowing down: %d, want 1000", fixed.Size())
	}
	sig.set(0)
	for range 40 {
		thr.check(t.Context())
	}
	if got := s.Size(); got < 4900 {
		t.Errorf("back below slow_from: %d rows, want about 5000 again", got)
	}
	// By default the slow-down begins at the first reading above 0: from
	// it on chunks are at most 25ms, and shorter as the load grows.
	def, _, dsig := slowThrottler(t, Config{ChunkTime: 500 * time.Millisecond})
	ds := def.NewSizer(0, 1000)
	for range 20 {
		ds.Observe(ds.Size(), time.Duration(float64(ds.Size())/10_000*float64(time.Second)))
	}
	for _, c := range []struct {
		util     float64
		min, max int
	}{
		{0.02, 240, 260}, // 25ms
		{0.3, 240, 260},  // 500ms × 0.7⁴ = 120ms, capped at 25ms
		{0.6, 120, 135},  // 500ms × 0.4⁴ = 12.8ms
		{0.9, 95, 105},   // 10ms, the floor
	} {
		dsig.set(c.util)
		for range 40 {
			def.check(t.Context())
		}
		if got := ds.Size(); got < c.min || got > c.max {
			t.Errorf("default, load %g: %d rows, want %d to %d", c.util, got, c.min, c.max)
		}
	}
}
