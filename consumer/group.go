package consumer

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/tidwall/btree"

	"github.com/rewindhq/rewind"
)

// group is one consumer group in memory. Everything below mu is guarded
// by it; the reader, the committer and the replayer are its goroutines.
type group struct {
	e      *Engine
	name   string
	stream string // its state stream
	cfg    GroupConfig
	// ordered and orderField come from cfg.OrderBy.
	ordered    bool
	orderField string
	prio       map[string]bool
	// bounded groups deliver the events up to end (inclusive) only.
	bounded bool
	end     rewind.Position

	commitMu sync.Mutex // one append to the state stream at a time

	mu sync.Mutex
	// version is the state stream's last version.
	version uint64
	// entries are the outstanding events read from the log, by position.
	entries btree.Map[rewind.Position, *entry]
	// replaying are parked events a replay handed back, by position.
	replaying map[rewind.Position]*entry
	keys      map[string]*keyQueue
	// laneTaken are the positions the priority lane took ahead of the
	// main reader (held or done), until the main reader passes them.
	laneTaken map[rewind.Position]bool
	ready     readyQueue
	delayed   delayHeap
	deadlines deliveryList // in flight, by ack deadline
	inflight  map[DeliveryID]*delivery
	members   map[uint64]*member
	parked    btree.Map[rewind.Position, *ParkedEntry]
	// cursor is the log position the reader has taken up to; prev the
	// last event it took (done or not).
	cursor, prev rewind.Position
	// skipped are the positions at or below the floor that the group
	// moved over without handing their events to a member: before its
	// start, and what a reset forward skipped (merged, in order; kept in
	// every snapshot). A reset plan back does not count them as delivered.
	skipped []span
	// recovered is what the records said is done above the floor, for
	// the reader to skip; recAttempts the delivery counts they kept.
	recovered   doneSet
	recAttempts map[rewind.Position]int
	// buf collects the changes of the next commit; bufSeq numbers it.
	buf          delta
	bufSeq       uint64
	committedSeq uint64
	commitWake   chan struct{} // closed when a commit lands
	sinceSnap    int
	// committedFloor is the floor the last commit wrote; pendingFloor the
	// one the commit being written holds.
	committedFloor, pendingFloor rewind.Position
	wantSnapshot                 bool
	lastID                       DeliveryID
	changed                      chan struct{} // closed (and replaced) at the next change someone waits for
	waiters                      bool          // someone waits on changed
	failed                       error
	damaged                      *Error // the reader met damage (ErrLogDamaged): nothing is read past it
	parkedFull                   bool
	parkSeq                      uint64 // numbers parks, so that a replay knows what was parked before it
	replay                       replayState
	stats                        stats
	deleted                      bool

	urgent     chan struct{} // asks the committer for a commit now
	replayWake chan struct{} // asks the replayer for the next chunk

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// readerCancel stops only the reader (a reset restarts it).
	readerCancel context.CancelFunc
	readerDone   chan struct{}
}

type stats struct {
	acked, redeliveries, parkedTotal, timeouts uint64
}

type replayState struct {
	active bool
	stop   rewind.Position // parked events up to it
	after  rewind.Position // handed back up to it
	maxSeq uint64          // parked events up to this park sequence number
}

// firstDeliveryID is below every delivery id any run of the engine handed
// out (they follow the wall clock's nanoseconds, and this engine was
// written after 2024 began): an id below it is unknown, not stale.
var firstDeliveryID = DeliveryID(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())

