package backfill_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

// slowRunner is a runner on b's database whose chunks take at least
// every: slow enough for another runner to act between them. notes
// collects the Paused notes its progress reports.
func slowRunner(t *testing.T, b *bundle, every time.Duration, notes *[]string, mu *sync.Mutex) *backfill.Runner {
	return runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			if p.Paused != "" {
				mu.Lock()
				*notes = append(*notes, p.Paused)
				mu.Unlock()
				return
			}
			time.Sleep(every)
		}
	})
}

// runningID waits until job has a run with a committed chunk and returns it.
func runningID(t *testing.T, b *bundle, job string) string {
	t.Helper()
	for range 500 {
		var id string
		b.db.Pool.QueryRow(context.Background(), `SELECT r.id FROM rewind.backfill_runs r WHERE r.job_name = $1
			AND EXISTS (SELECT 1 FROM rewind.backfill_chunks c WHERE c.run_id = r.id)`, job).Scan(&id)
		if id != "" {
			return id
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no run of " + job + " committed a chunk")
	return ""
}

// Pause from another runner while a run executes with several workers:
// the run is paused once every worker is at a chunk boundary, no chunk
// commits after that, the executing process stays and shows who paused
// it, and a resume from yet another runner lets it finish, each row
// changed once. Every transition is an audit entry with its actor.
func TestPauseAndResumeFromAnotherRunner(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	var res *backfill.Result
	go func() {
		var err error
		res, err = exec.Apply(ctx, countJob(50), backfill.ApplyOptions{Workers: 3, Shards: 6})
		done <- err
	}()
	id := runningID(t, b, "count")
	pauser := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "pauser" })
	st, err := pauser.Pause(ctx, id[:8], backfill.ControlOptions{Reason: "maintenance window", Wait: 20 * time.Second})
	if err != nil || st.State != backfill.Paused || st.Control == nil || st.Control.Actor != "pauser" ||
		st.Control.Reason.Kind != backfill.PauseOperator || st.Control.PausedAt == nil {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	chunks := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks WHERE committed_at >= $1", *st.Control.PausedAt)
	if chunks != 0 {
		t.Fatalf("%d chunks committed after the pause was recorded", chunks)
	}
	before := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	time.Sleep(700 * time.Millisecond)
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); n != before {
		t.Fatalf("%d chunks committed while paused", n-before)
	}
	select {
	case err := <-done:
		t.Fatalf("the executing process returned while paused: %v", err)
	default:
	}
	mu.Lock()
	seen := strings.Join(notes, "|")
	mu.Unlock()
	if !strings.Contains(seen, "paused by pauser: maintenance window") {
		t.Fatalf("progress notes %q", seen)
	}
	if _, err := pauser.Pause(ctx, id, backfill.ControlOptions{}); !errors.Is(err, backfill.ErrAlreadyPaused) ||
		!strings.Contains(err.Error(), "pauser") {
		t.Fatalf("a second pause = %v", err)
	}
	resumer := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "resumer" })
	if _, live, err := resumer.Unpause(ctx, id); err != nil || !live {
		t.Fatalf("unpause: live %v, %v", live, err)
	}
	if err := <-done; err != nil || res.Run.State != backfill.Finished {
		t.Fatalf("the run after resume: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	for kind, actor := range map[string]string{"run.pausing": "pauser", "run.unpaused": "resumer"} {
		if e := b.lastEntry(t, id, kind); e == nil || e["actor"] != actor {
			t.Errorf("%s entry %v", kind, e)
		}
	}
	if e := b.lastEntry(t, id, "run.paused"); e == nil || e["requested_by"] != "pauser" || e["reason"] != "maintenance window" {
		t.Errorf("run.paused entry %v", e)
	}
	if k := b.auditKinds(t, id); k["backfill.run.paused"] != 1 || k["backfill.run.finished"] != 1 {
		t.Errorf("entries %v", k)
	}
}
