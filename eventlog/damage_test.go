package eventlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
)

// newestSegment writes n records of size bytes (one per batch) and returns
// the log's directory and the offsets of the records in its only segment.
func newestSegment(t *testing.T, n, size int) (string, string, []int64) {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, dir, Config{})
	appendN(t, l, n, 1, size)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = segmentHeaderSize + int64(i*recordSize(size))
	}
	return dir, filepath.Join(dir, segmentName(1)), offs
}

func editFile(t *testing.T, path string, edit func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Issue 9: one flipped byte in the middle of the newest segment silently
// dropped every acknowledged record after it, because recovery took it
// for a torn tail. Damage that intact records follow is corruption: the
// damaged records are refused, the others kept.
func TestDamageInTheNewestSegmentKeepsWhatFollows(t *testing.T) {
	t.Parallel()
	const n, size = 200, 100
	tests := []struct {
		name        string
		edit        func(b []byte, offs []int64)
		first, last uint64 // damaged positions
	}{
		{"one flipped byte", func(b []byte, offs []int64) { b[offs[19]+40] ^= 0x10 }, 20, 20},
		{"a damaged length", func(b []byte, offs []int64) { b[offs[49]] = 0xff }, 50, 50},
		{"garbage over several records", func(b []byte, offs []int64) {
			rng := rand.New(rand.NewPCG(1, 1))
			for i := offs[99] + 3; i < offs[104]+50; i++ {
				b[i] = byte(rng.IntN(255) + 1)
			}
		}, 100, 105},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, seg, offs := newestSegment(t, n, size)
			editFile(t, seg, func(b []byte) { tc.edit(b, offs) })

			rep, err := Verify(context.Background(), dir, nil)
			if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Tail || rep.Problems[0].Offset != offs[tc.first-1] ||
				rep.Problems[0].Position != tc.first {
				t.Fatalf("verify: %v %+v; want one corruption at offset %d", err, rep.Problems, offs[tc.first-1])
			}
			l := openLog(t, dir, Config{})
			defer l.Close()
			if cuts := l.Recovery(); len(cuts) != 0 {
				t.Fatalf("recovery cut %v", cuts)
			}
			if d := l.Damage(); len(d) != 1 || d[0].FirstPosition != tc.first || d[0].LastPosition != tc.last ||
				d[0].Offset != offs[tc.first-1] || d[0].End != offs[tc.last] {
				t.Fatalf("damage = %+v; want positions %d-%d", d, tc.first, tc.last)
			}
			if l.Last() != n {
				t.Fatalf("last = %d, want %d: acknowledged records after the damage were dropped", l.Last(), n)
			}
			for pos := uint64(1); pos <= n; pos++ {
				rec, err := l.Read(pos)
				if pos >= tc.first && pos <= tc.last {
					var ce *rewind.CorruptionError
					if !errors.As(err, &ce) || ce.Segment != segmentName(1) {
						t.Fatalf("read of damaged position %d: %v, want a corruption error naming the segment", pos, err)
					}
					continue
				}
				if err != nil || string(rec.Payload) != string(payload(pos, size)) {
					t.Fatalf("read %d: %v", pos, err)
				}
			}
			// Appends go on after the last intact record.
			appendN(t, l, 3, 1, size)
			if l.Last() != n+3 {
				t.Fatalf("last after appends = %d", l.Last())
			}
		})
	}
}

// A whole sector of zeros in the middle is what a power cut leaves when the
// disk wrote a later sector of an unsynced write but not an earlier one: a
// torn tail, cut with everything after it (none of it was acknowledged).
func TestZeroSectorIsATornWrite(t *testing.T) {
	t.Parallel()
	const n, size = 200, 100
	dir, seg, offs := newestSegment(t, n, size)
	asIfCrashed(t, dir, 0) // nothing after the open was known to be on disk
	const sector = 4096    // a sector inside record k
	editFile(t, seg, func(b []byte) { clear(b[sector : sector+512]) })
	k := 0
	for k+1 < len(offs) && offs[k+1] <= sector {
		k++
	}
	rep, err := Verify(context.Background(), dir, nil)
	if err != nil || len(rep.Problems) != 1 || !rep.Problems[0].Tail || rep.Problems[0].Position != uint64(k+1) {
		t.Fatalf("verify: %v %+v; want a torn tail at position %d", err, rep.Problems, k+1)
	}
	l := openLog(t, dir, Config{})
	defer l.Close()
	cuts := l.Recovery()
	if len(cuts) != 1 || cuts[0].FirstPosition != uint64(k+1) || cuts[0].Offset != offs[k] || !strings.Contains(cuts[0].Reason, "torn write") {
		t.Fatalf("recovery = %+v; want a torn-write cut at position %d", cuts, k+1)
	}
	if len(l.Damage()) != 0 || l.Last() != uint64(k) {
		t.Fatalf("damage %v, last %d; want none and %d", l.Damage(), l.Last(), k)
	}
}

