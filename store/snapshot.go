package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// The index snapshot lets Open skip replaying the whole log. It is written
// on Close (and after an Open that had to replay much of the log) and holds
// the index and the dedup window as of one log position; Open replays only
// what follows it. It is only a cache: a missing, damaged or stale snapshot
// means a full replay. Its flat arrays are stored as they are in memory, so
// loading is reading (all integers little endian):
//
//	magic "RWNDSNAP", format uint32, flags uint32 (1: holds the dedup window)
//	position uint64, id of the event at position [16]byte
//	streams uint64, then per stream: name offset uint32, name length uint16,
//	    zero uint16, version, last, deleted uint64
//	arena chunks uint64, then per chunk: length uint64, bytes
//	anchored streams uint64, then per stream: slot uint32, count uint32, positions uint64
//	chain first chunk uint64, chunks uint64, then 64Ki uint32 per chunk
//	far links uint64, then pos, prev uint64
//	if flagged, dedup generation size uint64, generations uint64, then per generation:
//	    newest int64, keys uint64, (key, position uint64)…, exact uint64, (id [16]byte, position uint64)…
//	CRC-32C of all the above, uint32
const (
	snapshotName   = "index.snapshot"
	snapshotMagic  = "RWNDSNAP"
	snapshotFormat = 2
	// replays longer than this at open are followed by a new snapshot
	snapshotAfterReplay = 1_000_000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rebuild loads the index from the snapshot and replays the log after it;
// it also refills the dedup window from the log's recent records.
func (s *Store) rebuild() error {
	start := time.Now()
	last := s.log.Last()
	stale := false // the snapshot on disk is ahead of the log: replace it
	idx, dd, snapPos, err := loadSnapshot(filepath.Join(s.dir, snapshotName), s.log)
	var ahead *snapshotAhead
	switch {
	case errors.As(err, &ahead):
		// A snapshot only ever covers fsynced positions: they are gone. The
		// positions after the log's end go to new records: the log records
		// the loss and begins a new epoch (unless it found the loss itself),
		// so that a reader who saw them is told rather than served others.
		sh := shortened{logLast: ahead.last, snapshotPos: ahead.pos}
		s.cfg.Logger.Error("store: data loss: "+sh.String()+"; replaying the whole log",
			"snapshot_position", ahead.pos, "log_last", ahead.last)
		if err := s.log.ReportShortened(ahead.pos, "data loss: "+sh.String()); err != nil {
			return fmt.Errorf("record the data loss: %w", err)
		}
		stale = true
	case err != nil:
		s.cfg.Logger.Warn("store: ignoring the index snapshot; replaying the whole log", "err", err)
	}
	if idx == nil {
		idx, snapPos = newIndex(), 0
	}
	s.idx = idx
	s.dedup = newDedup(s.cfg.DedupMaxIDs)
	if dd != nil && dd.genSize == s.dedup.genSize {
		s.dedup = dd
	}

	from := max(snapPos+1, s.log.First())
	dedupFrom := from  // the snapshot holds the window up to its position
	if s.dedup != dd { // no usable window in the snapshot: refill it from the log
		dedupFrom = s.log.First()
		if last+1 > uint64(s.cfg.DedupMaxIDs) {
			dedupFrom = max(dedupFrom, last+1-uint64(s.cfg.DedupMaxIDs))
		}
		if p, err := s.log.SeekTime(time.Now().Add(-s.cfg.DedupWindow)); err == nil {
			dedupFrom = max(dedupFrom, p)
		}
	}
	// Without a snapshot covering what retention removed, streams are
	// rebuilt from the records left: one whose first records are gone
	// continues at the versions those records carry, and one with no event
	// left is forgotten, as it is in a store that stayed open.
	partial := snapPos+1 < s.log.First()
	r := s.log.NewReader(min(from, dedupFrom))
	defer r.Close()
	replayed := 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, rewind.ErrCorruption) {
			return fmt.Errorf("replay the log into the index: %w; the index cannot be rebuilt across an event it "+
				"cannot read (whose stream is unknown), and the index snapshot does not cover it: restore the segment "+
				"from a backup (`rewind verify` lists every damaged or missing record)", err)
		}
		if err != nil {
			return fmt.Errorf("replay the log into the index: %w", err)
		}
		if rec.Position >= from {
			if err := s.applyRecord(rec, partial); err != nil {
				return err
			}
			replayed++
		}
		if rec.Position >= dedupFrom && len(rec.Payload) > 1 && clientID(rec.Payload) {
			s.addRecovered(rec)
		}
	}
	s.cfg.Logger.Debug("store: index loaded", "snapshot_position", snapPos, "replayed", replayed,
		"dedup_from_snapshot", s.dedup == dd, "dedup_refilled_from", dedupFrom, "dedup_ids", s.dedup.size(),
		"streams", s.idx.streams.len(), "took", time.Since(start))
	s.snapshotPos, s.filePos, s.replayed = snapPos, snapPos, replayed
	s.durableSnapshotPos.Store(snapPos)
	s.forgetLocked()
	if replayed > snapshotAfterReplay || stale {
		if s.log.Assigned() == 0 {
			// Nothing to snapshot: remove the stale one, so that the next
			// open does not find the loss again.
			if err := s.log.FS().Remove(filepath.Join(s.dir, snapshotName)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove the stale index snapshot: %w", err)
			}
			return nil
		}
		return s.saveSnapshot()
	}
	return nil
}

