//go:build unix

package backfill_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

// A process frozen inside a chunk's transaction while its run is paused:
// the pause is forced after LeaseTimeout, and the server ends the frozen
// chunk's transaction (idle in transaction for LeaseTimeout, 25P03). When
// the process wakes up, the run stays paused: the process sees the pause,
// waits at a chunk boundary and never marks the run failed. Resumed, it
// finishes the run, each row once. Before, the woken process recorded
// run.failed (25P03, a fatal error) and exited.
func TestFrozenProcessWokenDuringAPauseStaysPaused(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"apply", "work"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			const rows, chunk = 400, 20
			b := setup(t, rows)
			// In "work" mode the owner waits after its first chunk until the
			// child has committed one: its chunks are fast, and on a loaded
			// machine it finished the run before the child had started.
			joined := make(chan struct{})
			r := runnerOn(t, b, func(c *backfill.Config) {
				c.LeaseTimeout, c.Heartbeat = 3*time.Second, 500*time.Millisecond
				c.Progress = func(backfill.Progress) {
					select {
					case <-joined:
					case <-time.After(time.Minute):
					}
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel) // before the runner's pool closes: an owner left waiting lets it go
			var c *child
			var owner chan error
			var runID string
			if mode == "apply" {
				c = startChild(t, b, "apply", "", chunk, "0s", "400ms", "1/1/1", childLeaseEnv+"=3s")
			} else {
				owner = make(chan error, 1)
				go func() {
					_, err := r.Apply(ctx, slowIncrement(chunk, 0), backfill.ApplyOptions{Workers: 2, LocalWorkers: 1, Shards: 4})
					owner <- err
				}()
			}
			waitFor(t, "the run to start", func() bool {
				return b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&runID) == nil
			})
			if mode == "work" {
				c = startChild(t, b, "work", runID, chunk, "0s", "400ms", "2/1/4", childLeaseEnv+"=3s")
			}
			defer c.cmd.Process.Signal(syscall.SIGCONT)
			waitFor(t, "the child to commit a chunk", func() bool {
				if c.exitedNow() {
					t.Fatalf("the child exited (%v) before it committed a chunk:\n%s", c.err, c.stderr.String())
				}
				return b.scalar(t, `SELECT count(*) FROM rewind.backfill_shards WHERE run_id = $1 AND chunks >= 1
					AND owner LIKE '%:' || $2 || '/%'`, runID, fmt.Sprint(c.cmd.Process.Pid)) > 0
			})
			close(joined)
			time.Sleep(100 * time.Millisecond) // inside its next chunk's transaction (400 ms each)
			if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			st, err := r.Pause(ctx, runID, backfill.ControlOptions{Reason: "frozen", Wait: 20 * time.Second})
			if err != nil || st.State != backfill.Paused {
				t.Fatalf("pause of a run with a frozen process: %+v, %v", st, err)
			}
			chunks := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
			time.Sleep(1500 * time.Millisecond) // past the server's end of the frozen chunk's transaction
			c.cmd.Process.Signal(syscall.SIGCONT)
			time.Sleep(3 * time.Second) // the woken process finds its chunk's transaction gone
			if c.exitedNow() {
				t.Errorf("the woken process exited (%v) while the run was paused:\n%s", c.err, c.stderr.String())
			}
			if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.run.failed'"); n != 0 {
				t.Fatalf("the woken process recorded run.failed:\n%s", c.stderr.String())
			}
			var state string
			if err := b.db.Pool.QueryRow(ctx, "SELECT state FROM rewind.backfill_runs WHERE id = $1", runID).Scan(&state); err != nil ||
				state != "paused" {
				t.Fatalf("stored state %q (%v), want paused", state, err)
			}
			if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); n != chunks {
				t.Errorf("%d chunks committed while paused", n-chunks)
			}
			if _, _, err := r.Unpause(ctx, runID); err != nil {
				t.Fatal(err)
			}
			if err := c.wait(); err != nil {
				t.Errorf("the resumed child exited with %v:\n%s", err, c.stderr.String())
			}
			if owner != nil {
				if err := <-owner; err != nil {
					t.Errorf("the owner: %v", err)
				}
			}
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
				t.Errorf("%d rows not changed exactly once", n)
			}
			if !strings.Contains(c.stderr.String(), "25P03") {
				t.Logf("the freeze landed outside a chunk's transaction this time:\n%s", c.stderr.String())
			}
		})
	}
}

// A run whose only process dies while it is pausing (the pause asked for,
// not yet acknowledged) is paused: nothing of it can commit. The next
// control command or status records it so, once (the control's paused_at,
// the run's stored state paused, a run.paused entry), so that what status
// shows is what the ledger holds. Before, status showed paused while the
// stored state stayed running, with no run.paused entry.
func TestPauseOfARunWhoseOwnerDiedPausingIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, 400)
	ctx := context.Background()
	c := startChild(t, b, "apply", "", 20, "0s", "400ms", "1/1/1", childLeaseEnv+"=3s")
	var runID string
	waitFor(t, "the child to commit a chunk", func() bool {
		return b.db.Pool.QueryRow(ctx, "SELECT run_id FROM rewind.backfill_chunks LIMIT 1").Scan(&runID) == nil
	})
	// Stopped first, so that it cannot acknowledge the pause before it dies.
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	st, err := b.runner.Pause(ctx, runID, backfill.ControlOptions{Reason: "window"})
	if err != nil || st.State != backfill.Pausing {
		t.Fatalf("pause --no-wait: %+v, %v", st, err)
	}
	c.kill()
	waitFor(t, "the dead owner's lease to go", func() bool {
		return b.scalar(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'rewind backfill lease%'`) == 0
	})
	// list alone records it too (an outside test found it did not).
	runs, err := b.runner.List(ctx, backfill.ListOptions{})
	if err != nil || len(runs) != 1 || runs[0].State != backfill.Paused || runs[0].Control == nil || runs[0].Control.PausedAt == nil {
		t.Fatalf("list with a run whose owner died pausing: %v, %v", runs, err)
	}
	var stored string
	if err := b.db.Pool.QueryRow(ctx, "SELECT state FROM rewind.backfill_runs WHERE id = $1", runID).Scan(&stored); err != nil ||
		stored != "paused" {
		t.Errorf("stored state after list %q (%v), want paused", stored, err)
	}
	for range 2 {
		st, err = b.runner.Status(ctx, runID)
		if err != nil || st.State != backfill.Paused || st.Control == nil || st.Control.PausedAt == nil {
			t.Fatalf("status of a run whose owner died pausing: %+v, %v", st, err)
		}
	}
	var state string
	if err := b.db.Pool.QueryRow(ctx, "SELECT state FROM rewind.backfill_runs WHERE id = $1", runID).Scan(&state); err != nil ||
		state != "paused" {
		t.Errorf("stored state %q (%v), want paused", state, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.run.paused'"); n != 1 {
		t.Errorf("%d run.paused entries, want 1", n)
	}
	if _, live, err := b.runner.Unpause(ctx, runID); err != nil || live {
		t.Fatalf("unpause: live %v, %v", live, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.run.unpaused'"); n != 1 {
		t.Errorf("%d run.unpaused entries, want 1", n)
	}
}
