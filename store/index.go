package store

// index is the store's in-memory view of streams: for each stream its
// version and last position, and for each event position the position of
// the previous event of the same stream (a backward chain). Reading a stream
// walks its chain; every anchorEvery-th version keeps its position so that a
// seek inside a long stream walks at most anchorEvery links.
//
// Memory: about 4 bytes per event plus about 100 bytes per stream. The
// index is guarded by Store.mu.
type index struct {
	ids     map[string]uint32 // stream name -> slot in streams
	streams []streamState
	chain   chain
	anchors map[uint32][]uint64 // slot -> positions of versions anchorEvery, 2*anchorEvery, …
}

const anchorEvery = 1024

type streamState struct {
	name    string
	version uint64 // last version assigned, 0 if none
	last    uint64 // position of the last event, 0 if none
	deleted uint64 // version at the last soft delete: versions up to it are hidden
}

// exists reports whether the stream has events that are not deleted. (Events
// removed by retention still count: the stream exists, with fewer events.)
func (s *streamState) exists() bool { return s.version > s.deleted }

func newIndex() *index {
	return &index{ids: make(map[string]uint32), anchors: make(map[uint32][]uint64)}
}

func (x *index) lookup(name string) (*streamState, uint32, bool) {
	slot, ok := x.ids[name]
	if !ok {
		return nil, 0, false
	}
	return &x.streams[slot], slot, true
}

// slotFor returns the slot of name, creating the stream if needed.
func (x *index) slotFor(name string) uint32 {
	if slot, ok := x.ids[name]; ok {
		return slot
	}
	slot := uint32(len(x.streams))
	x.streams = append(x.streams, streamState{name: name})
	x.ids[name] = slot
	return slot
}

// addEvent records that the event at pos is the next version of the stream in slot.
func (x *index) addEvent(slot uint32, pos uint64) {
	st := &x.streams[slot]
	st.version++
	x.chain.set(pos, st.last)
	st.last = pos
	if st.version%anchorEvery == 0 {
		x.anchors[slot] = append(x.anchors[slot], pos)
	}
}

// skipVersions moves a stream whose first versions are not in the log
// (retention removed them) to version v. Their anchors are kept as 0: gone.
func (x *index) skipVersions(slot uint32, v uint64) {
	st := &x.streams[slot]
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
