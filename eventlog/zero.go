package eventlog

import (
	"sync"
)

// Zero-filling ahead of the writes.
//
// A preallocated segment is made of unwritten extents: the first write to
// each block changes file-system metadata, so the fdatasync that follows
// must also commit the journal. On the disks we measured that makes an
// fsync of 10 KB cost about 400 µs where it costs 280 µs in a region that
// already holds zeros (PostgreSQL zero-fills its WAL segments for the same
// reason). So in Sync mode, when groups are small (fsync latency, not
// bandwidth, bounds throughput), a goroutine writes zeros a megabyte or
// two ahead of the flusher; the journal is then committed once per
// megabyte rather than once per group. When groups are large the disk's
// bandwidth is the limit and writing every byte twice would halve it, so
// it stays off.
const (
	zeroChunk = 1 << 20
	zeroAhead = 2 << 20
	// zeroBelow is the mean group size under which zero-filling pays.
	zeroBelow = 256 << 10
)

// zeroState coordinates the flusher and the zeroer on one segment: the
// zeroer only writes at or after the end of the flusher's writes, and the
// flusher waits for a zeroing that overlaps its next write.
type zeroState struct {
	mu       sync.Mutex
	writeEnd int64 // end of the flusher's writes, including the one under way
	zeroed   int64 // zeros (or data) were written up to here by the zeroer
	busyFrom int64 // the range being zeroed; busyTo 0 when none
	busyTo   int64
	done     chan struct{} // closed when the busy range is written
	sealed   bool          // no more zeroing: the segment is being sealed
}

// beforeWrite is called by the flusher before writing [off, end) of s. It
// waits for an overlapping zeroing and reports whether the zeroer should
// run ahead.
func (z *zeroState) beforeWrite(off, end int64) (kick bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for z.busyTo != 0 && off < z.busyTo && end > z.busyFrom {
		ch := z.done
		z.mu.Unlock()
		<-ch
		z.mu.Lock()
	}
	z.writeEnd = max(z.writeEnd, end)
	return !z.sealed && z.busyTo == 0 && z.writeEnd+zeroAhead > z.zeroed
}

// seal stops zeroing on the segment, waiting for a write under way.
func (z *zeroState) seal() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.sealed = true
	for z.busyTo != 0 {
		ch := z.done
		z.mu.Unlock()
		<-ch
		z.mu.Lock()
	}
}

// zeroer writes zeros ahead of the flusher on the segments it is kicked for.
func (l *Log) zeroer() {
	defer l.wg.Done()
	zeros := make([]byte, zeroChunk)
	for {
		var s *segment
		select {
		case <-l.stop:
			return
		case s = <-l.zeroKick:
		}
		for l.zeroOnce(s, zeros) {
		}
	}
}

// zeroOnce zeroes the next chunk ahead of s's writes, if any is needed,
// and reports whether it wrote one.
func (l *Log) zeroOnce(s *segment, zeros []byte) bool {
	z := &s.zero
	z.mu.Lock()
	from := max(z.zeroed, z.writeEnd)
	to := min(from+zeroChunk, l.cfg.SegmentSize)
	if z.sealed || from >= to || z.writeEnd+zeroAhead <= z.zeroed {
		z.mu.Unlock()
		return false
	}
	z.busyFrom, z.busyTo, z.done = from, to, make(chan struct{})
	z.mu.Unlock()
	_, err := s.f.WriteAt(zeros[:to-from], from)
	z.mu.Lock()
	if err == nil {
		z.zeroed = to
	}
	z.busyFrom, z.busyTo = 0, 0
	close(z.done)
	z.mu.Unlock()
	if err != nil {
		// Zeroing is only an optimisation; the data writes will tell if
		// the disk is really failing.
		l.cfg.Logger.Warn("eventlog: zero-filling ahead failed", "segment", s.name(), "err", err)
		return false
	}
	return true
}

// zeroAheadIfUseful kicks the zeroer for s when recent groups are small.
func (l *Log) zeroAheadIfUseful(s *segment, groupBytes int) {
	// An exponentially weighted mean of the group size, in bytes.
	l.meanGroupBytes += (float64(groupBytes) - l.meanGroupBytes) / 16
	if l.meanGroupBytes >= zeroBelow {
		return
	}
	select {
	case l.zeroKick <- s:
	default:
	}
}
