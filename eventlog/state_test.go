package eventlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// segmentedLog writes records until the log has at least n segments and
// returns its directory and the segments' bases.
func segmentedLog(t *testing.T, cfg Config, n int) (string, []uint64) {
	t.Helper()
	dir := t.TempDir()
	cfg.SegmentSize = 64 << 10
	l := openLog(t, dir, cfg)
	for len(*l.segments.Load()) < n {
		appendN(t, l, 20, 2, 1000)
	}
	var bases []uint64
	for _, s := range *l.segments.Load() {
		bases = append(bases, s.base)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, bases
}

func removeSegment(t *testing.T, dir string, base uint64) {
	t.Helper()
	for _, ext := range []string{segmentExt, indexExt} {
		if err := os.Remove(filepath.Join(dir, strings.TrimSuffix(segmentName(base), segmentExt)+ext)); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 9: the log must know where it starts. A missing oldest segment that
// retention did not remove was opened silently, and reads said "retention
// removed it" on a log without retention. It is data loss: Open reports
// it, Verify reports it, and reads of its positions fail as corruption.
func TestAMissingSegmentIsDataLoss(t *testing.T) {
	t.Parallel()
	for _, which := range []string{"oldest", "middle"} {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			dir, bases := segmentedLog(t, Config{}, 4)
			gone := 0
			if which == "middle" {
				gone = 1
			}
			removeSegment(t, dir, bases[gone])
			lost := Missing{FirstPosition: bases[gone], LastPosition: bases[gone+1] - 1}

			rep, err := Verify(context.Background(), dir, nil)
			if err != nil || rep.OK() || rep.Problems[0].Tail || rep.Problems[0].Position != lost.FirstPosition {
				t.Fatalf("verify: %v %+v; want data loss at position %d", err, rep.Problems, lost.FirstPosition)
			}
			l := openLog(t, dir, Config{SegmentSize: 64 << 10})
			defer l.Close()
			if m := l.Missing(); len(m) != 1 || m[0] != lost {
				t.Fatalf("missing = %+v, want %+v", m, lost)
			}
			if l.First() != 1 {
				t.Fatalf("first = %d, want 1: the log starts where it always did", l.First())
			}
			for _, pos := range []uint64{lost.FirstPosition, lost.LastPosition} {
				_, err := l.Read(pos)
				if !errors.Is(err, rewind.ErrCorruption) || errors.Is(err, rewind.ErrTruncated) || !strings.Contains(err.Error(), "data loss") {
					t.Fatalf("read of lost position %d: %v, want a data-loss corruption error", pos, err)
				}
			}
			if rec, err := l.Read(bases[gone+1]); err != nil || rec.Position != bases[gone+1] {
				t.Fatalf("read after the lost range: %v", err)
			}
			if rep, err := l.Verify(context.Background(), nil); err != nil || rep.OK() {
				t.Fatalf("open log verify: %v %+v; want the loss reported", err, rep)
			}
			r := l.NewReader(0)
			defer r.Close()
			for {
				if _, err := r.Next(); err != nil {
					if !errors.Is(err, rewind.ErrCorruption) {
						t.Fatalf("a whole-log read stopped with %v, want the data loss", err)
					}
					break
				}
			}
		})
	}
}

// Retention records the new start before it removes segments: the removed
// ones are not data loss, reads before the start are truncated, and a
// segment an interrupted retention left behind is removed at the next open.
func TestRetentionRecordsTheStart(t *testing.T) {
	t.Parallel()
	dir, bases := segmentedLog(t, Config{}, 4)
	saved, err := os.ReadFile(filepath.Join(dir, segmentName(bases[0])))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{SegmentSize: 64 << 10, MaxBytes: 150 << 10, Logger: quietLogger()}
	l := openLog(t, dir, cfg)
	removed, err := l.ApplyRetention()
	if err != nil || len(removed) == 0 {
		t.Fatalf("retention removed %v, %v", removed, err)
	}
	first := l.First()
	if _, err := l.Read(1); !errors.Is(err, rewind.ErrTruncated) {
		t.Fatalf("read before the start: %v, want truncated", err)
	}
	l.Close()
	// An interrupted retention: the new start is recorded, a segment
	// before it is still there.
	if err := os.WriteFile(filepath.Join(dir, segmentName(bases[0])), saved, 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), dir, nil); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep.Problems)
	}
	l = openLog(t, dir, cfg)
	defer l.Close()
	if len(l.Missing()) != 0 || l.First() != first {
		t.Fatalf("missing %v, first %d; want none and %d", l.Missing(), l.First(), first)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(bases[0]))); !os.IsNotExist(err) {
		t.Fatalf("the segment retention left behind is still there: %v", err)
	}
}

