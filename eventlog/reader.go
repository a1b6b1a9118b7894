package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/crc32c"
)

// Reader reads records in position order, verifying each checksum. It only
// returns records up to Last at the time of the call; at that point Next
// returns io.EOF, and a later call continues when more become visible. A
// Reader is not safe for concurrent use; Close it to release its segment.
type Reader struct {
	l     *Log
	pos   uint64 // the next position to return
	limit uint64 // Last() when the buffer was filled
	seg   *segment
	sc    *scanner
	// scanned is the position of the last record the scanner decoded in
	// seg (or the one before where it started): a damaged record met next
	// is at scanned+1.
	scanned uint64
}

// NewReader returns a reader whose first record is at position from (or the
// first record after it, when from is 0).
func (l *Log) NewReader(from uint64) *Reader {
	return l.newReader(from, defaultScanBuffer)
}

// NewReaderSize is NewReader with a buffer of size bytes, grown when a
// record needs more: for long-lived readers, such as subscriptions, that
// should hold little memory while they wait.
func (l *Log) NewReaderSize(from uint64, size int) *Reader {
	return l.newReader(from, max(size, 4<<10))
}

// NewRandomReader returns a reader with a small buffer, suited to reading
// scattered positions with Seek.
func (l *Log) NewRandomReader() *Reader { return l.newReader(1, 16<<10) }

func (l *Log) newReader(from uint64, bufSize int) *Reader {
	if from == 0 {
		from = 1
	}
	return &Reader{l: l, pos: from, sc: newScanner(bufSize)}
}

// Position returns the position of the record the next call to Next returns.
func (r *Reader) Position() uint64 { return r.pos }

// Seek makes the next call to Next return the record at pos. Seeking
// forward within the current segment keeps the buffered bytes.
func (r *Reader) Seek(pos uint64) {
	if pos == 0 {
		pos = 1
	}
	if r.seg != nil && pos >= r.pos && r.l.segmentFor(pos) == r.seg {
		if pos == r.pos {
			return
		}
		if e := floorEntry(r.l.indexSnapshot(r.seg), pos); e.off <= r.sc.offset() {
			r.pos = pos // Next scans forward from the cursor
			return
		}
	}
	r.pos = pos
	r.drop()
}

// Close releases the reader's segment and buffer; the reader is unusable after.
func (r *Reader) Close() {
	r.drop()
	if r.sc.buf != nil {
		r.sc.release()
	}
}

func (r *Reader) drop() {
	if r.seg != nil {
		r.seg.release()
		r.seg = nil
	}
}

// Next returns the next record. Its payload is valid until the next call.
// It returns io.EOF when the reader has caught up with Last, a
// *rewind.TruncatedError when the position was removed by retention, a
// *rewind.CorruptionError when a record fails its checks and an error
// matching rewind.ErrClosed when the log was closed before it could read on.
func (r *Reader) Next() (Record, error) {
	if r.pos > r.limit {
		v := r.l.visible.Load()
		if r.pos > v {
			return Record{}, io.EOF
		}
		r.limit = v
		if r.seg != nil {
			r.sc.discard() // bytes after the cursor may predate their write
		}
	}
	if r.seg == nil {
		if err := r.locate(); err != nil {
			return Record{}, err
		}
	}
	for {
		rec, _, off, err := r.sc.next()
		if err == errEnd || err == errShort && r.sc.eof {
			// The end of this segment: the position is in a later one.
			prev := r.seg
			r.drop()
			if err := r.locate(); err != nil {
				return Record{}, err
			}
			if r.seg == prev {
				return Record{}, &rewind.CorruptionError{Segment: prev.name(), Offset: off, Position: rewind.Position(r.pos),
					Reason: "the segment ends before this position"}
			}
			continue
		}
		var re *readError
		if errors.As(err, &re) {
			return Record{}, fmt.Errorf("segment %s at offset %d: %w", r.seg.name(), off, err)
		}
		if err != nil {
			if r.pos > r.scanned+1 && r.skipDamage(off) {
				continue // r.pos is after the damage: read on from the intact record found
			}
			return Record{}, &rewind.CorruptionError{Segment: r.seg.name(), Offset: off, Position: rewind.Position(r.pos), Reason: err.Error()}
		}
		r.scanned = rec.Position
		switch {
		case rec.Position == r.pos:
			r.pos++
			return rec, nil
		case rec.Position < r.pos:
			continue // scanning forward from a sparse index entry or after a Seek
		default:
			return Record{}, &rewind.CorruptionError{Segment: r.seg.name(), Offset: off, Position: rewind.Position(r.pos),
				Reason: fmt.Sprintf("found position %d", rec.Position)}
		}
	}
}

