package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// A segment file starts with a header:
//
//	offset  size  field
//	0       8     magic "RWNDLOG\x00"
//	8       4     format version (1)
//	12      4     reserved, zero
//	16      8     base position: the position of the segment's first record
//	24      8     creation time, Unix nanoseconds
//	32      4     CRC-32C of bytes [0, 32)
//	36      4     reserved, zero
//
// Records follow from offset 40. Segment files are named by their base
// position, zero-padded to 20 digits, so that a directory listing sorts them.
const (
	segmentMagic      = "RWNDLOG\x00"
	formatVersion     = 1
	segmentHeaderSize = 40
	segmentExt        = ".seg"
	indexExt          = ".idx"
)

func segmentName(base uint64) string { return fmt.Sprintf("%020d%s", base, segmentExt) }

func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	return base, err == nil && base > 0
}

func encodeSegmentHeader(base uint64, created int64) []byte {
	h := make([]byte, segmentHeaderSize)
	copy(h, segmentMagic)
	binary.LittleEndian.PutUint32(h[8:], formatVersion)
	binary.LittleEndian.PutUint64(h[16:], base)
	binary.LittleEndian.PutUint64(h[24:], uint64(created))
	binary.LittleEndian.PutUint32(h[32:], crc32.Checksum(h[:32], castagnoli))
	return h
}

// checkSegmentHeader reads and checks the header of f, the segment file
// name whose base position is base. The header only repeats what is known
// otherwise: the base position is in the file name, the format version is
// the only one there is, and the records carry their own checksums and
// positions; only the creation time is nowhere else, and nothing needs it.
// So a header that fails its own checks (magic, checksum, reserved bytes
// not zero) is damage, not a reason to refuse the segment:
// checkSegmentHeader returns why, and the segment is read without it.
// What cannot be known is an error (a
// *rewind.CorruptionError): a file too short to hold a header, an intact
// header of another format version or naming another base position, and a
// damaged header whose segment's first record is not at base.
func checkSegmentHeader(f vfs.File, name string, base uint64) (damaged string, err error) {
	h := make([]byte, segmentHeaderSize)
	n, err := readFull(f, h, 0)
	if err != nil {
		return "", fmt.Errorf("read segment %s: %w", name, err)
	}
	corrupt := func(format string, args ...any) error {
		return &rewind.CorruptionError{Segment: name, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case n < segmentHeaderSize:
		return "", corrupt("segment header is truncated")
	case string(h[:8]) != segmentMagic:
		damaged = "bad magic"
	case crc32.Checksum(h[:32], castagnoli) != binary.LittleEndian.Uint32(h[32:]):
		damaged = "checksum mismatch"
	case binary.LittleEndian.Uint32(h[8:]) != formatVersion:
		return "", corrupt("unsupported format version %d (this build reads version %d)",
			binary.LittleEndian.Uint32(h[8:]), formatVersion)
	case binary.LittleEndian.Uint64(h[16:]) != base:
		return "", corrupt("segment header says base position %d", binary.LittleEndian.Uint64(h[16:]))
	// Every build has written the reserved bytes as zeros. Bytes 36-39 are
	// outside the checksum: this is the only check they get.
	case binary.LittleEndian.Uint32(h[36:]) != 0:
		damaged = "reserved bytes 36-39 are not zero"
	case binary.LittleEndian.Uint32(h[12:]) != 0:
		damaged = "reserved bytes 12-15 are not zero"
	default:
		return "", nil
	}
	// The file name stands for the header's base position when the first
	// record, if intact, agrees.
	rec, err := readRecordAt(f, segmentHeaderSize)
	if err != nil {
		return "", fmt.Errorf("read segment %s: %w", name, err)
	}
	if rec != nil && rec.Position != base {
		return "", corrupt("the segment header is damaged (%s) and the first record has position %d, "+
			"not %d as the file name says", damaged, rec.Position, base)
	}
	return damaged, nil
}

// readRecordAt returns the record at off, or nil when there is no intact
// one there.
func readRecordAt(f vfs.File, off int64) (*Record, error) {
	h := make([]byte, recordHeaderSize)
	n, err := readFull(f, h, off)
	if err != nil || n < recordHeaderSize {
		return nil, err
	}
	l := binary.LittleEndian.Uint32(h)
	size, err := f.Size()
	if err != nil || l == 0 || l > MaxPayload || off+int64(recordSize(int(l))) > size {
		return nil, err // no allocation for a damaged length
	}
	b := make([]byte, recordSize(int(l)))
	if n, err = readFull(f, b, off); err != nil || n < len(b) {
		return nil, err
	}
	rec, _, _, err := decodeRecord(b)
	if err != nil {
		return nil, nil
	}
	return &rec, nil
}

// indexEntry is one entry of a segment's sparse index: the record at file
// offset off has position pos and timestamp ts.
type indexEntry struct {
	pos  uint64
	off  int64
	ts   int64
	last bool // the segment's last record; written when the segment is sealed
}

// An index file is a sequence of 32-byte entries:
//
//	pos uint64, offset uint64, timestamp int64, flags uint32, CRC-32C of the first 28 bytes
//
// It can always be rebuilt from its segment, so it is fsynced only when the
// segment is sealed.
const (
	indexEntrySize = 32
	indexFlagLast  = 1
)

func appendIndexEntry(dst []byte, e indexEntry) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, e.pos)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.off))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.ts))
	var flags uint32
	if e.last {
		flags = indexFlagLast
	}
	dst = binary.LittleEndian.AppendUint32(dst, flags)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeIndex parses an index file. It stops at the first entry that is
