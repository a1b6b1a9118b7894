package eventlog

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

var tailFull = flag.Bool("tail.full", false, "torn-tail tests: damage both kinds of segment files, flip every bit of "+
	"every byte and reopen after every damage (slow)")

// The torn-tail tests damage the last records of the last segment at every
// byte offset (see offsets), in three ways (cut the file short, zero it
// from there on, flip one bit), and check each time that:
//   - Verify (read-only) reports exactly the damage, naming the segment and
//     the offset and position of the first damaged record, as a tail problem;
//   - Open cuts exactly the damaged record, the rest of its batch and
//     everything after it, and Recovery reports the cut with the right
//     offset, positions and byte count;
//   - every record before the cut is served intact, nothing after it is;
//   - Verify is clean afterwards and appends continue at the right position.
//
// The expected outcome is computed from the record format alone (the
// layout the test wrote), not from the scanner under test.

// tailLayout is one record of the template log, as the format places it.
type tailLayout struct {
	pos        uint64
	size       int   // payload bytes
	off, end   int64 // in the last segment; 0 for earlier segments
	batchStart int64 // offset of the first record of its batch
	batchEnd   bool
}

type tailTemplate struct {
	dir     string
	cfg     Config
	recs    []tailLayout // every record, by position-1
	lastSeg string       // file name of the last segment
	base    uint64       // its base position
	orig    []byte       // its bytes
	damage  int64        // damage starts at or after this offset
}

