package consumer

import (
	"context"
	"errors"
	"slices"

	"github.com/rewindhq/rewind"
)

// The priority lane: in a group without order that names priority types,
// a second subscription reads ahead of the main reader for events of those
// types only, so that they are delivered ahead of the whole backlog, not
// only ahead of the events held in memory. It may hold a quarter of
// MaxPending events (in flight or done) ahead of the main reader, which
// skips them when it gets there.
//
// An event the lane took is done as the span (p-1, p]: only itself. Its
// commits and snapshots say so like any other, and after a restart both
// readers skip it.

// laneFilter says whether g has a lane, and its filter.
func (g *group) laneFilter() (bool, rewind.Filter) {
	if g.ordered || len(g.cfg.Priority) == 0 {
		return false, rewind.Filter{}
	}
	types := slices.Clone(g.cfg.Priority)
	if len(g.cfg.Filter.Types) > 0 {
		types = slices.DeleteFunc(types, func(t string) bool { return !slices.Contains(g.cfg.Filter.Types, t) })
	}
	if len(types) == 0 {
		return false, rewind.Filter{}
	}
	return true, rewind.Filter{StreamPrefix: g.cfg.Filter.StreamPrefix, Types: types}
}

// laneMax is how many events the lane may hold ahead of the main reader.
func (g *group) laneMax() int { return max(1, g.cfg.MaxPending/4) }

func (g *group) laneLoop(ctx context.Context, after rewind.Position, f rewind.Filter, done chan struct{}) {
	defer close(done)
	sub, err := g.e.store.Subscribe(ctx, rewind.SubscribeOptions{After: after, Filter: f})
	if err != nil {
		g.readFailed(ctx, err)
		return
	}
	defer sub.Close()
	for {
		if err := g.waitLaneRoom(ctx); err != nil {
			return
		}
		ev, err := sub.Next(ctx)
		if errors.Is(err, rewind.ErrCorruption) {
			return // the main reader meets the same damage, and reports it
		}
		if err != nil {
			g.readFailed(ctx, err)
			return
		}
		c := ev.Clone()
		g.mu.Lock()
		if ctx.Err() != nil {
			g.mu.Unlock()
			return
		}
		g.laneTake(&c)
		g.signal()
		g.mu.Unlock()
	}
}

// laneTake admits ev ahead of the main reader, unless the main reader has
// it already or the records say it is done or parked.
func (g *group) laneTake(ev *rewind.RecordedEvent) {
	p := ev.Position
	if p <= g.cursor || g.bounded && p > g.end || isSystem(ev.Stream) || g.laneTaken[p] || g.recovered.has(p) {
		return
	}
	if _, ok := g.parked.Get(p); ok {
		return
	}
	g.laneTaken[p] = true
	g.admit(ev, p-1)
}

func (g *group) waitLaneRoom(ctx context.Context) error {
	for {
		g.mu.Lock()
		if len(g.laneTaken) < g.laneMax() {
			g.mu.Unlock()
			return nil
		}
		ch := g.waitCh()
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// laneDone returns the spans of the events the lane took that are done.
func (g *group) laneDone() []span {
	var out []span
	for p := range g.laneTaken {
		if _, held := g.entries.Get(p); !held {
			out = append(out, span{From: p - 1, To: p})
		}
	}
	return out
}