// A damaged record in a sealed segment costs only its own position: reads
// of the records after it, up to the next sparse index entry, used to fail
// too, since the scan from the entry before could not cross the damage.
func TestReadsPastDamageInASealedSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{SegmentSize: 64 << 10})
	for len(*l.segments.Load()) < 2 {
		appendN(t, l, 10, 1, 100)
	}
	sealedLast := (*l.segments.Load())[1].base - 1
	l.Close()
	const damaged = 30 // records of 128 bytes: the index has an entry every 32
	editFile(t, filepath.Join(dir, segmentName(1)), func(b []byte) {
		b[segmentHeaderSize+(damaged-1)*recordSize(100)+50] ^= 1
	})
	l = openLog(t, dir, Config{SegmentSize: 64 << 10})
	defer l.Close()
	for pos := uint64(1); pos <= sealedLast; pos++ {
		rec, err := l.Read(pos)
		if pos == damaged {
			if !errors.Is(err, rewind.ErrCorruption) {
				t.Fatalf("read of the damaged position: %v", err)
			}
			continue
		}
		if err != nil || string(rec.Payload) != string(payload(pos, 100)) {
			t.Fatalf("read of intact position %d: %v", pos, err)
		}
	}
	// A whole-log reader stops at the damage and goes on when told to.
	r := l.NewReader(1)
	defer r.Close()
	n := 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, rewind.ErrCorruption) || r.Position() != damaged {
				t.Fatalf("reader at %d: %v", r.Position(), err)
			}
			r.Seek(damaged + 1)
			continue
		}
		if rec.Position == damaged {
			t.Fatal("the damaged record was served")
		}
		n++
	}
	if uint64(n) != l.Last()-1 {
		t.Fatalf("read %d records, want all %d but the damaged one", n, l.Last()-1)
	}
}