// writeTailTemplate writes a log with one sealed segment and an active one
// whose last batches have payload sizes chosen to exercise every case:
// single records, batches of several records and a length whose low byte
// is zero (256).
func writeTailTemplate(t *testing.T, preallocate bool) *tailTemplate {
	t.Helper()
	tt := &tailTemplate{dir: t.TempDir(), cfg: Config{SegmentSize: 64 << 10, IndexInterval: 128, NoPreallocate: !preallocate,
		Logger: quietLogger()}}
	l := openLog(t, tt.dir, tt.cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	var sizes [][]int
	for len(*l.segments.Load()) < 2 || l.Stats().Bytes < 64<<10+2000 {
		batch := make([]int, 1+rng.IntN(4))
		for i := range batch {
			batch[i] = 20 + rng.IntN(200)
		}
		appendSized(t, l, batch)
		sizes = append(sizes, batch)
	}
	// The last few batches, the ones the tests damage.
	tail := [][]int{{256, 17, 40}, {1}, {20, 9}, {13}}
	for _, batch := range tail {
		appendSized(t, l, batch)
		sizes = append(sizes, batch)
	}
	segs := *l.segments.Load()
	tt.base = segs[len(segs)-1].base
	tt.lastSeg = segmentName(tt.base)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	asIfCrashed(t, tt.dir, 0) // the tests damage the tail as a crash would

	pos, off := uint64(1), int64(segmentHeaderSize)
	for bi, batch := range sizes {
		start := off
		for i, n := range batch {
			r := tailLayout{pos: pos, size: n, batchEnd: i == len(batch)-1}
			if pos >= tt.base {
				r.off, r.end, r.batchStart = off, off+int64(recordSize(n)), start
				off = r.end
			}
			if bi == len(sizes)-len(tail) && i == 0 {
				tt.damage = r.off
			}
			tt.recs = append(tt.recs, r)
			pos++
		}
	}
	orig, err := os.ReadFile(filepath.Join(tt.dir, tt.lastSeg))
	if err != nil {
		t.Fatal(err)
	}
	tt.orig = orig
	if end := tt.recs[len(tt.recs)-1].end; int64(len(orig)) < end || !allZero(orig[end:]) {
		t.Fatalf("template: last segment is %d bytes, records end at %d", len(orig), end)
	}
	for _, r := range tt.recs[tt.base-1:] {
		if got := le32(orig[r.off:]); got != uint32(r.size) {
			t.Fatalf("template: record %d at offset %d has length %d, want %d", r.pos, r.off, got, r.size)
		}
	}
	return tt
}

// appendSized appends one batch whose payloads have the given sizes.
func appendSized(t testing.TB, l *Log, sizes []int) {
	t.Helper()
	next := l.Last() + 1
	entries := make([]Entry, len(sizes))
	for i, n := range sizes {
		entries[i] = Entry{Kind: 1, Payload: payload(next+uint64(i), n)}
	}
	a, err := l.Append(entries)
	if err != nil {
		t.Fatal(err)
	}
	if a.First != next {
		t.Fatalf("batch got position %d, want %d", a.First, next)
	}
	if err := a.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// tailExpect is what a damage must lead to.
type tailExpect struct {
	damaged bool
	problem Problem // Verify's only problem when damaged
	cut     *Cut    // Recovery's only cut, if Open must cut bytes
	last    uint64  // Last after Open
	// kept is the damaged record when intact records follow it and it is
	// not a torn write: corruption that Open keeps (refused on read).
	kept *Damage
}

// expectTail computes the outcome of damage whose first changed byte is at
// offset c of the last segment (c < 0: nothing changed). mutated is the
// damaged file; asEnd says whether the first damaged record now reads as the
// end of the data (no header byte left that is not zero).
func (tt *tailTemplate) expectTail(mutated []byte, c int64, asEnd bool) tailExpect {
	last := tt.recs[len(tt.recs)-1].pos
	if c < 0 {
		return tailExpect{last: last}
	}
	k := -1 // the first record with a changed byte
	for i, r := range tt.recs {
		if r.pos >= tt.base && c < r.end {
			k = i
			break
		}
	}
	if k < 0 { // only bytes after the data changed
		end := tt.recs[len(tt.recs)-1].end
		return tailExpect{damaged: true, last: last,
			problem: Problem{Segment: tt.lastSeg, Offset: end, Position: last + 1, Tail: true},
			cut:     &Cut{Segment: tt.lastSeg, Offset: end, Bytes: lastNonZeroIn(mutated, end) - end, FirstPosition: last + 1}}
	}
	dk := tt.recs[k]
	if next := tt.recs[len(tt.recs)-1]; k < len(tt.recs)-1 && !asEnd && int64(len(mutated)) >= next.end &&
		bytes.Equal(mutated[next.off:next.end], tt.orig[next.off:next.end]) && !tornBytes(mutated, dk.off, dk.end) {
		// Intact records follow the damaged one: corruption, kept.
		return tailExpect{damaged: true, last: last,
			problem: Problem{Segment: tt.lastSeg, Offset: dk.off, Position: dk.pos},
			kept:    &Damage{Segment: tt.lastSeg, Offset: dk.off, End: dk.end, FirstPosition: dk.pos, LastPosition: dk.pos}}
	}
	e := tailExpect{damaged: true, last: dk.pos - 1}
	orphans := 0
	for i := k - 1; i >= 0 && tt.recs[i].off >= dk.batchStart; i-- {
		orphans++
		e.last--
	}
	cut := Cut{Segment: tt.lastSeg, Offset: dk.batchStart, FirstPosition: e.last + 1}
	if orphans > 0 {
		cut.Records, cut.LastPosition = orphans, dk.pos-1
	}
	cut.Bytes = lastNonZeroIn(mutated, dk.batchStart) - dk.batchStart
	if cut.Bytes > 0 {
		e.cut = &cut
	}
	switch {
	case !asEnd:
		e.problem = Problem{Segment: tt.lastSeg, Offset: dk.off, Position: dk.pos, Tail: true}
	case orphans > 0:
		e.problem = Problem{Segment: tt.lastSeg, Offset: dk.batchStart, Position: e.last + 1, Tail: true}
	default: // the damage removed whole batches: a clean, shorter log
		e.damaged = false
	}
	return e
}

// tornBytes is the rule of a torn write, written from its documentation
// (see tornGap): the rest of the sector where the damage starts, or a whole
// sector inside it, is zero.
func tornBytes(b []byte, from, to int64) bool {
	const sector = 512
	if end := min(to, (from/sector+1)*sector); allZero(b[from:end]) {
		return true
	}
	for s := (from + sector - 1) / sector * sector; s+sector <= to; s += sector {
		if allZero(b[s : s+sector]) {
			return true
		}
	}
	return false
}

func lastNonZeroIn(b []byte, from int64) int64 {
	for i := int64(len(b)) - 1; i >= from; i-- {
		if b[i] != 0 {
			return i + 1
		}
	}
	return from
}

// check applies one damage to a fresh copy of the template in dir and
// checks every promise.
// Unless reopen is set, the check stops after the first append.
func (tt *tailTemplate) check(t *testing.T, dir, what string, mutated []byte, e tailExpect, reopen bool) {
	t.Helper()
	resetDir(t, dir, tt.dir)
	segPath := filepath.Join(dir, tt.lastSeg)
	if err := os.WriteFile(segPath, mutated, 0o644); err != nil {
		t.Fatal(err)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s", what, fmt.Sprintf(format, args...))
	}

	rep, err := Verify(context.Background(), dir, nil)
	if err != nil {
		fail("verify: %v", err)
	}
	if !e.damaged {
		if !rep.OK() {
			fail("verify reported %v for a log that only lost whole batches", rep.Problems)
		}
	} else {
		if len(rep.Problems) != 1 {
			fail("verify reported %d problems, want 1: %v", len(rep.Problems), rep.Problems)
		}
		p := rep.Problems[0]
		p.Reason = ""
		if p != e.problem {
			fail("verify reported %+v (%s), want %+v", p, rep.Problems[0].Reason, e.problem)
		}
	}
	after, err := os.ReadFile(segPath)
	if err != nil || !bytes.Equal(after, mutated) {
		fail("verify changed the segment file (%v)", err)
	}

	cfg := tt.cfg
	cfg.Durability = Sync // what is checked does not depend on the mode; sync writes no state at open and close
	l, err := Open(dir, cfg)
	if err != nil {
		fail("open: %v", err)
	}
	defer func() {
		if l != nil {
			l.Close()
		}
	}()
	if e.kept != nil {
		tt.checkKept(t, what, l, e)
		appendSized(t, l, []int{44, 45})
		if !reopen {
			return
		}
		if err := l.Close(); err != nil {
			fail("close: %v", err)
		}
		if l, err = Open(dir, cfg); err != nil {
			fail("reopen: %v", err)
		}
		e.last += 2
		tt.checkKept(t, what+" (reopened)", l, e)
		return
	}
	cuts := l.Recovery()
	switch {
	case e.cut == nil && len(cuts) != 0:
		fail("recovery cut %v, want nothing", cuts)
	case e.cut != nil && len(cuts) != 1:
		fail("recovery cut %v, want one cut %+v", cuts, *e.cut)
	case e.cut != nil:
		got := cuts[0]
		if got.Reason == "" {
			fail("cut without a reason: %+v", got)
		}
		got.Reason = ""
		if got != *e.cut {
			fail("recovery cut %+v (%s), want %+v", got, cuts[0].Reason, *e.cut)
		}
	}
	if l.Last() != e.last {
		fail("last = %d after recovery, want %d", l.Last(), e.last)
	}
	tt.checkRecords(t, what, l, e.last, e.last)
	if rep, err := l.Verify(context.Background(), nil); err != nil || !rep.OK() {
		fail("open log verify: %v %v", err, rep.Problems)
	}
	// Appends continue right after the cut, and survive a reopen.
	appendSized(t, l, []int{44, 45})
	if !reopen {
		return
	}
	if err := l.Close(); err != nil {
		fail("close: %v", err)
	}
	l = nil
	rep, err = Verify(context.Background(), dir, nil)
	if err != nil || !rep.OK() || rep.LastPosition != e.last+2 {
		fail("verify after recovery and appends: %v %+v", err, rep)
	}
	l, err = Open(dir, cfg)
	if err != nil {
		fail("reopen: %v", err)
	}
	if len(l.Recovery()) != 0 {
		fail("second open cut %v", l.Recovery())
	}
	tt.checkRecords(t, what, l, e.last, e.last+2)
}

// checkKept checks a log that kept a damaged record: nothing cut, the
// damage reported, every other record served, the damaged one refused.
func (tt *tailTemplate) checkKept(t *testing.T, what string, l *Log, e tailExpect) {
	t.Helper()
	if cuts := l.Recovery(); len(cuts) != 0 {
		t.Fatalf("%s: recovery cut %v; the damage is followed by intact records and must be kept", what, cuts)
	}
	if d := l.Damage(); len(d) != 1 || d[0].Reason == "" {
		t.Fatalf("%s: damage reported %+v, want %+v", what, d, *e.kept)
	} else if got := d[0]; func() bool { got.Reason = ""; return got != *e.kept }() {
		t.Fatalf("%s: damage reported %+v, want %+v", what, got, *e.kept)
	}
	if l.Last() != e.last {
		t.Fatalf("%s: last = %d, want %d", what, l.Last(), e.last)
	}
	rep, err := l.Verify(context.Background(), nil)
	if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Offset != e.kept.Offset || rep.Problems[0].Tail {
		t.Fatalf("%s: open log verify: %v %+v", what, err, rep.Problems)
	}
	r := l.NewReader(1)
	defer r.Close()
	tmpl := tt.recs[len(tt.recs)-1].pos
	for pos := uint64(1); pos <= e.last; pos++ {
		r.Seek(pos)
		rec, err := r.Next()
		if pos == e.kept.FirstPosition {
			var ce *rewind.CorruptionError
			if !errors.As(err, &ce) || ce.Segment != e.kept.Segment || ce.Position != rewind.Position(pos) {
				t.Fatalf("%s: reading the damaged position %d: %v, want a corruption error naming it", what, pos, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: read %d: %v", what, pos, err)
		}
		var want []byte
		if pos <= tmpl {
			want = payload(pos, tt.recs[pos-1].size)
		} else {
			want = payload(pos, 44+int(pos-tmpl-1))
		}
		if rec.Position != pos || !bytes.Equal(rec.Payload, want) {
			t.Fatalf("%s: position %d differs", what, pos)
		}
	}
}

// checkRecords reads the whole log and checks that it holds exactly the
// template's records up to tmpl, intact, then the records the test
// appended after recovery (payload sizes 44, 45…), up to last.
func (tt *tailTemplate) checkRecords(t *testing.T, what string, l *Log, tmpl, last uint64) {
	t.Helper()
	r := l.NewReader(1)
	defer r.Close()
	var pos uint64
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: read at %d: %v", what, r.Position(), err)
		}
		pos++
		if rec.Position != pos {
			t.Fatalf("%s: read position %d, want %d", what, rec.Position, pos)
		}
		var want []byte
		if pos <= tmpl {
			want = payload(pos, tt.recs[pos-1].size)
		} else {
			want = payload(pos, 44+int(pos-tmpl-1))
		}
		if !bytes.Equal(rec.Payload, want) {
			t.Fatalf("%s: payload of position %d differs", what, pos)
		}
	}
	if pos != last || l.Last() != last {
		t.Fatalf("%s: read %d records, last %d, want %d", what, pos, l.Last(), last)
	}
	for _, p := range []uint64{1, tt.base, tmpl, last} {
		if p == 0 || p > last {
			continue
		}
		if rec, err := l.Read(p); err != nil || rec.Position != p {
			t.Fatalf("%s: Read(%d) = %d, %v", what, p, rec.Position, err)
		}
	}
}

// resetDir makes dst a copy of src's files.
func resetDir(t *testing.T, dst, src string) {
	t.Helper()
	old, err := os.ReadDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range old {
		if err := os.Remove(filepath.Join(dst, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fileKinds are the two shapes a segment file can have: sized by its
// writes, or preallocated to the segment size (the default). The default
// run damages the shape where each damage is most natural; -tail.full both.
func fileKinds(natural bool) []bool {
	if *tailFull {
		return []bool{false, true}
	}
	return []bool{natural}
}

func kindName(prealloc bool) string {
	if prealloc {
		return "preallocated"
	}
	return "sized"
}

// offsets returns the offsets to damage: every byte of the last batches,
// except, unless -tail.full, the inside of payloads longer than 64 bytes
// (each such byte fails the checksum like its neighbours). extra adds
// offsets past the end of the data.
func (tt *tailTemplate) offsets(extra int64) []int64 {
	var offs []int64
	for d := tt.damage; d < tt.end()+extra; d++ {
		r, _ := tt.recordAt(d)
		if !*tailFull && r.size > 64 && d > r.off+recordHeaderSize && d < r.end-1 {
			continue
		}
		offs = append(offs, d)
	}
	return offs
}

// reopenAt says which damages are followed by a reopen: all with
// -tail.full, otherwise one offset in 16 and every record's first byte.
func (tt *tailTemplate) reopenAt(d int64) bool {
	_, first := tt.recordAt(d)
	return *tailFull || first || d%16 == 0
}

func TestTornTail(t *testing.T) {
	t.Parallel()
	// A torn write leaves a file cut short (a file that grows with its
	// writes) or a written prefix followed by the preallocated zeros.
	for _, prealloc := range fileKinds(false) {
		t.Run("truncate/"+kindName(prealloc), func(t *testing.T) {
			t.Parallel()
			tt := writeTailTemplate(t, prealloc)
			dir := t.TempDir()
			for _, d := range tt.offsets(0) {
				mutated := tt.orig[:d:d]
				_, asEnd := tt.recordAt(d)
				tt.check(t, dir, fmt.Sprintf("truncate at %d", d), mutated, tt.expectTail(mutated, d, asEnd), tt.reopenAt(d))
			}
		})
	}
	for _, prealloc := range fileKinds(true) {
		t.Run("zero/"+kindName(prealloc), func(t *testing.T) {
			t.Parallel()
			tt := writeTailTemplate(t, prealloc)
			dir := t.TempDir()
			for _, d := range tt.offsets(0) {
				mutated := bytes.Clone(tt.orig)
				clear(mutated[d:])
				c := firstDiff(tt.orig, mutated)
				r, _ := tt.recordAt(max(c, 0))
				asEnd := c >= 0 && allZero(mutated[r.off:min(r.off+recordHeaderSize, int64(len(mutated)))])
				tt.check(t, dir, fmt.Sprintf("zero from %d", d), mutated, tt.expectTail(mutated, c, asEnd), tt.reopenAt(d))
			}
		})
	}
}

func TestBitFlipTail(t *testing.T) {
	t.Parallel()
	for _, prealloc := range fileKinds(true) {
		t.Run(kindName(prealloc), func(t *testing.T) {
			t.Parallel()
			tt := writeTailTemplate(t, prealloc)
			dir := t.TempDir()
			kept, cut := 0, 0
			defer func() {
				// Both outcomes must be exercised: a flip followed by intact
				// records is kept as corruption, one in the last record cut.
				if !t.Failed() && (kept == 0 || cut == 0) {
					t.Errorf("%d flips kept as corruption and %d cut; want both", kept, cut)
				}
			}()
			// Up to 8 bytes past the data: a stray bit where only zeros
			// belong is damage too.
			for _, d := range tt.offsets(8) {
				bits := []uint{uint(d % 8)}
				if *tailFull {
					bits = []uint{0, 1, 2, 3, 4, 5, 6, 7}
				}
				for _, bit := range bits {
					mutated := bytes.Clone(tt.orig)
					if d >= int64(len(mutated)) {
						mutated = append(mutated, make([]byte, d+1-int64(len(mutated)))...)
					}
					mutated[d] ^= 1 << bit
					e := tt.expectTail(mutated, d, false)
					if e.kept != nil {
						kept++
					} else {
						cut++
					}
					tt.check(t, dir, fmt.Sprintf("flip bit %d at %d", bit, d), mutated, e, tt.reopenAt(d))
				}
			}
		})
	}
}

func (tt *tailTemplate) end() int64 { return tt.recs[len(tt.recs)-1].end }

// recordAt returns the record of the last segment holding offset d, and
// whether d is that record's first byte (so a file cut at d has no byte of it).
func (tt *tailTemplate) recordAt(d int64) (tailLayout, bool) {
	for _, r := range tt.recs {
		if r.pos >= tt.base && d < r.end {
			return r, d == r.off
		}
	}
	return tailLayout{off: d, end: d + 1}, true
}

func firstDiff(a, b []byte) int64 {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	if len(a) != len(b) {
		return int64(min(len(a), len(b)))
	}
	return -1
}

// A crash while a new segment file is being created leaves a file whose
// header was never completely written. Open removes and recreates it; Verify
// must call it a torn tail, not corruption. A bad header with data after it
// is damage that Open reports, reading the segment without it (here the
// data is no record: a torn tail, cut).
func TestInterruptedSegmentCreation(t *testing.T) {
	t.Parallel()
	header := encodeSegmentHeader(0, 1) // base fixed below
	tests := []struct {
		name    string
		content func(base uint64) []byte
		tail    bool
	}{
		{"empty file", func(uint64) []byte { return nil }, true},
		{"preallocated, no header", func(uint64) []byte { return make([]byte, 64<<10) }, true},
		{"torn header", func(base uint64) []byte {
			return append(encodeSegmentHeader(base, 1)[:20:20], make([]byte, 64<<10-20)...)
		}, true},
		{"header without its last byte", func(base uint64) []byte { return encodeSegmentHeader(base, 1)[:39] }, true},
		{"bad header with data after it", func(base uint64) []byte {
			b := make([]byte, 200)
			copy(b, header[:30])
			b[150] = 1
			return b
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := Config{SegmentSize: 64 << 10, Logger: quietLogger()}
			// Fill the first segment until the log rolls, then put the
			// second one back in the state the crash leaves it in.
			l := openLog(t, dir, cfg)
			appendN(t, l, 80, 1, 1000)
			segs := *l.segments.Load()
			if len(segs) != 2 {
				t.Fatalf("%d segments, want 2", len(segs))
			}
			next := segs[1].base
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			asIfCrashed(t, dir, 0)
			name := segmentName(next)
			if err := os.Remove(filepath.Join(dir, strings.TrimSuffix(name, segmentExt)+indexExt)); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), tc.content(next), 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(context.Background(), dir, nil)
			if err != nil || len(rep.Problems) != 1 && tc.tail || len(rep.Problems) != 2 && !tc.tail {
				t.Fatalf("verify: %v %+v", err, rep)
			}
			if p := rep.Problems[0]; p.Segment != name || p.Offset != 0 || p.Tail != tc.tail {
				t.Fatalf("verify reported %+v, want a problem at offset 0 of %s with tail=%v", p, name, tc.tail)
			}
			l, err = Open(dir, cfg)
			if !tc.tail {
				if p := rep.Problems[1]; p.Offset != segmentHeaderSize || !p.Tail {
					t.Fatalf("verify reported %+v after the header, want the torn tail", p)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				d, cuts := l.Damage(), l.Recovery()
				if len(d) != 1 || !d[0].Header || d[0].Segment != name || len(cuts) != 1 || cuts[0].Offset != segmentHeaderSize {
					t.Fatalf("damage %+v, recovery %+v; want the header damage and the tail cut", d, cuts)
				}
				appendN(t, l, 5, 2, 1000)
				checkRecords(t, readAll(t, l, 1), 1, next+4, 1000)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cuts := l.Recovery()
			if len(cuts) != 1 || cuts[0].Segment != name || cuts[0].FirstPosition != next || cuts[0].Bytes != 0 || cuts[0].Reason == "" {
				t.Fatalf("recovery = %+v", cuts)
			}
			checkRecords(t, readAll(t, l, 1), 1, next-1, 1000)
			// The recreated segment is empty: a seek by time must look
			// past it at the full one before it.
			if pos, err := l.SeekTime(time.Unix(0, 0)); err != nil || pos != 1 {
				t.Fatalf("SeekTime before the start with an empty last segment = %d, %v; want 1", pos, err)
			}
			if pos, err := l.SeekTime(time.Now().Add(time.Hour)); err != nil || pos != next {
				t.Fatalf("SeekTime after the end with an empty last segment = %d, %v; want %d", pos, err, next)
			}
			appendN(t, l, 5, 2, 1000)
			checkRecords(t, readAll(t, l, 1), 1, next+4, 1000)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if rep, err := Verify(context.Background(), dir, nil); err != nil || !rep.OK() || rep.LastPosition != next+4 {
				t.Fatalf("verify after recovery: %v %+v", err, rep)
			}
		})
	}
}

// lastNonZeroByte, which skips zero blocks, agrees with a plain loop over
// the bytes wherever the last non-zero byte falls: at a block's edges, in
// the first or last block, in a partial block, or nowhere.
func TestLastNonZeroByteAgreesWithALoop(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 4096, 4097, 3*4096 + 17} {
		b := make([]byte, size)
		if got := lastNonZeroByte(b); got != 0 {
			t.Fatalf("all zeros of %d bytes: %d, want 0", size, got)
		}
		for _, at := range []int{0, 1, 4094, 4095, 4096, 4097, size / 2, size - 2, size - 1} {
			if at < 0 || at >= size {
				continue
			}
			clear(b)
			b[at] = 0x80
			if at > 0 {
				b[at/2] = 1 // an earlier non-zero byte must not win
			}
			if got, want := lastNonZeroByte(b), int(lastNonZeroIn(b, 0)); got != want {
				t.Fatalf("size %d, last non-zero at %d: %d, want %d", size, at, got, want)
			}
		}
	}
}
