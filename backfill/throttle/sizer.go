package throttle

import (
	"sync"
	"time"
)

// Sizer picks chunk sizes so that a chunk takes about the target time:
// it keeps an exponentially weighted moving average of the rows per second
// of recent chunks and sizes the next chunk to that rate × the target,
// growing at most twofold per chunk, shrinking at once (to the size that
// the slow chunk's own rate gives) when a chunk took more than five times
// the target, always within [min, max]. While its throttler slows down
// (see slow.go), Size is shorter, in proportion to the shorter target
// chunk time. A fixed size never changes. It is safe for concurrent use:
// a process's workers on a run share one.
type Sizer struct {
	thr      *Throttler // its slowness shortens the chunks; nil: never
	mu       sync.Mutex
	fixed    bool
	target   time.Duration
	min, max int
	size     int
	rate     float64 // EWMA of rows per second; 0 before the first chunk
}

// Weight of the newest chunk in the moving average.
const ewmaWeight = 0.3

// NewSizer returns the throttler's Sizer: fixed (when not 0) is the job's
// own chunk size, which never changes; else sizes adapt to
// Config.ChunkTime from initial (clamped to the bounds).
func (t *Throttler) NewSizer(fixed, initial int) *Sizer {
	if fixed > 0 {
		return &Sizer{fixed: true, size: fixed}
	}
	c := t.cfg
	return &Sizer{thr: t, target: c.ChunkTime, min: c.MinChunk, max: c.MaxChunk, size: clamp(initial, c.MinChunk, c.MaxChunk)}
}

// Size is the next chunk's size in rows: the size for the target chunk
// time, shortened in proportion while the throttler slows down.
func (s *Sizer) Size() int {
	x := 0.0
	if s.thr != nil && !s.fixed {
		x = s.thr.Slowness()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if x <= 0 || s.target <= 0 {
		return s.size
	}
	return clamp(int(float64(s.size)*float64(chunkTarget(s.target, x))/float64(s.target)), s.min, s.max)
}

// Fixed reports whether the size never changes.
func (s *Sizer) Fixed() bool { return s.fixed }

// Target is the target chunk time now.
func (s *Sizer) Target() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.target
}

// SetTarget changes the target chunk time (an override while a run goes
// on); the next Observe sizes to it.
func (s *Sizer) SetTarget(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fixed && d > 0 {
		s.target = d
	}
}

// Observe records that a chunk of rows rows took took, and sizes the next.
func (s *Sizer) Observe(rows int, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fixed || rows <= 0 || took <= 0 {
		return
	}
	r := float64(rows) / took.Seconds()
	if took > 5*s.target {
		// Far too slow: the database is struggling, or the rows are
		// heavier here. Shrink now, to what this chunk's rate allows,
		// and forget the average that led here.
		s.rate = r
		s.size = clamp(int(r*s.target.Seconds()), s.min, s.max)
		return
	}
	if s.rate == 0 {
		s.rate = r
	} else {
		s.rate = ewmaWeight*r + (1-ewmaWeight)*s.rate
	}
	next := int(s.rate * s.target.Seconds())
	s.size = clamp(min(next, 2*s.size), s.min, s.max)
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }
