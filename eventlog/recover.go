package eventlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Cut describes bytes that recovery removed from the end of the log: a
// torn or corrupt tail, or the records of a batch that was not completely
// written. None of them was ever acknowledged in Sync mode.
type Cut struct {
	Segment string `json:"segment"`
	// Offset is where the log now ends in the segment.
	Offset int64 `json:"offset"`
	// Bytes is how many written bytes were removed.
	Bytes int64 `json:"bytes"`
	// FirstPosition is the first position that was removed; positions from
	// here on are reassigned to new appends.
	FirstPosition uint64 `json:"first_position"`
	// Records counts the removed records whose checksums were good (they
	// belonged to an incomplete batch); LastPosition is the last of them.
	Records      int    `json:"records"`
	LastPosition uint64 `json:"last_position,omitempty"`
	Reason       string `json:"reason"`
}

func (c Cut) attrs() []any {
	return []any{"segment", c.Segment, "offset", c.Offset, "bytes", c.Bytes, "first_position", c.FirstPosition,
		"intact_records_cut", c.Records, "last_position", c.LastPosition, "reason", c.Reason}
}

func (c Cut) String() string {
	s := fmt.Sprintf("segment %s: cut %d bytes at offset %d, positions from %d", c.Segment, c.Bytes, c.Offset, c.FirstPosition)
	if c.Records > 0 {
		s += fmt.Sprintf(" (%d intact records of an incomplete batch, up to position %d)", c.Records, c.LastPosition)
	}
	return s + ": " + c.Reason
}

// listSegments returns the base positions of the segment files in dir, in order.
func listSegments(fs vfs.FS, dir string) ([]uint64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("read data directory: %w", err)
	}
	var bases []uint64
	for _, name := range names {
		if base, ok := parseSegmentName(name); ok {
			bases = append(bases, base)
		} else if strings.HasSuffix(name, segmentExt) {
			return nil, fmt.Errorf("%w: unexpected file %s in %s: segment files are named by their 20-digit base position",
				rewind.ErrCorruption, name, dir)
		}
	}
	slices.Sort(bases)
	return bases, nil
}

// load opens every segment: sealed ones by their index, the last one by a
// full scan that cuts whatever follows the last complete batch.
func (l *Log) load() error {
	bases, err := listSegments(l.fs, l.dir)
	if err != nil {
		return err
	}
	if bases, err = l.loadState(bases); err != nil {
		return err
	}
	sc := newScanner(defaultScanBuffer)
	defer sc.release()
	for i, base := range bases {
		s := l.newSegment(base)
		l.segs = append(l.segs, s)
		if i < len(bases)-1 {
			err = l.loadSealed(s, sc)
		} else {
			err = l.recoverActive(s, sc)
		}
		if err != nil {
			return err
		}
		if prev := l.segs[max(i-1, 0)]; i > 0 && prev.last+1 != base {
			if base < prev.last+1 {
				return &rewind.CorruptionError{Segment: s.name(),
					Reason: fmt.Sprintf("segment starts at position %d but the previous one ends at %d", base, prev.last)}
			}
			l.missing = append(l.missing, Missing{FirstPosition: prev.last + 1, LastPosition: base - 1})
		}
	}
	active := l.segs[len(l.segs)-1]
	l.next = active.last + 1
	for _, s := range slices.Backward(l.segs) {
		if s.lastTs != 0 {
			l.lastTs = s.lastTs
			break
		}
	}
	return l.checkShortened(active)
}

