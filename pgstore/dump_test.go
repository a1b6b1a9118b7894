package pgstore

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// TestDumpRestore: pg_dump of a store's schema restored into another
// database (whose transaction ids, sequences and OIDs have nothing to do
// with the first's) is the same store: the same log, a retry of an old
// append is a duplicate, a subscription resumed from an old position goes
// on exactly there, and new appends continue the positions and versions.
// Nothing in the store depends on transaction ids, which a restore resets.
func TestDumpRestore(t *testing.T) {
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed: %v", tool, err)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx := context.Background()
	src := newTestDB(t)
	s := src.open(t, Config{})
	var batches [][]rewind.Event
	for i := range 30 {
		evs := []rewind.Event{{ID: uuid.New(), Type: "T", Data: []byte{byte(i)}}, {ID: uuid.New(), Type: "U",
			Metadata: map[string]string{"k": "v"}}}
		if _, err := s.Append(ctx, []string{"d-1", "d-2", "d-3"}[i%3], rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, evs)
	}
	if _, err := s.DeleteStream(ctx, "d-3", rewind.Any); err != nil {
		t.Fatal(err)
	}
	before := readAllOf(t, s)
	file := filepath.Join(t.TempDir(), "dump")
	if out, err := exec.Command("pg_dump", "--format=custom", "--schema="+s.cfg.Schema, "--file="+file, src.DSN).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v: %s", err, out)
	}
	dst := newTestDB(t)
	// Burn transaction ids in the new database so that they differ from
	// the old one's (a fresh cluster starts lower; either way they differ).
	for range 50 {
		dst.Exec(t, "SELECT pg_current_xact_id()")
	}
	if out, err := exec.Command("pg_restore", "--dbname="+dst.DSN, file).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v: %s", err, out)
	}
	r, err := Open(ctx, dst.DSN, Config{Schema: s.cfg.Schema})
	if err != nil {
		t.Fatalf("open the restored store: %v", err)
	}
	defer r.Close()
	after := readAllOf(t, r)
	if len(after) != len(before) {
		t.Fatalf("restored log holds %d events, the original %d", len(after), len(before))
	}
	for i := range before {
		a, b := before[i], after[i]
		if a.ID != b.ID || a.Position != b.Position || a.Version != b.Version || a.Stream != b.Stream || !a.RecordedAt.Equal(b.RecordedAt) {
			t.Fatalf("event %d: %+v restored as %+v", i, a, b)
		}
	}
	res, err := r.Append(ctx, "d-1", rewind.Any, batches[3]...)
	if err != nil || !res.Duplicate || res.FirstPosition != 7 {
		t.Fatalf("retry of an old append after the restore: %+v, %v; want a duplicate at 7", res, err)
	}
	sub, err := r.Subscribe(ctx, rewind.SubscribeOptions{After: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if ev := next(t, sub); ev.Position != 41 || ev.ID != before[40].ID {
		t.Fatalf("subscription resumed after 40: %+v", ev)
	}
	res, err = r.Append(ctx, "d-1", rewind.Exactly(20), rewind.Event{Type: "T"})
	if err != nil || res.FirstPosition != 62 || res.FirstVersion != 21 {
		t.Fatalf("append after the restore: %+v, %v; want version 21 at position 62", res, err)
	}
	for range 20 {
		next(t, sub)
	}
	if ev := next(t, sub); ev.Position != 62 {
		t.Fatalf("subscription after the restore: position %d, want 62", ev.Position)
	}
	if res, err := r.Append(ctx, "d-3", rewind.NoStream, rewind.Event{Type: "T"}); err != nil || res.FirstVersion != 21 {
		t.Fatalf("recreate the deleted stream after the restore: %+v, %v", res, err)
	}
}

func readAllOf(t *testing.T, s rewind.Store) []rewind.RecordedEvent {
	t.Helper()
	var out []rewind.RecordedEvent
	for ev, err := range s.ReadAll(context.Background(), rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Clone())
	}
	return out
}
