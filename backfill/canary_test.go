package backfill_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

func ptr[T any](v T) *T { return &v }

// countOnce is countJob with a validation that every row changed was
// changed once.
func countOnce(chunk int) *backfill.Job {
	j := countJob(chunk)
	j.Validate = []backfill.Validation{{Name: "once", SQL: "SELECT count(*) FROM items WHERE n > 1",
		Expect: backfill.Expect{Number: ptr("0")}}}
	return j
}

// chunkRows lists the rows each checkpoint of run id saw, in order.
func (b *bundle) chunkRows(t *testing.T, id string) string {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), "SELECT rows_seen FROM rewind.backfill_chunks WHERE run_id = $1 ORDER BY seq", id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var n int64
		rows.Scan(&n)
		out = append(out, fmt.Sprint(n))
	}
	return strings.Join(out, " ")
}

func TestCanaryThatPassesGoesOn(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	res, err := b.runner.Apply(context.Background(), countOnce(100), backfill.ApplyOptions{Canary: &backfill.Canary{Rows: 150}})
	if err != nil || res.Run.State != backfill.Finished || res.RowsChanged != 500 || res.Canary == nil ||
		res.Canary.State != backfill.CanaryPassed || res.Canary.Rows != 150 || res.Canary.Chunks != 2 {
		t.Fatalf("apply with a canary: %+v, %v", res, err)
	}
	// The canary's chunks stop at its rows; the run goes on after them.
	if got := b.chunkRows(t, res.Run.ID); got != "100 50 100 100 100 50" {
		t.Fatalf("chunks saw %s rows", got)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	e := b.lastEntry(t, res.Run.ID, "run.canary")
	if e["outcome"] != "passed" || e["validation.once"] != "passed" || e["count.rows"] != "150" {
		t.Fatalf("run.canary entry %v", e)
	}
	if e := b.lastEntry(t, res.Run.ID, "run.started"); e["canary_rows"] != "150" || e["canary_wait"] != "false" {
		t.Fatalf("run.started entry %v", e)
	}
}

// A canary whose validations fail stops the run, paused, with nothing
// beyond the canary written; resume is refused; a promotion from another
// runner, recorded with its actor, finishes the run.
func TestCanaryThatFailsPausesTheRunUntilPromoted(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := context.Background()
	job := func() *backfill.Job {
		j := doubleJob()
		j.Validate = []backfill.Validation{
			{Name: "doubled_once", SQL: "SELECT count(*) FROM items WHERE done AND n <> 1", Expect: backfill.Expect{Number: ptr("0")}},
			{Name: "small", SQL: "SELECT max(val) FROM items", Expect: backfill.Expect{Max: ptr("100")}},
		}
		return j
	}
	res, err := b.runner.Apply(ctx, job(), backfill.ApplyOptions{Canary: &backfill.Canary{Percent: 10}})
	var ce *backfill.CanaryError
	if !errors.Is(err, backfill.ErrCanaryFailed) || !errors.As(err, &ce) || ce.Report.Validations.Failed != 1 ||
		!strings.Contains(err.Error(), "small (expected at most 100, got 192") || !strings.Contains(err.Error(), "promote") {
		t.Fatalf("apply with a failing canary: %+v, %v", res, err)
	}
	id := res.Run.ID
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE done"); n != 100 {
		t.Fatalf("the canary of 10%% wrote %d rows, want 100", n)
	}
	st, err := b.runner.Status(ctx, id)
	if err != nil || st.State != backfill.Paused || st.Canary == nil || st.Canary.State != backfill.CanaryFailed ||
		!strings.Contains(st.Canary.Message, "1 of 2 validations failed") {
		t.Fatalf("status after a failed canary: %+v %+v, %v", st, st.Canary, err)
	}
	// Neither resume nor a new start goes on: they need a promotion.
	if _, err := b.runner.Resume(ctx, id, job(), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunPaused) ||
		!errors.Is(err, rewind.ErrWrongExpectedVersion) || !strings.Contains(err.Error(), "rewind backfill promote "+id) {
		t.Fatalf("resume of a paused run = %v", err)
	}
	if _, err := b.runner.Apply(ctx, job(), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunPaused) {
		t.Fatalf("apply over a paused run = %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE done"); n != 100 {
		t.Fatalf("refusals wrote: %d rows done", n)
	}
	cfg := b.cfg
	cfg.Actor = "promoter"
	other, _ := backfill.New(cfg)
	res, err = other.Promote(ctx, id[:8], job(), backfill.ApplyOptions{})
	if err != nil || res.Run.State != backfill.Finished || res.RowsChanged != 900 {
		t.Fatalf("promote: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1 OR NOT done"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	if e := b.lastEntry(t, id, "run.promoted"); e["actor"] != "promoter" || e["canary_state"] != backfill.CanaryFailed {
		t.Fatalf("run.promoted entry %v", e)
	}
	if e := b.lastEntry(t, id, "run.canary"); e["outcome"] != "failed" || !strings.HasPrefix(e["validation.small"], "failed") {
		t.Fatalf("run.canary entry %v", e)
	}
	if _, err := other.Promote(ctx, id, job(), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunEnded) {
		t.Fatalf("promote of a finished run = %v", err)
	}
}

// With Wait, a passing canary stops the run too; a promotion from another
// process continues it.
func TestCanaryWaitsForAPromotionFromAnotherProcess(t *testing.T) {
	t.Parallel()
	b := setup(t, 600)
	ctx := context.Background()
	res, err := b.runner.Apply(ctx, countOnce(100), backfill.ApplyOptions{Canary: &backfill.Canary{Rows: 100, Wait: true}})
	if err != nil || res.Run.State != backfill.Paused || res.Canary.State != backfill.CanaryWaiting ||
		!strings.Contains(res.Message, "rewind backfill promote "+res.Run.ID) {
		t.Fatalf("apply with --canary-wait: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 100 {
		t.Fatalf("the canary wrote %d rows, want 100", n)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=promote", childDSNEnv+"="+b.db.DSN, childRunEnv+"="+res.Run.ID, childChunkEnv+"=100")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promote in another process: %v\n%s", err, out)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	st, _ := b.runner.Status(ctx, res.Run.ID)
	if st.State != backfill.Finished || st.Canary.State != backfill.CanaryPromoted {
		t.Fatalf("status after the promotion: %+v %+v", st, st.Canary)
	}
	if e := b.lastEntry(t, res.Run.ID, "run.promoted"); e["actor"] != "kill-test" || e["canary_state"] != backfill.CanaryWaiting {
		t.Fatalf("run.promoted entry %v", e)
	}
}

// A run interrupted during its canary goes on with the canary when
// resumed: it stops at the canary's rows and validates.
func TestCanaryResumedAfterAnInterruption(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := b.cfg
	cfg.Progress = func(p backfill.Progress) {
		if p.Chunks == 1 {
			cancel()
		}
	}
	r, _ := backfill.New(cfg)
	res, err := r.Apply(ctx, countOnce(100), backfill.ApplyOptions{Canary: &backfill.Canary{Rows: 250, Wait: true}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted apply: %+v, %v", res, err)
	}
	id := res.Run.ID
	res, err = b.runner.Resume(context.Background(), id, countOnce(100), backfill.ApplyOptions{})
	if err != nil || res.Run.State != backfill.Paused || res.Canary.Rows != 250 || res.RowsChanged != 150 {
		t.Fatalf("resume during the canary: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 250 {
		t.Fatalf("%d rows written, want the canary's 250", n)
	}
}

// The whole run fits in its canary: validated at the end, and paused
// there when asked to wait.
func TestCanaryLargerThanTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 120)
	ctx := context.Background()
	res, err := b.runner.Apply(ctx, countOnce(100), backfill.ApplyOptions{Canary: &backfill.Canary{Percent: 100, Wait: true}})
	if err != nil || res.Run.State != backfill.Paused || res.Canary.Rows != 120 {
		t.Fatalf("a canary of the whole run: %+v, %v", res, err)
	}
	res, err = b.runner.Promote(ctx, res.Run.ID, countOnce(100), backfill.ApplyOptions{})
	if err != nil || res.Run.State != backfill.Finished || res.RowsChanged != 0 {
		t.Fatalf("promote: %+v, %v", res, err)
	}
}

// A paused run can be cancelled; the job then starts afresh.
func TestCancelOfAPausedRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	res, err := b.runner.Apply(ctx, countOnce(100), backfill.ApplyOptions{Canary: &backfill.Canary{Rows: 100, Wait: true}})
	if err != nil || res.Run.State != backfill.Paused {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if err := b.runner.Cancel(ctx, res.Run.ID, nil); err != nil {
		t.Fatalf("cancel of a paused run: %v", err)
	}
	st, _ := b.runner.Status(ctx, res.Run.ID)
	if st.State != backfill.Cancelled {
		t.Fatalf("state after cancel: %s", st.State)
	}
	if _, err := b.runner.Promote(ctx, res.Run.ID, countOnce(100), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunEnded) {
		t.Fatalf("promote of a cancelled run = %v", err)
	}
	if again := b.apply(t, countOnce(100), backfill.ApplyOptions{}); again.Run.ID == res.Run.ID || again.RowsChanged != 300 {
		t.Fatalf("a new run after cancelling the paused one: %+v", again)
	}
}

func TestCanaryBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		job    *backfill.Job
		canary backfill.Canary
		want   string
	}{
		{"no validations, no wait", countJob(100), backfill.Canary{Rows: 10}, "would check nothing"},
		{"rows and percent", countOnce(100), backfill.Canary{Rows: 10, Percent: 5}, "not both"},
		{"zero", countOnce(100), backfill.Canary{}, "a number of rows (1 or more) or a percentage"},
		{"negative rows", countOnce(100), backfill.Canary{Rows: -1}, "a number of rows (1 or more)"},
		{"percent over 100", countOnce(100), backfill.Canary{Percent: 150}, "at most 100"},
		{"negative percent", countOnce(100), backfill.Canary{Percent: -5}, "above 0"},
	} {
		c := tt.canary
		_, err := b.runner.Apply(ctx, tt.job, backfill.ApplyOptions{Canary: &c})
		if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an invalid argument saying %q", tt.name, err, tt.want)
		}
	}
	var schemas int64
	b.db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'").Scan(&schemas)
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 0 || schemas != 0 {
		t.Fatalf("bad canaries wrote: %d rows, %d schemas", n, schemas)
	}
	// A canary is a new run's: an open run without one is not given one.
	id := interrupt(t, b, countOnce(100), 1)
	if _, err := b.runner.Apply(ctx, countOnce(100), backfill.ApplyOptions{Canary: &backfill.Canary{Rows: 50}}); !errors.Is(err, backfill.ErrUnfinishedRun) ||
		!strings.Contains(err.Error(), "without a canary") {
		t.Fatalf("canary over an open run = %v", err)
	}
	if _, err := b.runner.Promote(ctx, id, countOnce(100), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrNotPaused) {
		t.Fatalf("promote of a run without a canary = %v", err)
	}
	if _, err := b.runner.Promote(ctx, "ffffffff", countOnce(100), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunNotFound) {
		t.Fatalf("promote of an unknown run = %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 100 {
		t.Fatalf("refusals wrote: %d rows changed, want the interrupted run's 100", n)
	}
}