func newGroup(e *Engine, cfg GroupConfig) *group {
	ordered, field, _ := parseOrderBy(cfg.OrderBy)
	g := &group{e: e, name: cfg.Name, stream: stateStreamPrefix + cfg.Name, cfg: cfg, ordered: ordered,
		orderField: field, prio: map[string]bool{}, replaying: map[rewind.Position]*entry{},
		keys: map[string]*keyQueue{}, laneTaken: map[rewind.Position]bool{}, inflight: map[DeliveryID]*delivery{},
		deadlines: deliveryList{link: byDeadline}, members: map[uint64]*member{},
		changed: make(chan struct{}), commitWake: make(chan struct{}), bufSeq: 1,
		urgent: make(chan struct{}, 1), replayWake: make(chan struct{}, 1),
		// Ids follow the wall clock's nanoseconds, so that those of an
		// earlier run of the engine are never handed out again.
		lastID: DeliveryID(time.Now().UnixNano())}
	for _, t := range cfg.Priority {
		g.prio[t] = true
	}
	return g
}

// signal wakes everyone waiting for a change.
func (g *group) signal() {
	if !g.waiters {
		return
	}
	close(g.changed)
	g.changed, g.waiters = make(chan struct{}), false
}

// waitCh returns the channel signal closes at the next change, for a
// caller about to wait on it.
func (g *group) waitCh() <-chan struct{} {
	g.waiters = true
	return g.changed
}

// floor is the ack floor: every event at or before it is done (acked,
// parked or not matching).
func (g *group) floor() rewind.Position {
	if p, _, ok := g.entries.Min(); ok {
		return min(p-1, g.cursor)
	}
	return g.cursor
}

// keyOf returns the ordering key of ev.
func (g *group) keyOf(ev *rewind.RecordedEvent) (string, bool) {
	if !g.ordered {
		return "", false
	}
	if g.orderField == "" {
		return ev.Stream, true
	}
	k, ok := ev.Metadata[g.orderField]
	return k, ok
}

// admit takes an event the reader read, copying *ev (its buffers are
// the caller's copies, kept). The caller moved prev.
func (g *group) admit(ev *rewind.RecordedEvent, prev rewind.Position) {
	h := &heldEntry{ev: *ev} // the entry and its event in one allocation
	e := &h.entry
	*e = entry{ev: &h.ev, prev: prev, prio: g.prio[ev.Type], heapIdx: -1}
	ev = e.ev
	if n, ok := g.recAttempts[ev.Position]; ok {
		e.attempts = n
		delete(g.recAttempts, ev.Position)
	}
	g.entries.Set(ev.Position, e)
	e.key, e.keyed = g.keyOf(ev)
	if e.keyed {
		k := g.keys[e.key]
		if k == nil {
			k = &keyQueue{}
			g.keys[e.key] = k
		}
		k.q = append(k.q, e)
		if len(k.q) > 1 {
			e.state = stWaiting
			return
		}
	}
	e.state = stReady
	if e.prio {
		g.ready.push(e)
		return
	}
	g.ready.pushFresh(e)
}

func (g *group) makeReady(e *entry) {
	e.state = stReady
	g.ready.push(e)
}

// schedule makes e deliverable after delay.
func (g *group) schedule(e *entry, delay time.Duration, now time.Time) {
	if delay <= 0 {
		g.makeReady(e)
		return
	}
	e.state, e.readyAt = stDelayed, now.Add(delay)
	heap.Push(&g.delayed, e)
}

// backoff is the delay before redelivery after n deliveries.
func (g *group) backoff(n int) time.Duration {
	b := g.cfg.Backoff
	return b[min(max(n-1, 0), len(b)-1)]
}

// full reports whether the group holds as many events as it may.
func (g *group) full() bool { return g.entries.Len() >= g.cfg.MaxPending }

