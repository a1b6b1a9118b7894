package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rewindhq/rewind"
)

// Group commit: acks, parks and delivery counts collect in the group's
// buffer, and one goroutine appends them to the state stream every
// CommitInterval (sooner when an at-most-once fetch waits) as one record.
// Every SnapshotEvery commits it writes a snapshot of the whole state
// instead, so that opening reads at most that many records.

// commitLoop runs until ctx ends.
func (g *group) commitLoop(ctx context.Context, urgent <-chan struct{}) {
	defer g.wg.Done()
	interval := g.e.cfg.CommitInterval
	if interval <= 0 {
		interval = time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-urgent:
		}
		// An append under way finishes: stopping waits for it.
		if err := g.commit(context.WithoutCancel(ctx), false); err != nil {
			g.e.cfg.Logger.Error("consumer group stopped: its commit failed", "group", g.name, "err", err)
			return
		}
	}
}

// commit writes what changed since the last commit (or, when snapshot is
// set or one is due, the whole state), and returns once it is durable.
func (g *group) commit(ctx context.Context, snapshot bool) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	g.mu.Lock()
	if g.failed != nil || g.deleted {
		err := g.failed
		g.mu.Unlock()
		return err
	}
	snapshot = snapshot || g.wantSnapshot || g.sinceSnap >= g.e.cfg.SnapshotEvery && !g.buf.empty()
	if !snapshot && g.buf.empty() {
		// A floor moved only over events the group skips is written once it
		// moved far: writing every move would make groups write each
		// time another group's commit moves the log.
		// A bounded group that just completed writes its floor at once, so
		// that it reopens complete.
		reachedEnd := g.bounded && g.floor() >= g.end && g.committedFloor < g.end
		if g.floor() < g.committedFloor+floorOnlyCommit && !reachedEnd {
			g.markCommitted(g.bufSeq - 1)
			g.mu.Unlock()
			return nil
		}
	}
	var events []rewind.Event
	var err error
	if snapshot {
		events, err = g.snapshotEvents()
	} else {
		events, err = g.commitEvents()
	}
	seq, expected := g.bufSeq, g.version
	g.buf = delta{}
	g.bufSeq++
	g.mu.Unlock()
	if err != nil {
		return g.fail(err)
	}
	version, err := g.appendRecords(ctx, expected, events)
	if err != nil {
		return g.fail(err)
	}
	g.mu.Lock()
	g.version = version
	g.committedFloor = g.pendingFloor
	if snapshot {
		g.sinceSnap, g.wantSnapshot = 0, false
	} else {
		g.sinceSnap++
	}
	g.markCommitted(seq)
	g.mu.Unlock()
	return nil
}

// markCommitted records that buffers up to seq are durable and wakes those
// waiting for it.
func (g *group) markCommitted(seq uint64) {
	if seq > g.committedSeq {
		g.committedSeq = seq
	}
	close(g.commitWake)
	g.commitWake = make(chan struct{})
}

// appendRecords appends events in order, in appends of at most
// appendBytes, and returns the stream's version after the last. A crash
// between two appends leaves a prefix: a commit's floor is in its last
// record, and a snapshot counts only once all its parts are there.
func (g *group) appendRecords(ctx context.Context, expected uint64, events []rewind.Event) (uint64, error) {
	for len(events) > 0 {
		n, size := 0, 0
		for n < len(events) && (n == 0 || size+len(events[n].Data) <= appendBytes) {
			size += len(events[n].Data)
			n++
		}
		res, err := g.appendState(ctx, expected, events[:n])
		if err != nil {
			return 0, err
		}
		expected, events = res.LastVersion, events[n:]
	}
	return expected, nil
}

// appendState appends events with the exact expected version, retrying
// with the same event ids (which the store deduplicates) while the outcome
// is unknown or the store is briefly unreachable.
func (g *group) appendState(ctx context.Context, expected uint64, events []rewind.Event) (rewind.AppendResult, error) {
	var err error
	for attempt := range 5 {
		var res rewind.AppendResult
		res, err = g.e.store.Append(ctx, g.stream, rewind.Exactly(expected), events...)
		if err == nil {
			return res, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	if errors.Is(err, rewind.ErrWrongExpectedVersion) {
		return rewind.AppendResult{}, fmt.Errorf("state stream %s was written by someone else (another engine?): %w",
			g.stream, err)
	}
	return rewind.AppendResult{}, fmt.Errorf("write state stream %s: %w", g.stream, err)
}

func retryable(err error) bool {
	switch rewind.CodeOf(err) {
	case rewind.CodeOutcomeUnknown, rewind.CodeInternal:
		return true
	}
	return false
}

// fail stops the group: its state can no longer be written, so nothing
// more is handed out or acked.
func (g *group) fail(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failed == nil {
		g.failed = &Error{Op: "commit", Group: g.name, Err: ErrGroupFailed,
			Reason: err.Error() + "; reopen the engine to resume from the last commit"}
	}
	close(g.commitWake)
	g.commitWake = make(chan struct{})
	g.signal()
	return g.failed
}

// commitEvents encodes the buffer as a commit record (more than one event,
// appended atomically, when it is large).
func (g *group) commitEvents() ([]rewind.Event, error) {
	d := g.buf
	d.Floor = g.floor()
	g.pendingFloor = d.Floor
	d.Done = mergeSpans(d.Done)
	parts := d.split()
	// The floor goes in the last record: it covers the acks and parks of
	// every record before it.
	parts[len(parts)-1].Floor = d.Floor
	var out []rewind.Event
	for _, part := range parts {
		ev, err := encodeEvent(typeCommit, &part)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// snapshotEvents encodes the whole state: the header, then parts with the
// done spans above the floor, the delivery counts, the parked events and
// the skipped spans.
func (g *group) snapshotEvents() ([]rewind.Event, error) {
	floor := g.floor()
	g.pendingFloor = floor
	var d delta
	d.Floor = floor
	// Between the floor and the cursor everything is done but the
	// outstanding events.
	from := floor
	g.entries.Scan(func(p rewind.Position, e *entry) bool {
		// Events the priority lane took beyond the cursor leave the
		// positions before them as they are.
		if p <= g.cursor {
			if p-1 > from {
				d.Done = append(d.Done, span{From: from, To: p - 1})
			}
			from = p
		}
		// Failed deliveries count; one in flight does not yet.
		n := e.attempts
		if e.state == stInFlight {
			n--
		}
		if n > 0 {
			d.Attempts = append(d.Attempts, attemptCount{Pos: p, N: n})
		}
		return true
	})
	if g.cursor > from {
		d.Done = append(d.Done, span{From: from, To: g.cursor})
	}
	d.Done = append(d.Done, g.recovered.above(g.cursor)...)
	d.Done = mergeSpans(append(d.Done, g.laneDone()...))
	for p, n := range g.recAttempts {
		d.Attempts = append(d.Attempts, attemptCount{Pos: p, N: n})
	}
	g.parked.Scan(func(_ rewind.Position, p *ParkedEntry) bool {
		d.Parked = append(d.Parked, *p)
		return true
	})
	d.Skipped = g.skipped
	parts := d.split()
	hdr := &snapshotHeader{Config: g.cfg, Floor: floor, Cursor: g.cursor, Parts: len(parts)}
	if g.bounded {
		hdr.End = &g.end
	}
	h, err := encodeEvent(typeSnapshot, hdr)
	if err != nil {
		return nil, err
	}
	out := []rewind.Event{h}
	for _, part := range parts {
		ev, err := encodeEvent(typeSnapshotPart, &part)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}