// locate finds the segment and the sparse index entry for r.pos.
func (r *Reader) locate() error {
	for {
		first := r.l.first.Load()
		if r.pos < first {
			return &rewind.TruncatedError{Requested: rewind.Position(r.pos), FirstAvailable: rewind.Position(first)}
		}
		if m, ok := r.l.missingAt(r.pos); ok {
			return &rewind.CorruptionError{Segment: segmentName(m.FirstPosition), Position: rewind.Position(r.pos),
				Reason: "data loss: " + m.String() + "; restore them from a backup"}
		}
		s := r.l.segmentFor(r.pos)
		if s == nil {
			return &rewind.TruncatedError{Requested: rewind.Position(r.pos), FirstAvailable: rewind.Position(first)}
		}
		if !s.acquire() {
			if r.l.isClosed() {
				return fmt.Errorf("%w: the log is closed", rewind.ErrClosed)
			}
			continue // removed by retention meanwhile; the first position moved
		}
		if s.f == nil {
			s.release()
			return errors.New("eventlog: segment file is not created yet") // cannot happen for a visible position
		}
		e := floorEntry(r.l.indexSnapshot(s), r.pos)
		r.seg = s
		r.sc.reset(s.f, e.off)
		r.scanned = s.base - 1
		if e.pos != 0 {
			r.scanned = e.pos - 1
		}
		return nil
	}
}

// skipDamage moves the scanner past a damaged record at off, to the next
// intact record, if that is at or before r.pos: a read of an intact
// position after damage (in any segment, whatever its index) succeeds,
// and only the damaged positions are refused.
func (r *Reader) skipDamage(off int64) bool {
	r.l.mu.Lock()
	end := r.seg.size
	r.l.mu.Unlock()
	rec, at, found, err := resync(r.seg.f, off, end, r.scanned+1, 0)
	if err != nil || !found || rec.Position > r.pos {
		return false
	}
	r.sc.reset(r.seg.f, at)
	r.scanned = rec.Position - 1
	return true
}

// floorEntry returns the last entry at or before pos, or the segment start.
func floorEntry(idx []indexEntry, pos uint64) indexEntry {
	i := sort.Search(len(idx), func(i int) bool { return idx[i].pos > pos }) - 1
	if i < 0 {
		return indexEntry{off: segmentHeaderSize}
	}
	return idx[i]
}

// segmentFor returns the segment that holds pos, or nil.
func (l *Log) segmentFor(pos uint64) *segment {
	segs := *l.segments.Load()
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > pos }) - 1
	if i < 0 {
		return nil
	}
	return segs[i]
}

// Read returns the record at pos, reading with a fresh reader. Use a
// Reader to read many.
func (l *Log) Read(pos uint64) (Record, error) {
	r := l.newReader(pos, 16<<10)
	defer r.Close()
	rec, err := r.Next()
	if err == io.EOF {
		return Record{}, fmt.Errorf("%w: position %d is after the last position %d", rewind.ErrInvalidArgument, pos, l.Last())
	}
	return rec, err
}

// SeekTime returns the first position whose timestamp is at or after t,
// or Last()+1 when there is none. It is a binary search over segments and
// their sparse time index, then a short scan.
func (l *Log) SeekTime(t time.Time) (uint64, error) {
	// UnixNano is undefined outside about 1678–2262 (it wrapped around: a
	// time in 1600 sought the end, one in 2999 the start). Records carry
	// times within that range, so an earlier time is before all of them
	// and a later one after all of them.
	ts := int64(math.MinInt64)
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
	case t.After(time.Unix(0, math.MaxInt64)):
		ts = math.MaxInt64
	default:
		ts = t.UnixNano()
	}
	for {
		pos, err := l.seekTime(ts)
		if errors.Is(err, rewind.ErrTruncated) && !l.isClosed() {
			continue // retention removed the segment it looked at: look again
		}
		return pos, err
	}
}

func (l *Log) seekTime(ts int64) (uint64, error) {
	last := l.visible.Load()
	segs := *l.segments.Load()
	l.mu.Lock()
	// Only the active segment can be empty (recovery leaves it so when a
	// crash cut all it held); counting it as "at or after t" keeps the
	// search monotonic, and a search landing on it finds Last()+1.
	i := sort.Search(len(segs), func(i int) bool { return segs[i].last < segs[i].base || segs[i].lastTs >= ts })
	var idx []indexEntry
	if i < len(segs) {
		idx = segs[i].index[:len(segs[i].index):len(segs[i].index)]
	}
	l.mu.Unlock()
	if i == len(segs) {
		return last + 1, nil
	}
	from := segs[i].base
	if j := sort.Search(len(idx), func(j int) bool { return idx[j].ts >= ts }) - 1; j >= 0 {
		from = idx[j].pos
	}
	if from > last {
		// The segment's times include appends not visible yet.
		return last + 1, nil
	}
	if from < l.first.Load() {
		from = l.first.Load()
	}
	r := l.NewReader(from)
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return r.Position(), nil
		}
		if err != nil {
			return 0, err
		}
		if rec.Timestamp >= ts {
			return rec.Position, nil
		}
	}
}

