package store

import (
	"hash/maphash"
	"slices"
	"unsafe"
)

// index is the store's in-memory view of streams: for each stream its
// version and last position, and for each event position the position of
// the previous event of the same stream (a backward chain). Reading a stream
// walks its chain; every anchorEvery-th version keeps its position so that a
// seek inside a long stream walks at most anchorEvery links.
//
// Everything large is a flat array without pointers, so that the garbage
// collector never scans it and the snapshot stores and loads it as it is:
// stream names live in an arena of fixed-size chunks, streams in a slice
// addressed by slot, and a hash table of slots finds a name's slot.
//
// Memory: about 4 bytes per event still in the log, plus about 70 bytes
// per stream (with a 20-byte name) and 8 bytes per 1024 versions of a
// stream. A stream leaves the index once retention removed all of its
// events (see forget), so with retention the index is bounded by what the
// log holds. The index is guarded by Store.mu.
type index struct {
	names   arena
	streams streamTable
	table   table
	chain   chain
	anchors map[uint32][]uint64 // slot -> positions of versions anchorEvery, 2*anchorEvery, …
}

const anchorEvery = 1024

type streamState struct {
	nameOff uint32 // in the arena
	nameLen uint16
	version uint64 // last version assigned, 0 if none
	last    uint64 // position of the last event, 0 if none
	deleted uint64 // version at the last soft delete: versions up to it are hidden
}

// exists reports whether the stream has events that are not deleted. (Events
// removed by retention still count: the stream exists, with fewer events.)
func (s *streamState) exists() bool { return s.version > s.deleted }

// live reports whether the stream has an event at or after first, the
// log's first position: a stream all of whose events retention removed is
// forgotten, as if it had never been written (its slot goes at the next
// forget).
func (s *streamState) live(first uint64) bool { return s.last >= first }

func newIndex() *index {
	x := &index{anchors: make(map[uint32][]uint64)}
	x.table.init(0)
	return x
}

// streamTable holds the streams by slot in chunks of 64Ki, so that it
// grows without copying (and without a transient second copy of itself).
type streamTable struct {
	chunks [][]streamState
	n      int
}

const streamChunk = 1 << 16

func (t *streamTable) len() int { return t.n }

func (t *streamTable) at(slot uint32) *streamState {
	return &t.chunks[slot/streamChunk][slot%streamChunk]
}

func (t *streamTable) add(st streamState) {
	if t.n%streamChunk == 0 {
		t.chunks = append(t.chunks, make([]streamState, 0, streamChunk))
	}
	c := &t.chunks[len(t.chunks)-1]
	*c = append(*c, st)
	t.n++
}

// clone copies the table (every stream may still change).
func (t *streamTable) clone() streamTable {
	c := streamTable{chunks: make([][]streamState, len(t.chunks)), n: t.n}
	for i, ch := range t.chunks {
		c.chunks[i] = slices.Clone(ch)
	}
	return c
}

// name returns the name of the stream in slot, without allocating.
func (x *index) name(slot uint32) string {
	st := x.streams.at(slot)
	return x.names.get(st.nameOff, st.nameLen)
}

func (x *index) lookup(name string) (*streamState, uint32, bool) {
	slot, ok := x.table.find(name, x)
	if !ok {
		return nil, 0, false
	}
	return x.streams.at(slot), slot, true
}

// slotFor returns the slot of name, creating the stream if needed.
func (x *index) slotFor(name string) uint32 {
	if slot, ok := x.table.find(name, x); ok {
		return slot
	}
	slot := uint32(x.streams.len())
	off := x.names.add(name)
	x.streams.add(streamState{nameOff: off, nameLen: uint16(len(name))})
	x.table.add(slot, x)
	return slot
}

// addEvent records that the event at pos is the next version of the stream in slot.
func (x *index) addEvent(slot uint32, pos uint64) {
	st := x.streams.at(slot)
	st.version++
	x.chain.set(pos, st.last)
	st.last = pos
	if st.version%anchorEvery == 0 {
		x.anchors[slot] = append(x.anchors[slot], pos)
	}
}