// applyRecord updates the index with one record read back from the log.
func (s *Store) applyRecord(rec eventlog.Record, partial bool) error {
	stream, version, err := envelopeStreamVersion(rec.Payload)
	if err != nil {
		return &rewind.CorruptionError{Position: rewind.Position(rec.Position), Reason: err.Error()}
	}
	slot := s.idx.slotFor(string(stream))
	st := s.idx.streams.at(slot)
	if rec.Kind == kindEvent && version == 1 && st.version > 0 && !st.live(s.log.First()) {
		// Retention had removed every event of the stream and the store
		// forgot it; this is the stream written anew.
		s.idx.reset(slot)
	}
	if partial && st.last < s.log.First() {
		// The stream's earlier records are gone: an event follows the
		// version before it, a delete records the stream's version itself.
		known := version - 1
		if rec.Kind == kindTombstone {
			known = version
		}
		if known > st.version {
			s.idx.skipVersions(slot, known)
		}
	}
	switch rec.Kind {
	case kindEvent:
		if version != st.version+1 {
			return &rewind.CorruptionError{Position: rewind.Position(rec.Position),
				Reason: fmt.Sprintf("stream %q: version %d follows version %d", stream, version, st.version)}
		}
		s.idx.addEvent(slot, rec.Position)
	case kindTombstone:
		st.deleted = version
	default:
		return &rewind.CorruptionError{Position: rewind.Position(rec.Position), Reason: fmt.Sprintf("unknown record kind %d", rec.Kind)}
	}
	return nil
}

// addRecovered puts a record's id back into the dedup window.
func (s *Store) addRecovered(rec eventlog.Record) {
	id := envelopeID(rec.Payload)
	collided := false
	if pos, sure := s.dedup.find(id); pos != 0 && !sure {
		if old, err := s.log.Read(pos); err == nil && envelopeID(old.Payload) != id {
			collided = true
		}
	}
	s.dedup.add(id, rec.Position, rec.Timestamp, collided)
}

func envelopeStreamVersion(payload []byte) ([]byte, uint64, error) {
	if len(payload) < envelopeFixed || payload[0] != envelopeFormat {
		return nil, 0, errEnvelope
	}
	d := decoder{b: payload[envelopeFixed:]}
	d.uvarint()
	stream := d.bytes()
	if d.err != nil || len(stream) == 0 {
		return nil, 0, errEnvelope
	}
	return stream, binary.LittleEndian.Uint64(payload[versionOffset:]), nil
}

// saveSnapshot writes the index, and the dedup window, as of the log's
// last position. Called before the store is shared.
func (s *Store) saveSnapshot() error {
	view := s.captureLocked(true)
	if view == nil {
		return nil
	}
	s.snapshotPos = view.pos
	if err := s.installSnapshot(view); err != nil {
		return err
	}
	return s.log.NoteDurable(view.pos)
}

// snapshotView is a consistent copy of what a snapshot holds, cheap to take
// under s.mu: the parts of the index that never change once written (full
// chain chunks, the arena's bytes) are shared, the rest copied.
type snapshotView struct {
	pos     uint64
	id      uuid.UUID // of the event at pos, read by installSnapshot
	streams streamTable
	arena   [][]byte
	anchors map[uint32][]uint64
	chain   chain
	dedup   *dedup // nil: the next open refills the window from the log
}

