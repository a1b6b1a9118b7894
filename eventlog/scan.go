package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/rewindhq/rewind/eventlog/vfs"
)

// scanner reads consecutive records of one segment file through a buffer.
type scanner struct {
	f    io.ReaderAt
	buf  []byte
	base int64 // file offset of buf[0]
	r, w int   // buf[r:w] holds unread bytes
	eof  bool  // the last fill reached the end of the file
}

const defaultScanBuffer = 1 << 20

// scanBuffers recycles the sequential readers' 1 MiB buffers, so that many
// short-lived readers (subscriptions, verification) do not each allocate one.
var scanBuffers = sync.Pool{New: func() any { b := make([]byte, defaultScanBuffer); return &b }}

func newScanner(size int) *scanner {
	if size == defaultScanBuffer {
		return &scanner{buf: *scanBuffers.Get().(*[]byte)}
	}
	return &scanner{buf: make([]byte, size)}
}

// release returns the scanner's buffer for reuse; the scanner is unusable after.
func (sc *scanner) release() {
	if len(sc.buf) == defaultScanBuffer {
		b := sc.buf
		scanBuffers.Put(&b)
	}
	sc.buf, sc.f = nil, nil
}

// reset positions the scanner at off in f, discarding buffered bytes.
func (sc *scanner) reset(f io.ReaderAt, off int64) {
	sc.f, sc.base, sc.r, sc.w, sc.eof = f, off, 0, 0, false
}

// offset is the file offset of the next unread byte.
func (sc *scanner) offset() int64 { return sc.base + int64(sc.r) }

// discard drops the buffered bytes after the cursor so that the next read
// goes to the file again.
func (sc *scanner) discard() { sc.reset(sc.f, sc.offset()) }

// fill reads more of the file into the buffer, keeping the unread bytes.
func (sc *scanner) fill(need int) error {
	if sc.r > 0 {
		copy(sc.buf, sc.buf[sc.r:sc.w])
		sc.base += int64(sc.r)
		sc.w -= sc.r
		sc.r = 0
	}
	if need > len(sc.buf) {
		nb := make([]byte, need)
		copy(nb, sc.buf[:sc.w])
		sc.buf = nb
	}
	n, err := sc.f.ReadAt(sc.buf[sc.w:], sc.base+int64(sc.w))
	sc.w += n
	if errors.Is(err, io.EOF) {
		sc.eof, err = true, nil
	}
	return err
}

// next decodes the record at the cursor. It returns errEnd at a zero length
// or at the end of the file, errShort when the file ends inside a record,
// and a decoding error for a damaged record; the cursor only moves past a
// good record.
func (sc *scanner) next() (rec Record, flags uint8, off int64, err error) {
	for {
		rec, flags, n, err := decodeRecord(sc.buf[sc.r:sc.w])
		if err == nil {
			off = sc.offset()
			sc.r += n
			return rec, flags, off, nil
		}
		if err != errShort {
			return Record{}, 0, sc.offset(), err
		}
		if sc.eof {
			if sc.r == sc.w {
				return Record{}, 0, sc.offset(), errEnd
			}
			return Record{}, 0, sc.offset(), errShort
		}
		need := recordHeaderSize
		if avail := sc.w - sc.r; avail >= 4 {
			need = recordSize(int(le32(sc.buf[sc.r:])))
		}
		if err := sc.fill(need); err != nil {
			return Record{}, 0, sc.offset(), &readError{err}
		}
	}
}

// readError is an I/O error reading a segment: not damage, and never
// reported as corruption.
type readError struct{ err error }

