package backfill_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// rollbackingID waits until a rollback of run has undone a chunk and
// returns the rollback's id.
func rollbackingID(t *testing.T, b *bundle, run string) string {
	t.Helper()
	for range 500 {
		var id string
		b.db.Pool.QueryRow(context.Background(), `SELECT r.id FROM rewind.backfill_runs r WHERE r.undoes = $1 AND r.state = 'running'
			AND EXISTS (SELECT 1 FROM rewind.backfill_chunks c WHERE c.run_id = r.id)`, run).Scan(&id)
		if id != "" {
			return id
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no rollback of run " + run + " undid a chunk")
	return ""
}

// restoredOnce fails unless every chunk of run is undone once and the
// rollbacks' checkpoints restored each of its rows once.
func restoredOnce(t *testing.T, b *bundle, run string, rows, chunks int64) {
	t.Helper()
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_undone WHERE run_id = $1", run); n != chunks {
		t.Errorf("%d chunks of the run undone, want %d", n, chunks)
	}
	if n := b.scalar(t, `SELECT coalesce(sum(rows_changed), 0)::bigint FROM rewind.backfill_chunks WHERE run_id IN
		(SELECT id FROM rewind.backfill_runs WHERE undoes = $1)`, run); n != rows {
		t.Errorf("the rollbacks' checkpoints restored %d rows, want each of the %d once", n, rows)
	}
}

// A rollback is paused from another runner while it runs: it waits at a
// chunk boundary holding its lease, no chunk is undone once the pause is
// recorded, and `resume` of the rollback (Resume with its id) lets the
// waiting process finish it: the table checksum-identical to before the
// run, each row restored once.
func TestPauseAndResumeARollbackFromAnotherRunner(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx := context.Background()
	before := b.db.Checksum(t, "items", "id")
	runID := b.apply(t, countJob(50), backfill.ApplyOptions{}).Run.ID
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	var res *backfill.RollbackResult
	go func() {
		var err error
		res, err = exec.Rollback(ctx, runID, backfill.RollbackOptions{})
		done <- err
	}()
	id := rollbackingID(t, b, runID)
	pauser := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "pauser" })
	st, err := pauser.Pause(ctx, id[:8], backfill.ControlOptions{Reason: "peak hours", Wait: 20 * time.Second})
	if err != nil || st.State != backfill.Paused || st.Control == nil || st.Control.PausedAt == nil {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks WHERE run_id = $1 AND committed_at >= $2", id,
		*st.Control.PausedAt); n != 0 {
		t.Fatalf("%d chunks undone after the pause was recorded", n)
	}
	undone := b.scalar(t, "SELECT count(*) FROM rewind.backfill_undone WHERE run_id = $1", runID)
	time.Sleep(700 * time.Millisecond)
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_undone WHERE run_id = $1", runID); n != undone || undone == 40 {
		t.Fatalf("%d chunks undone while paused (%d before)", n-undone, undone)
	}
	select {
	case err := <-done:
		t.Fatalf("the rollback returned while paused: %v", err)
	default:
	}
	if st, err := pauser.Status(ctx, id); err != nil || st.State != backfill.Paused || st.Owner == "" {
		t.Fatalf("status while paused: %+v, %v; want paused, its process holding it", st, err)
	}
	mu.Lock()
	seen := strings.Join(notes, "|")
	mu.Unlock()
	if !strings.Contains(seen, "paused by pauser: peak hours") {
		t.Fatalf("progress notes %q", seen)
	}
	resumer := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "resumer" })
	rr, err := resumer.Resume(ctx, id, nil, backfill.ApplyOptions{})
	if err != nil || !strings.Contains(rr.Message, "goes on") || rr.Chunks != 0 {
		t.Fatalf("resume of the rollback: %+v, %v; want the waiting process to go on", rr, err)
	}
	if err := <-done; err != nil || res.Run.State != backfill.Finished {
		t.Fatalf("the rollback after resume: %+v, %v", res, err)
	}
	if b.db.Checksum(t, "items", "id") != before {
		t.Error("the table after the rollback differs from before the run")
	}
	restoredOnce(t, b, runID, 2000, 40)
	if e := b.lastEntry(t, id, "run.unpaused"); e == nil || e["actor"] != "resumer" {
		t.Errorf("run.unpaused entry %v", e)
	}
	if k := b.auditKinds(t, id); k["backfill.run.paused"] != 1 || k["backfill.rollback.finished"] != 1 || k["backfill.rollback.chunk"] != 40 {
		t.Errorf("entries %v", k)
	}
}

