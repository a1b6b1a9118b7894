package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Fuzz targets for every decoder and for recovery. Their seed corpus is in
// testdata/fuzz, written from real log files by -update-fuzz-seeds.
//
//	go test ./eventlog -run '^$' -fuzz FuzzDecodeRecord -fuzztime 5m

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz from real log files")

// FuzzDecodeRecord: decodeRecord never panics, never returns a record whose
// checksum fails, and what it returns frames back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, 1, 1e18, 1, flagBatchEnd, []byte("payload")))
	f.Add(appendRecord(nil, 7, 0, 0, 0, []byte{0}))
	f.Add(make([]byte, recordHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, flags, n, err := decodeRecord(b)
		if err != nil {
			if n != 0 || rec.Payload != nil {
				t.Fatalf("error %v with a record of %d bytes", err, n)
			}
			return
		}
		if n < recordHeaderSize+1 || n > len(b) || n != recordSize(len(rec.Payload)) {
			t.Fatalf("record of %d bytes, payload %d, input %d", n, len(rec.Payload), len(b))
		}
		if crc32.Checksum(b[8:n], castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
			t.Fatal("returned a record whose checksum fails")
		}
		if rec.BatchEnd != (flags&flagBatchEnd != 0) {
			t.Fatal("BatchEnd does not match the flags")
		}
		if again := appendRecord(nil, rec.Position, rec.Timestamp, rec.Kind, flags, rec.Payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("the record does not frame back to its bytes:\n%x\n%x", again, b[:n])
		}
	})
}

// FuzzDecodeIndex: decodeIndex never panics and returns only entries a
// reader may trust: increasing positions and offsets, times that never
// decrease, the "last" flag only on the last entry.
func FuzzDecodeIndex(f *testing.F) {
	var seed []byte
	for i, e := range []indexEntry{{pos: 10, off: 40, ts: 5}, {pos: 20, off: 4136, ts: 6}, {pos: 25, off: 5000, ts: 9, last: true}} {
		_ = i
		seed = appendIndexEntry(seed, e)
	}
	f.Add(seed, uint64(10))
	f.Add(seed[:40], uint64(10))
	// An entry for the position before the segment at the offset before
	// its first record once made decodeIndex index entries[-1].
	f.Add(appendIndexEntry(nil, indexEntry{pos: 9, off: segmentHeaderSize - 1}), uint64(10))
	f.Fuzz(func(t *testing.T, b []byte, base uint64) {
		if base == 0 {
			base = 1
		}
		entries, ok := decodeIndex(b, base)
		if ok && len(b)%indexEntrySize != 0 {
			t.Fatalf("a %d-byte index decoded as whole", len(b))
		}
		prev := indexEntry{pos: base - 1, off: segmentHeaderSize - 1, ts: -1 << 63}
		for i, e := range entries {
			if e.pos <= prev.pos || e.off <= prev.off || e.ts < prev.ts || e.pos < base || e.off < segmentHeaderSize {
				t.Fatalf("entry %d %+v after %+v (base %d)", i, e, prev, base)
			}
			if e.last && i != len(entries)-1 {
				t.Fatalf("entry %d of %d is marked last", i, len(entries))
			}
			prev = e
		}
	})
}

// recoveryTemplate is a log of two segments whose last one the recovery
// fuzzer damages.
type recoveryTemplate struct {
	files   map[string][]byte
	last    string // name of the last segment
	base    uint64 // its base position
	dataEnd int    // end of its records
}

var (
	recoveryOnce sync.Once
	recoveryTmpl recoveryTemplate
	recoveryErr  error
)

func fuzzConfig() Config {
	return Config{Durability: None, SegmentSize: 64 << 10, IndexInterval: 256, NoPreallocate: true, Logger: quietLogger(),
		Now: func() time.Time { return time.Unix(1_700_000_000, 0) }}
}

func loadRecoveryTemplate() (recoveryTemplate, error) {
	recoveryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rewind-fuzz-template")
		if err != nil {
			recoveryErr = err
			return
		}
		defer os.RemoveAll(dir)
		recoveryTmpl, recoveryErr = writeRecoveryTemplate(dir)
	})
	return recoveryTmpl, recoveryErr
}

