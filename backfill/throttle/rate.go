package throttle

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateCap caps rows per second with a token bucket (golang.org/x/time/rate).
// Its burst is the largest chunk, so that any chunk can be admitted; a
// chunk waits until the bucket holds its rows, which it then takes.
type rateCap struct {
	mu    sync.Mutex
	lim   *rate.Limiter // nil: no cap
	burst int
}

func newRateCap(rowsPerSec float64, burst int) *rateCap {
	c := &rateCap{burst: burst}
	c.set(rowsPerSec)
	return c
}

func (c *rateCap) set(rowsPerSec float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case rowsPerSec <= 0:
		c.lim = nil
	case c.lim == nil:
		// A cap starts with an empty bucket: the first chunk waits its
		// share too, so the rate holds from the first row.
		c.lim = rate.NewLimiter(rate.Limit(rowsPerSec), c.burst)
		c.lim.ReserveN(time.Now(), c.burst)
	default:
		c.lim.SetLimit(rate.Limit(rowsPerSec))
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
// caller must wait before using them.
func (c *rateCap) reserve(now time.Time, rows int) time.Duration {
	c.mu.Lock()
	lim := c.lim
	c.mu.Unlock()
	if lim == nil || rows <= 0 {
		return 0
	}
	var wait time.Duration
	for rows > 0 { // a chunk larger than the burst is taken in parts
		n := min(rows, c.burst)
		r := lim.ReserveN(now, n)
		if !r.OK() {
			return time.Duration(math.MaxInt64)
		}
		wait = max(wait, r.DelayFrom(now))
		rows -= n
	}
	return wait
}
