//go:build unix

package backfill_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

// A frozen worker (a `work` process stopped with SIGSTOP, its connections
// open, often in the middle of a chunk's transaction) holds its shard only
// until its lease connection has been idle for LeaseTimeout: then another
// worker takes the shard over and the run finishes. Woken up, the frozen
// worker stops with a lost lease and commits nothing.
func TestFrozenWorkerIsTakenOver(t *testing.T) {
	t.Parallel()
	const rows, chunk = 1200, 20
	b := setup(t, rows)
	ctx := context.Background()
	a := runnerOn(t, b, func(c *backfill.Config) {
		c.LeaseTimeout, c.Heartbeat = 3*time.Second, 500*time.Millisecond
		c.Progress = func(backfill.Progress) { time.Sleep(20 * time.Millisecond) }
	})
	done := make(chan error, 1)
	var res *backfill.Result
	go func() {
		var err error
		res, err = a.Apply(ctx, slowIncrement(chunk, 0), backfill.ApplyOptions{Workers: 2, LocalWorkers: 1, Shards: 4})
		done <- err
	}()
	var runID string
	waitFor(t, "the run to start", func() bool {
		return b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&runID) == nil
	})
	c := startChild(t, b, "work", runID, chunk, "0s", "40ms", "2/1/4", childLeaseEnv+"=3s")
	defer c.cmd.Process.Signal(syscall.SIGCONT)
	var shard int
	var owner string
	waitFor(t, "the work process to commit 2 chunks", func() bool {
		return b.db.Pool.QueryRow(ctx, `SELECT shard, owner FROM rewind.backfill_shards WHERE run_id = $1 AND state = 'pending'
			AND chunks >= 2 AND owner LIKE '%:' || $2 || '/%'`, runID, fmt.Sprint(c.cmd.Process.Pid)).Scan(&shard, &owner) == nil
	})
	time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond) // mostly inside a chunk's transaction
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || res.Run.State != backfill.Finished {
		t.Fatalf("the run's process did not finish the run: %+v, %v", res, err)
	}
	chunks := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	c.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case err := <-c.exited:
		c.err, c.done = err, true
	case <-time.After(30 * time.Second):
		t.Fatal("the woken worker did not stop")
	}
	if !strings.Contains(c.stderr.String(), "lease lost") {
		t.Errorf("the woken worker exited with %v, want a lost lease:\n%s", c.err, c.stderr.String())
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); n != chunks {
		t.Errorf("the woken worker committed %d chunks after the takeover", n-chunks)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Errorf("%d rows not changed exactly once", n)
	}
	checkShards(t, b.db.Pool, runID, rows)
	if n := b.scalar(t, `SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.shard.taken_over'
		AND body LIKE '%' || $1 || '%'`, owner); n != 1 {
		t.Errorf("%d shard.taken_over entries name the frozen worker %s, want 1", n, owner)
	}
	t.Logf("froze worker %s on shard %s", owner, fmt.Sprint(shard))
}
