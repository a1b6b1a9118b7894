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
	const rowsPerSec, burst, chunk = 1000.0, 1000, 200 // the burst is one second's rows
	c := newRateCap(rowsPerSec)
	now := time.Now()
	start := now
	admitted := 0
	for range 100 {
		d, _ := c.reserve(now, chunk)
		now = now.Add(d) // the caller waits d, then writes its chunk
		admitted += chunk
		if elapsed := now.Sub(start).Seconds(); float64(admitted) > rowsPerSec*elapsed+burst+chunk {
			t.Fatalf("%d rows admitted after %.3fs, over the rate %g rows/s", admitted, elapsed, rowsPerSec)
		}
	}
	// 20,000 rows at 1,000 rows/s, the first second's worth at once: 19 s of waits.
	if got := now.Sub(start); got < 18*time.Second || got > 20*time.Second {
		t.Errorf("20,000 rows took %s of waits, want about 19s", got)
	}
	// A chunk larger than the burst is taken in parts, and admitted.
	if d, _ := c.reserve(now, 3*burst); d < 2*time.Second || d > 4*time.Second {
		t.Errorf("a chunk of three bursts waits %s, want about 3s", d)
	}
	// A lower rate applies to the next reservation.
	c.set(100)
	if d, _ := c.reserve(now.Add(10*time.Second), 100); d <= 0 {
		t.Errorf("after lowering the rate: no wait")
	}
	// No cap: no wait.
	c.set(0)
	if d, _ := c.reserve(now, 1_000_000); d != 0 {
		t.Errorf("without a cap: %s", d)
	}
}

// A rate wait abandoned (the run cancelled or paused while a worker slept
// for tokens) gives its tokens back: the next chunk waits only for its own.
func TestAnAbandonedRateWaitGivesItsTokensBack(t *testing.T) {
	t.Parallel()
	c := newRateCap(1000)
	now := time.Now()
	if d, _ := c.reserve(now, 1000); d != 0 { // the burst
		t.Fatalf("the burst waits %s", d)
	}
	d, cancel := c.reserve(now, 1000)
	if d < 900*time.Millisecond {
		t.Fatalf("a second's rows past the burst wait %s, want about 1s", d)
	}
	cancel(now) // abandoned at once
	if again, _ := c.reserve(now, 1000); again > d {
		t.Errorf("after an abandoned wait of %s the next waits %s: its tokens were kept", d, again)
	}
}
