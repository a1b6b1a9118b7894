package backfill_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

// A process whose run was taken over must not write to the ledger about
// that run afterwards, whatever makes it stop: here it is interrupted
// (Ctrl-C, SIGTERM) after the new owner finished. Before, it appended
// run.interrupted after run.finished. The takeover itself is recorded:
// run.taken_over names the previous owner and the new one.
func TestTakenOverOwnerWritesNothingAfterwards(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"interrupted", "continues"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 300)
			long := func(c *backfill.Config) {
				// Only the fence can tell A it lost its lease: its heartbeat
				// does not run within the test.
				c.Heartbeat, c.LeaseTimeout = time.Hour, 3*time.Hour
			}
			paused, resume := make(chan struct{}), make(chan struct{})
			a := runnerOn(t, b, func(c *backfill.Config) {
				long(c)
				c.Progress = func(p backfill.Progress) {
					if p.Chunks == 1 {
						close(paused)
						<-resume
					}
				}
			})
			newOwner := runnerOn(t, b, long)
			ctxA, cancelA := context.WithCancel(context.Background())
			defer cancelA()
			errA := make(chan error, 1)
			go func() {
				_, err := a.Apply(ctxA, countJob(100), backfill.ApplyOptions{})
				errA <- err
			}()
			<-paused
			var id, ownerA string
			b.db.Pool.QueryRow(context.Background(), "SELECT id, owner FROM rewind.backfill_runs").Scan(&id, &ownerA)
			// A's lease connection goes (a network cut); the run is taken
			// over and finished by another process while A is between chunks.
			b.db.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", "rewind backfill lease "+id)
			waitFor(t, "A's lease to go", func() bool {
				return b.scalar(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", "rewind backfill lease "+id) == 0
			})
			res, err := newOwner.Resume(context.Background(), id, countJob(100), backfill.ApplyOptions{})
			if err != nil || res.Run.State != backfill.Finished {
				t.Fatalf("the new owner: %+v, %v", res, err)
			}
			if how == "interrupted" {
				cancelA()
			}
			close(resume)
			if err := <-errA; !errors.Is(err, backfill.ErrLeaseLost) {
				t.Errorf("the old owner returned %v, want ErrLeaseLost", err)
			}
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
				t.Errorf("%d rows not changed exactly once", n)
			}
			checkStory(t, b.db.Pool, 3, 1)
			l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
			var kinds []string
			var taken map[string]string
			var leases map[string]int64
			for e, err := range l.Entries(context.Background(), auditpg.Filter{Subject: id}) {
				if err != nil {
					t.Fatal(err)
				}
				kinds = append(kinds, e.Kind)
				if e.Kind == "backfill.run.taken_over" {
					taken, leases = e.Attrs, e.Counts
				}
			}
			if taken == nil {
				t.Fatalf("no run.taken_over entry: %v", kinds)
			}
			// Both runners live in this process, so they share a host:pid
			// owner name; the lease epochs tell them apart.
			if taken["previous_owner"] != ownerA || taken["owner"] == "" || leases["previous_lease"] != 1 || leases["lease"] != 2 {
				t.Errorf("run.taken_over names previous owner %q (lease %d) and owner %q (lease %d), want %q (1) and the new owner (2)",
					taken["previous_owner"], leases["previous_lease"], taken["owner"], leases["lease"], ownerA)
			}
		})
	}
}

// The process taking a run over waits for a chunk transaction the
// previous owner left holding the run's fencing token (a frozen owner's,
// which the server ends after LeaseTimeout idle) even when its sessions
// bound lock waits (the CLI's --lock-timeout): the legitimate new owner
// must not be the one that fails.
func TestTakeoverOutwaitsTheOldOwnersChunk(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	ctxA, cancelA := context.WithCancel(ctx)
	a := runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) { cancelA() } // interrupted after chunk 1
	})
	if _, err := a.Apply(ctxA, countJob(100), backfill.ApplyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("A: %v", err)
	}
	var id string
	b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&id)
	// The old owner's chunk transaction, frozen just before its commit.
	frozen, err := b.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := frozen.Exec(ctx, "SELECT epoch FROM rewind.backfill_leases WHERE run_id = $1 FOR SHARE", id); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(b.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "200"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	bcfg := b.cfg
	bcfg.DB = pool
	newOwner, err := backfill.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	errB := make(chan error, 1)
	go func() {
		_, err := newOwner.Resume(ctx, id, countJob(100), backfill.ApplyOptions{})
		errB <- err
	}()
	waitFor(t, "the new owner to wait for the token", func() bool {
		return b.scalar(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") >= 1
	})
	time.Sleep(time.Second) // well past the sessions' lock_timeout
	frozen.Rollback(ctx)    // the server ends it
	if err := <-errB; err != nil {
		t.Fatalf("the new owner failed: %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Errorf("%d rows not changed exactly once", n)
	}
}