// Issue 9: one flipped byte in any segment header — even the creation time
// of the oldest sealed segment — made the log impossible to open. The
// header is redundant with the file name (the base position) and with the
// records' own checksums and positions: a damaged header is reported as
// damage, by Verify and by Open, on every open, and every record of the
// segment stays readable. Bytes 36-39, reserved and zero, lie outside the
// header's checksum: a flipped bit there went unseen by Verify and Open.
func TestDamagedSegmentHeaderKeepsItsRecords(t *testing.T) {
	t.Parallel()
	fields := []struct {
		name string
		off  int
	}{{"magic", 0}, {"format version", 8}, {"reserved", 12}, {"base position", 16}, {"creation time", 24},
		{"checksum", 32}, {"reserved after the checksum", 36}, {"last reserved byte", 39}}
	for _, newest := range []bool{false, true} {
		for _, fl := range fields {
			t.Run(fmt.Sprintf("newest=%v/%s", newest, fl.name), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				cfg := Config{SegmentSize: 64 << 10}
				l := openLog(t, dir, cfg)
				for len(*l.segments.Load()) < 3 {
					appendN(t, l, 10, 1, 100)
				}
				appendN(t, l, 10, 1, 100) // the newest segment holds records too
				segs := *l.segments.Load()
				seg := segs[0]
				if newest {
					seg = segs[len(segs)-1]
				}
				name, last := seg.name(), l.Last()
				l.Close()
				editFile(t, filepath.Join(dir, name), func(b []byte) { b[fl.off] ^= 0x04 })

				rep, err := Verify(context.Background(), dir, nil)
				if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Segment != name || rep.Problems[0].Tail ||
					!strings.Contains(rep.Problems[0].Reason, "header") || rep.LastPosition != last {
					t.Fatalf("verify: %v %+v, last %d; want one header problem in %s and every record checked",
						err, rep.Problems, rep.LastPosition, name)
				}
				for range 2 { // reported on every open, not only the first
					l = openLog(t, dir, cfg)
					d := l.Damage()
					if len(d) != 1 || d[0].Segment != name || !d[0].Header || d[0].FirstPosition != 0 || len(l.Recovery()) != 0 {
						t.Fatalf("damage %+v, recovery %v; want the header of %s", d, l.Recovery(), name)
					}
					if l.Last() != last {
						t.Fatalf("last %d, want %d", l.Last(), last)
					}
					for pos := uint64(1); pos <= last; pos++ {
						if rec, err := l.Read(pos); err != nil || string(rec.Payload) != string(payload(pos, 100)) {
							t.Fatalf("read %d: %v", pos, err)
						}
					}
					if rep, err := l.Verify(context.Background(), nil); err != nil || len(rep.Problems) != 1 {
						t.Fatalf("verify of the open log: %v %+v", err, rep.Problems)
					}
					appendN(t, l, 5, 1, 100)
					last += 5
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// What a damaged header cannot tell is refused: an intact header of another
// format version, or a segment whose first record contradicts its name.
func TestSegmentHeaderRefusals(t *testing.T) {
	t.Parallel()
	setupLog := func(t *testing.T) (string, string) {
		dir := t.TempDir()
		l := openLog(t, dir, Config{SegmentSize: 64 << 10})
		for len(*l.segments.Load()) < 2 {
			appendN(t, l, 10, 1, 100)
		}
		l.Close()
		return dir, filepath.Join(dir, segmentName(1))
	}
	t.Run("intact header of another version", func(t *testing.T) {
		t.Parallel()
		dir, seg := setupLog(t)
		editFile(t, seg, func(b []byte) {
			b[8] = 2
			binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
		})
		if _, err := Open(dir, Config{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "unsupported format version 2") {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("damaged header and a first record of another position", func(t *testing.T) {
		t.Parallel()
		dir, seg := setupLog(t)
		next := filepath.Join(dir, segmentName(2))
		if err := os.Rename(seg, next); err != nil { // the name now says 2, the records say 1
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "00000000000000000001.idx"))
		editFile(t, next, func(b []byte) { b[24] ^= 1 })
		_, err := Open(dir, Config{Logger: quietLogger()})
		if !errors.Is(err, rewind.ErrCorruption) || !strings.Contains(err.Error(), "first record") {
			t.Fatalf("open: %v", err)
		}
	})
}

// NextBatch checks each buffered record as Next does — length, checksum,
// reserved flags, position — and never returns a damaged one: the records
// before the damage come back, then a *rewind.CorruptionError at the
// damaged position, and after a Seek past it the rest.
func TestNextBatchNeverServesDamage(t *testing.T) {
	t.Parallel()
	// Records are checked three at a time (the first batch's first record
	// comes through Next, then 2–4, 5–7, …, 26–28, 29–31): the damage is put
	// in each place of such a group in turn.
	const size = 100
	for _, damaged := range []uint64{28, 29, 30} {
		for _, c := range []struct {
			name string
			edit func(rec []byte)
		}{
			{"payload byte", func(rec []byte) { rec[recordHeaderSize+50] ^= 1 }},
			{"checksum", func(rec []byte) { rec[5] ^= 0x10 }},
			{"reserved flags", func(rec []byte) { rec[26] = 1 }},
			{"position, checksum recomputed", func(rec []byte) {
				binary.LittleEndian.PutUint64(rec[8:], damaged+1000)
				binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(rec[8:], castagnoli))
			}},
		} {
			t.Run(fmt.Sprintf("%s/at-%d", c.name, damaged), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				l := openLog(t, dir, Config{SegmentSize: 64 << 10})
				for len(*l.segments.Load()) < 2 {
					appendN(t, l, 10, 1, size)
				}
				l.Close()
				editFile(t, filepath.Join(dir, segmentName(1)), func(b []byte) {
					off := segmentHeaderSize + int(damaged-1)*recordSize(size)
					c.edit(b[off : off+recordSize(size)])
				})
				l = openLog(t, dir, Config{SegmentSize: 64 << 10})
				defer l.Close()
				r := l.NewReader(1)
				defer r.Close()
				recs := make([]Record, 0, 64)
				var got []Record
				failures := 0
				for {
					var err error
					recs, err = r.NextBatch(recs)
					for _, rec := range recs {
						if rec.Position == damaged {
							t.Fatal("the damaged record was served")
						}
						rec.Payload = append([]byte(nil), rec.Payload...)
						got = append(got, rec)
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						if failures++; !errors.Is(err, rewind.ErrCorruption) || r.Position() != damaged || len(recs) != 0 {
							t.Fatalf("at %d: %v, with %d records", r.Position(), err, len(recs))
						}
						r.Seek(damaged + 1)
					}
				}
				if failures != 1 {
					t.Fatalf("%d corruption errors, want 1", failures)
				}
				checkRecords(t, got[:damaged-1], 1, damaged-1, size)
				checkRecords(t, got[damaged-1:], damaged+1, l.Last(), size)
			})
		}
	}
}