// NextBatch appends to dst[:0] up to cap(dst) records that follow, and
// returns it; it returns io.EOF only when no record is visible. Payloads
// are valid until the next call. It decodes what is already buffered in
// one loop (frame checks and checksum, no call per record), so a replay
// costs less per record than with Next; whatever that loop does not take
// (a refill, the end of a segment, damage) goes through Next.
func (r *Reader) NextBatch(dst []Record) ([]Record, error) {
	dst = dst[:0]
	for len(dst) < cap(dst) {
		if r.seg != nil && r.pos <= r.limit {
			dst = r.takeBuffered(dst)
			if len(dst) == cap(dst) {
				return dst, nil
			}
		}
		if len(dst) > 0 {
			return dst, nil // let the next call refill, seek or report, after these are used
		}
		rec, err := r.Next()
		if err != nil {
			return dst, err
		}
		dst = append(dst, rec)
	}
	return dst, nil
}

// takeBuffered appends to dst the buffered records that follow, up to
// cap(dst) and r.limit, with the checks of decodeRecord. It stops at the
// first record it cannot take as it is (not all buffered, the end of the
// data, a damaged frame, another position) and leaves that one to Next,
// which reports it: a record whose checksum fails is never returned.
//
// Records are checked three at a time where three whole ones are buffered:
// their checksums are computed side by side (crc32c.Checksum3), which costs
// about two thirds of three checksums in turn for records of a few hundred
// bytes. They are still taken one by one, in order, up to the first that
// fails a check.
func (r *Reader) takeBuffered(dst []Record) []Record {
	sc := r.sc
	b := sc.buf[sc.r:sc.w]
	// Fill out in place, up to r.limit (r.pos <= r.limit here): few
	// values live across the checksum's call.
	out := dst[len(dst):cap(dst)]
	if room := r.limit - r.pos + 1; room < uint64(len(out)) {
		out = out[:room]
	}
	pos, n := r.pos, 0
	for n+3 <= len(out) {
		s0 := frameSize(b)
		if s0 == 0 {
			break
		}
		s1 := frameSize(b[s0:])
		if s1 == 0 {
			break
		}
		s2 := frameSize(b[s0+s1:])
		if s2 == 0 {
			break
		}
		b1, b2 := b[s0:], b[s0+s1:]
		c0, c1, c2 := crc32c.Checksum3(b[8:s0], b1[8:s1], b2[8:s2])
		if !frameOK(b, c0, pos) {
			break
		}
		out[n] = frameRecord(b, s0, pos)
		if !frameOK(b1, c1, pos+1) {
			b, pos, n = b1, pos+1, n+1
			break
		}
		out[n+1] = frameRecord(b1, s1, pos+1)
		if !frameOK(b2, c2, pos+2) {
			b, pos, n = b2, pos+2, n+2
			break
		}
		out[n+2] = frameRecord(b2, s2, pos+2)
		b, pos, n = b2[s2:], pos+3, n+3
	}
	for n < len(out) {
		size := frameSize(b)
		if size == 0 || !frameOK(b, crc32c.Checksum(b[8:size]), pos) {
			break
		}
		out[n] = frameRecord(b, size, pos)
		b, pos, n = b[size:], pos+1, n+1
	}
	if n > 0 {
		sc.r = sc.w - len(b)
		r.pos, r.scanned = pos, pos-1
	}
	return dst[:len(dst)+n]
}

// frameSize is the size of the record at the start of b if its length is
// plausible and the whole record is in b, and 0 otherwise.
func frameSize(b []byte) int {
	if len(b) < recordHeaderSize {
		return 0
	}
	l := binary.LittleEndian.Uint32(b)
	if l == 0 || l > MaxPayload || len(b)-recordHeaderSize < int(l) {
		return 0
	}
	return recordHeaderSize + int(l)
}

// frameOK reports whether the whole record at the start of b, whose bytes
// after the checksum field have the checksum sum, is intact and has
// position pos.
func frameOK(b []byte, sum uint32, pos uint64) bool {
	_ = b[27]
	// Bytes 25 to 27 (flags, reserved) in one word: no unknown flag, zeros.
	return sum == binary.LittleEndian.Uint32(b[4:]) && binary.LittleEndian.Uint32(b[24:])&^(0xff|knownFlags<<8) == 0 &&
		binary.LittleEndian.Uint64(b[8:]) == pos
}

// frameRecord is the record of size bytes at the start of b, checked.
func frameRecord(b []byte, size int, pos uint64) Record {
	return Record{
		Position:  pos,
		Timestamp: int64(binary.LittleEndian.Uint64(b[16:])),
		Kind:      b[24],
		BatchEnd:  b[25]&flagBatchEnd != 0,
		Payload:   b[recordHeaderSize:size:size],
	}
}
