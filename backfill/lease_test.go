package backfill_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/backfill"
)

var freezeTrials = flag.Int("freeze-trials", 3, "how many times the frozen-owner test stops a runner with SIGSTOP")

// runnerOn returns a runner with its own connections to b's database.
func runnerOn(t *testing.T, b *bundle, mutate func(*backfill.Config)) *backfill.Runner {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), b.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := b.cfg
	cfg.DB = pool
	mutate(&cfg)
	r, err := backfill.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls cond until it holds, failing the test after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An owner whose lease connection is cut while it is in the middle of a
// chunk (blocked on a row lock) and whose run is then taken over must not
// commit that chunk: it stops with ErrLeaseLost, and the process that took
// over, queued behind it on the same rows, completes the run. Today the
// old owner committed, and the new owner failed on the checkpoint fence.
func TestLostLeaseStopsTheOldOwnerBeforeItsNextCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	ctx := context.Background()
	var committedByA atomic.Int64
	long := func(c *backfill.Config) {
		c.Heartbeat, c.LeaseTimeout, c.LockTimeout = time.Hour, 3*time.Hour, time.Minute // only the fence can stop A
	}
	a := runnerOn(t, b, func(c *backfill.Config) {
		long(c)
		c.Progress = func(backfill.Progress) { committedByA.Add(1) }
	})
	newOwner := runnerOn(t, b, long)
	// Another transaction holds a row of chunk 2, so that A stops there.
	holder, err := b.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, "SELECT 1 FROM items WHERE id = 150 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	waiting := func(n int64) func() bool {
		return func() bool {
			return b.scalar(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") >= n
		}
	}
	errA := make(chan error, 1)
	go func() {
		_, err := a.Apply(ctx, countJob(100), backfill.ApplyOptions{})
		errA <- err
	}()
	waitFor(t, "A to block in chunk 2", waiting(1))
	var id string
	b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&id)
	// A loses its lease; the new owner takes the run over and queues
	// behind A on chunk 2's rows.
	b.db.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", "rewind backfill lease "+id)
	errB := make(chan error, 1)
	go func() {
		_, err := newOwner.Resume(ctx, id, countJob(100), backfill.ApplyOptions{})
		errB <- err
	}()
	waitFor(t, "the new owner to block behind A", waiting(2))
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errB; err != nil {
		t.Errorf("the new owner failed: %v", err)
	}
	if err := <-errA; !errors.Is(err, backfill.ErrLeaseLost) {
		t.Errorf("the old owner returned %v, want ErrLeaseLost", err)
	}
	if n := committedByA.Load(); n != 1 {
		t.Errorf("the old owner committed %d chunks, want 1 (none after losing its lease)", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Errorf("%d rows not changed exactly once", n)
	}
	st, err := b.runner.Status(ctx, id)
	if err != nil || st.State != backfill.Finished {
		t.Fatalf("status %+v, %v", st, err)
	}
	checkStory(t, b.db.Pool, 5, 1)
}

// A frozen owner (stopped with SIGSTOP, its connections open, possibly in
// the middle of a chunk's transaction) holds its run only until its lease
// connection has been idle for LeaseTimeout: then a process applying the
// job takes it over and finishes it. When the frozen owner wakes up, it
// stops without committing anything. Today it blocked the run forever.
func TestFrozenOwnerIsTakenOver(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const rows, chunk = 1200, 20
	for trial := range *freezeTrials {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			b := setup(t, rows)
			ctx := context.Background()
			var stderr strings.Builder
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=apply", childDSNEnv+"="+b.db.DSN, childChunkEnv+"="+fmt.Sprint(chunk),
				childSlowEnv+"=40ms", childLeaseEnv+"=3s")
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				cmd.Process.Signal(syscall.SIGCONT)
				cmd.Process.Kill()
			}()
			chunks := func() int64 {
				var n int64
				b.db.Pool.QueryRow(ctx, "SELECT count(*) FROM rewind.backfill_chunks").Scan(&n)
				return n
			}
			waitFor(t, "the child to commit 2 chunks", func() bool { return chunks() >= 2 })
			time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond) // mostly inside a chunk's transaction
			if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			frozenAt := chunks()
			r := runnerOn(t, b, func(c *backfill.Config) {
				c.LeaseTimeout, c.Heartbeat, c.LeaseWait = 3*time.Second, 500*time.Millisecond, 30*time.Second
			})
			res, err := r.Apply(ctx, slowIncrement(chunk, 0), backfill.ApplyOptions{})
			if err != nil {
				t.Fatalf("taking over from a frozen owner: %v", err)
			}
			if !res.Resumed || res.Run.State != backfill.Finished {
				t.Fatalf("apply %+v", res)
			}
			after := chunks()
			cmd.Process.Signal(syscall.SIGCONT)
			select {
			case err := <-exited:
				if err == nil || !strings.Contains(stderr.String(), "lease lost") {
					t.Errorf("the woken owner exited with %v, want a lost lease:\n%s", err, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the woken owner did not stop")
			}
			if n := chunks(); n != after {
				t.Errorf("the woken owner committed %d chunks after the takeover", n-after)
			}
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
				t.Errorf("%d rows not changed exactly once", n)
			}
			checkStory(t, b.db.Pool, rows/chunk, 1)
			var ended string
			b.db.Pool.QueryRow(ctx, `SELECT body FROM rewind.audit_log WHERE kind = 'backfill.run.resumed'`).Scan(&ended)
			if !strings.Contains(ended, "ended_frozen_owner") {
				t.Errorf("the takeover is not in the ledger: %s", ended)
			}
			t.Logf("frozen after %d chunks; taken over", frozenAt)
		})
	}
}
