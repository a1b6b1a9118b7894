package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// Issue 9: a log found shorter than the index snapshot gave the lost
// positions to new events in the same epoch, so a reader that had seen one
// resumed silently into other events. The store's finding begins a new
// epoch as a cut does, is recorded for later opens, and is not found again
// once the stale snapshot is replaced.
func TestAShorterLogThanTheSnapshotBeginsAnEpoch(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	for i := range 100 {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%7), rewind.Any, rewind.Event{ID: uuid.New(), Type: "T", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // the snapshot is at position 100
		t.Fatal(err)
	}
	// Only the snapshot knows: the log's state file is gone (it is rebuilt
	// from the segments, which start at 1), and the last 40 records with it.
	if err := os.Remove(filepath.Join(b.dir, "log-state.json")); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(b.dir, "00000000000000000001.seg")
	st, _ := os.ReadFile(seg)
	off := int64(40)
	for range 60 {
		off += 28 + int64(uint32(st[off])|uint32(st[off+1])<<8|uint32(st[off+2])<<16|uint32(st[off+3])<<24)
	}
	if err := os.Truncate(seg, off); err != nil {
		t.Fatal(err)
	}
	s, err := Open(b.dir, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e := s.Log().Epoch(); e != 2 {
		t.Fatalf("epoch %d after positions 61-100 were lost, want 2", e)
	}
	var ee *rewind.EpochError
	if err := s.Log().CheckEpoch(80, 1); !errors.As(err, &ee) || ee.CutAt != 61 {
		t.Fatalf("a reader that saw position 80 in epoch 1 resumes: %v, want an epoch error at 61", err)
	}
	for i := range 10 { // positions 61-70 now hold other events
		if _, err := s.Append(ctx, "new", rewind.Any, rewind.Event{ID: uuid.New(), Type: "T", Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 2 {
		h, _ := s.Health(ctx)
		n := 0
		for _, e := range h.Recovery {
			if e.Kind == "shortened" {
				n++
				if !e.DataLoss || e.FirstPosition != 61 || e.LastPosition != 100 || e.Epoch != 2 {
					t.Fatalf("round %d: %+v", round, e)
				}
			}
		}
		if n != 1 || h.Epoch != 2 {
			t.Fatalf("round %d: health %+v; want the loss once, in epoch 2", round, h)
		}
		s = reopen(t, s, b)
	}
}
