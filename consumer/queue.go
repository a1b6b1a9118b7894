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

// delivery is one hand-out of an entry to a member.
type delivery struct {
	id       DeliveryID
	e        *entry
	m        *member
	deadline time.Time
	heapIdx  int  // in the deadline heap, -1 once out of it
	done     bool // acked, nak'ed, timed out or released
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

// deadlineHeap orders the deliveries in flight by ack deadline. A
// delivery leaves it when it ends, so it holds only those in flight.
type deadlineHeap []*delivery

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *deadlineHeap) Push(x any) {
	d := x.(*delivery)
	d.heapIdx = len(*h)
	*h = append(*h, d)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	d.heapIdx = -1
	return d
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
