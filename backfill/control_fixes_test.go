package backfill_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os/user"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// run --execute over a run paused through its control, whose owner is
// alive and waiting at a chunk boundary, is refused at once with
// ErrRunPaused (exit 4) pointing at resume, not after waiting LeaseWait
// for the owner's lease (ErrRunLocked, exit 6).
func TestApplyOverAPausedRunWithALiveOwnerIsRefusedAsPaused(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4})
		done <- err
	}()
	id := runningID(t, b, "count")
	if st, err := b.runner.Pause(ctx, id, backfill.ControlOptions{Reason: "look", Wait: 20 * time.Second}); err != nil ||
		st.State != backfill.Paused {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	other := runnerOn(t, b, func(c *backfill.Config) { c.LeaseWait = 30 * time.Second })
	_, err := other.Apply(ctx, countJob(50), backfill.ApplyOptions{})
	if !errors.Is(err, backfill.ErrRunPaused) || errors.Is(err, backfill.ErrRunLocked) ||
		!strings.Contains(err.Error(), "rewind backfill resume "+id) {
		t.Fatalf("apply over a paused run with a live owner = %v, want ErrRunPaused naming resume", err)
	}
	if _, live, err := b.runner.Unpause(ctx, id); err != nil || !live {
		t.Fatalf("unpause: live %v, %v", live, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the owner after resume: %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}

// Resume racing a cancel of a paused run: the resume finds the run
// cancelling, waits for the owner's lease while the owner ends the run
// cancelled, then takes the lease. It answers that the run was cancelled
// (ErrRunEnded, exit 4), not a lost lease (exit 6), and records no second
// end. The owner's end is held back by a lock on the run's row until the
// resume waits for the lease, so that the race goes this way every time.
func TestResumeRacingACancelSaysTheRunWasCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	t.Cleanup(cancel)
	owner := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4})
		owner <- err
	}()
	id := runningID(t, b, "count")
	if st, err := b.runner.Pause(ctx, id, backfill.ControlOptions{Wait: 20 * time.Second}); err != nil || st.State != backfill.Paused {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	hold, err := b.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, "SELECT 1 FROM rewind.backfill_runs WHERE id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	canceller := runnerOn(t, b, func(c *backfill.Config) { c.LeaseWait = time.Millisecond })
	if err := canceller.Cancel(ctx, id, nil); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	resumed := make(chan error, 1)
	resumer := runnerOn(t, b, func(c *backfill.Config) { c.LeaseWait = 30 * time.Second })
	go func() {
		_, err := resumer.Resume(ctx, id, countJob(50), backfill.ApplyOptions{})
		resumed <- err
	}()
	waitFor(t, "the resume to wait for the owner's lease", func() bool {
		return b.scalar(t, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") > 0
	})
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-resumed
	if !errors.Is(err, backfill.ErrRunEnded) || errors.Is(err, backfill.ErrLeaseLost) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("resume racing a cancel = %v, want ErrRunEnded (cancelled)", err)
	}
	<-owner
	if k := b.auditKinds(t, id); k["backfill.run.cancelled"] != 1 {
		t.Errorf("entries %v", k)
	}
	var state string
	if err := b.db.Pool.QueryRow(ctx, "SELECT state FROM rewind.backfill_runs WHERE id = $1", id).Scan(&state); err != nil ||
		state != "cancelled" {
		t.Errorf("stored state %q (%v)", state, err)
	}
}

