package consumer

import (
	"container/heap"
	"time"

	"github.com/rewindhq/rewind"
)

// entryState says where an outstanding event is.
type entryState uint8

const (
	stWaiting  entryState = iota // behind an earlier event of its key
	stReady                      // deliverable now: in the ready heap
	stDelayed                    // waiting for a redelivery delay: in the delayed heap
	stInFlight                   // delivered, not yet acked
)

// entry is one event the group holds: read from the log (or handed back
// by a replay of parked events) and not yet acked or parked.
type entry struct {
	ev   *rewind.RecordedEvent
	prev rewind.Position // the previous event the reader took: (prev, pos] is done once this is
	key  string
	// keyed: the event waits for the earlier events of its key.
	keyed    bool
	prio     bool
	attempts int // deliveries so far
	state    entryState
	readyAt  time.Time
	heapIdx  int
	d        *delivery
	lastErr  string
	// replay is set for a parked event handed back by a replay: it stays
	// parked (durably) until acked, and is parked again if it fails.
	replay bool
}

func (e *entry) pos() rewind.Position { return e.ev.Position }

// heldEntry is an entry with its event, allocated together.
type heldEntry struct {
	entry
	ev rewind.RecordedEvent
}

// delivery is one hand-out of an entry to a member.
type delivery struct {
	id       DeliveryID
	e        *entry
	m        *member
	deadline time.Time
	// byDeadline links it into the group's deadlines, byMember into its
	// member's deliveries, while it is in flight.
	byDeadline, byMember link
	done                 bool // acked, nak'ed, timed out or released
}

// link is a delivery's place in a deliveryList.
type link struct {
	prev, next *delivery
	in         bool
}

// deliveryList is a doubly linked list of deliveries threaded through one
// of their links, so that adding and removing one costs no allocation,
// no hashing and no reordering: a delivery ends (acked) or moves
// (in progress) anywhere in the list at a constant cost. It replaced a
// deadline heap and a map per member, which cost a tenth of the CPU of a
// group delivering through a server.
type deliveryList struct {
	head, tail *delivery
	n          int
	link       func(*delivery) *link
}

func byDeadline(d *delivery) *link { return &d.byDeadline }
func byMember(d *delivery) *link   { return &d.byMember }

func (l *deliveryList) front() *delivery { return l.head }

// pushBack adds d at the end.
func (l *deliveryList) pushBack(d *delivery) { l.insertAfter(d, l.tail) }

// insertAfter adds d after at (at the front when at is nil).
func (l *deliveryList) insertAfter(d, at *delivery) {
	dl := l.link(d)
	dl.in, dl.prev = true, at
	if at == nil {
		dl.next, l.head = l.head, d
	} else {
		al := l.link(at)
		dl.next, al.next = al.next, d
	}
	if dl.next == nil {
		l.tail = d
	} else {
		l.link(dl.next).prev = d
	}
	l.n++
}

// remove takes d out of the list; it does nothing if d is not in it.
func (l *deliveryList) remove(d *delivery) {
	dl := l.link(d)
	if !dl.in {
		return
	}
	if dl.prev == nil {
		l.head = dl.next
	} else {
		l.link(dl.prev).next = dl.next
	}
	if dl.next == nil {
		l.tail = dl.prev
	} else {
		l.link(dl.next).prev = dl.prev
	}
	*dl = link{}
	l.n--
}

// insertByDeadline adds d in deadline order, after those due at the same
// time. Deadlines are mostly set to now plus the ack wait, so d mostly
// goes at the end: the walk back is for a clock that went back or an ack
// wait that changed.
func (l *deliveryList) insertByDeadline(d *delivery) {
	at := l.tail
	for at != nil && at.deadline.After(d.deadline) {
		at = l.link(at).prev
	}
	l.insertAfter(d, at)
}

// readyHeap orders deliverable entries: priority types first, then by
// position, so that redeliveries go before newer events.
type readyHeap []*entry

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio
	}
	return h[i].pos() < h[j].pos()
}
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *readyHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *readyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}

// delayHeap orders entries waiting for a redelivery by when they are due.
type delayHeap []*entry

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].readyAt.Before(h[j].readyAt) }
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *delayHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *delayHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}

// readyQueue holds the deliverable entries: fresh ones the reader
// admitted in position order in a FIFO, everything else (redeliveries,
// heads of keys, priority types) in a heap. Pop takes priority types
// first, then the lowest position of the two.
type readyQueue struct {
	fifo []*entry
	head int
	heap readyHeap
}

func (q *readyQueue) Len() int { return len(q.fifo) - q.head + q.heap.Len() }

// pushFresh adds an entry whose position is above every entry pushed
// fresh before it.
func (q *readyQueue) pushFresh(e *entry) {
	if q.head > 0 && q.head == len(q.fifo) {
		q.fifo, q.head = q.fifo[:0], 0
	}
	q.fifo = append(q.fifo, e)
}

func (q *readyQueue) push(e *entry) { heap.Push(&q.heap, e) }

// peek returns the entry pop would return, without taking it.
func (q *readyQueue) peek() *entry {
	if q.head < len(q.fifo) {
		f := q.fifo[q.head]
		if q.heap.Len() == 0 || !q.heap[0].prio && f.pos() < q.heap[0].pos() {
			return f
		}
	}
	return q.heap[0]
}

func (q *readyQueue) pop() *entry {
	if q.head < len(q.fifo) {
		f := q.fifo[q.head]
		if q.heap.Len() == 0 || !q.heap[0].prio && f.pos() < q.heap[0].pos() {
			q.fifo[q.head] = nil
			q.head++
			// Compact once the consumed front is most of the slice.
			if q.head > 1024 && q.head*2 > len(q.fifo) {
				n := copy(q.fifo, q.fifo[q.head:])
				clear(q.fifo[n:])
				q.fifo, q.head = q.fifo[:n], 0
			}
			return f
		}
	}
	return heap.Pop(&q.heap).(*entry)
}

// keyQueue holds the outstanding events of one key in position order;
// only its head may be delivered.
type keyQueue struct {
	q []*entry
}

func (k *keyQueue) head() *entry { return k.q[0] }

func (k *keyQueue) popHead() {
	k.q[0] = nil
	k.q = k.q[1:]
	if len(k.q) == 0 {
		k.q = nil
	}
}
