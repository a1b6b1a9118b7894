package store

import (
	"github.com/google/uuid"
)

// dedup remembers the ids of the most recent events, for idempotent
// appends: at most maxIDs of them, none older than the window. Ids enter in
// position order, one per record, so the ring holds consecutive positions
// and needs no position of its own.
//
// An id is keyed by 64 of its bits; the rare id whose key is already taken
// by another id goes to a small exact map. Memory: about 40 bytes per id.
type dedup struct {
	keys  map[uint64]uint64    // key -> position
	exact map[uuid.UUID]uint64 // ids whose key collided -> position
	ring  []ringEntry          // oldest first, from ring[head]
	head  int
	n     int
	first uint64 // position of ring[head]
}

type ringEntry struct {
	key uint64
	ts  int64
}

func idKey(id uuid.UUID) uint64 {
	var k uint64
	for i := range 8 {
		k = k<<8 | uint64(id[i]^id[15-i])
	}
	return k
}

func newDedup(capacity int) *dedup {
	return &dedup{keys: make(map[uint64]uint64), exact: make(map[uuid.UUID]uint64), ring: make([]ringEntry, max(capacity, 1))}
}

// find returns the candidate position of id: 0 if unknown. A non-zero
// answer from the keyed map must be confirmed by reading the record, since
// another id can share the key; sure is true when it came from the exact map.
func (d *dedup) find(id uuid.UUID) (pos uint64, sure bool) {
	if pos, ok := d.exact[id]; ok {
		return pos, true
	}
	return d.keys[idKey(id)], false
}

// add records id at pos, which is the position after the last one added.
// collided says the key is taken by another id, as found by find and a read.
func (d *dedup) add(id uuid.UUID, pos uint64, ts int64, collided bool) {
	if d.n == len(d.ring) {
		d.pop()
	}
	if d.n == 0 {
		d.first = pos
	}
	key := idKey(id)
	if collided {
		d.exact[id] = pos
	} else {
		d.keys[key] = pos
	}
	d.ring[(d.head+d.n)%len(d.ring)] = ringEntry{key: key, ts: ts}
	d.n++
}

func (d *dedup) pop() {
	e := d.ring[d.head]
	if d.keys[e.key] == d.first {
		delete(d.keys, e.key)
	} else {
		for id, pos := range d.exact {
			if pos == d.first {
				delete(d.exact, id)
				break
			}
		}
	}
	d.head = (d.head + 1) % len(d.ring)
	d.n--
	d.first++
}

// expire forgets ids recorded before cutoff.
func (d *dedup) expire(cutoff int64) {
	for d.n > 0 && d.ring[d.head].ts < cutoff {
		d.pop()
	}
}
