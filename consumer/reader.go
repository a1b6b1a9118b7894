package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rewindhq/rewind"
)

// The reader is one subscription per group, from the group's floor: it
// takes the matching events into memory while the group holds fewer than
// MaxPending, and waits otherwise, so a group never buffers without bound.
// After a restart it skips what the records say is done or parked.

const readBatch = 256

func (g *group) startReader() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.mu.Lock()
	g.readerCancel, g.readerDone = cancel, done
	after := g.cursor
	lane, laneFilter := g.laneFilter()
	g.mu.Unlock()
	mainDone := make(chan struct{})
	if g.bounded {
		go g.readBounded(ctx, after, mainDone)
	} else {
		go g.readLoop(ctx, after, mainDone)
	}
	if !lane {
		go func() { <-mainDone; close(done) }()
		return
	}
	laneDone := make(chan struct{})
	go g.laneLoop(ctx, after, laneFilter, laneDone)
	go func() { <-mainDone; <-laneDone; close(done) }()
}

func (g *group) stopReader() {
	g.mu.Lock()
	cancel, done := g.readerCancel, g.readerDone
	g.readerCancel, g.readerDone = nil, nil
	g.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (g *group) readLoop(ctx context.Context, after rewind.Position, done chan struct{}) {
	defer close(done)
	sub, err := g.e.store.Subscribe(ctx, rewind.SubscribeOptions{After: after, Filter: g.cfg.Filter})
	if err != nil {
		g.readFailed(ctx, err)
		return
	}
	defer sub.Close()
	poller, _ := sub.(rewind.Poller)
	// Copies of the events (the subscription reuses its buffers); admit
	// copies each into its entry, so the slice is reused.
	batch := make([]rewind.RecordedEvent, 0, readBatch)
	for {
		room, err := g.waitRoom(ctx)
		if err != nil {
			return
		}
		ev, err := sub.Next(ctx)
		if err != nil {
			if errors.Is(err, rewind.ErrCorruption) {
				// Everything before the damage is taken (or not the
				// group's): the cursor moves up to it.
				g.mu.Lock()
				g.cursor = max(g.cursor, sub.Position())
				g.mu.Unlock()
			}
			g.readFailed(ctx, err)
			return
		}
		batch = append(batch[:0], ev.Clone())
		for poller != nil && len(batch) < min(room, readBatch) {
			ev, err := poller.TryNext()
			if err != nil || ev == nil {
				break // an error comes back from Next
			}
			batch = append(batch, ev.Clone())
		}
		g.mu.Lock()
		if ctx.Err() != nil {
			g.mu.Unlock()
			return
		}
		for i := range batch {
			g.take(&batch[i])
		}
		g.cursor = max(g.cursor, sub.Position())
		g.signal()
		g.mu.Unlock()
	}
}

// readBounded is the reader of a bounded group: it reads the log in pages
// from after through the group's end, never beyond, and stops there. Its
// end is in the log already (CreateGroup checked), so the read never waits
// for appends; once it is done the cursor is the end, and the group is
// complete when the events it holds are done.
func (g *group) readBounded(ctx context.Context, after rewind.Position, done chan struct{}) {
	defer close(done)
	batch := make([]rewind.RecordedEvent, 0, readBatch)
	for after < g.end {
		room, err := g.waitRoom(ctx)
		if err != nil {
			return
		}
		limit := min(room, readBatch)
		batch = batch[:0]
		from := after + 1
		if after == 0 {
			from = 0 // the first position the log still holds
		}
		var readErr error
		for ev, err := range g.e.store.ReadAll(ctx, rewind.ReadAllOptions{From: from, Filter: g.cfg.Filter, Limit: limit}) {
			if err != nil {
				readErr = err
				break
			}
			if ev.Position > g.end {
				break
			}
			batch = append(batch, ev.Clone())
		}
		// A short page passed the end (or the last event of the filter
		// before it): everything through the end is read.
		next := g.end
		var ce *rewind.CorruptionError
		switch {
		case readErr != nil && !errors.As(readErr, &ce):
			g.readFailed(ctx, readErr)
			return
		case readErr != nil:
			// The events before the damage are taken, and the cursor
			// moves up to it (those between were not the group's).
			next = after
			if len(batch) > 0 {
				next = batch[len(batch)-1].Position
			}
			if ce.Position > next {
				next = min(ce.Position-1, g.end)
			}
		case len(batch) == limit:
			next = batch[len(batch)-1].Position
		}
		g.mu.Lock()
		if ctx.Err() != nil {
			g.mu.Unlock()
			return
		}
		for i := range batch {
			g.take(&batch[i])
		}
		g.cursor = max(g.cursor, next)
		g.signal()
		g.mu.Unlock()
		if readErr != nil {
			g.readFailed(ctx, readErr)
			return
		}
		after = next
	}
}

// take admits ev unless the group skips it: the engine's own streams,
// and after a restart what is done or parked already.
func (g *group) take(ev *rewind.RecordedEvent) {
	p := ev.Position
	if isSystem(ev.Stream) {
		return
	}
	prev := g.prev
	g.prev = p
	if g.laneTaken[p] {
		delete(g.laneTaken, p) // the priority lane took it already
		return
	}
	if g.recovered.contains(p) {
		delete(g.recAttempts, p)
		return
	}
	if _, ok := g.parked.Get(p); ok {
		delete(g.recAttempts, p)
		return
	}
	g.admit(ev, prev)
}

// waitRoom waits until the group may hold more events and returns how many.
func (g *group) waitRoom(ctx context.Context) (int, error) {
	for {
		g.mu.Lock()
		room := g.cfg.MaxPending - g.entries.Len()
		if room > 0 {
			g.mu.Unlock()
			return room, nil
		}
		ch := g.waitCh()
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// readFailed records why the reader stopped, unless it was told to.
// Damage (a *rewind.CorruptionError) does not fail the group: it goes on
// delivering and acking the events it read before it, and fetches fail
// with ErrLogDamaged once none is left (see fetchUntil).
func (g *group) readFailed(ctx context.Context, err error) {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failed != nil || g.deleted {
		return
	}
	if errors.Is(err, rewind.ErrCorruption) {
		if g.damaged == nil {
			g.damaged = g.damageError(err)
			g.signal()
		}
		return
	}
	g.failed = &Error{Op: "read", Group: g.name, Err: ErrGroupFailed,
		Reason: "reading the log failed: " + err.Error()}
	g.signal()
}

// damageError is the error of a group whose reader met the damage err.
func (g *group) damageError(err error) *Error {
	at := "after the damaged position"
	if ce := (*rewind.CorruptionError)(nil); errors.As(err, &ce) && ce.Position > 0 {
		at = fmt.Sprintf("to position %d", ce.Position)
	}
	return &Error{Op: "read", Group: g.name, Err: ErrLogDamaged, Reason: strings.TrimPrefix(err.Error(), "rewind: ") +
		"; the group delivers every event before it and none after it: to go on past it, reset the group " + at +
		" (the damaged event is skipped), or restore the segment from a backup and reopen the store"}
}

// drained reports whether the group holds nothing it could still hand
// out: no event held (ready, in flight or delayed), none a replay of
// parked events handed back, and no replay under way. Called with g.mu
// held.
func (g *group) drained() bool {
	return g.entries.Len() == 0 && len(g.replaying) == 0 && !g.replay.active
}