// captureLocked copies the index as of the last position the log gave to
// an append: under s.mu the index holds exactly the positions up to it. It
// does no I/O — installSnapshot waits for those positions to be durable
// and writes the file, without s.mu. It returns nil when the log holds
// nothing to snapshot. withDedup shares the dedup window, which only a
// closing store (no more appends) may do.
func (s *Store) captureLocked(withDedup bool) *snapshotView {
	pos := s.log.Assigned()
	if pos == 0 || pos < s.log.First() {
		return nil
	}
	x := s.idx
	v := &snapshotView{
		pos:     pos,
		streams: x.streams.clone(),
		arena:   slices.Clone(x.names.chunks), // lengths fixed now; the bytes never change
		anchors: maps.Clone(x.anchors),        // slices fixed now; later appends do not touch them
		chain:   chain{firstChunk: x.chain.firstChunk, chunks: slices.Clone(x.chain.chunks), far: maps.Clone(x.chain.far)},
	}
	if n := len(v.chain.chunks); n > 0 {
		v.chain.chunks[n-1] = slices.Clone(v.chain.chunks[n-1]) // the only chunk still written to
	}
	if withDedup {
		v.dedup = s.dedup
	}
	return v
}

// installSnapshot makes v's positions durable (a snapshot must never
// claim a position the log could lose), reads the id of the event at its
// position, and writes it unless a newer snapshot is on disk already; then
// retention may rely on it. It holds no lock but snapWrite.
func (s *Store) installSnapshot(v *snapshotView) error {
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	rec, err := s.log.Read(v.pos)
	if errors.Is(err, rewind.ErrTruncated) {
		// Retention removed the segment holding pos since the capture:
		// there is nothing left to anchor a snapshot on.
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	v.id = envelopeID(rec.Payload)
	s.snapWrite.Lock()
	defer s.snapWrite.Unlock()
	if v.pos <= s.filePos {
		return nil
	}
	if err := s.writeSnapshotFile(v); err != nil {
		return err
	}
	s.filePos = v.pos
	s.durableSnapshotPos.Store(v.pos)
	return nil
}

// writeSnapshotFile writes v to index.snapshot: a temporary file, fsynced,
// renamed over the old one, and the directory fsynced.
func (s *Store) writeSnapshotFile(v *snapshotView) error {
	fs := s.log.FS()
	path := filepath.Join(s.dir, snapshotName)
	tmp := path + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write index snapshot: %w", err)
	}
	defer fs.Remove(tmp)
	defer f.Close()
	fw := io.NewOffsetWriter(f, 0)
	crc := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(fw, crc), 1<<20)
	writeSnapshot(w, v)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write index snapshot: %w", err)
	}
	if err := binary.Write(fw, binary.LittleEndian, crc.Sum32()); err != nil {
		return fmt.Errorf("write index snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync index snapshot: %w", err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("install index snapshot: %w", err)
	}
	if err := fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("install index snapshot: %w", err)
	}
	return nil
}

// snapWriter writes little-endian integers; errors surface at Flush.
type snapWriter struct {
	w *bufio.Writer
	b [16]byte
}

func (sw *snapWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(sw.b[:], v)
	sw.w.Write(sw.b[:8])
}

func (sw *snapWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(sw.b[:], v)
	sw.w.Write(sw.b[:4])
}

// snapshotHasDedup is the header flag of a snapshot that holds the dedup window.
const snapshotHasDedup = 1

func writeSnapshot(w *bufio.Writer, v *snapshotView) {
	sw := &snapWriter{w: w}
	w.WriteString(snapshotMagic)
	sw.u32(snapshotFormat)
	var flags uint32
	if v.dedup != nil {
		flags |= snapshotHasDedup
	}
	sw.u32(flags)
	sw.u64(v.pos)
	w.Write(v.id[:])
	sw.u64(uint64(v.streams.len()))
	for i := range v.streams.len() {
		st := v.streams.at(uint32(i))
		sw.u32(st.nameOff)
		sw.u32(uint32(st.nameLen))
		sw.u64(st.version)
		sw.u64(st.last)
		sw.u64(st.deleted)
	}
	sw.u64(uint64(len(v.arena)))
	for _, c := range v.arena {
		sw.u64(uint64(len(c)))
		w.Write(c)
	}
	sw.u64(uint64(len(v.anchors)))
	for slot, positions := range v.anchors {
		sw.u32(slot)
		sw.u32(uint32(len(positions)))
		for _, p := range positions {
			sw.u64(p)
		}
	}
	sw.u64(v.chain.firstChunk)
	sw.u64(uint64(len(v.chain.chunks)))
	for _, c := range v.chain.chunks {
		for _, v := range c {
			sw.u32(v)
		}
	}
	sw.u64(uint64(len(v.chain.far)))
	for p, prev := range v.chain.far {
		sw.u64(p)
		sw.u64(prev)
	}
	d := v.dedup
	if d == nil {
		return
	}
	sw.u64(uint64(d.genSize))
	sw.u64(uint64(len(d.gens)))
	for _, g := range d.gens {
		sw.u64(uint64(g.newest))
		sw.u64(uint64(len(g.keys)))
		for k, p := range g.keys {
			sw.u64(k)
			sw.u64(p)
		}
		sw.u64(uint64(len(g.exact)))
		for id, p := range g.exact {
			w.Write(id[:])
			sw.u64(p)
		}
	}
}

