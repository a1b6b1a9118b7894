package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// The index snapshot lets Open skip replaying the whole log. It is written
// on Close (and after an Open that had to replay much of the log) and holds
// the index as of one log position; Open replays only what follows it. It
// is only a cache: a missing, damaged or stale snapshot means a full replay.
//
//	magic "RWNDSNAP", format uint32, reserved uint32
//	position uint64, id of the event at position [16]byte
//	streams uvarint, then per stream: name, version, last, deleted (uvarints)
//	anchored streams uvarint, then per stream: slot, count, positions (uvarints)
//	first chunk uint64, chunks uint64, then 64Ki uint32 per chunk
//	far links uvarint, then pos, prev (uvarints)
//	CRC-32C of all the above, uint32
const (
	snapshotName   = "index.snapshot"
	snapshotMagic  = "RWNDSNAP"
	snapshotFormat = 1
	// replays longer than this at open are followed by a new snapshot
	snapshotAfterReplay = 1_000_000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rebuild loads the index from the snapshot and replays the log after it;
// it also refills the dedup window from the log's recent records.
func (s *Store) rebuild() error {
	start := time.Now()
	last := s.log.Last()
	idx, snapPos, err := loadSnapshot(filepath.Join(s.dir, snapshotName), s.log)
	if err != nil {
		s.cfg.Logger.Warn("store: ignoring the index snapshot; replaying the whole log", "err", err)
	}
	if idx == nil {
		idx, snapPos = newIndex(), 0
	}
	s.idx = idx
	s.dedup = newDedup(s.cfg.DedupMaxIDs)

	from := max(snapPos+1, s.log.First())
	dedupFrom := s.log.First()
	if last+1 > uint64(s.cfg.DedupMaxIDs) {
		dedupFrom = max(dedupFrom, last+1-uint64(s.cfg.DedupMaxIDs))
	}
	if p, err := s.log.SeekTime(time.Now().Add(-s.cfg.DedupWindow)); err == nil {
		dedupFrom = max(dedupFrom, p)
	}
	// Without a snapshot, after retention, the first events of some streams
	// are gone: their versions start above 1.
	partial := snapPos+1 < s.log.First()
	r := s.log.NewReader(min(from, dedupFrom))
	defer r.Close()
	replayed := 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
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
		"streams", len(s.idx.streams), "took", time.Since(start))
	if replayed > snapshotAfterReplay {
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
	st := &s.idx.streams[slot]
	if partial && st.last < s.log.First() && version > st.version+1 {
		s.idx.skipVersions(slot, version-1)
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

// saveSnapshot writes the index as of the log's last position. Called with
// no append in flight (s.mu held, or before the store is shared).
func (s *Store) saveSnapshot() error {
	pos := s.log.Last()
	if pos == 0 || pos < s.log.First() {
		return nil
	}
	rec, err := s.log.Read(pos)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	path := filepath.Join(s.dir, snapshotName)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write index snapshot: %w", err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	crc := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
	if err := writeSnapshot(w, s.idx, pos, envelopeID(rec.Payload)); err != nil {
		return fmt.Errorf("write index snapshot: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write index snapshot: %w", err)
	}
	if err := binary.Write(f, binary.LittleEndian, crc.Sum32()); err != nil {
		return fmt.Errorf("write index snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync index snapshot: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install index snapshot: %w", err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeSnapshot(w *bufio.Writer, x *index, pos uint64, id uuid.UUID) error {
	var b []byte
	b = append(b, snapshotMagic...)
	b = binary.LittleEndian.AppendUint32(b, snapshotFormat)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, pos)
	b = append(b, id[:]...)
	b = binary.AppendUvarint(b, uint64(len(x.streams)))
	flush := func() error {
		_, err := w.Write(b)
		b = b[:0]
		return err
	}
	for i := range x.streams {
		st := &x.streams[i]
		b = appendString(b, st.name)
		b = binary.AppendUvarint(b, st.version)
		b = binary.AppendUvarint(b, st.last)
		b = binary.AppendUvarint(b, st.deleted)
		if len(b) > 64<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(len(x.anchors)))
	for slot, positions := range x.anchors {
		b = binary.AppendUvarint(b, uint64(slot))
		b = binary.AppendUvarint(b, uint64(len(positions)))
		for _, p := range positions {
			b = binary.AppendUvarint(b, p)
		}
		if len(b) > 64<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	b = binary.LittleEndian.AppendUint64(b, x.chain.firstChunk)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(x.chain.chunks)))
	for _, c := range x.chain.chunks {
		for _, d := range c {
			b = binary.LittleEndian.AppendUint32(b, d)
		}
		if err := flush(); err != nil {
			return err
		}
	}
	b = binary.AppendUvarint(b, uint64(len(x.chain.far)))
	for p, prev := range x.chain.far {
		b = binary.AppendUvarint(b, p)
		b = binary.AppendUvarint(b, prev)
	}
	return flush()
}

// loadSnapshot reads the snapshot and checks it against the log. It
// returns a nil index, and an error saying why, when the snapshot cannot be
// used; a missing snapshot is not an error.
func loadSnapshot(path string, l *eventlog.Log) (*index, uint64, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if len(raw) < 44 || string(raw[:8]) != snapshotMagic {
		return nil, 0, errors.New("not an index snapshot")
	}
	body, sum := raw[:len(raw)-4], binary.LittleEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, 0, errors.New("checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(body[8:]); v != snapshotFormat {
		return nil, 0, fmt.Errorf("snapshot format %d is not %d", v, snapshotFormat)
	}
	pos := binary.LittleEndian.Uint64(body[16:])
	var id uuid.UUID
	copy(id[:], body[24:40])
	if pos > l.Last() {
		return nil, 0, fmt.Errorf("snapshot is at position %d, after the end of the log (%d)", pos, l.Last())
	}
	if pos >= l.First() {
		rec, err := l.Read(pos)
		if err != nil {
			return nil, 0, err
		}
		if envelopeID(rec.Payload) != id {
			return nil, 0, fmt.Errorf("the event at position %d is not the one the snapshot was taken at", pos)
		}
	}
	x, err := decodeSnapshot(body[40:])
	if err != nil {
		return nil, 0, err
	}
	x.chain.dropBefore(l.First())
	return x, pos, nil
}

func decodeSnapshot(b []byte) (*index, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, errEnvelope
	}
	x := &index{ids: make(map[string]uint32, n), streams: make([]streamState, n), anchors: make(map[uint32][]uint64)}
	for i := range x.streams {
		name := string(d.bytes())
		x.streams[i] = streamState{name: name, version: d.uvarint(), last: d.uvarint(), deleted: d.uvarint()}
		x.ids[name] = uint32(i)
	}
	na := d.uvarint()
	for range na {
		slot, cnt := d.uvarint(), d.uvarint()
		if d.err != nil || slot >= n || cnt > uint64(len(d.b)) {
			return nil, errors.New("damaged anchors")
		}
		ps := make([]uint64, cnt)
		for i := range ps {
			ps[i] = d.uvarint()
		}
		x.anchors[uint32(slot)] = ps
	}
	if d.err != nil || len(d.b) < 16 {
		return nil, errors.New("damaged stream table")
	}
	x.chain.firstChunk = binary.LittleEndian.Uint64(d.b)
	chunks := binary.LittleEndian.Uint64(d.b[8:])
	d.b = d.b[16:]
	if chunks > uint64(len(d.b))/(4*chunkLen) {
		return nil, errors.New("damaged chain")
	}
	x.chain.chunks = make([][]uint32, chunks)
	for i := range x.chain.chunks {
		c := make([]uint32, chunkLen)
		for j := range c {
			c[j] = binary.LittleEndian.Uint32(d.b[4*j:])
		}
		d.b = d.b[4*chunkLen:]
		x.chain.chunks[i] = c
	}
	if nf := d.uvarint(); nf > 0 {
		x.chain.far = make(map[uint64]uint64, nf)
		for range nf {
			p, prev := d.uvarint(), d.uvarint()
			x.chain.far[p] = prev
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, errors.New("damaged snapshot tail")
	}
	return x, nil
}
