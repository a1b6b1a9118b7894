package eventlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rewindhq/rewind"
)

// Issue 9: recovery took damage to acknowledged records for a torn tail
// and cut them: one flipped byte in the last record of a cleanly closed
// log, or a zeroed sector in the middle of its newest segment, silently
// dropped every acknowledged record from there on. The close recorded
// that they were on disk; damage before that is corruption: kept, the
// damaged records refused naming segment and offset, the intact ones after
// it served, and nothing cut.
func TestDamageToAcknowledgedRecordsIsNeverCut(t *testing.T) {
	t.Parallel()
	const n, size = 200, 100
	tests := []struct {
		name        string
		edit        func(b []byte, offs []int64)
		first, last uint64 // damaged positions
	}{
		{"a flipped byte in the last record", func(b []byte, offs []int64) { b[offs[n-1]+60] ^= 0x10 }, n, n},
		{"the last record cut short", nil, n, n},
		{"a zeroed sector in the middle", func(b []byte, offs []int64) { clear(b[4096 : 4096+512]) }, 32, 36},
		{"zeros over the last records", func(b []byte, offs []int64) { clear(b[offs[n-3]+10 : offs[n-1]+int64(recordSize(size))]) }, n - 2, n},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, seg, offs := newestSegment(t, n, size)
			if tc.edit == nil {
				if err := os.Truncate(seg, offs[n-1]+50); err != nil {
					t.Fatal(err)
				}
			} else {
				editFile(t, seg, func(b []byte) { tc.edit(b, offs) })
			}
			rep, err := Verify(context.Background(), dir, nil)
			if err != nil || rep.OK() || rep.Problems[0].Tail || rep.Problems[0].Position != tc.first {
				t.Fatalf("verify: %v %+v; want corruption (not a torn tail) at position %d", err, rep.Problems, tc.first)
			}
			l := openLog(t, dir, Config{})
			if cuts := l.Recovery(); len(cuts) != 0 {
				t.Fatalf("recovery cut acknowledged records: %v", cuts)
			}
			if d := l.Damage(); len(d) != 1 || d[0].FirstPosition != tc.first || d[0].LastPosition != tc.last || d[0].Segment != segmentName(1) {
				t.Fatalf("damage = %+v; want positions %d-%d", d, tc.first, tc.last)
			}
			if l.Last() != n || l.Epoch() != 1 {
				t.Fatalf("last %d, epoch %d; want %d and 1: acknowledged positions were given up", l.Last(), l.Epoch(), n)
			}
			check := func(l *Log, upTo uint64) {
				t.Helper()
				for pos := uint64(1); pos <= upTo; pos++ {
					rec, err := l.Read(pos)
					if pos >= tc.first && pos <= tc.last {
						var ce *rewind.CorruptionError
						if !errors.As(err, &ce) || ce.Segment != segmentName(1) {
							t.Fatalf("read of damaged position %d: %v, want a corruption error naming the segment", pos, err)
						}
						continue
					}
					want := payload(pos, size)
					if pos > n {
						want = payload(pos, 50)
					}
					if err != nil || string(rec.Payload) != string(want) {
						t.Fatalf("read of intact position %d: %v", pos, err)
					}
				}
			}
			check(l, n)
			appendN(t, l, 3, 1, 50) // positions after the damaged ones
			check(l, n+3)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, Config{})
			defer l.Close()
			if len(l.Recovery()) != 0 || l.Last() != n+3 || len(l.Damage()) != 1 || len(l.Losses()) != 1 || l.Losses()[0].Kind != "damage" {
				t.Fatalf("second open: cuts %v, last %d, damage %v, losses %v", l.Recovery(), l.Last(), l.Damage(), l.Losses())
			}
			check(l, n+3)
		})
	}
}

