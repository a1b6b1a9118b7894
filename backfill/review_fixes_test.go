package backfill_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// Found in review: a single-column uuid (boolean, bytea) key passed
// validation, then the chunk query's min()/max(), which PostgreSQL lacks
// for those types, failed the run.
func TestSingleKeyWithoutMinMax(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.db.Exec(t, "CREATE TABLE u (id uuid PRIMARY KEY, n int NOT NULL DEFAULT 0)")
	b.db.Exec(t, "INSERT INTO u (id) SELECT gen_random_uuid() FROM generate_series(1, 50)")
	job := &backfill.Job{Name: "u", Version: "1", ChunkSize: 10,
		Source: &backfill.Table{Name: "u", Key: []string{"id"}},
		Set:    map[string]string{"n": "n + 1"}}
	res, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
	if err != nil {
		runs := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs")
		t.Fatalf("apply on a uuid key: %v (runs recorded: %d)", err, runs)
	}
	if n := b.scalar(t, "SELECT count(*) FROM u WHERE n <> 1"); n != 0 || res.RowsChanged != 50 {
		t.Fatalf("%d rows not changed exactly once (%d changed)", n, res.RowsChanged)
	}
}

// Found in review: two processes applying the same job at once each
// started a run, and every row was changed twice. One run per job may be
// open; the second process continues it (after the first one's lease).
func TestConcurrentApplyStartsOneRun(t *testing.T) {
	t.Parallel()
	for round := 0; round < 3; round++ {
		b := setup(t, 2000)
		// create the ledger schema first so both calls race only on the run
		if _, err := b.runner.Plan(context.Background(), countJob(100), backfill.PlanOptions{}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			pool, err := pgxpool.New(context.Background(), b.db.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			cfg := b.cfg
			cfg.DB = pool
			r, _ := backfill.New(cfg)
			if _, err := r.Plan(context.Background(), countJob(100), backfill.PlanOptions{}); err != nil {
				t.Fatal(err)
			}
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = r.Apply(context.Background(), countJob(100), backfill.ApplyOptions{})
			}()
		}
		close(start)
		wg.Wait()
		runs := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs")
		t.Logf("round %d runs %d errs %v", round, runs, errs)
		twice := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1")
		if runs != 1 || twice != 0 {
			t.Fatalf("round %d: %d runs of one job, %d rows not changed exactly once (errors %v)", round, runs, twice, errs)
		}
	}
}

// Found in review: resume checked the run's state only before waiting for
// the lease, so a run cancelled meanwhile was resumed.
func TestResumeRechecksTheStateUnderTheLease(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	ctx := context.Background()
	id := interrupt(t, b, countJob(100), 1)
	var lockObj int64
	b.db.Pool.QueryRow(ctx, "SELECT lock_obj FROM rewind.backfill_runs WHERE id = $1", id).Scan(&lockObj)
	holder, err := b.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	// another process (here: a cancel) holds the lease
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", int32(0x52574e44), int32(uint32(lockObj))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.runner.Resume(ctx, id, countJob(100), backfill.ApplyOptions{})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // Resume has loaded the run and waits for the lease
	b.db.Exec(t, "UPDATE rewind.backfill_runs SET state = 'cancelled', finished_at = now() WHERE id = $1", id)
	holder.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	err = <-done
	var state string
	b.db.Pool.QueryRow(ctx, "SELECT state FROM rewind.backfill_runs WHERE id = $1", id).Scan(&state)
	if err == nil || state != "cancelled" {
		t.Fatalf("resume of a run cancelled while it waited: err=%v, state now %q, rows changed %d",
			err, state, b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"))
	}
}

// Found in review: a where that closes the runner's parentheses passed
// validation and escaped the chunk's key range, so every chunk's UPDATE
// ran over the whole table. It is refused, and nothing is written.
func TestWhereCannotEscapeTheChunkRange(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	job := countJob(100)
	job.Source.(*backfill.Table).Where = "n >= 0) OR (n >= 0"
	if _, err := b.runner.Plan(context.Background(), job, backfill.PlanOptions{}); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("plan of an escaping where: %v, want a validation error", err)
	}
	if _, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{}); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("apply of an escaping where: %v, want a validation error", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 0 {
		t.Fatalf("a refused job changed %d rows", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'"); n != 0 {
		t.Fatal("a refused job created the ledger")
	}
}

// Found in review: a run id prefix was used as a LIKE pattern, so "%%%%"
// named any run.
func TestRunIDPrefixIsNotAPattern(t *testing.T) {
	t.Parallel()
	b := setup(t, 200)
	id := interrupt(t, b, countJob(100), 1)
	err := b.runner.Cancel(context.Background(), "%%%%", nil)
	st, _ := b.runner.Status(context.Background(), id)
	if err == nil || st.State == backfill.Cancelled {
		t.Fatalf("cancel %q = %v; run %s is now %s", "%%%%", err, id[:8], st.State)
	}
}

// Found in review: when another owner had committed the chunk with this
// sequence number (the fence between two processes on one run), the
// primary-key violation was taken for a data error and the run marked
// failed. It is a lost lease: stop, and leave the run as it is.
func TestCheckpointFenceIsALostLease(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	cfg := b.cfg
	cfg.Progress = func(p backfill.Progress) {
		if p.Chunks == 1 { // another owner committed chunk 2 meanwhile
			b.db.Exec(t, `INSERT INTO rewind.backfill_chunks (run_id, seq, hi, rows_seen, rows_changed, rows_skipped,
				input_checksum, output_checksum, attempts) VALUES ($1, 2, '{200}', 100, 100, 0, '', '', 1)`, p.RunID)
		}
	}
	r, _ := backfill.New(cfg)
	_, err := r.Apply(context.Background(), countJob(100), backfill.ApplyOptions{})
	var state, class string
	b.db.Pool.QueryRow(context.Background(), "SELECT state, error_class FROM rewind.backfill_runs").Scan(&state, &class)
	if !errors.Is(err, backfill.ErrLeaseLost) || state != "running" || class != "" {
		t.Fatalf("losing the checkpoint fence = %v; run recorded as %s/%s, want a lost lease and the run left running", err, state, class)
	}
}

// Found in review: parameters named like secrets (docs/backfill.md: their
// values are masked) were masked only when declared secret.
func TestSecretLookingParamsAreMasked(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	job := doubleJob()
	job.Source.(*backfill.Table).Where = "NOT done AND @api_token::text <> ''"
	job.Params = backfill.Params{"api_token": {Type: "text", Value: "tok-123456", Text: "tok-123456"}}
	b.apply(t, job, backfill.ApplyOptions{})
	a := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE body LIKE '%tok-123456%'")
	r := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs WHERE job::text LIKE '%tok-123456%' OR params::text LIKE '%tok-123456%'")
	if a+r != 0 {
		t.Fatalf("secret-looking parameter in %d audit entries and %d run records", a, r)
	}
}
