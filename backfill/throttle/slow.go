package throttle

import (
	"context"
	"fmt"
	"math"
	"time"
)

// The slow-down: between "idle" and "at the max", the workers slow in
// proportion instead of running at full speed until a signal reaches its
// max and then stopping. A wait at the max is all or nothing; a busy
// OLTP workload whose signals stay under the max (4 clients on a server
// whose load max is 4 active backends) would otherwise meet the backfill
// at full speed, and its tail latency with it.
//
// The level is an exponentially weighted average of the highest
// utilisation (reading / max) of the signals, over their reads. From
// Config.SlowFrom on, the slow-down x = (level − SlowFrom) / (1 − SlowFrom)
// (at most maxSlow) does two things:
//
//   - after each chunk the worker rests: a chunk that took d is followed
//     by a rest of d × (1/duty − 1), with duty = (1 − x)², the share of
//     time the worker works;
//   - chunks are short: the Sizer's target chunk time becomes the
//     configured one × (1 − x)⁴, and at most maxSlowChunkTime and at least
//     minSlowChunkTime (a 500 ms target: 25 ms from the first load on,
//     15.6 ms at x = 0.6, 10 ms from x ≈ 0.64). A long chunk
//     commits its whole write at once (its WAL flushed in one go, which
//     every other commit then waits behind) and holds a core for its whole
//     time; short ones spread the same work into small bursts.
//
// Below SlowFrom the workers run at full speed; at the max they wait.
const (
	// levelWeight is the newest read's weight in the level.
	levelWeight = 0.3
	// maxSlow caps x, so that a rest is at most 399 × its chunk.
	maxSlow = 0.95
	// minSlowChunkTime and maxSlowChunkTime bound the target chunk time
	// while slowing down (or ChunkTime, when shorter). The cap holds from
	// the first load on: the tail latency of the other sessions follows
	// the length of the backfill's bursts more than its average rate (at
	// the same 20,000 rows/s, 500 ms chunks raised pgbench's p99 2.7×,
	// 50 ms ones 1.3×), while a chunk's fixed cost (a few round trips
	// and a commit, under 1 ms) stays a few percent of 25 ms.
	minSlowChunkTime = 10 * time.Millisecond
	maxSlowChunkTime = 25 * time.Millisecond
)

// DefaultSlowFrom is Config.SlowFrom's default: the slow-down is in
// proportion from the first reading above zero.
const DefaultSlowFrom = 0.0

// slowness is x for level and from: 0 below from, up to maxSlow.
func slowness(level, from float64) float64 {
	if from >= 1 || level <= from || level <= 0 || math.IsNaN(level) {
		return 0
	}
	return min((level-from)/(1-from), maxSlow)
}

// duty is the share of time a worker works at slowness x.
func duty(x float64) float64 { return (1 - x) * (1 - x) }

// restAfter is the rest after a chunk that took took, at slowness x.
func restAfter(took time.Duration, x float64) time.Duration {
	if x <= 0 || took <= 0 {
		return 0
	}
	return time.Duration(float64(took) * (1/duty(x) - 1))
}

// chunkTarget is the target chunk time at slowness x, for a configured
// target.
func chunkTarget(target time.Duration, x float64) time.Duration {
	if x <= 0 {
		return target
	}
	f := (1 - x) * (1 - x)
	return max(min(time.Duration(float64(target)*f*f), maxSlowChunkTime), min(target, minSlowChunkTime))
}

// observe folds a read's highest utilisation (of signal name) into the
// level. Called with readMu held.
func (t *Throttler) observe(util float64, name string) {
	if math.IsNaN(util) || math.IsInf(util, 0) {
		return
	}
	if !t.leveled {
		t.level, t.leveled = util, true
	} else {
		t.level = levelWeight*util + (1-levelWeight)*t.level
	}
	t.levelOf = name
}

// Slowness is how much the workers slow down now: 0 is full speed, up
// to 0.95; the share of time they work is (1 − Slowness)².
func (t *Throttler) Slowness() float64 {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	return slowness(t.level, t.cfg.SlowFrom)
}

// slowReason says why the workers slow down at slowness x.
func (t *Throttler) slowReason(x float64) string {
	t.readMu.Lock()
	level, name := t.level, t.levelOf
	t.readMu.Unlock()
	return fmt.Sprintf("slowing down: %s at %.0f%% of its max (slow-down from %.0f%%), working %.0f%% of the time in chunks of at most %s",
		name, 100*level, 100*t.cfg.SlowFrom, 100*duty(x), chunkTarget(t.cfg.ChunkTime, x).Round(time.Millisecond))
}

// rest sleeps after a chunk that took took, as the slow-down asks, in
// steps of at most Interval with between called before each (a chunk
// boundary). It returns when started the rest began (zero: no rest).
func (t *Throttler) rest(ctx context.Context, id int64, took time.Duration, between func() error) (time.Time, error) {
	x := t.Slowness()
	d := restAfter(took, x)
	if d <= 0 {
		return time.Time{}, nil
	}
	started := t.now()
	t.setReason(id, t.slowReason(x), started)
	for left := d; left > 0; {
		if between != nil {
			if err := between(); err != nil {
				return started, err
			}
		}
		step := min(left, t.cfg.Interval)
		if err := t.sleep(ctx, step); err != nil {
			return started, err
		}
		left -= step
	}
	return started, nil
}