func writeRecoveryTemplate(dir string) (recoveryTemplate, error) {
	l, err := Open(dir, fuzzConfig())
	if err != nil {
		return recoveryTemplate{}, err
	}
	for i := 0; len(*l.segments.Load()) < 2 || l.Last()%7 != 0; i++ {
		n := 1 + i%3
		entries := make([]Entry, n)
		for j := range entries {
			entries[j] = Entry{Kind: uint8(i), Payload: payload(l.Last()+uint64(j)+1, 200+i%50)}
		}
		a, err := l.Append(entries)
		if err == nil {
			err = a.Wait(context.Background())
		}
		if err != nil {
			return recoveryTemplate{}, err
		}
	}
	segs := *l.segments.Load()
	active := segs[len(segs)-1]
	t := recoveryTemplate{files: map[string][]byte{}, last: active.name(), base: active.base, dataEnd: int(active.size)}
	if err := l.Close(); err != nil {
		return t, err
	}
	// The fuzzer damages the tail as a crash would: as if the log had not
	// been closed, nothing was recorded as on disk.
	if err := setDurable(dir, 0); err != nil {
		return t, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return t, err
	}
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && e.Name() != "LOCK" {
			t.files[e.Name()] = b
		}
	}
	return t, nil
}

// FuzzRecoverTail replaces the end of the last segment with fuzz bytes:
// Open must not panic or hang, must serve exactly the complete batches a
// reading of the format keeps (so never a record failing its checksum),
// and the log must then verify clean and take appends.
func FuzzRecoverTail(f *testing.F) {
	tmpl, err := loadRecoveryTemplate()
	if err != nil {
		f.Fatal(err)
	}
	last := tmpl.files[tmpl.last]
	records := uint16(tmpl.dataEnd - segmentHeaderSize) // bytes of records in the last segment
	f.Add(records, []byte{})
	f.Add(records-100, []byte{})
	f.Add(records, []byte{0, 0, 0, 0, 1})
	f.Add(uint16(0), last[segmentHeaderSize:segmentHeaderSize+300])
	f.Add(records-228, last[segmentHeaderSize:segmentHeaderSize+228])
	f.Fuzz(func(t *testing.T, keep uint16, tail []byte) {
		// keep: how many bytes of records to keep before the fuzz bytes
		keep = keep % (records + 1)
		mutated := append(bytes.Clone(last[:segmentHeaderSize+int(keep)]), tail...)
		dir := t.TempDir()
		for name, b := range tmpl.files {
			if name == tmpl.last {
				b = mutated
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, damaged := referenceScan(mutated, tmpl.base)
		done := make(chan struct{})
		go func() {
			defer close(done)
			checkRecovered(t, dir, tmpl, want, damaged)
		}()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("recovery did not finish within a minute")
		}
	})
}

// refRecord is a record as the format defines it.
type refRecord struct {
	pos     uint64
	ts      int64
	kind    uint8
	payload []byte
}

// referenceScan reads a segment as the format describes it, independently
// of the scanner: consecutive records with a good checksum, no unknown
// flag, the expected position and a time that does not go back. At the
// first that is not, it looks for the next intact record (a later
// position, a time not going back): if there is one and the bytes between
// hold no zero sector (see tornBytes), the bad bytes are damage and the
// reading goes on after them; otherwise the segment ends there. It returns
// the records of complete batches, and the damaged positions.
func referenceScan(seg []byte, base uint64) (out []refRecord, damaged []uint64) {
	dataEnd := int(lastNonZeroIn(seg, 0))
	var batch []refRecord
	var prevTs int64
	valid := func(off int) (refRecord, bool, int) {
		if off+recordHeaderSize > dataEnd {
			return refRecord{}, false, 0
		}
		l := int(binary.LittleEndian.Uint32(seg[off:]))
		if l == 0 || l > MaxPayload || off+recordHeaderSize+l > dataEnd {
			return refRecord{}, false, 0
		}
		r := seg[off : off+recordHeaderSize+l]
		if crc32.Checksum(r[8:], castagnoli) != binary.LittleEndian.Uint32(r[4:]) || r[25]&^flagBatchEnd != 0 || r[26] != 0 || r[27] != 0 {
			return refRecord{}, false, 0
		}
		rec := refRecord{pos: binary.LittleEndian.Uint64(r[8:]), ts: int64(binary.LittleEndian.Uint64(r[16:])), kind: r[24], payload: r[28:]}
		return rec, r[25]&flagBatchEnd != 0, len(r)
	}
	for off, pos := segmentHeaderSize, base; off < dataEnd; {
		rec, end, n := valid(off)
		if n == 0 || rec.pos != pos || rec.ts < prevTs {
			next := -1
			for o := off + 1; o+recordHeaderSize <= dataEnd; o++ {
				if r, _, n := valid(o); n > 0 && r.pos > pos && r.pos <= pos+uint64(dataEnd-off)/recordHeaderSize+1 && r.ts >= prevTs {
					next = o
					break
				}
			}
			if next < 0 || tornBytes(seg, int64(off), int64(next)) {
				break
			}
			r, _, _ := valid(next)
			for p := pos; p < r.pos; p++ {
				damaged = append(damaged, p)
			}
			off, pos = next, r.pos
			continue
		}
		prevTs = rec.ts
		batch = append(batch, rec)
		if end {
			out, batch = append(out, batch...), nil
		}
		off += n
		pos++
	}
	return out, damaged
}

func checkRecovered(t *testing.T, dir string, tmpl recoveryTemplate, want []refRecord, damaged []uint64) {
	wantLast := tmpl.base - 1
	if len(want) > 0 {
		wantLast = want[len(want)-1].pos
	}
	for len(damaged) > 0 && damaged[len(damaged)-1] > wantLast { // in the cut tail
		damaged = damaged[:len(damaged)-1]
	}
	rep, err := Verify(context.Background(), dir, nil)
	if err != nil {
		t.Errorf("verify: %v", err)
		return
	}
	if len(damaged) > 0 && (rep.OK() || rep.Problems[0].Tail) {
		t.Errorf("verify of a segment with damaged positions %v: %+v", damaged, rep.Problems)
	}
	l, err := Open(dir, fuzzConfig())
	if err != nil {
		t.Errorf("open: %v", err)
		return
	}
	defer l.Close()
	if l.Last() != wantLast {
		t.Errorf("recovered up to %d, the format keeps up to %d", l.Last(), wantLast)
		return
	}
	r := l.NewReader(tmpl.base)
	defer r.Close()
	i := 0
	for pos := tmpl.base; pos <= wantLast; pos++ {
		r.Seek(pos)
		rec, err := r.Next()
		if len(damaged) > 0 && damaged[0] == pos {
			damaged = damaged[1:]
			if !errors.Is(err, rewind.ErrCorruption) {
				t.Errorf("read of damaged position %d: %v, want corruption", pos, err)
				return
			}
			continue
		}
		if err != nil {
			t.Errorf("read at %d: %v", pos, err)
			return
		}
		w := want[i]
		i++
		if rec.Position != w.pos || rec.Timestamp != w.ts || rec.Kind != w.kind || !bytes.Equal(rec.Payload, w.payload) {
			t.Errorf("record %d differs from the one in the file", rec.Position)
			return
		}
	}
	if i != len(want) {
		t.Errorf("read %d records of the last segment, want %d", i, len(want))
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("read past the last record: %v", err)
	}
	if rep, err := l.Verify(context.Background(), nil); err != nil || rep.OK() != (len(l.Damage()) == 0) {
		t.Errorf("verify after recovery: %v %v (damage %v)", err, rep.Problems, l.Damage())
		return
	}
	a, err := l.Append([]Entry{{Kind: 1, Payload: []byte("after")}})
	if err == nil {
		err = a.Wait(context.Background())
	}
	if err != nil || a.First != wantLast+1 {
		t.Errorf("append after recovery at %d, %v; want %d", a.First, err, wantLast+1)
		return
	}
	kept := len(l.Damage()) > 0
	if err := l.Close(); err != nil {
		t.Errorf("close: %v", err)
		return
	}
	rep, err = Verify(context.Background(), dir, nil)
	if err != nil || rep.OK() == kept || rep.LastPosition != wantLast+1 {
		t.Errorf("verify after the append: %v %+v", err, rep)
	}
}

var fuzzTargets = map[string]int{"FuzzDecodeRecord": 1, "FuzzDecodeIndex": 2, "FuzzRecoverTail": 2} // target -> arguments

// TestFuzzSeeds checks that the seed corpus is committed; with
// -update-fuzz-seeds it first writes it again from real log files.
func TestFuzzSeeds(t *testing.T) {
	if *updateFuzzSeeds {
		writeFuzzSeeds(t)
	}
	checkFuzzSeeds(t, fuzzTargets)
}

func writeFuzzSeeds(t *testing.T) {
	dir := t.TempDir()
	tmpl, err := writeRecoveryTemplate(dir)
	if err != nil {
		t.Fatal(err)
	}
	last := tmpl.files[tmpl.last]
	// Records: the first few of the last segment, whole and cut.
	for i, off := 0, segmentHeaderSize; i < 4; i++ {
		_, _, n, err := decodeRecord(last[off:])
		if err != nil {
			t.Fatal(err)
		}
		writeFuzzSeed(t, "FuzzDecodeRecord", fmt.Sprintf("record-%d", i), last[off:off+n])
		writeFuzzSeed(t, "FuzzDecodeRecord", fmt.Sprintf("record-%d-cut", i), last[off:off+n/2])
		off += n
	}
	writeFuzzSeed(t, "FuzzDecodeRecord", "two-records", last[segmentHeaderSize:segmentHeaderSize+600])
	// Index files, sealed and active.
	for name, b := range tmpl.files {
		if base, ok := parseSegmentName(strings.TrimSuffix(name, indexExt) + segmentExt); ok && strings.HasSuffix(name, indexExt) {
			writeFuzzSeed(t, "FuzzDecodeIndex", "index-"+strings.TrimSuffix(name, indexExt), b, base)
		}
	}
	writeFuzzSeed(t, "FuzzDecodeIndex", "index-cut", tmpl.files[strings.TrimSuffix(tmpl.last, segmentExt)+indexExt][:50], tmpl.base)
	writeFuzzSeed(t, "FuzzDecodeIndex", "index-before-base", appendIndexEntry(nil, indexEntry{pos: 9, off: segmentHeaderSize - 1}), uint64(10))
	// Tails: intact, cut inside a record, garbage, a record repeated.
	end := uint16(tmpl.dataEnd - segmentHeaderSize)
	if int(end) != tmpl.dataEnd-segmentHeaderSize {
		t.Fatalf("the template's last segment holds %d bytes of records, more than a uint16", tmpl.dataEnd-segmentHeaderSize)
	}
	writeFuzzSeed(t, "FuzzRecoverTail", "intact", end, []byte{})
	writeFuzzSeed(t, "FuzzRecoverTail", "cut", end-150, []byte{})
	writeFuzzSeed(t, "FuzzRecoverTail", "garbage", end, []byte("\x05\x00\x00\x00garbage after the data"))
	writeFuzzSeed(t, "FuzzRecoverTail", "repeated-record", end, last[segmentHeaderSize:segmentHeaderSize+500])
	writeFuzzSeed(t, "FuzzRecoverTail", "torn-batch", end-300, last[tmpl.dataEnd-300:tmpl.dataEnd-10])
}

// writeFuzzSeed writes one corpus file in the format of testing.F.
func writeFuzzSeed(t *testing.T, target, name string, args ...any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		default:
			t.Fatalf("seed argument of type %T", a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkFuzzSeeds checks that every target has a committed corpus of
// well-formed seed files.
func checkFuzzSeeds(t *testing.T, targets map[string]int) {
	t.Helper()
	for target, args := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < 3 {
			t.Errorf("%s: %d seed files in %s (%v); run with -update-fuzz-seeds", target, len(entries), dir, err)
			continue
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if err != nil || lines[0] != "go test fuzz v1" || len(lines) != 1+args {
				t.Errorf("%s/%s is not a seed of %d values: %v", target, e.Name(), args, err)
			}
		}
	}
}

// FuzzSegmentHeader checks that a segment header of any bytes, followed by
// one intact record at position 5, is either accepted as intact (exactly
// when it is the header of base 5), reported as damaged (the record
// confirms the base), or refused with a corruption error, and never read
// as another base.
func FuzzSegmentHeader(f *testing.F) {
	f.Add(encodeSegmentHeader(5, 1))
	f.Add(encodeSegmentHeader(6, 1))
	f.Add(make([]byte, segmentHeaderSize))
	f.Add([]byte("RWNDLOG"))
	f.Fuzz(func(t *testing.T, h []byte) {
		fs := vfs.NewMem()
		file, err := fs.OpenFile("/s.seg", os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		h = h[:min(len(h), segmentHeaderSize)]
		b := append(append([]byte(nil), h...), make([]byte, segmentHeaderSize-len(h))...)
		b = appendRecord(b, 5, 1, 1, flagBatchEnd, []byte("payload"))
		if len(h) < segmentHeaderSize {
			b = h // a short file
		}
		if _, err := file.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		damaged, err := checkSegmentHeader(file, "s.seg", 5)
		intact := len(h) == segmentHeaderSize && string(h[:8]) == segmentMagic &&
			crc32.Checksum(h[:32], castagnoli) == binary.LittleEndian.Uint32(h[32:]) &&
			binary.LittleEndian.Uint32(h[8:]) == formatVersion && binary.LittleEndian.Uint64(h[16:]) == 5 &&
			binary.LittleEndian.Uint32(h[12:]) == 0 && binary.LittleEndian.Uint32(h[36:]) == 0
		switch {
		case err != nil:
			if !errors.Is(err, rewind.ErrCorruption) || intact {
				t.Fatalf("refused %x: %v", h, err)
			}
		case damaged == "":
			if !intact {
				t.Fatalf("accepted %x as an intact header of base 5", h)
			}
		default:
			if intact {
				t.Fatalf("intact header %x reported damaged: %s", h, damaged)
			}
		}
	})
}