func (e *readError) Error() string { return "read segment: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// segmentScan is what a full scan of one segment found.
type segmentScan struct {
	records   int64  // good records in complete batches
	last      uint64 // position of the last good record in a complete batch (base-1 if none)
	lastOff   int64  // its offset
	lastTs    int64
	firstTs   int64
	end       int64 // the offset just after the last complete batch
	index     []indexEntry
	stop      error  // why the scan stopped before the end of the data, if it did
	stopOff   int64  // where it stopped
	torn      bool   // intact records follow the stop, but the gap is a torn write
	orphans   int    // good records after the last complete batch
	orphanEnd uint64 // position of the last of them
	dataEnd   int64  // one past the last non-zero byte at or after end
	damage    []Damage
}

// scanSegment reads every record of the segment file f, whose first record
// has position base, checking checksums, position continuity and batch
// boundaries, and rebuilds its sparse index. Damage followed by intact
// records is skipped and reported in damage (see tornGap for what is a torn
// write instead); the scan stops at damage that nothing intact follows.
// It stops before any position above limit, if limit is not zero. Damage
// at or before durable, a position known to have been acknowledged, is
// never a torn write.
func scanSegment(f vfs.File, base uint64, indexInterval int, sc *scanner, limit, durable uint64) (segmentScan, error) {
	res := segmentScan{last: base - 1, end: segmentHeaderSize, lastOff: segmentHeaderSize}
	sc.reset(f, segmentHeaderSize)
	var pending []indexEntry
	expect := base
	var firstTs, lastTs int64
	lastIndexed := int64(-1 << 62)
	dataEnd, dataFrom := int64(-1), int64(0) // the last non-zero byte at or after dataFrom, when computed
	for limit == 0 || expect <= limit {
		rec, flags, off, err := sc.next()
		if err == errEnd {
			if dataEnd < 0 {
				if dataEnd, err = lastNonZero(f, off); err != nil {
					return res, err
				}
				dataFrom = off
			}
			if dataEnd <= off {
				break
			}
			err = fmt.Errorf("a zero record length where %d more bytes of data follow", dataEnd-off)
		}
		var re *readError
		if errors.As(err, &re) {
			return res, err // the disk failed to read: not a torn tail, not damage
		}
		if err == nil && rec.Position != expect {
			err = fmt.Errorf("position %d where %d was expected", rec.Position, expect)
		}
		if err == nil && rec.Timestamp < lastTs {
			err = fmt.Errorf("timestamp %d is older than the previous record's %d", rec.Timestamp, lastTs)
		}
		if err != nil {
			if err == errShort {
				err = errors.New("a record runs past the end of the file (a torn write, or a damaged length)")
			}
			res.stop, res.stopOff = err, off
			if dataEnd < 0 {
				if dataEnd, err = lastNonZero(f, off); err != nil {
					return res, err
				}
				dataFrom = off
			}
			next, at, found, err := resync(f, off, dataEnd, expect, lastTs)
			if err != nil {
				return res, err
			}
			if !found || limit != 0 && next.Position > limit {
				break
			}
			if limit == 0 && expect > durable { // an open log's records up to limit were all acknowledged
				if res.torn, err = tornGap(f, off, at); err != nil {
					return res, err
				}
				if res.torn {
					break
				}
			}
			res.damage = append(res.damage, Damage{Offset: off, End: at, FirstPosition: expect,
				LastPosition: next.Position - 1, Reason: res.stop.Error()})
			res.stop = nil
			// Go on at the intact record, with an index entry there so that
			// reads after the damage do not have to cross it.
			sc.reset(f, at)
			expect, lastIndexed = next.Position, -1<<62
			continue
		}
		if firstTs == 0 {
			firstTs = rec.Timestamp
		}
		lastTs = rec.Timestamp
		if off-lastIndexed >= int64(indexInterval) {
			pending = append(pending, indexEntry{pos: rec.Position, off: off, ts: rec.Timestamp})
			lastIndexed = off
		}
		expect++
		res.orphans++
		res.orphanEnd = rec.Position
		if flags&flagBatchEnd != 0 {
			res.records += int64(res.orphans)
			res.orphans = 0
			res.last, res.lastOff, res.lastTs, res.firstTs = rec.Position, off, rec.Timestamp, firstTs
			res.end = sc.offset()
			res.index = append(res.index, pending...)
			pending = pending[:0]
		}
	}
	// Damage after the last complete batch is part of the tail that is cut.
	for len(res.damage) > 0 && res.damage[len(res.damage)-1].Offset >= res.end {
		res.damage = res.damage[:len(res.damage)-1]
	}
	if limit != 0 {
		res.dataEnd = res.end
		return res, nil
	}
	if dataEnd >= 0 && dataFrom <= res.end { // then the last non-zero byte at or after res.end is known
		res.dataEnd = max(dataEnd, res.end)
		return res, nil
	}
	var err error
	res.dataEnd, err = lastNonZero(f, res.end)
	return res, err
}

// zeroBlock is compared with a block at a time by lastNonZeroByte.
var zeroBlock [4096]byte

// lastNonZeroByte returns one past the index of the last non-zero byte of b,
// or 0 if there is none. It skips zero blocks with bytes.Equal, whose
// assembly compares a block in one call: a segment is mostly preallocated
// zeros, and a loop over its bytes made every open cost a scan of the whole
// file byte by byte.
func lastNonZeroByte(b []byte) int {
	for hi := len(b); hi > 0; {
		lo := max(hi-len(zeroBlock), 0)
		if bytes.Equal(b[lo:hi], zeroBlock[:hi-lo]) {
			hi = lo
			continue
		}
		for i := hi - 1; i >= lo; i-- {
			if b[i] != 0 {
				return i + 1
			}
		}
	}
	return 0
}

// lastNonZero returns one past the offset of the last non-zero byte of f at
// or after from, or from if there is none.
func lastNonZero(f vfs.File, from int64) (int64, error) {
	size, err := f.Size()
	if err != nil {
		return 0, err
	}
	bp := scanBuffers.Get().(*[]byte)
	defer scanBuffers.Put(bp)
	buf := *bp
	end := from
	for off := from; off < size; off += int64(len(buf)) {
		n, err := readFull(f, buf, off)
		if err != nil {
			return 0, err
		}
		if i := lastNonZeroByte(buf[:n]); i > 0 {
			end = off + int64(i)
		}
		if n < len(buf) {
			break
		}
	}
	return end, nil
}