// The same bytes after a crash (nothing recorded on disk since the open
// that created the log) are a torn tail: cut, as before.
func TestUnacknowledgedTornTailIsStillCut(t *testing.T) {
	t.Parallel()
	const n, size = 200, 100
	dir, seg, offs := newestSegment(t, n, size)
	asIfCrashed(t, dir, 150)
	if err := os.Truncate(seg, offs[n-1]+50); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, Config{})
	defer l.Close()
	if cuts := l.Recovery(); len(cuts) != 1 || cuts[0].FirstPosition != n || len(l.Damage()) != 0 || l.Last() != n-1 {
		t.Fatalf("cuts %v, damage %v, last %d; want a cut at %d", cuts, l.Damage(), l.Last(), n)
	}
}

// Issue 9: a log found ending before what its close recorded as on disk
// (its tail zeroed or truncated, its newest segment removed) lost
// acknowledged records. The loss is recorded in the state file, so that
// every later open and Verify still report it; and since the positions
// after the end go to new records, a new epoch begins there.
func TestAShortenedLogIsRecordedLoss(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"tail removed", "newest segment removed after a crash"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			dir, bases := segmentedLog(t, Config{}, 3)
			newest := bases[len(bases)-1]
			end := uint64(0)
			if how == "tail removed" {
				l := openLog(t, dir, Config{SegmentSize: 64 << 10})
				end = l.Last()
				l.Close()
				// Whole records gone, zeros after them: nothing in the bytes
				// shows the loss.
				seg := filepath.Join(dir, segmentName(newest))
				if err := os.Truncate(seg, segmentHeaderSize+int64(2*recordSize(1000))); err != nil {
					t.Fatal(err)
				}
			} else {
				// A crash: the close recorded nothing. Only the roll did.
				asIfCrashed(t, dir, 0)
				removeSegment(t, dir, newest)
			}
			rep, err := Verify(context.Background(), dir, nil)
			if err != nil || rep.OK() {
				t.Fatalf("verify before the open: %v %+v; want the loss reported", err, rep.Problems)
			}
			l := openLog(t, dir, Config{SegmentSize: 64 << 10})
			losses := l.Losses()
			if len(losses) != 1 || losses[0].Kind != "shortened" || losses[0].FirstPosition != l.Last()+1 || l.Epoch() != 2 {
				t.Fatalf("losses %+v, last %d, epoch %d; want one shortened loss from %d, epoch 2", losses, l.Last(), l.Epoch(), l.Last()+1)
			}
			if end != 0 && losses[0].LastPosition != end {
				t.Fatalf("loss ends at %d, want %d", losses[0].LastPosition, end)
			}
			if err := l.CheckEpoch(l.Last()+1, 1); !errors.Is(err, rewind.ErrEpochChanged) {
				t.Fatalf("a reader that saw the lost positions resumes: %v", err)
			}
			appendN(t, l, 5, 1, 100)
			l.Close()
			for i := range 2 {
				rep, err := Verify(context.Background(), dir, nil)
				if err != nil || !rep.OK() || len(rep.Recorded) != 1 || !rep.Recorded[0].same(losses[0]) {
					t.Fatalf("verify %d after the open: %v %+v; want ok with the loss recorded", i, err, rep)
				}
				l := openLog(t, dir, Config{SegmentSize: 64 << 10})
				if got := l.Losses(); len(got) != 1 || !got[0].same(losses[0]) || l.Epoch() != 2 || len(l.Recovery()) != 0 {
					t.Fatalf("open %d after: losses %+v, epoch %d, cuts %v; want the loss still recorded, nothing new", i, got, l.Epoch(), l.Recovery())
				}
				l.Close()
			}
		})
	}
}

// Losses found in the bytes (damage) are recorded too, at most maxLosses,
// once each however often they are found.
func TestLossesAreBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, Config{Logger: quietLogger()})
	for i := range maxLosses + 4 {
		if err := l.recordLosses(Loss{Kind: "damage", FirstPosition: uint64(i + 1), Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	l.recordLosses(Loss{Kind: "damage", FirstPosition: maxLosses + 4, Reason: "test"})
	got := l.Losses()
	if len(got) != maxLosses || got[0].FirstPosition != 5 || got[maxLosses-1].FirstPosition != maxLosses+4 {
		t.Fatalf("losses = %+v", got)
	}
	l.Close()
}