// checkShortened compares where the log ends with what the state file
// knows was acknowledged: positions up to its durable position, and the
// newest segment a roll created. A log that ends before them lost
// acknowledged records (a newest segment removed, a tail zeroed or
// truncated): the loss is recorded, and since the positions after the end
// will be given to new records, a new epoch begins there, as for a cut.
func (l *Log) checkShortened(active *segment) error {
	l.stateMu.Lock()
	st := *l.state
	l.stateMu.Unlock()
	end := l.next - 1
	var reasons []string
	last := uint64(0)
	if st.Newest > active.base {
		reasons = append(reasons, fmt.Sprintf("segment %s, which %s records as the newest, is gone",
			segmentName(st.Newest), stateName))
		last = max(last, st.Newest) // its first record was acknowledged
	}
	if st.Durable > end {
		reasons = append(reasons, fmt.Sprintf("the log ends at position %d, but %s records that positions up to %d "+
			"were acknowledged and on disk", end, stateName, st.Durable))
		last = max(last, st.Durable)
	}
	if len(reasons) == 0 {
		return nil
	}
	reason := "data loss: " + strings.Join(reasons, "; ") + ": those records were removed or lost; restore them " +
		"from a backup. The positions after the end go to new records, in a new epoch"
	loss := Loss{Kind: "shortened", At: l.cfg.Now().UTC(), FirstPosition: end + 1, LastPosition: last, Reason: reason}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	next := *l.state
	prev := next.Epochs[len(next.Epochs)-1]
	loss.Epoch = prev.Epoch + 1
	next.Epochs = append(append([]Epoch(nil), next.Epochs...), Epoch{Epoch: loss.Epoch, From: end + 1, At: loss.At,
		Cuts: []Cut{{Segment: active.name(), Offset: active.size, FirstPosition: end + 1, LastPosition: last, Reason: reason}}})
	next.Durable, next.Newest = end, active.base
	next.Losses = append(append([]Loss(nil), next.Losses...), loss)
	if n := len(next.Losses); n > maxLosses {
		next.Losses = next.Losses[n-maxLosses:]
	}
	l.shortened = true
	l.cfg.Logger.Error("eventlog: "+reason, "first_position", loss.FirstPosition, "last_position", last, "epoch", loss.Epoch)
	return l.saveState(&next)
}

// recordFindings records in the state file the losses this open found,
// so that later opens and Verify keep reporting them.
func (l *Log) recordFindings() error {
	var losses []Loss
	now := l.cfg.Now().UTC()
	epoch := l.Epoch()
	for _, d := range l.damage {
		if d.Header {
			continue // costs no event; found again by every open
		}
		losses = append(losses, Loss{Kind: "damage", At: now, Epoch: epoch, Segment: d.Segment, Offset: d.Offset,
			FirstPosition: d.FirstPosition, LastPosition: d.LastPosition, Reason: d.String()})
	}
	for _, m := range l.missing {
		losses = append(losses, Loss{Kind: "missing", At: now, Epoch: epoch, Segment: segmentName(m.FirstPosition),
			FirstPosition: m.FirstPosition, LastPosition: m.LastPosition, Reason: "data loss: " + m.String()})
	}
	if l.startUnproven != 0 {
		losses = append(losses, Loss{Kind: "missing", At: now, Epoch: epoch, FirstPosition: 1, LastPosition: l.startUnproven - 1,
			Reason: fmt.Sprintf("possible data loss: %s was missing and the first segment starts at position %d: nothing "+
				"proves that retention removed positions 1-%d; they may have been lost", stateName, l.startUnproven, l.startUnproven-1)})
	}
	if l.cfg.Durability != Sync {
		// A cut in a mode that acknowledges before fsyncing may have taken
		// back what readers saw; so may an unclean end (an epoch without
		// a cut of bytes).
		for _, e := range l.Epochs() {
			if e.At.Before(l.openedAt) || e.Epoch == 1 || l.shortened && e.Epoch == epoch {
				continue
			}
			for _, c := range e.Cuts {
				losses = append(losses, Loss{Kind: "cut", At: e.At, Epoch: e.Epoch, Segment: c.Segment, Offset: c.Offset,
					FirstPosition: c.FirstPosition, LastPosition: c.LastPosition, Reason: "possible data loss " +
						"(durability " + l.cfg.Durability.String() + " acknowledges before fsyncing): " + c.Reason})
			}
		}
	}
	if len(losses) == 0 {
		return nil
	}
	return l.recordLosses(losses...)
}

func (l *Log) newSegment(base uint64) *segment {
	s := &segment{base: base, path: filepath.Join(l.dir, segmentName(base)), size: segmentHeaderSize, last: base - 1}
	s.refs.Store(1)
	return s
}

// openSegmentFile opens s's file and checks its header. It returns why the
// header is damaged, if it is (see checkSegmentHeader).
func (l *Log) openSegmentFile(s *segment) (damaged string, err error) {
	f, err := l.fs.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("open segment: %w", err)
	}
	s.f = f
	return checkSegmentHeader(f, s.name(), s.base)
}