// arena holds stream names back to back in chunks that never move or
// change once written, so strings can point into them.
type arena struct {
	chunks [][]byte
	limit  uint64 // bytes; 0 means maxArena (tests set less)
}

const (
	arenaChunkBits = 20
	arenaChunk     = 1 << arenaChunkBits
	// maxArena bounds the names' total size so that offsets fit 32 bits.
	maxArena = 1 << 32
)

func (a *arena) add(name string) uint32 {
	n := len(a.chunks)
	if n == 0 || len(a.chunks[n-1])+len(name) > arenaChunk {
		a.chunks = append(a.chunks, make([]byte, 0, arenaChunk))
		n++
	}
	c := a.chunks[n-1]
	off := uint32(n-1)<<arenaChunkBits | uint32(len(c))
	a.chunks[n-1] = append(c, name...)
	return off
}

func (a *arena) get(off uint32, n uint16) string {
	c := a.chunks[off>>arenaChunkBits]
	i := off & (arenaChunk - 1)
	return unsafe.String(&c[i], int(n)) // arena bytes never change once written
}

// size is the arena's limit in bytes.
func (a *arena) size() uint64 {
	if a.limit == 0 {
		return maxArena
	}
	return a.limit
}

// full reports whether another name may not fit the 32-bit offsets.
func (a *arena) full() bool { return uint64(len(a.chunks)+1)<<arenaChunkBits >= a.size() }

// table is an open-addressing hash table from stream name to slot: each
// entry holds 32 bits of the name's hash and the slot plus one (0 is
// empty). It is rebuilt, not stored, when the index is loaded, so its hash
// seed is random per process and names cannot be chosen to collide.
type table struct {
	seed    maphash.Seed
	entries []uint64
	n       int
}

func (t *table) init(capacity int) {
	t.seed = maphash.MakeSeed()
	size := 1024
	for size < 2*capacity {
		size *= 2
	}
	t.entries = make([]uint64, size)
	t.n = 0
}

func (t *table) find(name string, x *index) (uint32, bool) {
	h := maphash.String(t.seed, name)
	mask := uint64(len(t.entries) - 1)
	tag := h >> 32
	for i := h & mask; ; i = (i + 1) & mask {
		e := t.entries[i]
		if e == 0 {
			return 0, false
		}
		if e>>32 == tag {
			if slot := uint32(e) - 1; x.name(slot) == name {
				return slot, true
			}
		}
	}
}

// add enters the stream just appended to x.streams.
func (t *table) add(slot uint32, x *index) {
	if 4*(t.n+1) > 3*len(t.entries) { // keep the load under 3/4
		t.rebuild(x, x.streams.len()) // includes slot; sized for twice as many
		return
	}
	t.put(maphash.String(t.seed, x.name(slot)), slot)
}

func (t *table) put(h uint64, slot uint32) {
	mask := uint64(len(t.entries) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		if t.entries[i] == 0 {
			t.entries[i] = h>>32<<32 | uint64(slot+1)
			t.n++
			return
		}
	}
}

// rebuild refills the table from the streams, sized for capacity streams.
func (t *table) rebuild(x *index, capacity int) {
	t.init(capacity)
	for slot := range x.streams.len() {
		t.put(maphash.String(t.seed, x.name(uint32(slot))), uint32(slot))
	}
}

// reset forgets what the stream in slot was: it is written again from
// version 1 after retention removed all of its events.
func (x *index) reset(slot uint32) {
	st := x.streams.at(slot)
	st.version, st.last, st.deleted = 0, 0, 0
	delete(x.anchors, slot)
}