// snapReader reads what snapWriter wrote, checking every count against the
// bytes left so that a damaged file cannot make it allocate wildly.
type snapReader struct {
	r    *bufio.Reader
	left int64 // bytes before the trailing CRC
	err  error
	b    [16]byte
}

func (sr *snapReader) read(p []byte) {
	if sr.err != nil {
		return
	}
	if int64(len(p)) > sr.left {
		sr.err = errors.New("truncated")
		return
	}
	_, sr.err = io.ReadFull(sr.r, p)
	sr.left -= int64(len(p))
}

func (sr *snapReader) u64() uint64 {
	sr.read(sr.b[:8])
	if sr.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(sr.b[:])
}

func (sr *snapReader) u32() uint32 {
	sr.read(sr.b[:4])
	if sr.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint32(sr.b[:])
}

// count reads a count of items of at least size bytes each.
func (sr *snapReader) count(size int64) int {
	n := sr.u64()
	if sr.err == nil && n > uint64(sr.left/size) {
		sr.err = fmt.Errorf("count %d exceeds the file", n)
	}
	if sr.err != nil {
		return 0
	}
	return int(n)
}

// loadSnapshot reads the snapshot and checks it against the log. It
// returns a nil index, and an error saying why, when the snapshot cannot be
// used; a missing snapshot is not an error.
func loadSnapshot(path string, l *eventlog.Log) (*index, *dedup, uint64, error) {
	file, err := l.FS().OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, 0, nil
	}
	if err != nil {
		return nil, nil, 0, err
	}
	defer file.Close()
	size, err := file.Size()
	if err != nil {
		return nil, nil, 0, err
	}
	if size < 44 {
		return nil, nil, 0, errors.New("not an index snapshot")
	}
	f := io.NewSectionReader(file, 0, size)
	crc := crc32.New(castagnoli)
	sr := &snapReader{r: bufio.NewReaderSize(io.TeeReader(io.LimitReader(f, size-4), crc), 1<<20), left: size - 4}
	var head [40]byte
	sr.read(head[:])
	if sr.err != nil || string(head[:8]) != snapshotMagic {
		return nil, nil, 0, errors.New("not an index snapshot")
	}
	if v := binary.LittleEndian.Uint32(head[8:]); v != snapshotFormat {
		return nil, nil, 0, fmt.Errorf("snapshot format %d is not %d", v, snapshotFormat)
	}
	flags := binary.LittleEndian.Uint32(head[12:])
	pos := binary.LittleEndian.Uint64(head[16:])
	id := uuid.UUID(head[24:40])
	if pos > l.Last() {
		return nil, nil, 0, &snapshotAhead{pos: pos, last: l.Last()}
	}
	if pos >= l.First() {
		rec, err := l.Read(pos)
		switch {
		case errors.Is(err, rewind.ErrCorruption) && !reassigned(l, pos):
			// The event the snapshot is anchored on is damaged, but no cut
			// ever gave its position to another record: the snapshot is
			// this log's, and it covers the damage (the log reports it).
		case err != nil:
			return nil, nil, 0, err
		case envelopeID(rec.Payload) != id:
			return nil, nil, 0, fmt.Errorf("the event at position %d is not the one the snapshot was taken at", pos)
		}
	}
	x, d := readSnapshot(sr, flags&snapshotHasDedup != 0)
	if sr.err != nil {
		return nil, nil, 0, fmt.Errorf("damaged snapshot: %w", sr.err)
	}
	var sum [4]byte
	if _, err := io.ReadFull(f, sum[:]); err != nil || binary.LittleEndian.Uint32(sum[:]) != crc.Sum32() || sr.left != 0 {
		return nil, nil, 0, errors.New("snapshot checksum mismatch")
	}
	if err := x.check(); err != nil {
		return nil, nil, 0, fmt.Errorf("damaged snapshot: %w", err)
	}
	x.table.rebuild(x, x.streams.len())
	x.chain.dropBefore(l.First())
	return x, d, pos, nil
}

