package throttle

import (
	"testing"
	"time"
)

// The cap admits at most rate × elapsed + burst rows over any stretch of
// (simulated) time, and makes chunks wait for their share: counted on the
// limiter's reservations, not on a wall clock.
func TestRateCapAdmitsNoMoreThanTheRate(t *testing.T) {
	t.Parallel()
	const rowsPerSec, burst, chunk = 1000.0, 500, 200
	c := newRateCap(rowsPerSec, burst)
	now := time.Now()
	start := now
	admitted := 0
	for range 100 {
		d := c.reserve(now, chunk)
		now = now.Add(d) // the caller waits d, then writes its chunk
		admitted += chunk
		if elapsed := now.Sub(start).Seconds(); float64(admitted) > rowsPerSec*elapsed+burst+chunk {
			t.Fatalf("%d rows admitted after %.3fs, over the rate %g rows/s", admitted, elapsed, rowsPerSec)
		}
	}
	// 20,000 rows at 1,000 rows/s, from an empty bucket: 20 s of waits.
	if got := now.Sub(start); got < 19*time.Second || got > 21*time.Second {
		t.Errorf("20,000 rows took %s of waits, want about 20s", got)
	}
	// A chunk larger than the burst is taken in parts, and admitted.
	if d := c.reserve(now, 3*burst); d <= 0 || d > 2*time.Second {
		t.Errorf("a chunk of three bursts waits %s, want about 1.5s", d)
	}
	// No cap: no wait.
	c.set(0)
	if d := c.reserve(now, 1_000_000); d != 0 {
		t.Errorf("without a cap: %s", d)
	}
}
