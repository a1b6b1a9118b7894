package eventlog

import (
	"encoding/binary"
	"fmt"

	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Damage is a region of a segment whose records fail their checks but
// which intact records follow. That is corruption (a flipped bit, bytes
// changed by hand), not a write a crash interrupted: the log keeps the
// records around it, and reading a damaged position fails with a
// *rewind.CorruptionError naming the segment and offset.
type Damage struct {
	Segment string `json:"segment"`
	// Offset and End bound the damaged bytes: End is the offset of the
	// first intact record after them.
	Offset int64 `json:"offset"`
	End    int64 `json:"end"`
	// FirstPosition and LastPosition are the positions that cannot be read.
	FirstPosition uint64 `json:"first_position"`
	LastPosition  uint64 `json:"last_position"`
	Reason        string `json:"reason"`
	// Header is true for a damaged segment header (Offset 0, End the
	// header's size). No position is lost: the base position comes from
	// the file name, confirmed by the first record, and the records carry
	// their own checksums. Only the segment's creation time is unknown.
	Header bool `json:"header,omitempty"`
}

func (d Damage) attrs() []any {
	if d.Header {
		return []any{"segment", d.Segment, "header", true, "reason", d.Reason}
	}
	return []any{"segment", d.Segment, "offset", d.Offset, "end", d.End, "first_position", d.FirstPosition,
		"last_position", d.LastPosition, "reason", d.Reason}
}

func (d Damage) String() string {
	if d.Header {
		return fmt.Sprintf("segment %s: its header is damaged (%s); its records are intact and read without it "+
			"(the base position is the file name's)", d.Segment, d.Reason)
	}
	what := fmt.Sprintf("positions %d-%d", d.FirstPosition, d.LastPosition)
	if d.FirstPosition == d.LastPosition {
		what = fmt.Sprintf("position %d", d.FirstPosition)
	}
	return fmt.Sprintf("segment %s: %s at offsets %d-%d damaged (%s); they are refused on read, the other records kept",
		d.Segment, what, d.Offset, d.End, d.Reason)
}

// resync looks for the first intact record after the damaged one at off:
// a record whose checksum holds, whose position is after expect (the
// damaged record's) and plausibly close, whose time is not before minTs,
// and which ends before dataEnd. It reports where it starts.
func resync(f vfs.File, off, dataEnd int64, expect uint64, minTs int64) (Record, int64, bool, error) {
	maxPos := expect + uint64(dataEnd-off)/recordHeaderSize + 1
	buf := make([]byte, 1<<20)
	var rec []byte
	for base := off + 1; base+recordHeaderSize <= dataEnd; {
		n, err := readFull(f, buf[:min(int64(len(buf)), dataEnd-base)], base)
		if err != nil {
			return Record{}, 0, false, fmt.Errorf("read segment: %w", err)
		}
		if n < recordHeaderSize {
			break
		}
		for i := 0; i+recordHeaderSize <= n; i++ {
			h := buf[i : i+recordHeaderSize]
			l := binary.LittleEndian.Uint32(h)
			pos := binary.LittleEndian.Uint64(h[8:])
			ts := int64(binary.LittleEndian.Uint64(h[16:]))
			at := base + int64(i)
			if l == 0 || l > MaxPayload || at+int64(recordSize(int(l))) > dataEnd || pos <= expect || pos > maxPos ||
				ts < minTs || h[25]&^knownFlags != 0 || h[26] != 0 || h[27] != 0 {
				continue
			}
			size := recordSize(int(l))
			b := buf[i:min(n, i+size)]
			if len(b) < size {
				if cap(rec) < size {
					rec = make([]byte, size)
				}
				if _, err := readFull(f, rec[:size], at); err != nil {
					return Record{}, 0, false, fmt.Errorf("read segment: %w", err)
				}
				b = rec[:size]
			}
			if r, _, _, err := decodeRecord(b); err == nil {
				return r, at, true, nil
			}
		}
		base += int64(n - recordHeaderSize + 1)
	}
	return Record{}, 0, false, nil
}

// tornGap reports whether the damaged bytes [from, to) are what a write
// cut short by a power loss leaves: whole disk sectors that were never
// written, which read as zeros where the log's preallocated, zero-filled
// or truncated file held nothing before. A disk writes back a file's dirty
// sectors in any order, so a crash can keep a later sector of a write and
// lose an earlier one; such records were never acknowledged (the fsync that
// acknowledges them would have written the earlier sector too), and the
// whole gap and everything after it is a torn tail. Damage without such a
// sector — a flipped bit, bytes changed by hand — is corruption.
//
// A sector counts when all of it inside the gap is zero: the rest of the
// sector the gap starts in, or any whole sector within it.
func tornGap(f vfs.File, from, to int64) (bool, error) {
	const sector = vfs.SectorSize
	b := make([]byte, min(to-from+sector, 1<<20))
	// Windows end on sector boundaries (but the last), so that no sector
	// is split between two reads.
	for w0 := from; w0 < to; {
		w1 := min(to, w0/sector*sector+int64(len(b))/sector*sector)
		n, err := readFull(f, b[:w1-w0], w0)
		if err != nil {
			return false, fmt.Errorf("read segment: %w", err)
		}
		w1 = w0 + int64(n) // the file may end early: missing bytes are not zeros that were read
		for lo := w0; lo < w1; {
			hi := min((lo/sector+1)*sector, w1)
			whole := lo%sector == 0 && hi-lo == sector
			if (whole || lo == from) && allZero(b[lo-w0:hi-w0]) {
				return true, nil
			}
			lo = hi
		}
		if n == 0 {
			break
		}
		w0 = w1
	}
	return false, nil
}