// Without Config.Actor, live control records the operating system user
// (as every audit entry's own actor does) in the control record (actor,
// set_by) and in the entries' requested_by and paused_by, never an empty
// name.
func TestControlWithoutAnActorRecordsTheOSUser(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := context.Background()
	id := interruptParallel(t, b, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4}, 2)
	r := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "" })
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Pause(ctx, id, backfill.ControlOptions{Wait: 10 * time.Second})
	if err != nil || st.Control == nil || st.Control.Actor != u.Username {
		t.Fatalf("pause without an actor: control %+v, %v; want actor %q", st.Control, err, u.Username)
	}
	two := 2
	if st, err = r.Set(ctx, id, backfill.SetOptions{Workers: &two}); err != nil || st.Control.SetBy != u.Username {
		t.Fatalf("set without an actor: control %+v, %v", st.Control, err)
	}
	if _, _, err := r.Unpause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := r.Cancel(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	for kind, attr := range map[string]string{"run.paused": "requested_by", "run.unpaused": "paused_by", "run.cancelled": "requested_by"} {
		if e := b.lastEntry(t, id, kind); e == nil || e[attr] != u.Username || e["actor"] != u.Username {
			t.Errorf("%s entry %v: want %s and actor %q", kind, e, attr, u.Username)
		}
	}
}

// A reason, an actor or a command-line argument with control characters (a
// newline, a terminal escape sequence), invisible characters or invalid
// UTF-8 is refused as invalid input (exit 2) and changes nothing: status
// prints them, the ledger records them, and a newline in a reason could
// forge a line of its own.
func TestControlTextWithControlCharactersIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	id := interruptParallel(t, b, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4}, 1)
	entries := b.scalar(t, "SELECT count(*) FROM rewind.audit_log")
	for _, bad := range []string{"line1\nstate        finished", "ev\x1b[2Jil", "\xff\xfe bad utf8", "tab\there", "nul\x00",
		"zero\u200bwidth", "right\u202eleft", "line\u2028separator", "para\u2029graph", "ad\u034fmin", "\u3164", "del\x7f", "c1\u0085"} {
		if _, err := b.runner.Pause(ctx, id, backfill.ControlOptions{Reason: bad}); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("pause --reason %q = %v, want ErrInvalidArgument", bad, err)
		}
		if _, err := b.runner.Disable(ctx, "count", bad); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("disable --reason %q = %v, want ErrInvalidArgument", bad, err)
		}
		if _, err := backfill.New(backfill.Config{DB: b.db.Pool, Actor: bad}); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("actor %q = %v, want ErrInvalidArgument", bad, err)
		}
		// The command line is recorded in every entry and in the run.
		cmd := []string{"rewind", "backfill", "run", "job.yaml", "--param=note=" + bad}
		if _, err := backfill.New(backfill.Config{DB: b.db.Pool, Command: cmd}); !errors.Is(err, rewind.ErrInvalidArgument) ||
			!strings.Contains(err.Error(), "--param") {
			t.Errorf("command %q = %v, want ErrInvalidArgument naming --param", cmd, err)
		}
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log"); n != entries {
		t.Errorf("%d entries recorded by refused requests", n-entries)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_control WHERE requested <> 'run'"); n != 0 {
		t.Errorf("a refused pause was recorded")
	}
	if _, err := b.runner.Pause(ctx, id, backfill.ControlOptions{Reason: "fenêtre de maintenance — 🛠"}); err != nil {
		t.Errorf("a reason in plain UTF-8: %v", err)
	}
}

