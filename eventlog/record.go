package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A record on disk:
//
//	offset  size  field
//	0       4     payload length L (little endian)
//	4       4     CRC-32C of bytes [8, 28+L): everything after the CRC
//	8       8     global position
//	16      8     timestamp, Unix nanoseconds
//	24      1     kind (owned by the caller, opaque to the log)
//	25      1     flags (flagBatchEnd marks the last record of an atomic batch)
//	26      2     reserved, zero
//	28      L     payload
//
// A length of zero marks the end of the written part of a preallocated segment.
const (
	recordHeaderSize = 28
	flagBatchEnd     = 1 << 0
	knownFlags       = flagBatchEnd
)

// MaxPayload is the largest payload one record can carry.
const MaxPayload = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one entry of the log.
type Record struct {
	Position  uint64
	Timestamp int64 // Unix nanoseconds, never decreasing along the log
	Kind      uint8
	// BatchEnd marks the last record of the atomic batch (one Append) the
	// record belongs to.
	BatchEnd bool
	// Payload aliases the reader's buffer: it is valid until the next call
	// on the reader that returned it.
	Payload []byte
}

// recordSize returns the framed size of a payload of n bytes.
func recordSize(n int) int { return recordHeaderSize + n }

// appendRecord frames one record onto dst.
func appendRecord(dst []byte, pos uint64, ts int64, kind, flags uint8, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, pos)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ts))
	dst = append(dst, kind, flags, 0, 0)
	dst = append(dst, payload...)
	crc := crc32.Checksum(dst[start+8:], castagnoli)
	binary.LittleEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// Errors of decodeRecord. errShort means more bytes are needed; errEnd means
// a zero length: the end of the written data.
var (
	errShort = errors.New("short record")
	errEnd   = errors.New("end of data")
)

// decodeRecord parses the record at the start of b. It returns the record,
// its framed size and, when the bytes do not form a valid record, an error
// saying why. It never returns a record whose checksum fails.
func decodeRecord(b []byte) (rec Record, flags uint8, n int, err error) {
	if len(b) < 4 {
		return Record{}, 0, 0, errShort
	}
	l := binary.LittleEndian.Uint32(b)
	if l == 0 {
		if len(b) >= recordHeaderSize && !allZero(b[:recordHeaderSize]) {
			return Record{}, 0, 0, errors.New("zero length with a non-zero header")
		}
		return Record{}, 0, 0, errEnd
	}
	if l > MaxPayload {
		return Record{}, 0, 0, fmt.Errorf("length %d exceeds the maximum record payload", l)
	}
	n = recordSize(int(l))
	if len(b) < n {
		return Record{}, 0, 0, errShort
	}
	if got, want := crc32.Checksum(b[8:n], castagnoli), binary.LittleEndian.Uint32(b[4:]); got != want {
		return Record{}, 0, 0, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	flags = b[25]
	if flags&^knownFlags != 0 || b[26] != 0 || b[27] != 0 {
		return Record{}, 0, 0, fmt.Errorf("unknown flags %02x%02x%02x", flags, b[26], b[27])
	}
	rec = Record{
		Position:  binary.LittleEndian.Uint64(b[8:]),
		Timestamp: int64(binary.LittleEndian.Uint64(b[16:])),
		Kind:      b[24],
		BatchEnd:  flags&flagBatchEnd != 0,
		Payload:   b[recordHeaderSize:n:n],
	}
	return rec, flags, n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
