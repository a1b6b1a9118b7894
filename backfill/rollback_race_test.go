package backfill_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

var rollbackRaces = flag.Int("rollback-races", 10, "how many trials the racing-rollback test runs")

// Two `rollback RUN --execute` started at the same moment after an earlier
// rollback was interrupted: one continues the interrupted rollback and
// restores every row once; the other must not record a second, empty
// rollback run and report success (an outside test found exactly that).
// It waits, sees the work done, and says there is nothing to roll back.
func TestRacingRollbacksAfterAnInterruptedOneRecordNoEmptyRun(t *testing.T) {
	t.Parallel()
	for trial := range *rollbackRaces {
		t.Run(fmt.Sprint(trial), func(t *testing.T) { racingRollbacks(t) })
	}
}

func racingRollbacks(t *testing.T) {
	const rows, chunk = 400, 20
	b := setup(t, rows)
	ctx := context.Background()
	before := b.db.Checksum(t, "items", "id")
	runID := b.apply(t, countJob(chunk), backfill.ApplyOptions{}).Run.ID

	// An interrupted rollback: its context ends after its first chunk.
	ictx, interrupt := context.WithCancel(ctx)
	first, err := backfill.New(withConfig(b.cfg, func(c *backfill.Config) {
		c.Progress = func(backfill.Progress) { interrupt() }
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Rollback(ictx, runID, backfill.RollbackOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rollback: %v, want context.Canceled", err)
	}

	paced := withConfig(b.cfg, func(c *backfill.Config) {
		c.Progress = func(backfill.Progress) { time.Sleep(2 * time.Millisecond) }
	})
	var wg sync.WaitGroup
	results := make([]*backfill.RollbackResult, 2)
	errs := make([]error, 2)
	for i := range 2 {
		r, err := backfill.New(paced)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i], errs[i] = r.Rollback(ctx, runID, backfill.RollbackOptions{}) })
	}
	wg.Wait()

	ok := 0
	for i := range 2 {
		switch {
		case errs[i] == nil:
			ok++
			if results[i].Chunks == 0 {
				t.Errorf("rollback %d reported success with 0 chunks undone (%s)", i, results[i].Message)
			}
		case errors.Is(errs[i], backfill.ErrNothingToRollBack), errors.Is(errs[i], backfill.ErrRunLocked):
		default:
			t.Errorf("rollback %d: unexpected error %v", i, errs[i])
		}
	}
	if ok != 1 {
		t.Errorf("%d of the racing rollbacks succeeded, want 1 (errors: %v, %v)", ok, errs[0], errs[1])
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs WHERE undoes = $1", runID); n != 1 {
		t.Errorf("%d rollback runs recorded, want the interrupted one only", n)
	}
	if after := b.db.Checksum(t, "items", "id"); after != before {
		t.Errorf("table after the rollbacks differs from before the run")
	}
}

func withConfig(c backfill.Config, f func(*backfill.Config)) backfill.Config {
	f(&c)
	return c
}

// A run applied by several workers over shards (chunk numbers s·2³²+n)
// rolls back like a one-worker run: the table checksum-identical to
// before, and a second rollback finds nothing left.
func TestRollbackOfAParallelRunRestoresTheTable(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	before := b.db.Checksum(t, "items", "id")
	res := b.apply(t, countJob(50), backfill.ApplyOptions{Workers: 3, Shards: 6})
	if res.RowsChanged != 3000 {
		t.Fatalf("apply: %+v", res)
	}
	if n := b.scalar(t, "SELECT count(DISTINCT seq >> 32) FROM rewind.backfill_images WHERE run_id = $1", res.Run.ID); n < 2 {
		t.Fatalf("the run's images come from %d shards, want several", n)
	}
	plan, err := b.runner.PlanRollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Restore != 3000 || plan.Conflicts != 0 {
		t.Fatalf("plan: %+v", plan)
	}
	rb, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Restored != 3000 || rb.Conflicts != 0 {
		t.Fatalf("rollback: %+v", rb)
	}
	if after := b.db.Checksum(t, "items", "id"); after != before {
		t.Fatal("the table after the rollback of a parallel run differs from before it")
	}
	if _, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{}); !errors.Is(err, backfill.ErrNothingToRollBack) {
		t.Fatalf("second rollback: %v, want ErrNothingToRollBack", err)
	}
}

// A rollback is refused while a later run of the same job is paused (by
// its canary here): resumed, that run would change the rows the rollback
// restores, at the same time.
func TestRollbackRefusedWhileALaterRunOfTheJobIsPaused(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	ctx := context.Background()
	first := b.apply(t, countJob(50), backfill.ApplyOptions{}).Run.ID
	res, err := b.runner.Apply(ctx, countJob(50), backfill.ApplyOptions{NewRun: first,
		Canary: &backfill.Canary{Rows: 100, Wait: true}})
	if err != nil || res.Run.State != backfill.Paused {
		t.Fatalf("canary run: %+v, %v; want it paused", res, err)
	}
	sum := b.db.Checksum(t, "items", "id")
	if _, err := b.runner.Rollback(ctx, first, backfill.RollbackOptions{}); !errors.Is(err, backfill.ErrUnfinishedRun) {
		t.Fatalf("rollback while a later run is paused: %v, want ErrUnfinishedRun", err)
	}
	if b.db.Checksum(t, "items", "id") != sum {
		t.Fatal("the refused rollback changed the table")
	}
}
