package store

import (
	"github.com/google/uuid"
)

// dedup remembers the ids clients gave recent events, for idempotent
// appends. It holds generations of up to genSize ids each, the newest
// last; a full generation makes a new one and the oldest of more than
// three is forgotten whole, so nothing is ever deleted id by id (deletes
// degrade hash maps). It remembers at least the last 2×genSize ids
// (DedupMaxIDs) and never forgets a generation holding an id younger than
// the window.
//
// An id is keyed by 64 of its bits. A key maps to one id across all
// generations: an id whose key is taken by another id goes to a small exact
// map instead. A key hit must be confirmed by reading the record.
// Memory: about 20 bytes per id, at most 1.5 × DedupMaxIDs ids.
type dedup struct {
	genSize int
	gens    []*generation // oldest first
}

type generation struct {
	keys   map[uint64]uint64    // key -> position
	exact  map[uuid.UUID]uint64 // ids whose key collided -> position
	newest int64                // timestamp of the newest id
}

const dedupGenerations = 3

func idKey(id uuid.UUID) uint64 {
	var k uint64
	for i := range 8 {
		k = k<<8 | uint64(id[i]^id[15-i])
	}
	return k
}

func newDedup(maxIDs int) *dedup {
	d := &dedup{genSize: max(1, maxIDs/2)}
	d.gens = []*generation{d.newGeneration()}
	return d
}

func (d *dedup) newGeneration() *generation {
	return &generation{keys: make(map[uint64]uint64, min(d.genSize, 1<<16))}
}

// find returns the candidate position of id: 0 if unknown. sure is true
// when the answer came from an exact map; otherwise another id may share
// the key, and the caller must read the record to confirm.
func (d *dedup) find(id uuid.UUID) (pos uint64, sure bool) {
	for _, g := range d.gens {
		if len(g.exact) > 0 {
			if pos, ok := g.exact[id]; ok {
				return pos, true
			}
		}
	}
	key := idKey(id)
	for _, g := range d.gens {
		if pos, ok := g.keys[key]; ok {
			return pos, false
		}
	}
	return 0, false
}

// add records id at pos. collided says find returned another id's
// position for this id's key.
func (d *dedup) add(id uuid.UUID, pos uint64, ts int64, collided bool) {
	g := d.gens[len(d.gens)-1]
	if len(g.keys)+len(g.exact) >= d.genSize {
		g = d.newGeneration()
		d.gens = append(d.gens, g)
		if len(d.gens) > dedupGenerations {
			d.gens[0] = nil
			d.gens = d.gens[1:]
		}
	}
	if collided {
		if g.exact == nil {
			g.exact = make(map[uuid.UUID]uint64)
		}
		g.exact[id] = pos
	} else {
		g.keys[idKey(id)] = pos
	}
	g.newest = max(g.newest, ts)
}

// expire forgets the generations whose ids are all older than cutoff.
func (d *dedup) expire(cutoff int64) {
	for len(d.gens) > 0 && d.gens[0].newest < cutoff && d.size() > 0 {
		if len(d.gens) == 1 {
			d.gens[0] = d.newGeneration()
			return
		}
		d.gens[0] = nil
		d.gens = d.gens[1:]
	}
}

// size counts the ids remembered.
func (d *dedup) size() int {
	n := 0
	for _, g := range d.gens {
		n += len(g.keys) + len(g.exact)
	}
	return n
}