// reassigned reports whether a recovery cut ever gave position pos, or
// one before it, to another record.
func reassigned(l *eventlog.Log, pos uint64) bool {
	for _, e := range l.Epochs()[1:] {
		if e.From <= pos {
			return true
		}
	}
	return false
}

func readSnapshot(sr *snapReader, withDedup bool) (*index, *dedup) {
	x := &index{anchors: make(map[uint32][]uint64)}
	buf := make([]byte, 1<<16)
	n := sr.count(32)
	for range n {
		var b [32]byte
		sr.read(b[:])
		x.streams.add(streamState{
			nameOff: binary.LittleEndian.Uint32(b[0:]), nameLen: uint16(binary.LittleEndian.Uint32(b[4:])),
			version: binary.LittleEndian.Uint64(b[8:]), last: binary.LittleEndian.Uint64(b[16:]), deleted: binary.LittleEndian.Uint64(b[24:]),
		})
	}
	x.names.chunks = make([][]byte, sr.count(8))
	for i := range x.names.chunks {
		n := sr.u64()
		if n > arenaChunk {
			sr.err = errors.New("arena chunk too large")
			return nil, nil
		}
		c := make([]byte, n, arenaChunk)
		sr.read(c)
		x.names.chunks[i] = c
	}
	for range sr.count(8) {
		slot, n := sr.u32(), sr.u32()
		if sr.err != nil || int64(n)*8 > sr.left {
			sr.err = errors.New("damaged anchors")
			return nil, nil
		}
		ps := make([]uint64, n)
		for i := range ps {
			ps[i] = sr.u64()
		}
		x.anchors[slot] = ps
	}
	x.chain.firstChunk = sr.u64()
	x.chain.chunks = make([][]uint32, sr.count(4*chunkLen))
	for i := range x.chain.chunks {
		c := make([]uint32, chunkLen)
		for j := 0; j < chunkLen; j += len(buf) / 4 {
			sr.read(buf)
			for k := range len(buf) / 4 {
				c[j+k] = binary.LittleEndian.Uint32(buf[4*k:])
			}
		}
		x.chain.chunks[i] = c
	}
	if n := sr.count(16); n > 0 {
		x.chain.far = make(map[uint64]uint64, n)
		for range n {
			p := sr.u64()
			x.chain.far[p] = sr.u64()
		}
	}
	if !withDedup {
		return x, nil
	}
	d := &dedup{genSize: int(sr.u64())}
	for range sr.count(24) {
		g := &generation{newest: int64(sr.u64())}
		n := sr.count(16)
		g.keys = make(map[uint64]uint64, n)
		for range n {
			k := sr.u64()
			g.keys[k] = sr.u64()
		}
		if n := sr.count(24); n > 0 {
			g.exact = make(map[uuid.UUID]uint64, n)
			for range n {
				var id uuid.UUID
				sr.read(id[:])
				g.exact[id] = sr.u64()
			}
		}
		d.gens = append(d.gens, g)
	}
	if len(d.gens) == 0 {
		d.gens = []*generation{d.newGeneration()}
	}
	return x, d
}

// check validates what a loaded snapshot refers to, so that a damaged
// snapshot is rejected rather than trusted.
func (x *index) check() error {
	for slot := range x.streams.len() {
		st := x.streams.at(uint32(slot))
		c := int(st.nameOff >> arenaChunkBits)
		if c >= len(x.names.chunks) || int(st.nameOff&(arenaChunk-1))+int(st.nameLen) > len(x.names.chunks[c]) || st.nameLen == 0 {
			return fmt.Errorf("stream %d: name outside the arena", slot)
		}
		if st.deleted > st.version || (st.version == 0) != (st.last == 0) {
			return fmt.Errorf("stream %d: inconsistent versions", slot)
		}
		// positionOf indexes the anchors by version: one per anchorEvery.
		if uint64(len(x.anchors[uint32(slot)])) != st.version/anchorEvery {
			return fmt.Errorf("anchors of stream %d do not match it", slot)
		}
	}
	for slot := range x.anchors {
		if int(slot) >= x.streams.len() {
			return fmt.Errorf("anchors of stream %d do not match it", slot)
		}
	}
	return nil
}

// snapshotAhead is the error of a snapshot taken at a position the log no
// longer reaches.
type snapshotAhead struct{ pos, last uint64 }

func (e *snapshotAhead) Error() string {
	return fmt.Sprintf("snapshot is at position %d, after the end of the log (%d)", e.pos, e.last)
}