// fetch hands up to n ready events to m.
func (g *group) fetch(m *member, n, maxBytes int, now time.Time) []Delivery {
	var out []Delivery
	size, strict := 0, maxBytes < 0
	if strict {
		maxBytes = -maxBytes
	}
	for len(out) < n && m.inflight.n < m.max && len(g.inflight) < g.cfg.MaxAckPending && g.ready.Len() > 0 {
		if maxBytes != 0 {
			b := EventBytes(g.ready.peek().ev)
			if size+b > maxBytes && (strict || len(out) > 0) {
				break
			}
			size += b
		}
		e := g.ready.pop()
		e.attempts++
		if e.attempts > 1 {
			g.stats.redeliveries++
		}
		g.lastID++
		d := &delivery{id: g.lastID, e: e, m: m, deadline: now.Add(g.cfg.AckWait)}
		out = append(out, Delivery{ID: d.id, Event: e.ev, Attempt: e.attempts, Replay: e.replay})
		if g.cfg.Mode == AtMostOnce {
			// Done before it is handed out: the caller waits for the commit.
			e.state = stInFlight
			g.resolve(e)
			g.stats.acked++
			continue
		}
		e.state, e.d = stInFlight, d
		g.inflight[d.id] = d
		m.inflight.pushBack(d)
		g.deadlines.insertByDeadline(d)
	}
	return out
}

// lookup finds m's delivery id, or says why it cannot be acted on.
func (g *group) lookup(m *member, id DeliveryID, op string) (*delivery, error) {
	d := g.inflight[id]
	switch {
	case d == nil && (id < firstDeliveryID || id > g.lastID):
		return nil, &Error{Op: op, Group: g.name, ID: id, Err: ErrUnknownDelivery,
			Reason: "use the id of a delivery this group handed out"}
	case d == nil:
		return nil, &Error{Op: op, Group: g.name, ID: id, Err: ErrStaleDelivery,
			Reason: "it was acked, nak'ed, timed out or released already; nothing changed"}
	case d.m != m:
		return nil, &Error{Op: op, Group: g.name, ID: id, Err: ErrForeignDelivery,
			Reason: "only the member it was delivered to can act on it; nothing changed"}
	}
	return d, nil
}

// release ends a delivery.
func (g *group) release(d *delivery) {
	d.done = true
	g.deadlines.remove(d)
	delete(g.inflight, d.id)
	d.m.inflight.remove(d)
	d.e.d = nil
}

// ack resolves d's event as done.
func (g *group) ack(d *delivery) {
	g.release(d)
	e := d.e
	g.stats.acked++
	if e.replay {
		delete(g.replaying, e.pos())
		if _, ok := g.parked.Delete(e.pos()); ok {
			g.buf.Unparked = append(g.buf.Unparked, e.pos())
		}
		g.replayed(e)
		return
	}
	g.resolve(e)
}

// resolve removes a finished (acked or parked) event read from the log and
// records its span as done; the next event of its key becomes ready.
func (g *group) resolve(e *entry) {
	g.entries.Delete(e.pos())
	g.buf.Done = appendSpan(g.buf.Done, span{From: e.prev, To: e.pos()})
	if !e.keyed {
		return
	}
	k := g.keys[e.key]
	k.popHead()
	if len(k.q) == 0 {
		delete(g.keys, e.key)
		return
	}
	if h := k.head(); h.state == stWaiting {
		g.makeReady(h)
	}
}

// appendSpan appends s, joining it to the last span when they touch.
func appendSpan(spans []span, s span) []span {
	if n := len(spans); n > 0 && spans[n-1].To == s.From {
		spans[n-1].To = s.To
		return spans
	}
	return append(spans, s)
}

// retry puts a failed delivery's event back: parked when it may not be
// delivered again, else after delay (or the backoff step when !explicit).
func (g *group) retry(e *entry, delay time.Duration, explicit bool, now time.Time) {
	switch {
	case e.replay:
		g.park(e, "failed again after a replay", now)
		return
	case g.cfg.MaxDeliveries > 0 && e.attempts >= g.cfg.MaxDeliveries:
		g.park(e, "max deliveries reached", now)
		return
	}
	if !explicit {
		delay = g.backoff(e.attempts)
	}
	g.buf.Attempts = append(g.buf.Attempts, attemptCount{Pos: e.pos(), N: e.attempts})
	g.schedule(e, delay, now)
}