// forget drops the streams that have no event at or after first (retention
// removed them all), reclaiming their slots, names and anchors: the names
// left are copied into a new arena, so that the arena never fills up with
// names of streams that are gone. Slots change; remap gives the new slot
// of an old one (false: dropped). Strings handed out earlier stay valid:
// the old arena's chunks are not changed, only let go.
func (x *index) forget(first uint64) (dropped int, remap func(uint32) (uint32, bool)) {
	n := x.streams.len()
	for slot := range n {
		if !x.streams.at(uint32(slot)).live(first) {
			dropped++
		}
	}
	if dropped == 0 {
		return 0, nil
	}
	const gone = ^uint32(0)
	newSlot := make([]uint32, n)
	var streams streamTable
	names := arena{limit: x.names.limit}
	anchors := make(map[uint32][]uint64, len(x.anchors))
	for slot := range n {
		st := *x.streams.at(uint32(slot))
		if !st.live(first) {
			newSlot[slot] = gone
			continue
		}
		ns := uint32(streams.len())
		newSlot[slot] = ns
		st.nameOff = names.add(x.name(uint32(slot)))
		streams.add(st)
		if a, ok := x.anchors[uint32(slot)]; ok {
			anchors[ns] = a
		}
	}
	x.streams, x.names, x.anchors = streams, names, anchors
	x.table.rebuild(x, x.streams.len())
	return dropped, func(old uint32) (uint32, bool) {
		ns := newSlot[old]
		return ns, ns != gone
	}
}

// skipVersions moves a stream whose first versions are not in the log
// (retention removed them) to version v. Their anchors are kept as 0: gone.
func (x *index) skipVersions(slot uint32, v uint64) {
	st := x.streams.at(slot)
	for a := (st.version/anchorEvery + 1) * anchorEvery; a <= v; a += anchorEvery {
		x.anchors[slot] = append(x.anchors[slot], 0)
	}
	st.version = v
}

// positionOf returns the position of version v of the stream, walking from
// the nearest anchor or the stream's end; 0 if it is gone (retention) or
// never existed. first is the log's first position.
func (x *index) positionOf(slot uint32, st *streamState, v, first uint64) uint64 {
	if v == 0 || v > st.version {
		return 0
	}
	pos, at := st.last, st.version
	if a := (v + anchorEvery - 1) / anchorEvery * anchorEvery; a < st.version {
		pos, at = x.anchors[slot][a/anchorEvery-1], a
	}
	for ; at > v && pos >= first; at-- {
		pos = x.chain.prev(pos)
	}
	if pos < first {
		return 0
	}
	return pos
}

// chain maps an event position to the position of the previous event of
// its stream, as a 32-bit distance in chunks of 64Ki entries.
type chain struct {
	firstChunk uint64 // chunk number of chunks[0]
	chunks     [][]uint32
	far        map[uint64]uint64 // pos -> prev when the distance does not fit
}

const (
	chunkBits = 16
	chunkLen  = 1 << chunkBits
	farDelta  = ^uint32(0)
)

func (c *chain) slot(pos uint64, grow bool) *uint32 {
	n := pos >> chunkBits
	if len(c.chunks) == 0 {
		if !grow {
			return nil
		}
		c.firstChunk = n
	}
	if n < c.firstChunk {
		return nil
	}
	i := n - c.firstChunk
	for grow && uint64(len(c.chunks)) <= i {
		c.chunks = append(c.chunks, make([]uint32, chunkLen))
	}
	if i >= uint64(len(c.chunks)) {
		return nil
	}
	return &c.chunks[i][pos&(chunkLen-1)]
}

func (c *chain) set(pos, prev uint64) {
	p := c.slot(pos, true)
	switch d := pos - prev; {
	case prev == 0:
		*p = 0
	case d < uint64(farDelta):
		*p = uint32(d)
	default:
		*p = farDelta
		if c.far == nil {
			c.far = make(map[uint64]uint64)
		}
		c.far[pos] = prev
	}
}

// prev returns the previous position of pos's stream, or 0.
func (c *chain) prev(pos uint64) uint64 {
	p := c.slot(pos, false)
	if p == nil || *p == 0 {
		return 0
	}
	if *p == farDelta {
		return c.far[pos]
	}
	return pos - uint64(*p)
}

// dropBefore frees the chunks that only hold positions below first.
func (c *chain) dropBefore(first uint64) {
	n := first >> chunkBits
	for len(c.chunks) > 0 && c.firstChunk < n {
		c.chunks[0] = nil
		c.chunks = c.chunks[1:]
		c.firstChunk++
	}
	for pos := range c.far {
		if pos < first {
			delete(c.far, pos)
		}
	}
}