// A log written before the state file existed gets one that starts at its
// first segment; a damaged state file is refused with what to do.
func TestStateFile(t *testing.T) {
	t.Parallel()
	dir, bases := segmentedLog(t, Config{}, 3)
	removeSegment(t, dir, bases[0])
	if err := os.Remove(filepath.Join(dir, stateName)); err != nil {
		t.Fatal(err)
	}
	// Issue 9: that was "fine". Nothing proves that retention removed the
	// positions before the first segment: it is reported as possible data
	// loss, by Verify and, lastingly, by the open that rebuilds the file.
	if rep, err := Verify(context.Background(), dir, nil); err != nil || rep.OK() || rep.Problems[0].Segment != stateName {
		t.Fatalf("verify without a state file: %v %+v; want possible data loss", err, rep.Problems)
	}
	l := openLog(t, dir, Config{SegmentSize: 64 << 10})
	if len(l.Missing()) != 0 || l.First() != bases[1] || l.Epoch() != 1 {
		t.Fatalf("missing %v, first %d, epoch %d", l.Missing(), l.First(), l.Epoch())
	}
	if ls := l.Losses(); len(ls) != 1 || ls[0].Kind != "missing" || ls[0].FirstPosition != 1 || ls[0].LastPosition != bases[1]-1 {
		t.Fatalf("losses = %+v; want positions 1-%d reported as possibly lost", ls, bases[1]-1)
	}
	l.Close()
	if rep, err := Verify(context.Background(), dir, nil); err != nil || !rep.OK() || len(rep.Recorded) != 1 {
		t.Fatalf("verify after the open: %v %+v; want ok, with the possible loss recorded", err, rep)
	}
	b, _ := os.ReadFile(filepath.Join(dir, stateName))
	if err := os.WriteFile(filepath.Join(dir, stateName), []byte(strings.Replace(string(b), `"start": `, `"start": 1`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Config{SegmentSize: 64 << 10, Logger: quietLogger()})
	var ce *rewind.CorruptionError
	if !errors.As(err, &ce) || ce.Segment != stateName || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("open with a damaged state file: %v", err)
	}
	if rep, err := Verify(context.Background(), dir, nil); err != nil || rep.OK() || rep.Problems[0].Segment != stateName {
		t.Fatalf("verify with a damaged state file: %v %+v", err, rep.Problems)
	}
}

// Issue 9: after a cut in interval or none mode, positions readers may
// have seen are given to new records. The cut starts a new epoch, and a
// reader resuming across it is told.
func TestACutStartsAnEpoch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Durability: None, Logger: quietLogger()}
	l := openLog(t, dir, cfg)
	appendN(t, l, 10, 1, 100)
	if l.Epoch() != 1 {
		t.Fatalf("epoch of a new log = %d", l.Epoch())
	}
	l.Close()
	asIfCrashed(t, dir, 0)
	// What a power cut leaves in none mode: the last records never reached
	// the disk, though readers saw them.
	seg := filepath.Join(dir, segmentName(1))
	if err := os.Truncate(seg, segmentHeaderSize+int64(7*recordSize(100))+10); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	if l.Epoch() != 2 || l.Last() != 7 {
		t.Fatalf("after the cut: epoch %d, last %d; want 2 and 7", l.Epoch(), l.Last())
	}
	e := l.Epochs()
	if len(e) != 2 || e[1].From != 8 || len(e[1].Cuts) != 1 || e[1].At.IsZero() {
		t.Fatalf("epochs = %+v", e)
	}
	appendN(t, l, 5, 1, 100) // positions 8.. now hold other records
	var ee *rewind.EpochError
	if err := l.CheckEpoch(9, 1); !errors.As(err, &ee) || ee.CutAt != 8 || ee.Current != 2 || !errors.Is(err, rewind.ErrEpochChanged) {
		t.Fatalf("resuming after 9 seen in epoch 1: %v, want an epoch error at 8", err)
	}
	for _, ok := range []struct{ after, epoch uint64 }{{7, 1}, {12, 2}, {9, 0}} {
		if err := l.CheckEpoch(ok.after, ok.epoch); err != nil {
			t.Fatalf("resuming after %d seen in epoch %d: %v", ok.after, ok.epoch, err)
		}
	}
	if err := l.CheckEpoch(3, 5); !errors.Is(err, rewind.ErrEpochChanged) {
		t.Fatalf("an epoch the log never had: %v", err)
	}
	l.Close()
	l = openLog(t, dir, cfg)
	defer l.Close()
	if l.Epoch() != 2 {
		t.Fatalf("a clean reopen changed the epoch to %d", l.Epoch())
	}
	_ = time.Now
}

// asIfCrashed rewrites the state file of the closed log in dir as a crash
// instead of the Close would have left it: only positions up to durable
// (what the open before knew, 0 for a new log) are recorded as on disk.
// Tests that damage a log's tail to model what a crash leaves use it; on a
// log closed cleanly the same damage is corruption of acknowledged records.
func asIfCrashed(t testing.TB, dir string, durable uint64) {
	t.Helper()
	if err := setDurable(dir, durable); err != nil {
		t.Fatal(err)
	}
}

func setDurable(dir string, durable uint64) error {
	path := filepath.Join(dir, stateName)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := decodeState(b)
	if err != nil {
		return err
	}
	st.Durable = durable
	return os.WriteFile(path, st.encode(), 0o644)
}
