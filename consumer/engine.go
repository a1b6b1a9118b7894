package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rewindhq/rewind"
)

// Engine runs the consumer groups of one store. It keeps each group's
// state in the store itself, through the rewind.Store contract only, so it
// works on every backend. One engine at a time may run a store's groups:
// a second one writing the same group is fenced out by the state stream's
// expected version, and the group it lost stops with ErrGroupFailed.
//
// Lock order: Engine.mu, then group.commitMu, then group.mu.
type Engine struct {
	store rewind.Store
	cfg   Config

	mu     sync.Mutex
	groups map[string]*group
	closed bool

	stop   context.CancelFunc
	wg     sync.WaitGroup
	nextID atomic.Uint64 // member ids
}

// Open starts an engine over store and resumes every group recorded in it.
func Open(ctx context.Context, store rewind.Store, cfg Config) (*Engine, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Engine{store: store, cfg: c, groups: map[string]*group{}}
	names, err := e.listStateStreams(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		g, err := e.load(ctx, name)
		if err != nil {
			e.Close(ctx)
			return nil, fmt.Errorf("consumer: open group %q: %w", name, err)
		}
		e.groups[name] = g
		e.start(g)
	}
	tctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	if !c.manualTicks {
		e.wg.Add(1)
		go e.tickLoop(tctx)
	}
	return e, nil
}

func (e *Engine) listStateStreams(ctx context.Context) ([]string, error) {
	var names []string
	after := ""
	for {
		infos, err := e.store.ListStreams(ctx, rewind.ListStreamsOptions{Prefix: stateStreamPrefix, After: after})
		if err != nil {
			return nil, fmt.Errorf("consumer: list groups: %w", err)
		}
		for _, in := range infos {
			names = append(names, strings.TrimPrefix(in.Stream, stateStreamPrefix))
		}
		if len(infos) < rewind.DefaultListStreamsLimit {
			return names, nil
		}
		after = infos[len(infos)-1].Stream
	}
}

// load reads a group's state stream back to its last snapshot.
func (e *Engine) load(ctx context.Context, name string) (*group, error) {
	stream := stateStreamPrefix + name
	var recs []rewind.RecordedEvent
	var from uint64
	found := false
	for !found {
		page, err := e.store.ReadStream(ctx, stream, rewind.ReadStreamOptions{From: from, Backward: true, Limit: 256})
		if err != nil {
			return nil, err
		}
		for i := range page {
			recs = append(recs, page[i])
			if page[i].Type == typeSnapshot && completeBackward(recs) {
				found = true
				break
			}
		}
		if found {
			break
		}
		if len(page) == 0 || page[len(page)-1].Version <= 1 {
			return nil, fmt.Errorf("%w: group state stream %s has no snapshot", rewind.ErrCorruption, stream)
		}
		from = page[len(page)-1].Version - 1
	}
	slices.Reverse(recs)
	r, err := decodeRecords(recs)
	if err != nil {
		return nil, err
	}
	g := newGroup(e, r.cfg)
	if r.end != nil {
		g.bounded, g.end = true, *r.end
	}
	g.version = recs[len(recs)-1].Version
	g.cursor, g.prev, g.committedFloor = r.floor, r.floor, r.floor
	g.recovered = doneSet{spans: r.done}
	g.skipped = r.skipped
	g.recAttempts = r.attempts
	for _, p := range r.parked {
		g.parkSeq++
		p.seq = g.parkSeq
		g.parked.Set(p.Position, &p)
	}
	return g, nil
}

// completeBackward reports whether the snapshot header last in recs (read
// backward) is followed by all its parts.
func completeBackward(recs []rewind.RecordedEvent) bool {
	var h snapshotHeader
	if json.Unmarshal(recs[len(recs)-1].Data, &h) != nil {
		return true // decodeRecords reports it
	}
	after := slices.Clone(recs[:len(recs)-1])
	slices.Reverse(after)
	return complete(after, h.Parts)
}