// headerDamage reports a damaged segment header: kept as it is (it is
// evidence, and the next open reports it again), and read around.
func (l *Log) headerDamage(s *segment, reason string) {
	d := Damage{Segment: s.name(), End: segmentHeaderSize, Reason: reason, Header: true}
	l.damage = append(l.damage, d)
	l.cfg.Logger.Error("eventlog: damaged segment header: the segment's records are read without it, "+
		"its base position taken from the file name; restore the file from a backup or accept it", d.attrs()...)
}

// loadSealed opens a sealed segment from its index, rebuilding the index by
// a scan when it is missing or damaged.
func (l *Log) loadSealed(s *segment, sc *scanner) error {
	damaged, err := l.openSegmentFile(s)
	if err != nil {
		return err
	}
	if damaged != "" {
		l.headerDamage(s, damaged)
	}
	size, err := s.f.Size()
	if err != nil {
		return fmt.Errorf("read segment %s: %w", s.name(), err)
	}
	s.size, s.sealed, s.durable = size, true, true
	idxPath := strings.TrimSuffix(s.path, segmentExt) + indexExt
	raw, err := vfs.ReadFile(l.fs, idxPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read index: %w", err)
	}
	entries, ok := decodeIndex(raw, s.base)
	if ok && len(entries) > 0 && entries[len(entries)-1].last {
		s.index = entries
		e := entries[len(entries)-1]
		s.last, s.lastOff, s.lastTs, s.firstTs = e.pos, e.off, e.ts, entries[0].ts
		return nil
	}
	l.cfg.Logger.Warn("eventlog: rebuilding a damaged or missing segment index", "segment", s.name())
	res, err := scanSegment(s.f, s.base, l.cfg.IndexInterval, sc, 0, 0)
	if err != nil {
		return err
	}
	if res.stop != nil || res.orphans > 0 || res.end != s.size {
		reason := "the segment does not end with a complete batch"
		if res.stop != nil {
			reason = res.stop.Error()
		}
		return &rewind.CorruptionError{Segment: s.name(), Offset: res.stopOff, Position: rewind.Position(res.last + 1),
			Reason: reason + "; run `rewind verify` for the full report"}
	}
	if res.records == 0 {
		return &rewind.CorruptionError{Segment: s.name(), Reason: "a sealed segment holds no records"}
	}
	s.last, s.lastOff, s.lastTs, s.firstTs = res.last, res.lastOff, res.lastTs, res.firstTs
	s.index = res.index
	if n := len(s.index); s.index[n-1].pos == s.last {
		s.index[n-1].last = true
	} else {
		s.index = append(s.index, indexEntry{pos: s.last, off: s.lastOff, ts: s.lastTs, last: true})
	}
	return rewriteIndex(l.fs, idxPath, s.index, true)
}

func rewriteIndex(fs vfs.FS, path string, entries []indexEntry, sync bool) error {
	buf := make([]byte, 0, len(entries)*indexEntrySize)
	for _, e := range entries {
		buf = appendIndexEntry(buf, e)
	}
	f, err := fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("rewrite index: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("rewrite index: %w", err)
	}
	if sync {
		return f.Sync()
	}
	return nil
}

