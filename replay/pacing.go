package replay

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// Pacing says how fast a replay delivers. The zero value delivers as fast
// as the handler takes the events. Pacing applies to the events delivered,
// after the filters.
type Pacing struct {
	// Speed replays at the original timing divided by Speed: 1 keeps the
	// gaps between the events' RecordedAt, 2 halves them, 0.5 doubles
	// them. The first delivered event sets the origin. A handler slower
	// than the schedule is not caught up with a burst beyond what the
	// schedule allows: events late already are delivered at once, in order.
	// 0 means no timing.
	Speed float64
	// Rate delivers at most Rate events per second (a token bucket,
	// golang.org/x/time/rate). 0 means no limit.
	Rate float64
	// Burst is how many events Rate lets through at once. Defaults to 1.
	Burst int
}

// The range of Pacing.Speed and Pacing.Rate (0 aside, which means no
// pacing). Below MinSpeed a gap of seconds between two events becomes
// weeks, and the waits of a slower speed overflow time.Duration (292
// years) for gaps of hours; a speed or rate smaller still was taken as
// no pacing at all. Above the maximum pacing is no longer measurable.
const (
	MinSpeed = 1e-6
	MaxSpeed = 1e12
	MinRate  = 1e-6
	MaxRate  = 1e12
)

// SpeedReason and RateReason say what a speed or a rate must be.
var (
	SpeedReason = fmt.Sprintf("must be a positive decimal number from %s to %s: 1 is the original timing, 2 twice as fast, 0.5 half as fast",
		strconv.FormatFloat(MinSpeed, 'f', -1, 64), strconv.FormatFloat(MaxSpeed, 'f', -1, 64))
	RateReason = fmt.Sprintf("must be a positive decimal number of events per second, from %s to %s",
		strconv.FormatFloat(MinRate, 'f', -1, 64), strconv.FormatFloat(MaxRate, 'f', -1, 64))
)

// Validate checks the pacing; mistakes are reported as an *Error.
func (p *Pacing) Validate() error {
	bad := func(v, lo, hi float64) bool { return math.IsNaN(v) || v != 0 && (v < lo || v > hi) || v < 0 }
	switch {
	case bad(p.Speed, MinSpeed, MaxSpeed):
		return &Error{Field: "speed", Value: strconv.FormatFloat(p.Speed, 'g', -1, 64), Err: ErrBadPacing, Reason: SpeedReason}
	case bad(p.Rate, MinRate, MaxRate):
		return &Error{Field: "rate", Value: strconv.FormatFloat(p.Rate, 'g', -1, 64), Err: ErrBadPacing, Reason: RateReason}
	case p.Speed > 0 && p.Rate > 0:
		return &Error{Field: "pacing", Err: ErrBadPacing, Reason: "give either a speed or a rate, not both"}
	case p.Burst < 0:
		return &Error{Field: "burst", Value: fmt.Sprint(p.Burst), Err: ErrBadPacing, Reason: "must not be negative"}
	}
	return nil
}

// pacer delays deliveries as a Pacing says. Its clock and sleep are fields
// so that tests check the schedule it asks for, never wall-clock time.
type pacer struct {
	speed   float64
	lim     *rate.Limiter
	started bool
	origin  time.Time // RecordedAt of the first delivered event
	start   time.Time // when it was delivered
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
}

// newPacer returns nil for as fast as possible, so that the hot loop pays
// one nil check.
func newPacer(p Pacing) *pacer {
	if p.Speed == 0 && p.Rate == 0 {
		return nil
	}
	pc := &pacer{speed: p.Speed, now: time.Now, sleep: sleep}
	if p.Rate > 0 {
		pc.lim = rate.NewLimiter(rate.Limit(p.Rate), max(p.Burst, 1))
	}
	return pc
}

// due is when an event recorded at recordedAt is to be delivered.
func (p *pacer) due(recordedAt time.Time) time.Time {
	// Saturated in float64 and converted only when it fits: converting a
	// float64 of 2^63 or more to time.Duration is undefined in Go (amd64
	// makes it the most negative duration, which made every later event
	// due at once).
	gap := float64(recordedAt.Sub(p.origin)) / p.speed
	switch {
	case gap >= maxWait:
		return p.start.Add(math.MaxInt64)
	case gap <= -maxWait:
		return p.start.Add(math.MinInt64)
	}
	return p.start.Add(time.Duration(gap))
}

// maxWait is 2^63 ns as a float64: the first gap time.Duration cannot hold.
const maxWait = float64(1 << 63)

// wait blocks until the event recorded at recordedAt may be delivered.
func (p *pacer) wait(ctx context.Context, recordedAt time.Time) error {
	now := p.now()
	if p.lim != nil {
		r := p.lim.ReserveN(now, 1)
		return p.sleep(ctx, r.DelayFrom(now))
	}
	if !p.started {
		p.started, p.origin, p.start = true, recordedAt, now
		return nil
	}
	return p.sleep(ctx, p.due(recordedAt).Sub(now))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
