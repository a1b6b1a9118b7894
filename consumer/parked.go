package consumer

import (
	"context"

	"github.com/rewindhq/rewind"
)

// Parked events stay parked, durably, until a replay hands them back and
// a member acks them, or until they are purged. A replay hands back at
// most ReplayChunk at a time, the next ones as those are done; each gets
// one delivery, and one that fails again (nak, ack wait, term, member
// gone) is parked again with its attempts added up, never retried
// without end.

// ParkedOptions pages through the parked events of a group.
type ParkedOptions struct {
	// After lists parked events after this position.
	After rewind.Position
	// Limit caps the events returned. Defaults to 100; at most 10,000.
	Limit int
}

// Parked lists a group's parked events in position order.
func (e *Engine) Parked(_ context.Context, name string, opts ParkedOptions) ([]ParkedEntry, error) {
	if opts.Limit == 0 {
		opts.Limit = 100
	}
	if opts.Limit < 0 || opts.Limit > 10_000 {
		return nil, bad("limit", opts.Limit, "must be between 1 and 10000")
	}
	g, err := e.group("parked", name)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []ParkedEntry
	g.parked.Ascend(opts.After+1, func(_ rewind.Position, p *ParkedEntry) bool {
		out = append(out, *p)
		return len(out) < opts.Limit
	})
	return out, nil
}

// ReplayOptions says which parked events a replay hands back.
type ReplayOptions struct {
	// Through is the last position replayed; 0 replays every parked event.
	Through rewind.Position
}

// ReplayParked starts handing a group's parked events back to its
// members, in chunks, and returns how many it will hand back: those
// parked now, through opts.Through. Asking again while a replay runs
// extends it to what is parked then. A replay is not resumed after a restart:
// the events it had not finished are still parked; start it again.
func (e *Engine) ReplayParked(_ context.Context, name string, opts ReplayOptions) (int, error) {
	g, err := e.group("replay", name)
	if err != nil {
		return 0, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failed != nil {
		return 0, g.failed
	}
	stop := opts.Through
	if stop == 0 {
		stop = ^rewind.Position(0)
	}
	if g.replay.active {
		stop = max(stop, g.replay.stop)
	}
	// The replay takes the events parked now, not those parked later
	// (those that fail again included).
	g.replay = replayState{active: true, stop: stop, maxSeq: g.parkSeq}
	n := 0
	g.parked.Scan(func(p rewind.Position, pe *ParkedEntry) bool {
		if p > g.replay.stop {
			return false
		}
		if g.replayCandidate(p, pe) {
			n++
		}
		return true
	})
	if n == 0 && len(g.replaying) == 0 {
		g.replay.active = false
	}
	g.pokeReplay()
	return n, nil
}

// PurgeOptions says which parked events a purge removes.
type PurgeOptions struct {
	// Through is the last position purged; 0 purges every parked event.
	Through rewind.Position
}

// PurgeParked removes a group's parked events (except those a replay has
// handed back and that are not done yet) and returns how many it removed.
func (e *Engine) PurgeParked(ctx context.Context, name string, opts PurgeOptions) (int, error) {
	g, err := e.group("purge", name)
	if err != nil {
		return 0, err
	}
	g.mu.Lock()
	if g.failed != nil {
		g.mu.Unlock()
		return 0, g.failed
	}
	var gone []rewind.Position
	g.parked.Scan(func(p rewind.Position, _ *ParkedEntry) bool {
		if opts.Through != 0 && p > opts.Through {
			return false
		}
		if g.replaying[p] == nil {
			gone = append(gone, p)
		}
		return true
	})
	for _, p := range gone {
		g.parked.Delete(p)
	}
	g.buf.Unparked = append(g.buf.Unparked, gone...)
	if g.parked.Len() < g.cfg.MaxParked {
		g.parkedFull = false
	}
	g.signal()
	g.mu.Unlock()
	return len(gone), g.commit(ctx, false)
}

func (g *group) pokeReplay() {
	select {
	case g.replayWake <- struct{}{}:
	default:
	}
}

// replayed is called when a replayed event is done or parked again. The
// replay ends at once when nothing is left to hand back, so that it never
// takes events parked after it ran out.
func (g *group) replayed(*entry) {
	if len(g.replaying) == 0 && !g.replayLeft() {
		g.replay.active = false
		return
	}
	g.pokeReplay()
}

// replayCandidate reports whether the running replay is yet to hand back
// the parked event at p.
func (g *group) replayCandidate(p rewind.Position, pe *ParkedEntry) bool {
	return p <= g.replay.stop && pe.seq <= g.replay.maxSeq && g.replaying[p] == nil
}

// replayLeft reports whether the running replay has parked events left to
// hand back (those handed back are all at or before replay.after).
func (g *group) replayLeft() bool {
	left := false
	g.parked.Ascend(g.replay.after+1, func(p rewind.Position, pe *ParkedEntry) bool {
		left = g.replayCandidate(p, pe)
		return !left && p <= g.replay.stop
	})
	return left
}

// replayLoop hands back the next chunk of a running replay whenever there
// is room for it.
func (g *group) replayLoop(ctx context.Context) {
	defer g.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.replayWake:
		}
		for g.replayChunk(ctx) {
		}
	}
}

// replayChunk hands back the next parked events of the running replay, up
// to the chunk size, and reports whether it handed back any.
func (g *group) replayChunk(ctx context.Context) bool {
	g.mu.Lock()
	if !g.replay.active || g.failed != nil {
		g.mu.Unlock()
		return false
	}
	room := g.cfg.ReplayChunk - len(g.replaying)
	var next []rewind.Position
	g.parked.Ascend(g.replay.after+1, func(p rewind.Position, pe *ParkedEntry) bool {
		if p > g.replay.stop || len(next) >= room {
			return false
		}
		if g.replayCandidate(p, pe) {
			next = append(next, p)
		}
		return true
	})
	if len(next) == 0 {
		if len(g.replaying) == 0 && room > 0 {
			g.replay.active = false
		}
		g.mu.Unlock()
		return false
	}
	gen := g.replay
	g.mu.Unlock()
	evs := make([]*rewind.RecordedEvent, 0, len(next))
	for _, p := range next {
		ev, err := g.readAt(ctx, p)
		if err != nil {
			g.e.cfg.Logger.Warn("consumer: parked event cannot be read for a replay", "group", g.name,
				"position", p, "err", err)
		}
		evs = append(evs, ev)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.replay != gen {
		return false // a reset or another chunk came in between
	}
	for i, p := range next {
		g.replay.after = p
		if pe, ok := g.parked.Get(p); !ok || evs[i] == nil || !g.replayCandidate(p, pe) {
			continue
		}
		e := &entry{ev: evs[i], prev: p - 1, prio: g.prio[evs[i].Type], heapIdx: -1, replay: true}
		g.replaying[p] = e
		g.makeReady(e)
	}
	g.signal()
	return true
}

// readAt reads the event at position p.
func (g *group) readAt(ctx context.Context, p rewind.Position) (*rewind.RecordedEvent, error) {
	for ev, err := range g.e.store.ReadAll(ctx, rewind.ReadAllOptions{From: p, Limit: 1}) {
		if err != nil {
			return nil, err
		}
		if ev.Position != p {
			break
		}
		c := ev.Clone() // the store reuses ev
		return &c, nil
	}
	return nil, rewind.ErrStreamNotFound
}