// recoverActive scans the last segment, cuts everything after its last
// complete batch and rebuilds its index.
func (l *Log) recoverActive(s *segment, sc *scanner) error {
	damaged, err := l.openSegmentFile(s)
	if err == nil && damaged != "" {
		if end, zerr := lastNonZero(s.f, segmentHeaderSize); zerr == nil && end <= segmentHeaderSize {
			// Nothing after it: taken for a creation that was interrupted.
			err = &rewind.CorruptionError{Segment: s.name(), Reason: "segment header: " + damaged}
		}
	}
	if err != nil {
		var ce *rewind.CorruptionError
		if !errors.As(err, &ce) || s.f == nil {
			return err
		}
		// A crash while the file was being created leaves a header that
		// was never completely written, and no records after it.
		dataEnd, zerr := lastNonZero(s.f, segmentHeaderSize)
		if zerr != nil || dataEnd > segmentHeaderSize {
			return err
		}
		s.f.Close()
		s.f = nil
		cut := Cut{Segment: s.name(), FirstPosition: s.base,
			Reason: "removed a segment file whose creation was interrupted: " + ce.Reason}
		if err := l.beginEpoch(cut); err != nil {
			return err
		}
		if err := l.fs.Remove(s.path); err != nil {
			return err
		}
		l.recovery = append(l.recovery, cut)
		return l.createSegmentFile(s)
	}
	if damaged != "" {
		l.headerDamage(s, damaged)
	}
	durable := l.durable()
	res, err := scanSegment(s.f, s.base, l.cfg.IndexInterval, sc, 0, durable)
	if err != nil {
		return err
	}
	if res.dataEnd > res.end && res.last < durable {
		// What follows the last complete batch holds records known to have
		// been acknowledged: it is damage, not a torn tail. Nothing intact
		// follows it (the scan would have gone on there), so the records
		// from res.last+1 to durable are refused on read, the bytes kept,
		// and new records go after them.
		reason := "the records after the last complete batch are damaged"
		if res.stop != nil {
			reason = res.stop.Error()
		} else if res.orphans > 0 {
			reason = "incomplete batch: its last record is damaged or gone"
		}
		res.damage = append(res.damage, Damage{Offset: res.end, End: res.dataEnd, FirstPosition: res.last + 1,
			LastPosition: durable, Reason: reason + fmt.Sprintf("; positions up to %d were acknowledged "+
				"(recorded in %s), so this is not a torn tail", durable, stateName)})
		res.last, res.lastOff, res.end = durable, res.end, res.dataEnd
	}
	for _, d := range res.damage {
		d.Segment = s.name()
		l.damage = append(l.damage, d)
		l.cfg.Logger.Error("eventlog: damaged records in the newest segment, followed by intact ones or known to have been acknowledged: "+
			"they are kept and refused on read; restore them from a backup or accept their loss", d.attrs()...)
	}
	s.last, s.lastOff, s.lastTs, s.firstTs, s.index = res.last, res.lastOff, res.lastTs, res.firstTs, res.index
	s.size = res.end
	if res.dataEnd > res.end {
		cut := Cut{Segment: s.name(), Offset: res.end, Bytes: res.dataEnd - res.end, FirstPosition: res.last + 1}
		if res.orphans > 0 {
			cut.Records, cut.LastPosition = res.orphans, res.orphanEnd
		}
		switch {
		case res.stop != nil && res.torn:
			cut.Reason = fmt.Sprintf("torn write at offset %d (%s): sectors of it were never written, so nothing "+
				"after it was acknowledged", res.stopOff, res.stop)
		case res.stop != nil:
			cut.Reason = res.stop.Error()
			if res.orphans > 0 {
				cut.Reason = fmt.Sprintf("incomplete batch, then at offset %d: %s", res.stopOff, res.stop)
			}
		case res.orphans > 0:
			cut.Reason = "incomplete batch: its last record was never written"
		default:
			cut.Reason = fmt.Sprintf("unexpected bytes after the end of the data at offset %d", res.end)
		}
		if err := l.beginEpoch(cut); err != nil {
			return err
		}
		l.recovery = append(l.recovery, cut)
		// Truncating zeroes the cut bytes for good, so that no stale record
		// can ever reappear behind a shorter new write.
		if err := s.f.Truncate(res.end); err != nil {
			return fmt.Errorf("cut segment %s: %w", s.name(), err)
		}
	}
	if !l.cfg.NoPreallocate {
		if err := s.f.Allocate(l.cfg.SegmentSize); err != nil && !errors.Is(err, vfs.ErrUnsupported) {
			return fmt.Errorf("preallocate segment %s: %w", s.name(), err)
		}
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync segment %s: %w", s.name(), err)
	}
	idxPath := strings.TrimSuffix(s.path, segmentExt) + indexExt
	if err := rewriteIndex(l.fs, idxPath, s.index, false); err != nil {
		return err
	}
	idx, err := l.fs.OpenFile(idxPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	s.idx, s.idxWritten = idx, len(s.index)
	return nil
}