// A worker's chunk locks the run's fencing token, then its control record,
// both FOR SHARE. Set of a worker cap writes both rows, so it must lock
// them in that order too: the other order deadlocked with every chunk
// committing meanwhile, and with three workers the chunks ran out of
// retries and the run failed (CI, TestSetFromAnotherRunnerWhileARunExecutes).
// Here a transaction stands as a chunk between its two locks while Set
// runs: the chunk goes on and commits, and Set then succeeds.
func TestSetTakesItsLocksInAChunksOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	open := interruptParallel(t, b, countJob(10), backfill.ApplyOptions{Workers: 2, Shards: 4}, 2)
	rate := 100.0
	if _, err := b.runner.Set(ctx, open, backfill.SetOptions{MaxRate: &rate}); err != nil {
		t.Fatal(err)
	}
	waiting := func() bool {
		return b.scalar(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") > 0
	}
	for _, workers := range []int{2, 1, 2} {
		chunk, err := b.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var epoch int64
		if err := chunk.QueryRow(ctx, backfill.FenceSQL, open).Scan(&epoch); err != nil {
			t.Fatal(err)
		}
		set := make(chan error, 1)
		go func() {
			_, err := b.runner.Set(ctx, open, backfill.SetOptions{Workers: &workers})
			set <- err
		}()
		waitFor(t, "Set to wait for the chunk", waiting)
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err = chunk.Exec(qctx, backfill.ControlFenceSQL, open)
		cancel()
		if err != nil {
			chunk.Rollback(ctx)
			t.Fatalf("workers %d: the chunk could not read the control record while Set ran: %v (Set: %v)", workers, err, <-set)
		}
		if err := chunk.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-set; err != nil {
			t.Fatalf("workers %d: Set while a chunk committed: %v", workers, err)
		}
		if n := b.scalar(t, "SELECT workers FROM rewind.backfill_leases WHERE run_id = $1", open); n != int64(workers) {
			t.Fatalf("worker cap %d, want %d", n, workers)
		}
	}
}

// Set of the worker cap, again and again from another runner while three
// workers commit chunks: every Set succeeds at once, no chunk meets a
// deadlock (each would be retried after a second, and logged), and every
// row is changed once.
func TestSetOverAndOverWhileWorkersCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	var log lockedBuffer
	exec := runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(backfill.Progress) { time.Sleep(5 * time.Millisecond) }
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &log), nil))
	})
	done := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(20), backfill.ApplyOptions{Workers: 3, Shards: 6})
		done <- err
	}()
	id := runningID(t, b, "count")
	setter := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "setter" })
	sets := 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			running = false
			continue
		default:
		}
		workers := 2 + sets%2
		if _, err := setter.Set(ctx, id, backfill.SetOptions{Workers: &workers}); err != nil && !errors.Is(err, backfill.ErrRunEnded) {
			t.Fatalf("set %d: %v", sets, err)
		}
		sets++
	}
	if sets < 5 {
		t.Fatalf("only %d sets ran while the run executed", sets)
	}
	if strings.Contains(log.String(), "40P01") {
		t.Fatalf("a chunk met a deadlock while Set ran (%d sets)", sets)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}

// lockedBuffer is a bytes.Buffer that goroutines may write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The first control request of a run used to create its control record,
// and a chunk's fence found no record to lock: a chunk that had read the
// (missing) record committed after the request was recorded, so a pause
// or cancel did not stop every commit from the moment it was recorded (an
// outside test: chunk.committed entries after run.pausing). Every process
// applying a run now creates the record before its first chunk, so the
// first request waits for a chunk committing, as every later one does.
// Here a transaction stands as a chunk that has read the record while the
// first pause, cancel or set of the run is asked for.
func TestTheFirstRequestOfARunWaitsForTheChunksCommitting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rate := 50.0
	for _, request := range []string{"pause", "cancel", "set"} {
		b := setup(t, 300)
		open := interruptParallel(t, b, countJob(10), backfill.ApplyOptions{Workers: 2, Shards: 4}, 2)
		chunk, err := b.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chunk.Exec(ctx, backfill.ControlFenceSQL, open); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			var err error
			switch request {
			case "pause":
				_, err = b.runner.Pause(ctx, open, backfill.ControlOptions{})
			case "cancel":
				err = b.runner.Cancel(ctx, open, nil)
			default:
				_, err = b.runner.Set(ctx, open, backfill.SetOptions{MaxRate: &rate})
			}
			done <- err
		}()
		waiting := func() bool {
			select {
			case err := <-done:
				chunk.Rollback(ctx)
				t.Fatalf("the first %s of the run was recorded (error %v) while a chunk that had read the run's control "+
					"was still to commit", request, err)
			default:
			}
			return b.scalar(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") > 0
		}
		waitFor(t, "the "+request+" to wait for the chunk", waiting)
		if err := chunk.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("%s after the chunk committed: %v", request, err)
		}
	}
}