// damaged or out of order and reports whether the whole file was good.
func decodeIndex(b []byte, base uint64) (entries []indexEntry, ok bool) {
	entries = make([]indexEntry, 0, len(b)/indexEntrySize)
	prev := indexEntry{pos: base - 1, off: segmentHeaderSize - 1}
	for ; len(b) >= indexEntrySize; b = b[indexEntrySize:] {
		if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
			return entries, false
		}
		e := indexEntry{
			pos:  binary.LittleEndian.Uint64(b),
			off:  int64(binary.LittleEndian.Uint64(b[8:])),
			ts:   int64(binary.LittleEndian.Uint64(b[16:])),
			last: binary.LittleEndian.Uint32(b[24:])&indexFlagLast != 0,
		}
		if e.pos < prev.pos || e.off < prev.off || e.ts < prev.ts || (e.pos == prev.pos) != (e.off == prev.off) || prev.last ||
			e.pos == prev.pos && len(entries) == 0 { // a repeat of nothing: the entry before the segment
			return entries, false
		}
		if e.pos == prev.pos { // the seal entry may repeat the last sparse entry
			entries[len(entries)-1].last = e.last
		} else {
			entries = append(entries, e)
		}
		prev = e
	}
	return entries, len(b) == 0
}

// segment is one file of the log.
type segment struct {
	base uint64
	path string
	f    vfs.File // set under Log.mu before any of the segment's records become visible

	// refs counts the log's own reference plus one per reader; the file is
	// closed when the last reference goes. removed is set by retention.
	refs    atomic.Int32
	removed atomic.Bool

	// Guarded by Log.mu.
	size    int64 // bytes assigned: header plus framed records
	last    uint64
	lastOff int64
	firstTs int64
	lastTs  int64
	index   []indexEntry
	sealed  bool // rolled over: no more appends (set when the roll is decided)
	durable bool // sealed on disk too: trimmed, fsynced, index complete (set by seal)

	zero zeroState // zero-filling ahead of the flusher's writes

	// Used by the flusher only.
	idx        vfs.File
	idxWritten int // entries written to idx
}

func (s *segment) name() string { return filepath.Base(s.path) }

func (s *segment) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.closeFiles()
	}
}

func (s *segment) closeFiles() {
	if s.f != nil {
		s.f.Close()
	}
	if s.idx != nil {
		s.idx.Close()
	}
}

// indexSnapshot returns the entries readers may use.
func (l *Log) indexSnapshot(s *segment) []indexEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.index[:len(s.index):len(s.index)]
}

// createSegmentFile writes the header, preallocates and makes the new file
// durable, including its directory entry.
func (l *Log) createSegmentFile(s *segment) error {
	f, err := l.fs.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if !l.cfg.NoPreallocate {
		if err := f.Allocate(l.cfg.SegmentSize); err != nil && !errors.Is(err, vfs.ErrUnsupported) {
			f.Close()
			return fmt.Errorf("preallocate segment %s: %w", s.name(), err)
		}
	}
	if _, err := f.WriteAt(encodeSegmentHeader(s.base, l.cfg.Now().UnixNano()), 0); err != nil {
		f.Close()
		return fmt.Errorf("write segment header %s: %w", s.name(), err)
	}
	idx, err := l.fs.OpenFile(strings.TrimSuffix(s.path, segmentExt)+indexExt, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		f.Close()
		return fmt.Errorf("create index: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		idx.Close()
		return fmt.Errorf("sync segment %s: %w", s.name(), err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		idx.Close()
		return fmt.Errorf("sync directory %s: %w", l.dir, err)
	}
	// Under l.mu: the syncer and Log.Verify look at the active segment's
	// file while the flusher creates it.
	l.mu.Lock()
	s.f, s.idx = f, idx
	l.mu.Unlock()
	return nil
}

// readFull reads len(b) bytes at off, or fewer at the end of the file.
func readFull(f io.ReaderAt, b []byte, off int64) (int, error) {
	n, err := f.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// dirLock is an exclusive lock on the data directory's LOCK file, which
// also names the holder's pid for the error a second process gets.
type dirLock struct{ c io.Closer }

func lockDir(fs vfs.FS, dir string) (*dirLock, error) {
	path := filepath.Join(dir, "LOCK")
	c, err := fs.Lock(path)
	if errors.Is(err, vfs.ErrLocked) {
		who := ""
		if holder, rerr := vfs.ReadFile(fs, path); rerr == nil && len(strings.TrimSpace(string(holder))) > 0 {
			who = " (held by pid " + strings.TrimSpace(string(holder)) + ")"
		}
		return nil, fmt.Errorf("%w: %s is opened by another process%s; stop it or use another --data-dir",
			errLocked, dir, who)
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// The pid is only a hint for that error: writing it may fail (Windows
	// refuses writes to a locked range) without harm.
	if f, err := fs.OpenFile(path, os.O_RDWR, 0); err == nil {
		f.Truncate(0)
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		f.Close()
	}
	return &dirLock{c: c}, nil
}

func (d *dirLock) unlock() { d.c.Close() }
