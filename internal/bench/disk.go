package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"
)

// DiskConfig sizes the raw disk measurement.
type DiskConfig struct {
	Dir string
	// Records is how many framed records the batched-fsync loop writes and
	// reads back. Defaults to 2,000,000.
	Records int
	// SyncEachRecords is how many records the fsync-per-record loop writes.
	// Defaults to 3,000.
	SyncEachRecords int
	// Size is the payload size. Defaults to 128.
	Size int
}

// DiskResult holds the raw limits of the disk, measured by plain Go loops
// with no rewind code: the references for the store's figures.
type DiskResult struct {
	Records           int     `json:"records"`
	Size              int     `json:"size"`
	SyncEvery1000RPS  float64 `json:"sync_every_1000_rps"`
	SyncEachRPS       float64 `json:"sync_each_rps"`
	ReadRPS           float64 `json:"read_rps"`
	FsyncMicros       float64 `json:"fsync_us"`
	SyncEvery1000Secs float64 `json:"sync_every_1000_seconds"`
}

const frameHeader = 28 // length, CRC-32C, position, timestamp, flags: as the log's records

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendFrame(dst []byte, pos uint64, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, pos)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(time.Now().UnixNano()))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], castagnoli))
	return dst
}

// Disk measures, in Dir: appending framed records with one write and one
// fsync per 1000 records; appending with a write and an fsync per record;
// and reading the first file back with checksum verification (warm).
func Disk(ctx context.Context, cfg DiskConfig) (DiskResult, error) {
	if cfg.Records == 0 {
		cfg.Records = 2_000_000
	}
	if cfg.SyncEachRecords == 0 {
		cfg.SyncEachRecords = 3_000
	}
	if cfg.Size == 0 {
		cfg.Size = 128
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return DiskResult{}, err
	}
	res := DiskResult{Records: cfg.Records, Size: cfg.Size}
	payload := make([]byte, cfg.Size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}

	path := filepath.Join(cfg.Dir, "disk-bench-batched")
	f, err := os.Create(path)
	if err != nil {
		return res, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 0, 1000*(frameHeader+cfg.Size))
	start := time.Now()
	for i := 0; i < cfg.Records; i++ {
		buf = appendFrame(buf, uint64(i+1), payload)
		if (i+1)%1000 == 0 || i == cfg.Records-1 {
			if _, err := f.Write(buf); err != nil {
				return res, err
			}
			if err := f.Sync(); err != nil {
				return res, err
			}
			buf = buf[:0]
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
	}
	elapsed := time.Since(start)
	res.SyncEvery1000RPS = round(float64(cfg.Records)/elapsed.Seconds(), 0)
	res.SyncEvery1000Secs = round(elapsed.Seconds(), 3)

	each := filepath.Join(cfg.Dir, "disk-bench-each")
	g, err := os.Create(each)
	if err != nil {
		return res, err
	}
	defer os.Remove(each)
	defer g.Close()
	start = time.Now()
	for i := 0; i < cfg.SyncEachRecords; i++ {
		buf = appendFrame(buf[:0], uint64(i+1), payload)
		if _, err := g.Write(buf); err != nil {
			return res, err
		}
		if err := g.Sync(); err != nil {
			return res, err
		}
	}
	elapsed = time.Since(start)
	res.SyncEachRPS = round(float64(cfg.SyncEachRecords)/elapsed.Seconds(), 0)
	res.FsyncMicros = round(elapsed.Seconds()*1e6/float64(cfg.SyncEachRecords), 1)

	// Read back, warm: once to load the page cache, once measured.
	for pass := 0; pass < 2; pass++ {
		start = time.Now()
		n, err := readFrames(path)
		if err != nil {
			return res, err
		}
		if n != cfg.Records {
			return res, fmt.Errorf("read back %d records, wrote %d", n, cfg.Records)
		}
		res.ReadRPS = round(float64(n)/time.Since(start).Seconds(), 0)
	}
	return res, nil
}

// readFrames reads a file of frames in 1 MiB blocks, verifying each CRC.
func readFrames(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n, have, off := 0, 0, int64(0)
	for {
		m, err := f.ReadAt(buf[have:], off)
		off += int64(m)
		have += m
		p := 0
		for have-p >= frameHeader {
			l := int(binary.LittleEndian.Uint32(buf[p:]))
			if have-p < frameHeader+l {
				break
			}
			if crc32.Checksum(buf[p+8:p+frameHeader+l], castagnoli) != binary.LittleEndian.Uint32(buf[p+4:]) {
				return n, fmt.Errorf("checksum mismatch in record %d", n+1)
			}
			n++
			p += frameHeader + l
		}
		have = copy(buf, buf[p:have])
		if err != nil || m == 0 {
			return n, nil
		}
	}
}

// WriteFrames writes records framed records of size bytes to path, as the
// read-back of Disk reads them, without fsync: the file of the raw read
// reference.
func WriteFrames(path string, records, size int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	buf := make([]byte, 0, 1<<20)
	for i := range records {
		buf = appendFrame(buf, uint64(i+1), payload)
		if len(buf) >= 1<<20-frameHeader-size || i == records-1 {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
			buf = buf[:0]
		}
	}
	return f.Close()
}

// ReadFramesRPS reads a file WriteFrames wrote, verifying every CRC with
// the loop Disk's read_rps uses, and returns the records per second.
func ReadFramesRPS(path string, records int) (float64, error) {
	start := time.Now()
	n, err := readFrames(path)
	if err != nil {
		return 0, err
	}
	if n != records {
		return 0, fmt.Errorf("read back %d records, wrote %d", n, records)
	}
	return round(float64(n)/time.Since(start).Seconds(), 0), nil
}
