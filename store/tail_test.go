package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/storetest"
)

// The store-level torn-tail test: the last records of a closed store are
// damaged at every byte offset (file cut short there, or one bit flipped
// there). Each time Verify must name the damage, Open must cut exactly the
// damaged append and what follows, and the store must then be exactly the
// model of the appends that survived: same events, versions rolled back,
// the stale snapshot ignored; retrying a cut append writes it again at the
// positions that follow, retrying a surviving one is a duplicate.

// tailOp is one write of the template store.
type tailOp struct {
	stream string
	events []rewind.Event // nil: a delete
	first  uint64         // its first position
}

// tailRecord is a record of the last segment, as its framing places it.
type tailRecord struct {
	pos             uint64
	off, end, batch int64 // batch: offset of the first record of its append
}

func TestTornTailStore(t *testing.T) {
	t.Parallel()
	cfg := Config{Log: eventlog.Config{SegmentSize: 64 << 10, Durability: eventlog.None}, Logger: slog.New(slog.DiscardHandler)}
	tmpl := t.TempDir()
	s, err := Open(tmpl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var ops []tailOp
	appendOp := func(stream string, n, size int) {
		evs := make([]rewind.Event, n)
		for i := range evs {
			evs[i] = rewind.Event{ID: uuid.New(), Type: "T", Data: bytes.Repeat([]byte{byte(rng.Uint32())}, size)}
		}
		res, err := s.Append(ctx, stream, rewind.Any, evs...)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, tailOp{stream, evs, uint64(res.FirstPosition)})
	}
	for i := 0; s.Log().Stats().Segments < 2; i++ { // a sealed segment, then the active one
		appendOp([]string{"a", "b", "c"}[i%3], 1+i%3, 300)
	}
	appendOp("c", 2, 10)
	pos, err := s.DeleteStream(ctx, "c", rewind.Any)
	if err != nil {
		t.Fatal(err)
	}
	ops = append(ops, tailOp{stream: "c", first: uint64(pos)})
	damageFrom := len(ops) // the appends whose records are damaged
	appendOp("a", 2, 3)
	appendOp("c", 1, 5) // recreates c
	appendOp("b", 1, 1)
	// The damage models what a crash leaves: the log's state file as the
	// crash would have left it, without what Close records (that the
	// records are on disk, which makes damage to them corruption).
	crashedState, err := os.ReadFile(filepath.Join(tmpl, "log-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpl, "log-state.json"), crashedState, 0o644); err != nil {
		t.Fatal(err)
	}

	bases := segmentBases(t, tmpl)
	lastSeg := fmt.Sprintf("%020d.seg", bases[len(bases)-1])
	orig, err := os.ReadFile(filepath.Join(tmpl, lastSeg))
	if err != nil {
		t.Fatal(err)
	}
	recs := frameRecords(orig, bases[len(bases)-1])
	var damage int64
	for _, r := range recs {
		if r.pos == ops[damageFrom].first {
			damage = r.off
		}
	}
	if damage == 0 {
		t.Fatal("the damaged appends are not in the last segment")
	}
	end := recs[len(recs)-1].end

	// Every offset of the damaged appends with -tail.full. By default
	// every byte of each record's header and the first, last and every
	// 8th byte of its payload (the log never looks inside a payload: a
	// damaged payload byte fails the checksum like its neighbours); and
	// the retries, close and verify after each damage run at a record's
	// first and last byte only. The log's own torn-tail tests cover every
	// byte and bit.
	dir := t.TempDir()
	for d := damage; d < end; d++ {
		r := recordAt(recs, d)
		edge := d == r.off || d == r.end-1
		if !*tailFull && !edge && d >= r.off+28 && (d-r.off)%8 != 0 {
			continue
		}
		thorough := *tailFull || edge
		checkStoreTail(t, fmt.Sprintf("cut at %d", d), dir, tmpl, lastSeg, orig[:d:d], recs, d, false, ops, cfg, thorough)
		mutated := bytes.Clone(orig)
		mutated[d] ^= 1 << (d % 8)
		checkStoreTail(t, fmt.Sprintf("bit %d flipped at %d", d%8, d), dir, tmpl, lastSeg, mutated, recs, d, true, ops, cfg, thorough)
	}
}

var tailFull = flag.Bool("tail.full", false, "store torn-tail test: flip a bit at every offset and run every step after each damage (slow)")

func recordAt(recs []tailRecord, d int64) tailRecord {
	for _, r := range recs {
		if d < r.end {
			return r
		}
	}
	return tailRecord{}
}

// frameRecords walks the records of a segment by their length fields.
func frameRecords(seg []byte, base uint64) []tailRecord {
	var out []tailRecord
	batch := int64(40)
	for off, pos := int64(40), base; off+4 <= int64(len(seg)); pos++ {
		l := int64(binary.LittleEndian.Uint32(seg[off:]))
		if l == 0 {
			break
		}
		r := tailRecord{pos: pos, off: off, end: off + 28 + l, batch: batch}
		out = append(out, r)
		if seg[off+25]&1 != 0 { // the batch-end flag
			batch = r.end
		}
		off = r.end
	}
	return out
}

func checkStoreTail(t *testing.T, what, dir, tmpl, lastSeg string, mutated []byte, recs []tailRecord, d int64, flip bool,
	ops []tailOp, cfg Config, thorough bool) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s", what, fmt.Sprintf(format, args...))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	copyDir(t, dir, tmpl)
	if err := os.WriteFile(filepath.Join(dir, lastSeg), mutated, 0o644); err != nil {
		t.Fatal(err)
	}
	k := recordAt(recs, d) // the damaged record
	var cutAt uint64       // the first position of the damaged append
	for _, r := range recs {
		if r.off == k.batch {
			cutAt = r.pos
		}
	}
	damaged := flip || d != k.batch // a file cut at an append's first byte just ends there

	rep, err := eventlog.Verify(context.Background(), dir, nil)
	if err != nil {
		fail("verify: %v", err)
	}
	if last := recs[len(recs)-1]; flip && k.end < last.end && !tornBytes(mutated, k.off, k.end) {
		// Intact records follow the flipped bit: corruption, kept.
		if len(rep.Problems) != 1 || rep.Problems[0].Tail || rep.Problems[0].Offset != k.off {
			fail("verify reported %v, want one corruption at offset %d", rep.Problems, k.off)
		}
		checkKeptDamage(t, what, dir, cfg, k.pos, last.pos)
		return
	}
	switch {
	case !damaged && !rep.OK():
		fail("verify reported %v for a log that only lost whole appends", rep.Problems)
	case damaged && (len(rep.Problems) != 1 || !rep.Problems[0].Tail || rep.Problems[0].Segment != lastSeg):
		fail("verify reported %v, want one tail problem in %s", rep.Problems, lastSeg)
	case damaged && rep.Problems[0].Offset != k.off && !(d == k.off && rep.Problems[0].Offset == k.batch):
		fail("verify reported the damage at offset %d, want %d", rep.Problems[0].Offset, k.off)
	}

	s, err := Open(dir, cfg)
	if err != nil {
		fail("open: %v", err)
	}
	defer s.Close()
	cuts := s.Recovery()
	if damaged && (len(cuts) != 1 || cuts[0].FirstPosition != cutAt || cuts[0].Offset != k.batch || cuts[0].Segment != lastSeg) {
		fail("recovery cut %+v, want a cut at offset %d from position %d", cuts, k.batch, cutAt)
	}
	if !damaged && len(cuts) != 0 {
		fail("recovery cut %+v for a log that only lost whole appends", cuts)
	}
	if s.Log().Last() != cutAt-1 {
		fail("last position %d, want %d", s.Log().Last(), cutAt-1)
	}

	// The store must be exactly the model of what survived.
	m := storetest.NewModel(t, s)
	var cut []tailOp
	for _, op := range ops {
		if op.first >= cutAt {
			cut = append(cut, op)
			continue
		}
		var err error
		if op.events == nil {
			err = m.ApplyDelete(op.stream, rewind.Any)
		} else {
			err = m.Apply(op.stream, rewind.Any, op.events...)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	m.Check()
	if !thorough {
		return
	}
	// Retries: a cut append is written again, a surviving one is a duplicate.
	for _, op := range cut {
		if op.events != nil {
			if res, _ := m.Append(op.stream, rewind.Any, op.events...); res.Duplicate {
				fail("the retry of a cut append was a duplicate")
			}
		}
	}
	if res, _ := m.Append(ops[0].stream, rewind.Any, ops[0].events...); !res.Duplicate {
		fail("the retry of a surviving append was not a duplicate")
	}
	m.Check()
	if err := s.Close(); err != nil {
		fail("close: %v", err)
	}
	if rep, err := eventlog.Verify(context.Background(), dir, nil); err != nil || !rep.OK() {
		fail("verify after recovery: %v %v", err, rep.Problems)
	}
}

// tornBytes is the log's rule for a torn write, from its documentation: the
// rest of the sector where the damage starts, or a whole sector inside it,
// is zero.
func tornBytes(b []byte, from, to int64) bool {
	const sector = 512
	zero := func(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }
	if zero(b[from:min(to, (from/sector+1)*sector)]) {
		return true
	}
	for s := (from + sector - 1) / sector * sector; s+sector <= to; s += sector {
		if zero(b[s : s+sector]) {
			return true
		}
	}
	return false
}

// checkKeptDamage checks a store whose newest segment has a damaged record
// with intact ones after it: nothing is cut, every other event is served,
// the damaged one is refused as corruption.
func checkKeptDamage(t *testing.T, what, dir string, cfg Config, damaged, last uint64) {
	t.Helper()
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("%s: open: %v", what, err)
	}
	defer s.Close()
	if cuts := s.Recovery(); len(cuts) != 0 || s.Log().Last() != last {
		t.Fatalf("%s: recovery cut %+v, last %d; want nothing cut and %d", what, cuts, s.Log().Last(), last)
	}
	for pos := uint64(1); pos <= last; pos++ {
		var got error
		n := 0
		for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{From: rewind.Position(pos), Limit: 1}) {
			if err != nil {
				got = err
				break
			}
			n++
			if ev.Position != rewind.Position(pos) {
				t.Fatalf("%s: read from %d got position %d", what, pos, ev.Position)
			}
		}
		if pos == damaged {
			if !errors.Is(got, rewind.ErrCorruption) {
				t.Fatalf("%s: read of the damaged position %d: %v, want corruption", what, pos, got)
			}
		} else if got != nil || n != 1 {
			t.Fatalf("%s: read of position %d: %v", what, pos, got)
		}
	}
}
