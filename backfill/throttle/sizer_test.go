package throttle_test

import (
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill/throttle"
)

func newThrottler(t *testing.T, cfg throttle.Config) *throttle.Throttler {
	t.Helper()
	thr, err := throttle.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return thr
}

func TestSizerGrowsTowardTheTarget(t *testing.T) {
	t.Parallel()
	s := newThrottler(t, throttle.Config{ChunkTime: 500 * time.Millisecond}).NewSizer(0, 1000)
	// The database does 10,000 rows/s: the target is 5,000-row chunks.
	var sizes []int
	for range 20 {
		n := s.Size()
		s.Observe(n, time.Duration(float64(n)/10_000*float64(time.Second)))
		sizes = append(sizes, s.Size())
	}
	if sizes[0] != 2000 {
		t.Errorf("first growth: %d, want 2000 (at most twofold per chunk)", sizes[0])
	}
	if got := sizes[len(sizes)-1]; got < 4900 || got > 5100 {
		t.Errorf("size after 20 chunks: %d, want about 5000 (%v)", got, sizes)
	}
}

func TestSizerShrinksAtOnceOnASlowChunk(t *testing.T) {
	t.Parallel()
	s := newThrottler(t, throttle.Config{ChunkTime: 100 * time.Millisecond}).NewSizer(0, 4000)
	for range 5 { // 40,000 rows/s: settled at 4,000
		s.Observe(s.Size(), time.Duration(float64(s.Size())/40_000*float64(time.Second)))
	}
	if s.Size() != 4000 {
		t.Fatalf("settled at %d, want 4000", s.Size())
	}
	// One chunk takes 6× the target: 4,000 rows in 600ms, 6,666 rows/s.
	s.Observe(4000, 600*time.Millisecond)
	if got := s.Size(); got != 666 {
		t.Errorf("after a 6x chunk: %d, want 666 (this chunk's rate × the target, at once)", got)
	}
	// A chunk 4× the target slows the average, not at once.
	s2 := newThrottler(t, throttle.Config{ChunkTime: 100 * time.Millisecond}).NewSizer(0, 4000)
	s2.Observe(4000, 100*time.Millisecond)
	s2.Observe(4000, 400*time.Millisecond)
	if got := s2.Size(); got <= 666 || got >= 4000 {
		t.Errorf("after a 4x chunk: %d, want between 666 and 4000 (the average moves)", got)
	}
}

func TestSizerKeepsItsBounds(t *testing.T) {
	t.Parallel()
	thr := newThrottler(t, throttle.Config{ChunkTime: 100 * time.Millisecond, MinChunk: 50, MaxChunk: 3000})
	s := thr.NewSizer(0, 1_000_000)
	if s.Size() != 3000 {
		t.Errorf("initial size above max: %d, want 3000", s.Size())
	}
	for range 10 {
		s.Observe(s.Size(), time.Millisecond) // extremely fast
	}
	if s.Size() != 3000 {
		t.Errorf("fast chunks: %d, want the max 3000", s.Size())
	}
	for range 10 {
		s.Observe(s.Size(), 10*time.Second) // extremely slow
	}
	if s.Size() != 50 {
		t.Errorf("slow chunks: %d, want the min 50", s.Size())
	}
}

func TestFixedChunkSizeNeverChanges(t *testing.T) {
	t.Parallel()
	s := newThrottler(t, throttle.Config{}).NewSizer(250, 1000)
	s.Observe(250, time.Minute)
	s.Observe(250, time.Nanosecond)
	s.SetTarget(time.Second)
	if !s.Fixed() || s.Size() != 250 {
		t.Errorf("fixed sizer: %d (fixed %v), want 250", s.Size(), s.Fixed())
	}
}
