package backfill_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

// Processes waiting for a run's lease wait on its lock as active backends.
// The throttle's load signal leaves the backfill's own sessions out by
// name; the waiting ones were unnamed, so racing processes throttled the
// run they waited for (in CI, a test's run waited minutes on its own
// racers). While others wait, every session of the run's database that is
// waiting on a lock is one the load signal leaves out.
func TestProcessesWaitingForALeaseAreNotLoadOnTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx := context.Background()
	owner := runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(backfill.Progress) { time.Sleep(20 * time.Millisecond) }
	})
	done := make(chan error, 1)
	go func() {
		_, err := owner.Apply(ctx, countJob(20), backfill.ApplyOptions{})
		done <- err
	}()
	runningID(t, b, "count")
	var wg sync.WaitGroup
	for range 4 {
		r := runnerOn(t, b, func(c *backfill.Config) { c.LeaseWait = 3 * time.Second })
		wg.Go(func() { r.Apply(ctx, countJob(20), backfill.ApplyOptions{}) })
	}
	waitFor(t, "processes waiting for the run's lease", func() bool {
		return b.scalar(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock(%'`) >= 2
	})
	if n := b.scalar(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		AND wait_event_type = 'Lock' AND application_name NOT LIKE 'rewind backfill%'`); n != 0 {
		t.Errorf("%d sessions wait on a lock unnamed: the load signal counts them against the run", n)
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatalf("owner: %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}
