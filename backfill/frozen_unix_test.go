//go:build unix

package backfill_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

var freezeTrials = flag.Int("freeze-trials", 3, "how many times the frozen-owner test stops a runner with SIGSTOP")

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