// park moves e to the parked events.
func (g *group) park(e *entry, reason string, now time.Time) {
	g.parkSeq++
	p := &ParkedEntry{Position: e.pos(), Stream: e.ev.Stream, Type: e.ev.Type, EventID: e.ev.ID,
		Reason: reason, LastError: e.lastErr, Attempts: e.attempts, ParkedAt: now.UTC(), seq: g.parkSeq}
	if e.replay {
		old, _ := g.parked.Get(e.pos())
		if old != nil {
			p.Attempts += old.Attempts
		}
		delete(g.replaying, e.pos())
		g.parked.Set(p.Position, p)
		g.buf.Parked = append(g.buf.Parked, *p)
		g.stats.parkedTotal++
		g.replayed(e)
		return
	}
	if g.parked.Len() >= g.cfg.MaxParked {
		g.parkedFull = true
		g.buf.Attempts = append(g.buf.Attempts, attemptCount{Pos: e.pos(), N: e.attempts})
		g.schedule(e, g.cfg.Backoff[len(g.cfg.Backoff)-1], now)
		return
	}
	g.parked.Set(p.Position, p)
	g.buf.Parked = append(g.buf.Parked, *p)
	g.stats.parkedTotal++
	g.resolve(e)

}

// nak puts d's event back for redelivery.
func (g *group) nak(d *delivery, delay time.Duration, explicit bool, errMsg string, now time.Time) {
	g.release(d)
	d.e.lastErr = truncate(errMsg)
	g.retry(d.e, delay, explicit, now)
}

// term parks d's event at once.
func (g *group) term(d *delivery, reason, errMsg string, now time.Time) {
	g.release(d)
	if errMsg != "" {
		d.e.lastErr = truncate(errMsg)
	}
	if reason == "" {
		reason = "terminated by the consumer"
	}
	reason = truncate(reason)
	g.park(d.e, reason, now)
}

func truncate(s string) string {
	if len(s) > maxLastError {
		return s[:maxLastError] + "…"
	}
	return s
}

// tick makes due redeliveries ready and expires deliveries past their ack
// wait. It reports whether anything changed.
func (g *group) tick(now time.Time) bool {
	changed := false
	for g.delayed.Len() > 0 && !g.delayed[0].readyAt.After(now) {
		e := heap.Pop(&g.delayed).(*entry)
		g.makeReady(e)
		changed = true
	}
	for d := g.deadlines.front(); d != nil && !d.deadline.After(now); d = g.deadlines.front() {
		g.stats.timeouts++
		g.nak(d, 0, false, "ack wait expired", now)
		changed = true
	}
	return changed
}

// leave releases every delivery of m at once: each event is ready again
// (or parked, if it had its last delivery).
func (g *group) leave(m *member, now time.Time) {
	// In the order they were handed out (of their ids).
	for d := m.inflight.front(); d != nil; d = m.inflight.front() {
		g.release(d)
		d.e.lastErr = "member left"
		if d.e.replay || g.cfg.MaxDeliveries > 0 && d.e.attempts >= g.cfg.MaxDeliveries {
			g.retry(d.e, 0, true, now)
			continue
		}
		// Its delivery counts, as a failed one would (a member that dies
		// on an event must not get it forever).
		g.buf.Attempts = append(g.buf.Attempts, attemptCount{Pos: d.e.pos(), N: d.e.attempts})
		g.makeReady(d.e)
	}
	m.left = true
	delete(g.members, m.id)
}

// clear drops every outstanding event and delivery (a reset).
func (g *group) clear() {
	for _, d := range g.inflight {
		d.done = true
		d.m.inflight.remove(d)
		d.byDeadline = link{} // the list is dropped whole below
	}
	g.inflight = map[DeliveryID]*delivery{}
	g.entries.Clear()
	g.replaying = map[rewind.Position]*entry{}
	g.keys = map[string]*keyQueue{}
	g.laneTaken = map[rewind.Position]bool{}
	g.ready, g.delayed, g.deadlines = readyQueue{}, nil, deliveryList{link: byDeadline}
	g.recovered = doneSet{}
	g.recAttempts = nil
	g.buf = delta{}
	g.replay = replayState{}
}