// start runs g's goroutines.
func (e *Engine) start(g *group) {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(1)
	if !e.cfg.manualCommits {
		g.wg.Add(1)
		go g.commitLoop(ctx, g.urgent)
	}
	go g.replayLoop(ctx)
	g.startReader()
}

func (e *Engine) tickLoop(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.tick()
		}
	}
}

// tick expires deliveries and makes due redeliveries ready in every group.
func (e *Engine) tick() {
	now := e.cfg.Now()
	for _, g := range e.snapshotGroups() {
		g.mu.Lock()
		if g.tick(now) {
			g.signal()
		}
		g.mu.Unlock()
	}
}

func (e *Engine) snapshotGroups() []*group {
	e.mu.Lock()
	defer e.mu.Unlock()
	gs := make([]*group, 0, len(e.groups))
	for _, g := range e.groups {
		gs = append(gs, g)
	}
	return gs
}

func (e *Engine) group(op, name string) (*group, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, &Error{Op: op, Group: name, Err: ErrMemberLeft, Reason: "the engine is closed"}
	}
	g := e.groups[name]
	if g == nil {
		return nil, notFound(op, name)
	}
	return g, nil
}

// CreateGroup creates a durable group and returns its description. A
// group of that name existing already is an error matching ErrGroupExists.
func (e *Engine) CreateGroup(ctx context.Context, cfg GroupConfig) (GroupInfo, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return GroupInfo{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return GroupInfo{}, &Error{Op: "create", Group: c.Name, Err: ErrMemberLeft, Reason: "the engine is closed"}
	}
	if e.groups[c.Name] != nil {
		return GroupInfo{}, &Error{Op: "create", Group: c.Name, Err: ErrGroupExists,
			Reason: "choose another name, or delete the group first"}
	}
	start, err := e.resolveStart(ctx, c.Start)
	if err != nil {
		return GroupInfo{}, err
	}
	g := newGroup(e, c)
	g.cursor, g.prev, g.committedFloor = start, start, start
	if start > 0 {
		// Nothing before its start is ever handed to a member (unless a
		// reset moves it back there).
		g.skipped = []span{{From: 0, To: start}}
	}
	if !c.End.IsZero() {
		if g.end, err = e.resolveEnd(ctx, c.End); err != nil {
			return GroupInfo{}, err
		}
		g.bounded = true
	}
	events, err := g.snapshotEvents()
	if err != nil {
		return GroupInfo{}, err
	}
	res, err := e.store.Append(ctx, g.stream, rewind.NoStream, events...)
	if errors.Is(err, rewind.ErrWrongExpectedVersion) {
		return GroupInfo{}, &Error{Op: "create", Group: c.Name, Err: ErrGroupExists,
			Reason: "another engine created it; reopen this one to see it"}
	}
	if err != nil {
		return GroupInfo{}, fmt.Errorf("consumer: create group %q: %w", c.Name, err)
	}
	g.version = res.LastVersion
	e.groups[c.Name] = g
	e.start(g)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.info(), nil
}

// resolveStart turns a start into the position the group reads after.
func (e *Engine) resolveStart(ctx context.Context, s Start) (rewind.Position, error) {
	switch s.Kind {
	case StartBeginning:
		return 0, nil
	case StartPosition:
		last, err := e.lastPosition(ctx)
		if err != nil {
			return 0, err
		}
		if s.Position > last {
			return 0, bad("start position", s.Position, fmt.Sprintf("is after the end of the log (%d)", last))
		}
		return s.Position, nil
	case StartTime:
		for ev, err := range e.store.ReadAll(ctx, rewind.ReadAllOptions{FromTime: s.Time, Limit: 1}) {
			if err != nil {
				return 0, err
			}
			return ev.Position - 1, nil
		}
	}
	return e.lastPosition(ctx)
}

