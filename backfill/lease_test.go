package backfill_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/backfill"
)

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
