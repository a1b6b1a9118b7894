package consumer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
)

// ResetOptions says where to move a group's ack floor. Exactly one of
// ToPosition (with ToPositionSet), ToTime, ByDuration or ShiftBy is given.
type ResetOptions struct {
	// ToPosition moves the floor to this position: the group then delivers
	// the events after it. Set ToPositionSet too (0 is the beginning).
	ToPosition    rewind.Position
	ToPositionSet bool
	// ToTime moves the floor before the first event recorded at or after it.
	ToTime time.Time
	// ByDuration moves the floor before the first event recorded at or
	// after now minus it.
	ByDuration time.Duration
	// ShiftBy moves the floor by this many of the group's events: back
	// (redelivering them) when negative, forward (skipping them) when
	// positive.
	ShiftBy int64
	// Execute applies the reset; without it Reset only returns the plan.
	Execute bool
}

// maxPlanCount caps how many events a plan counts.
const maxPlanCount = 10_000_000

// ResetPlan says what a reset does.
type ResetPlan struct {
	Group string `json:"group"`
	// From is the ack floor now, To the floor after the reset.
	From rewind.Position `json:"from"`
	To   rewind.Position `json:"to"`
	// Redeliver counts the group's events after To that were delivered
	// (handed to a member: done, in flight, or waiting for a redelivery)
	// and would be delivered again (a move back); events the group read
	// ahead of its members and never handed out are not counted, nor
	// those not read yet, nor those it skipped (before its start, or by
	// an executed reset forward): those would be delivered for the first
	// time. A reset back makes the events after its target undelivered
	// until they are delivered again. Skip counts those after the floor up to To that
	// are not done and would never be delivered (a move forward); events
	// done already above the floor (acked out of order) are not counted.
	// Counts stop at 10,000,000 (CountCapped). Redeliver leaves out the
	// parked events of that range: a reset keeps them parked, they are
	// counted in Parked (and never in Skip).
	Redeliver   int64 `json:"redeliver"`
	Skip        int64 `json:"skip"`
	Parked      int64 `json:"parked"`
	CountCapped bool  `json:"count_capped,omitempty"`
	// InFlight counts the deliveries a reset makes stale: their events are
	// delivered again from the new floor if they are after it.
	InFlight int  `json:"in_flight"`
	Executed bool `json:"executed"`
	// Clamped is set when the target was below a bounded group's window:
	// To is then the window's start (the position the group delivers
	// after), and Note says so. A bounded group never goes below its start.
	Clamped bool   `json:"clamped,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Reset moves a group's ack floor, or with opts.Execute unset only says
// what moving it would do. Applying it drops every outstanding delivery
// (acks for them fail as stale), keeps the parked events, and delivers the
// group's events after the new floor.
func (e *Engine) Reset(ctx context.Context, name string, opts ResetOptions) (ResetPlan, error) {
	g, err := e.group("reset", name)
	if err != nil {
		return ResetPlan{}, err
	}
	target, err := e.resetTarget(ctx, g, opts)
	if err != nil {
		return ResetPlan{}, err
	}
	var clamped bool
	var start rewind.Position
	if g.bounded {
		// A bounded group delivers its window only: events at or before
		// its start are outside it, whatever the reset says.
		if start, err = e.resolveStart(ctx, g.cfg.Start); err != nil {
			return ResetPlan{}, err
		}
		if target < start {
			target, clamped = start, true
		}
	}
	g.mu.Lock()
	plan := ResetPlan{Group: name, From: g.floor(), To: target, InFlight: len(g.inflight), Clamped: clamped}
	if clamped {
		plan.Note = fmt.Sprintf("the target is before the bounded group's window, which starts after position %d: "+
			"the floor moves to %d, the window's start, and no further back", start, start)
	}
	// Above the floor the group knows, event by event, what it handed
	// out: its read position is not that (a server's engine reads ahead
	// of its members, up to MaxPending), so counting up to it counted
	// events never delivered as delivered again. At or below the floor
	// everything was handed out but what the group skipped (its start,
	// resets forward).
	var damaged []rewind.Position
	done, delivered := g.doneAbove(plan.From, true)
	parked := g.parkedAfter(min(target, plan.From))
	skipped := doneSet{spans: slices.Clone(g.skipped)}
	g.mu.Unlock()
	if target < plan.From {
		to := plan.From
		if n := len(delivered); n > 0 {
			to = max(to, delivered[n-1].To)
		}
		if g.bounded {
			// A floor past the end (a reset forward past it) redelivers
			// only the window: the group delivers nothing after its end.
			to = min(to, g.end)
		}
		set := doneSet{spans: delivered}
		plan.Redeliver, plan.CountCapped, damaged, err = e.countEvents(ctx, g, target, to, func(p rewind.Position) bool {
			return !parked.contains(p) && (p <= plan.From && !skipped.contains(p) || set.contains(p))
		})
		plan.Parked = g.parkedIn(target, to)
	} else {
		to := target
		if g.bounded {
			to = max(plan.From, min(target, g.end)) // a bounded group would not deliver those after its end anyway
		}
		set := doneSet{spans: done}
		plan.Skip, plan.CountCapped, damaged, err = e.countEvents(ctx, g, plan.From, to, func(p rewind.Position) bool {
			return !parked.contains(p) && !set.contains(p)
		})
	}
	if len(damaged) > 0 {
		if plan.Note != "" {
			plan.Note += "; "
		}
		plan.Note += damagedNote(damaged, target < plan.From)
	}
	if err != nil || !opts.Execute {
		return plan, err
	}
	g.stopReader()
	g.mu.Lock()
	plan.InFlight = len(g.inflight)
	g.skipped = g.skippedAfterReset(target)
	g.clear()
	g.damaged = nil // the reader starts again from the new floor
	g.cursor, g.prev = target, target
	g.wantSnapshot = true
	g.signal()
	g.mu.Unlock()
	if err := g.commit(ctx, true); err != nil {
		return plan, err
	}
	g.startReader()
	plan.Executed = true
	return plan, nil
}

func (e *Engine) resetTarget(ctx context.Context, g *group, opts ResetOptions) (rewind.Position, error) {
	given := 0
	for _, set := range []bool{opts.ToPositionSet, !opts.ToTime.IsZero(), opts.ByDuration != 0, opts.ShiftBy != 0} {
		if set {
			given++
		}
	}
	if given != 1 {
		return 0, bad("reset", fmt.Sprintf("%d targets", given),
			"give exactly one of to-position, to-time, by-duration or shift-by")
	}
	last, err := e.lastPosition(ctx)
	if err != nil {
		return 0, err
	}
	switch {
	case opts.ToPositionSet:
		if opts.ToPosition > last {
			return 0, bad("reset position", opts.ToPosition, fmt.Sprintf("is after the end of the log (%d)", last))
		}
		return opts.ToPosition, nil
	case opts.ByDuration < 0:
		return 0, bad("reset by duration", opts.ByDuration, "must be positive (how far back)")
	case opts.ByDuration > 0:
		return e.resolveStart(ctx, Start{Kind: StartTime, Time: e.cfg.Now().Add(-opts.ByDuration)})
	case !opts.ToTime.IsZero():
		return e.resolveStart(ctx, Start{Kind: StartTime, Time: opts.ToTime})
	}
	g.mu.Lock()
	floor := g.floor()
	g.mu.Unlock()
	if opts.ShiftBy < 0 && g.bounded {
		// Back by the group's events: those after its end are not.
		floor = min(floor, g.end)
	}
	if opts.ShiftBy > 0 {
		return e.shiftForward(ctx, g, floor, opts.ShiftBy)
	}
	back := -opts.ShiftBy
	if opts.ShiftBy == math.MinInt64 { // has no positive: as far back as the log goes
		back = math.MaxInt64
	}
	return e.shiftBack(ctx, g, floor, back)
}

// matches reports whether the group delivers ev.
func (g *group) matches(ev *rewind.RecordedEvent) bool {
	return g.cfg.Filter.Match(ev) && !isSystem(ev.Stream)
}

// shiftForward returns the position of the n-th of the group's events
// after floor (the log's end if there are fewer).
func (e *Engine) shiftForward(ctx context.Context, g *group, floor rewind.Position, n int64) (rewind.Position, error) {
	to := floor
	for ev, err := range e.store.ReadAll(ctx, rewind.ReadAllOptions{From: floor + 1, Filter: g.cfg.Filter}) {
		if err != nil {
			return 0, err
		}
		to = ev.Position
		if g.matches(ev) {
			if n--; n == 0 {
				return to, nil
			}
		}
	}
	return to, nil
}

// shiftBack returns the position just before the n-th of the group's
// events back from floor (0 if there are fewer), reading windows of the
// log that double in size.
func (e *Engine) shiftBack(ctx context.Context, g *group, floor rewind.Position, n int64) (rewind.Position, error) {
	for window := rewind.Position(1024); ; window *= 2 {
		lo := rewind.Position(0)
		if floor > window {
			lo = floor - window
		}
		var ps []rewind.Position
		for ev, err := range e.store.ReadAll(ctx, rewind.ReadAllOptions{From: lo + 1, Filter: g.cfg.Filter}) {
			if err != nil {
				return 0, err
			}
			if ev.Position > floor {
				break
			}
			if g.matches(ev) {
				ps = append(ps, ev.Position)
			}
		}
		if int64(len(ps)) >= n {
			return ps[int64(len(ps))-n] - 1, nil
		}
		if lo == 0 {
			return 0, nil
		}
	}
}

// parkedIn counts the parked events in (from, to].
func (g *group) parkedIn(from, to rewind.Position) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n int64
	g.parked.Ascend(from+1, func(p rewind.Position, _ *ParkedEntry) bool {
		if p > to {
			return false
		}
		n++
		return true
	})
	return n
}

// doneAbove returns the spans of positions above floor that are done
// (acked, parked, done at delivery, or not the group's), and with
// delivered also those of the events held with a delivery behind them
// (in flight, or failed and waiting for the next one), each merged and in
// order. The caller holds g.mu.
func (g *group) doneAbove(floor rewind.Position, delivered bool) (done, handed []span) {
	// As a commit writes it: between the floor and the cursor everything
	// is done but the events held; beyond the cursor what the records
	// said before a restart and what the priority lane took and finished.
	from := floor
	g.entries.Scan(func(p rewind.Position, e *entry) bool {
		if p <= g.cursor {
			if p-1 > from {
				done = append(done, span{From: from, To: p - 1})
			}
			from = p
		}
		if delivered && e.attempts > 0 {
			handed = append(handed, span{From: p - 1, To: p})
		}
		return true
	})
	if g.cursor > from {
		done = append(done, span{From: from, To: g.cursor})
	}
	done = append(done, g.recovered.above(g.cursor)...)
	done = mergeSpans(append(done, g.laneDone()...))
	if !delivered {
		return done, nil
	}
	// Failed deliveries the records kept, of events not read again yet.
	for p := range g.recAttempts {
		if p > floor {
			handed = append(handed, span{From: p - 1, To: p})
		}
	}
	return done, mergeSpans(append(handed, done...))
}

// skippedAfterReset returns the group's skipped spans once a reset moved
// its floor to target: back, those up to target (the group delivers the
// events after it); forward, also the positions up to target whose events
// were not handed to a member (read ahead, or not read yet). The caller
// holds g.mu, before the reset clears what the group holds.
func (g *group) skippedAfterReset(target rewind.Position) []span {
	floor := g.floor()
	var out []span
	for _, s := range g.skipped {
		if s.From < target {
			out = append(out, span{From: s.From, To: min(s.To, target)})
		}
	}
	if target <= floor {
		return out
	}
	_, handed := g.doneAbove(floor, true)
	return mergeSpans(append(out, gaps(floor, target, handed)...))
}

// gaps returns the parts of (from, to] that no span of covered (merged,
// in order) holds.
func gaps(from, to rewind.Position, covered []span) []span {
	var out []span
	at := from
	for _, c := range covered {
		if c.To <= at {
			continue
		}
		if c.From >= to {
			break
		}
		if c.From > at {
			out = append(out, span{From: at, To: c.From})
		}
		at = c.To
	}
	if at < to {
		out = append(out, span{From: at, To: to})
	}
	return out
}

// parkedAfter returns the positions of the parked events after p, as a
// set for positions given in order. The caller holds g.mu.
func (g *group) parkedAfter(p rewind.Position) doneSet {
	var s []span
	g.parked.Ascend(p+1, func(q rewind.Position, _ *ParkedEntry) bool {
		s = append(s, span{From: q - 1, To: q})
		return true
	})
	return doneSet{spans: s}
}

// maxDamagedCounted caps how many damaged positions a plan steps over
// while it counts; beyond, the count fails with the damage.
const maxDamagedCounted = 1000

// countEvents counts the group's events in (from, to] for which count
// (given their positions in order) is true. A damaged record cannot be
// counted: the count steps over it and returns its position in damaged.
func (e *Engine) countEvents(ctx context.Context, g *group, from, to rewind.Position,
	count func(rewind.Position) bool) (n int64, capped bool, damaged []rewind.Position, err error) {
	if to <= from {
		return 0, false, nil, nil
	}
	for next := from + 1; ; {
		resume := rewind.Position(0)
		for ev, err := range e.store.ReadAll(ctx, rewind.ReadAllOptions{From: next, Filter: g.cfg.Filter}) {
			var ce *rewind.CorruptionError
			switch {
			case err == nil:
			case errors.As(err, &ce) && ce.Position > to:
				return n, false, damaged, nil // everything up to to is counted
			case errors.As(err, &ce) && ce.Position >= next && len(damaged) < maxDamagedCounted:
				damaged = append(damaged, ce.Position)
				resume = ce.Position + 1
			default:
				return n, false, damaged, err
			}
			if resume != 0 || ev.Position > to {
				break
			}
			if g.matches(ev) && count(ev.Position) {
				if n++; n >= maxPlanCount {
					return n, true, damaged, nil
				}
			}
		}
		if resume == 0 || resume > to {
			return n, false, damaged, nil
		}
		next = resume
	}
}

// damagedNote says which positions a plan could not count, and what
// becomes of them: a move forward skips them, a move back takes the group
// to them again, where its reader stops (status damaged).
func damagedNote(damaged []rewind.Position, back bool) string {
	list := make([]string, 0, min(len(damaged), 10))
	for _, p := range damaged[:min(len(damaged), 10)] {
		list = append(list, fmt.Sprint(p))
	}
	if len(damaged) == 1 {
		if back {
			return "position " + list[0] + " is damaged and not counted: the group delivers again up to it, and " +
				"stops there again (status damaged)"
		}
		return "position " + list[0] + " is damaged and not counted: the group skips it, with its event if it is " +
			"the group's"
	}
	what := "positions " + strings.Join(list, ", ")
	if len(damaged) > 10 {
		what += fmt.Sprintf(" and %d more", len(damaged)-10)
	}
	if back {
		return what + " are damaged and not counted: the group delivers again up to the first, and stops there " +
			"again (status damaged)"
	}
	return what + " are damaged and not counted: the group skips them, with any event of its own they held"
}
