package throttle

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateCap caps rows per second with a token bucket (golang.org/x/time/rate).
// Its burst is one second's worth of rows: a chunk larger than that is
// taken from the bucket in parts, waiting for each.
type rateCap struct {
	mu  sync.Mutex
	lim *rate.Limiter // nil: no cap
}

func newRateCap(rowsPerSec float64) *rateCap {
	c := &rateCap{}
	c.set(rowsPerSec)
	return c
}

func burstOf(rowsPerSec float64) int { return max(1, int(math.Ceil(rowsPerSec))) }

func (c *rateCap) set(rowsPerSec float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case rowsPerSec <= 0:
		c.lim = nil
	case c.lim == nil:
		c.lim = rate.NewLimiter(rate.Limit(rowsPerSec), burstOf(rowsPerSec))
	default:
		c.lim.SetLimit(rate.Limit(rowsPerSec))
		c.lim.SetBurst(burstOf(rowsPerSec))
	}
}

func (c *rateCap) limit() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lim == nil {
		return 0
	}
	return float64(c.lim.Limit())
}

// reserve takes rows from the bucket at now and returns how long the
// caller must wait before using them, and a cancel that gives back what
// the caller did not use when it abandons the wait (a pause, a cancel).
func (c *rateCap) reserve(now time.Time, rows int) (time.Duration, func(time.Time)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lim == nil || rows <= 0 {
		return 0, func(time.Time) {}
	}
	var wait time.Duration
	var taken []*rate.Reservation
	for rows > 0 { // a chunk larger than the burst is taken in parts
		n := min(rows, c.lim.Burst())
		r := c.lim.ReserveN(now, n)
		if !r.OK() {
			wait = time.Duration(math.MaxInt64)
			break
		}
		taken = append(taken, r)
		wait = max(wait, r.DelayFrom(now))
		rows -= n
	}
	return wait, func(at time.Time) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i := len(taken) - 1; i >= 0; i-- { // the last taken gives back first
			taken[i].CancelAt(at)
		}
	}
}
