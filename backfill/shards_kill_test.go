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
	"testing"
	"time"

	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

var workerKills = flag.Int("worker-kills", 30, "how many times the parallel kill test SIGKILLs a worker process")

// child is a runner process of a test: this test binary re-executed.
type child struct {
	mode   string
	cmd    *exec.Cmd
	exited chan error
	stderr *strings.Builder
	err    error // set once it exited
	done   bool
}

// startChild starts a child applying countJob(chunk) (or a Go job taking
// slow per chunk) in mode apply, resume or work, with par the run's
// workers, this process's workers and the shards as "w/l/s".
func startChild(t *testing.T, b *bundle, mode, runID string, chunk int, pace, slow, par string, env ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{mode: mode, exited: make(chan error, 1), stderr: &strings.Builder{}}
	c.cmd = exec.Command(exe, "-test.run=^$")
	c.cmd.Env = append(append(os.Environ(), childEnv+"="+mode, childDSNEnv+"="+b.db.DSN, childRunEnv+"="+runID,
		childChunkEnv+"="+fmt.Sprint(chunk), childPaceEnv+"="+pace, childSlowEnv+"="+slow, childParEnv+"="+par), env...)
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() { c.cmd.Process.Kill() })
	return c
}

// exitedNow reports whether the child has exited, without waiting.
func (c *child) exitedNow() bool {
	if c.done {
		return true
	}
	select {
	case c.err = <-c.exited:
		c.done = true
	default:
	}
	return c.done
}

func (c *child) wait() error {
	if !c.done {
		c.err, c.done = <-c.exited, true
	}
	return c.err
}

func (c *child) kill() {
	c.cmd.Process.Kill() // SIGKILL
	c.wait()
}

// status is the child's exit status (see childStatus).
func (c *child) status() int {
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		return -1
	}
	return 0
}

// Three worker processes on one run — the one that started it and `work`
// processes, restarted as either — are SIGKILLed at random moments, again
// and again, until the run finishes: every row is changed exactly once,
// every shard's checkpoints tile its keys, the ledger has every chunk
// committed once, and the run is finished, never left running.
func TestWorkerProcessesKilledAtRandomChangeEachRowOnce(t *testing.T) {
	t.Parallel()
	const rows, chunk, par = 18000, 20, "3/1/12"
	b := setup(t, rows)
	ctx := context.Background()
	// While the kills go on, each process pauses 100ms after each chunk,
	// so that the run outlasts them; the last processes run at full speed.
	const pace = "100ms"
	procs := [3]*child{startChild(t, b, "apply", "", chunk, pace, "", par)}
	var runID string
	waitFor(t, "the run to start", func() bool {
		err := b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&runID)
		return err == nil
	})
	for i := 1; i < 3; i++ {
		procs[i] = startChild(t, b, "work", runID, chunk, pace, "", par)
	}
	// committed is how many chunks the shards a child holds or finished
	// have committed.
	committed := func(c *child) int64 {
		return b.scalar(t, `SELECT coalesce(sum(chunks), 0) FROM rewind.backfill_shards WHERE run_id = $1 AND owner LIKE '%:' || $2 || '/%'`,
			runID, fmt.Sprint(c.cmd.Process.Pid))
	}
	// ended checks a child that exited by itself: it found no shard left,
	// or the run ended, which only a finished run may do this early.
	ended := func(c *child) {
		if st := c.status(); st != 0 && st != 4 {
			t.Fatalf("a %s process failed (status %d): %v\n%s", c.mode, st, c.err, c.stderr.String())
		}
	}
	kills, modes := 0, map[string]int{}
	kill := func(c *child) {
		c.kill()
		kills++
		modes[c.mode]++
	}
	for kills < *workerKills {
		i := rand.IntN(3)
		c := procs[i]
		if rand.IntN(4) == 0 {
			// Anywhere in its life: start-up, claims, takeovers.
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		} else {
			// Once it has committed a chunk, mostly among its next
			// chunk's statements.
			start := committed(c)
			deadline := time.Now().Add(30 * time.Second)
			for committed(c) == start && time.Now().Before(deadline) && !c.exitedNow() {
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		}
		if c.exitedNow() {
			ended(c)
		} else {
			kill(c)
		}
		if st, _ := b.runner.Status(ctx, runID); st.State == backfill.Finished {
			t.Fatalf("the run finished after %d kills, before %d: make the job longer", kills, *workerKills)
		}
		mode := "work"
		if rand.IntN(3) == 0 && !anyMode(procs, "apply") {
			mode = "apply" // running the same command again continues the run
		}
		procs[i] = startChild(t, b, mode, runID, chunk, pace, "", par)
	}
	atLastKill := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	// The last processes run at full speed until no shard is left.
	for i, c := range procs {
		if !c.exitedNow() {
			kill(c)
		}
		procs[i] = startChild(t, b, "work", runID, chunk, "0s", "", par)
	}
	for _, c := range procs {
		c.wait()
		ended(c)
	}
	st, err := b.runner.Status(ctx, runID)
	if err != nil || st.State != backfill.Finished || st.RowsChanged != rows {
		t.Fatalf("after the last processes: %+v, %v", st, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows were not changed exactly once", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs"); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	checkShards(t, b.db.Pool, runID, rows)
	takeovers := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.shard.taken_over'")
	t.Logf("%d kills (%v), %d of %d chunks committed when the kills ended, %d shard takeovers", kills, modes, atLastKill,
		st.Chunks, takeovers)
}

func anyMode(procs [3]*child, mode string) bool {
	for _, c := range procs {
		if c != nil && c.mode == mode && !c.exitedNow() {
			return true
		}
	}
	return false
}

// A killed worker's shard is taken over by another worker as soon as its
// lease goes with its connection, and the takeover is in the ledger.
func TestKilledWorkersShardIsTakenOver(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx := context.Background()
	a := runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(backfill.Progress) { time.Sleep(10 * time.Millisecond) }
	})
	done := make(chan error, 1)
	var res *backfill.Result
	go func() {
		var err error
		res, err = a.Apply(ctx, countJob(20), backfill.ApplyOptions{Workers: 2, LocalWorkers: 1, Shards: 4})
		done <- err
	}()
	var runID string
	waitFor(t, "the run to start", func() bool {
		return b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&runID) == nil
	})
	c := startChild(t, b, "work", runID, 20, "50ms", "", "2/1/4")
	var shard int
	var owner string
	waitFor(t, "the work process to commit a chunk", func() bool {
		return b.db.Pool.QueryRow(ctx, `SELECT shard, owner FROM rewind.backfill_shards WHERE run_id = $1 AND state = 'pending'
			AND chunks >= 1 AND owner LIKE '%:' || $2 || '/%'`, runID, fmt.Sprint(c.cmd.Process.Pid)).Scan(&shard, &owner) == nil
	})
	c.kill()
	if err := <-done; err != nil || res.Run.State != backfill.Finished {
		t.Fatalf("the run's process: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	checkShards(t, b.db.Pool, runID, 2000)
	l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
	found := false
	for e, err := range l.Entries(ctx, auditpg.Filter{Subject: runID}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == "backfill.shard.taken_over" && e.Attrs["previous_owner"] == owner && e.Attrs["shard"] == fmt.Sprint(shard) {
			found = true
		}
	}
	if !found {
		t.Errorf("no shard.taken_over entry for shard %d of the killed worker %s", shard, owner)
	}
}