// A rollback cancelled from another runner stops at a chunk boundary and
// is recorded cancelled with who asked, as a run is. The chunks it undid
// stay undone; a new rollback, after it, undoes the rest: the table
// checksum-identical to before the run, each row restored once.
func TestCancelARollbackThenANewOneFinishesIt(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx := context.Background()
	before := b.db.Checksum(t, "items", "id")
	runID := b.apply(t, countJob(50), backfill.ApplyOptions{}).Run.ID
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Rollback(ctx, runID, backfill.RollbackOptions{})
		done <- err
	}()
	id := rollbackingID(t, b, runID)
	canceller := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "canceller" })
	if err := canceller.Cancel(ctx, id[:8], nil); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := <-done; !errors.Is(err, backfill.ErrRunEnded) || !strings.Contains(err.Error(), "canceller") {
		t.Fatalf("the rollback returned %v", err)
	}
	if st, err := canceller.Status(ctx, id); err != nil || st.State != backfill.Cancelled {
		t.Fatalf("status %+v, %v", st, err)
	}
	undone := b.scalar(t, "SELECT count(*) FROM rewind.backfill_undone WHERE run_id = $1", runID)
	if undone == 0 || undone == 40 {
		t.Fatalf("%d of 40 chunks undone at the cancel", undone)
	}
	if e := b.lastEntry(t, id, "run.cancelled"); e == nil || e["requested_by"] != "canceller" {
		t.Fatalf("run.cancelled entry %v", e)
	}
	if e := b.lastEntry(t, id, "run.cancelling"); e == nil || e["actor"] != "canceller" {
		t.Fatalf("run.cancelling entry %v", e)
	}
	if _, err := canceller.Resume(ctx, id, nil, backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunEnded) {
		t.Fatalf("resume of the cancelled rollback = %v, want ErrRunEnded", err)
	}
	res, err := b.runner.Rollback(ctx, runID, backfill.RollbackOptions{})
	if err != nil || res.Run.PrevRun != id || res.Chunks != 40-undone {
		t.Fatalf("the next rollback: %+v, %v; want the %d chunks left, after %s", res, err, 40-undone, id)
	}
	if b.db.Checksum(t, "items", "id") != before {
		t.Error("the table after the rollbacks differs from before the run")
	}
	restoredOnce(t, b, runID, 2000, 40)
}

// A critical throttle signal pauses a rollback before its next chunk:
// after the chunk during which the flag file appeared, no chunk is
// undone. The rollback is paused with the signal's name and the error
// says how to continue it; Rollback again, once the file is gone,
// finishes it with the table as before the run.
func TestCriticalSignalPausesARollbackWithinOneChunk(t *testing.T) {
	t.Parallel()
	critical := filepath.Join(t.TempDir(), "pause")
	b := setup(t, 2000)
	runID := b.apply(t, countJob(100), backfill.ApplyOptions{}).Run.ID
	before := b.db.Checksum(t, "items", "id") // as applied
	var chunks atomic.Int64
	rb := runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			chunks.Store(p.Chunks)
			if p.Chunks == 5 { // the signal crosses during chunk 5
				os.WriteFile(critical, nil, 0o600)
			}
		}
	})
	thr, err := throttle.New(throttle.Config{Signals: []throttle.Signal{&throttle.File{Critical: critical}}, ReadEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rb.Rollback(t.Context(), runID, backfill.RollbackOptions{Throttle: thr})
	var tp *backfill.ThrottlePausedError
	if !errors.As(err, &tp) || tp.Signal != "file" || tp.Undoes != runID ||
		!strings.Contains(err.Error(), "rewind backfill rollback "+runID+" --execute") {
		t.Fatalf("rollback: %v, want it paused by signal file", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_undone WHERE run_id = $1", runID); n > 6 || chunks.Load() > 6 {
		t.Errorf("%d chunks undone (progress %d), want at most one after chunk 5", n, chunks.Load())
	}
	if b.db.Checksum(t, "items", "id") == before {
		t.Error("the paused rollback undid nothing")
	}
	st, err := rb.Status(t.Context(), res.Run.ID)
	if err != nil || st.State != backfill.Paused || st.Throttle == nil || st.Throttle.PausedBy != "file" {
		t.Fatalf("status: %+v, %v; want paused by file", st, err)
	}
	os.Remove(critical)
	again, err := rb.Rollback(t.Context(), runID, backfill.RollbackOptions{Throttle: thr})
	if err != nil || !again.Resumed || again.Run.ID != res.Run.ID || again.Run.State != backfill.Finished {
		t.Fatalf("rollback again: %+v, %v", again, err)
	}
	restoredOnce(t, b, runID, 2000, 20)
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 0 {
		t.Errorf("%d rows not as before the run", n)
	}
	if k := b.auditKinds(t, res.Run.ID); k["backfill.run.paused"] != 1 || k["backfill.run.unpaused"] != 1 || k["backfill.rollback.chunk"] != 20 {
		t.Errorf("entries %v", k)
	}
}

// Set on a rollback: a max rate is stored for its throttle; a worker cap
// or a chunk time is refused (its chunks are the run's) and changes
// nothing.
func TestSetOnARollback(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := context.Background()
	runID := b.apply(t, countJob(50), backfill.ApplyOptions{}).Run.ID
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Rollback(ctx, runID, backfill.RollbackOptions{})
		done <- err
	}()
	id := rollbackingID(t, b, runID)
	workers, chunkTime, rate := 2, time.Second, 100000.0
	for _, o := range []backfill.SetOptions{{Workers: &workers}, {ChunkTime: &chunkTime}} {
		if _, err := b.runner.Set(ctx, id, o); !errors.Is(err, backfill.ErrNotControllable) {
			t.Errorf("set %+v on a rollback = %v, want ErrNotControllable", o, err)
		}
	}
	if k := b.auditKinds(t, id); k["backfill.run.set"] != 0 {
		t.Errorf("a refused set was recorded: %v", k)
	}
	st, err := b.runner.Set(ctx, id, backfill.SetOptions{MaxRate: &rate})
	if err != nil || st.Control == nil || st.Control.MaxRate == nil || *st.Control.MaxRate != rate {
		t.Fatalf("set --max-rate: %+v, %v", st, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 0 {
		t.Errorf("%d rows not as before the run", n)
	}
}