// resolveEnd turns a bounded group's end into the last position it
// delivers. A position must be in the log already; a time after the last
// event ends at the last event (a bounded group never waits for events to
// come).
func (e *Engine) resolveEnd(ctx context.Context, end End) (rewind.Position, error) {
	last, err := e.lastPosition(ctx)
	if err != nil {
		return 0, err
	}
	if end.Position != 0 {
		if end.Position > last {
			return 0, bad("end position", end.Position, fmt.Sprintf("is after the end of the log (%d): a bounded "+
				"group delivers events already written; give a position up to %d or a time", last, last))
		}
		return end.Position, nil
	}
	// The last event recorded at or before the time: the one before the
	// first recorded after it.
	for ev, err := range e.store.ReadAll(ctx, rewind.ReadAllOptions{FromTime: end.Time.Add(time.Nanosecond), Limit: 1}) {
		if err != nil {
			return 0, err
		}
		return min(ev.Position-1, last), nil
	}
	return last, nil
}

// lastPosition returns the log's last position: cheaply when the store
// says it, else by reading to the end.
func (e *Engine) lastPosition(ctx context.Context) (rewind.Position, error) {
	if lp, ok := e.store.(rewind.LastPositioner); ok {
		return lp.LastPosition(ctx)
	}
	var last rewind.Position
	for ev, err := range e.store.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			return 0, err
		}
		last = ev.Position
	}
	return last, nil
}

// DeleteGroup deletes a group: its members are let go, its state stream
// soft-deleted. Its parked events go with it.
func (e *Engine) DeleteGroup(ctx context.Context, name string) error {
	e.mu.Lock()
	g := e.groups[name]
	if g == nil {
		e.mu.Unlock()
		return notFound("delete", name)
	}
	delete(e.groups, name)
	e.mu.Unlock()
	g.stopAll()
	g.mu.Lock()
	g.deleted = true
	for _, m := range g.members {
		m.left = true
	}
	g.members = map[uint64]*member{}
	g.clear()
	g.signal()
	version := g.version
	g.mu.Unlock()
	if _, err := e.store.DeleteStream(ctx, g.stream, rewind.Exactly(version)); err != nil {
		return fmt.Errorf("consumer: delete group %q: %w", name, err)
	}
	return nil
}

// stopAll stops g's goroutines and waits for them.
func (g *group) stopAll() {
	g.stopReader()
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
}

// Groups describes every group, sorted by name.
func (e *Engine) Groups() []GroupInfo {
	gs := e.snapshotGroups()
	out := make([]GroupInfo, 0, len(gs))
	for _, g := range gs {
		g.mu.Lock()
		out = append(out, g.info())
		g.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b GroupInfo) int { return strings.Compare(a.Config.Name, b.Config.Name) })
	return out
}

// Info describes one group.
func (e *Engine) Info(name string) (GroupInfo, error) {
	g, err := e.group("info", name)
	if err != nil {
		return GroupInfo{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.info(), nil
}

// Flush writes every group's pending changes now and returns once they
// are durable.
func (e *Engine) Flush(ctx context.Context) error {
	var errs []error
	for _, g := range e.snapshotGroups() {
		errs = append(errs, g.commit(ctx, false))
	}
	return errors.Join(errs...)
}

// Close stops every group, writes what they have not yet written and lets
// their members go. The store stays open.
func (e *Engine) Close(ctx context.Context) error {
	return e.shutdown(ctx, true)
}

// abandon stops every group without writing anything more: what a crash
// leaves behind (tests).
func (e *Engine) abandon() { e.shutdown(context.Background(), false) }

func (e *Engine) shutdown(ctx context.Context, flush bool) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	gs := make([]*group, 0, len(e.groups))
	for _, g := range e.groups {
		gs = append(gs, g)
	}
	e.mu.Unlock()
	if e.stop != nil {
		e.stop()
	}
	e.wg.Wait()
	var errs []error
	for _, g := range gs {
		g.stopAll()
		if flush {
			errs = append(errs, g.commit(ctx, false))
		}
		g.mu.Lock()
		for _, m := range g.members {
			m.left = true
		}
		g.deleted = true
		g.signal()
		g.mu.Unlock()
	}
	return errors.Join(errs...)
}
