package backfill_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

// checkShards checks that every shard of the run is done and that its
// checkpoints tile its key range: chunk sequence numbers in the shard's
// block, the first after the shard's lower bound, each after the previous
// one's last key, the last at or below the shard's upper bound; that the
// chunks saw rows rows in all; and that the ledger has each chunk
// committed once. It returns the shard count.
func checkShards(t *testing.T, pool *pgxpool.Pool, runID string, rows int64) int {
	t.Helper()
	ctx := context.Background()
	type shard struct {
		lo, hi []string
		state  string
	}
	var shards []shard
	r, err := pool.Query(ctx, "SELECT lo, hi, state FROM rewind.backfill_shards WHERE run_id = $1 ORDER BY shard", runID)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var s shard
		if err := r.Scan(&s.lo, &s.hi, &s.state); err != nil {
			t.Fatal(err)
		}
		if s.state != "done" {
			t.Errorf("shard %d is %s, want done", len(shards), s.state)
		}
		shards = append(shards, s)
	}
	if len(shards) == 0 {
		t.Fatal("the run has no shards")
	}
	var seen, chunks int64
	for i, s := range shards {
		if i > 0 && !slices.Equal(s.lo, shards[i-1].hi) {
			t.Errorf("shard %d begins after %v, shard %d ends at %v", i, s.lo, i-1, shards[i-1].hi)
		}
		r, err := pool.Query(ctx, `SELECT seq, after_key, hi, rows_seen FROM rewind.backfill_chunks
			WHERE run_id = $1 AND seq > $2::bigint << 32 AND seq <= ($2::bigint + 1) << 32 ORDER BY seq`, runID, i)
		if err != nil {
			t.Fatal(err)
		}
		prev, want := s.lo, int64(i)<<32+1
		for r.Next() {
			var seq, n int64
			var after, hi []string
			if err := r.Scan(&seq, &after, &hi, &n); err != nil {
				t.Fatal(err)
			}
			if seq != want || !slices.Equal(after, prev) {
				t.Errorf("shard %d: chunk %d (after %v) does not follow chunk %d (last key %v)", i, seq, after, want-1, prev)
			}
			prev, want, seen, chunks = hi, want+1, seen+n, chunks+1
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if seen != rows {
		t.Errorf("the chunks saw %d rows, want %d", seen, rows)
	}
	l, _ := auditpg.New(pool, auditpg.Config{})
	if _, err := l.Verify(ctx); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	committed := map[string]int{}
	for e, err := range l.Entries(ctx, auditpg.Filter{Subject: runID}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == "backfill.chunk.committed" {
			committed[e.Attrs["chunk"]]++
		}
	}
	if int64(len(committed)) != chunks {
		t.Errorf("the ledger has %d chunks committed, the checkpoints %d", len(committed), chunks)
	}
	for c, n := range committed {
		if n != 1 {
			t.Errorf("the ledger has chunk %s committed %d times", c, n)
		}
	}
	return len(shards)
}

// A run with several workers changes each row once, composite keys
// included, and its shards tile the key space.
func TestWorkersApplyEachRowOnce(t *testing.T) {
	t.Parallel()
	t.Run("single key", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 3000)
		res := b.apply(t, countJob(50), backfill.ApplyOptions{Workers: 3, Shards: 7})
		if res.Run.State != backfill.Finished || res.RowsChanged != 3000 {
			t.Fatalf("apply %+v", res)
		}
		if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
			t.Fatalf("%d rows not changed exactly once", n)
		}
		if n := checkShards(t, b.db.Pool, res.Run.ID, 3000); n != 7 {
			t.Errorf("%d shards, want 7", n)
		}
		st, err := b.runner.Status(context.Background(), res.Run.ID)
		if err != nil || len(st.Shards) != 7 || st.Workers != 3 || st.State != backfill.Finished {
			t.Fatalf("status %+v, %v", st, err)
		}
		for _, s := range st.Shards {
			if s.State != "done" || s.Chunks == 0 {
				t.Errorf("status shows shard %+v", s)
			}
		}
	})
	t.Run("composite key", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 10)
		b.db.Exec(t, `CREATE TABLE pairs (tenant int NOT NULL, id int NOT NULL, n int NOT NULL DEFAULT 0, PRIMARY KEY (tenant, id))`)
		b.db.Exec(t, `INSERT INTO pairs SELECT t, i FROM generate_series(1, 5) t, generate_series(1, 400) i`)
		job := &backfill.Job{Name: "pairs", Version: "1", ChunkSize: 37,
			Source: &backfill.Table{Name: "pairs", Key: []string{"tenant", "id"}}, Set: map[string]string{"n": "n + 1"}}
		last := ""
		for want := range int64(2) {
			if want == 1 {
				b.db.Exec(t, "ANALYZE pairs") // the second run's shards come from the histogram
			}
			res, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{Workers: 2, Shards: 9, NewRun: last})
			if err != nil || res.RowsChanged != 2000 {
				t.Fatalf("run %d: %+v, %v", want+1, res, err)
			}
			last = res.Run.ID
			if n := b.scalar(t, "SELECT count(*) FROM pairs WHERE n <> $1", want+1); n != 0 {
				t.Fatalf("%d rows not changed exactly once by run %d", n, want+1)
			}
			if n := checkShards(t, b.db.Pool, res.Run.ID, 2000); n < 5 {
				t.Errorf("%d shards, want about 9", n)
			}
		}
	})
}

// Shards are split by the key distribution: by PostgreSQL's histogram of
// the first key column when it is fresh, else by a sample of the keys; on
// skewed keys each shard holds about as many rows, not as wide a range.
func TestShardsFollowTheKeyDistribution(t *testing.T) {
	t.Parallel()
	for _, analyze := range []bool{false, true} {
		t.Run(map[bool]string{false: "sample", true: "histogram"}[analyze], func(t *testing.T) {
			t.Parallel()
			b := setup(t, 0)
			b.db.Exec(t, "ALTER TABLE items SET (autovacuum_enabled = false)") // no ANALYZE but the test's
			// 20,000 keys: half in 1…10,000, half spread over 10,000,000.
			// On one connection, whose statistics reach the server before
			// the ANALYZE (they are sent when it is idle, so that the rows
			// it inserted could otherwise count as changed since).
			conn, err := b.db.Pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			for _, q := range []string{`INSERT INTO items (id, val) SELECT g, 0 FROM generate_series(1, 10000) g
				UNION ALL SELECT 10000 + g * 1000, 0 FROM generate_series(1, 10000) g`, "SELECT pg_stat_force_next_flush()",
				map[bool]string{false: "SELECT 1", true: "ANALYZE items"}[analyze]} {
				if _, err := conn.Exec(context.Background(), q); err != nil {
					t.Fatal(err)
				}
			}
			res := b.apply(t, countJob(500), backfill.ApplyOptions{Workers: 2, Shards: 4})
			method := ""
			l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
			for e, err := range l.Entries(context.Background(), auditpg.Filter{Subject: res.Run.ID}) {
				if err != nil {
					t.Fatal(err)
				}
				if e.Kind == "backfill.run.started" {
					method = e.Attrs["shard_method"]
				}
			}
			if want := map[bool]string{false: "sample", true: "histogram"}[analyze]; method != want {
				t.Errorf("shards planned by %q, want %q", method, want)
			}
			checkShards(t, b.db.Pool, res.Run.ID, 20000)
			rows, err := b.db.Pool.Query(context.Background(), "SELECT rows_seen FROM rewind.backfill_shards WHERE run_id = $1", res.Run.ID)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var n int64
				rows.Scan(&n)
				if n < 2500 || n > 7500 { // 5,000 each if even
					t.Errorf("a shard holds %d of 20,000 rows in 4 shards", n)
				}
			}
		})
	}
}

// capLog prepares a log of how many shard leases are held at every
// lease: of the run, and of all runs in the database.
func capLog(t *testing.T, b *bundle) {
	t.Helper()
	b.db.Exec(t, "CREATE TABLE cap_log (run_id text, held bigint, db_held bigint)")
	b.db.Exec(t, `CREATE FUNCTION log_cap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
		INSERT INTO cap_log SELECT NEW.run_id,
			(SELECT count(*) FROM rewind.backfill_shards s WHERE s.run_id = NEW.run_id AND s.state = 'pending'
				AND s.lock_obj IN (SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = 1381453395 AND objsubid = 2 AND granted)),
			(SELECT count(*) FROM rewind.backfill_shards s WHERE s.state = 'pending'
				AND s.lock_obj IN (SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = 1381453395 AND objsubid = 2 AND granted));
		RETURN NEW; END $$`)
}

// A run's workers in all processes never hold more shard leases than its
// workers setting, and runs with a database cap never more than that
// together; a `work` process joining a run shares its shards.
func TestWorkerCapsHoldAcrossProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t, 4000)
	ctx := context.Background()
	// The ledger exists first, so that the trigger can be put on it.
	if _, err := b.runner.Plan(ctx, countJob(40), backfill.PlanOptions{}); err != nil {
		t.Fatal(err)
	}
	capLog(t, b)
	b.db.Exec(t, "CREATE TRIGGER log_cap AFTER UPDATE OF epoch ON rewind.backfill_shards FOR EACH ROW EXECUTE FUNCTION log_cap()")
	paced := func(c *backfill.Config) { c.Progress = func(backfill.Progress) { time.Sleep(3 * time.Millisecond) } }
	a, w := runnerOn(t, b, paced), runnerOn(t, b, paced)
	started := make(chan struct{})
	var wg sync.WaitGroup
	var resA, resW *backfill.Result
	var errA, errW error
	wg.Go(func() {
		resA, errA = a.Apply(ctx, countJob(40), backfill.ApplyOptions{Workers: 2, LocalWorkers: 1, Shards: 12})
	})
	wg.Go(func() {
		<-started
		var id string
		b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&id)
		resW, errW = w.Work(ctx, id, countJob(40), backfill.WorkOptions{Workers: 3})
	})
	waitFor(t, "the run to start", func() bool {
		return b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks") > 0
	})
	close(started)
	wg.Wait()
	if errA != nil || errW != nil {
		t.Fatalf("apply: %v; work: %v", errA, errW)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	checkShards(t, b.db.Pool, resA.Run.ID, 4000)
	if all := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); resW.Chunks == 0 || resA.Chunks == 0 || resA.Chunks+resW.Chunks != all {
		t.Errorf("the run's process applied %d chunks, the work process %d; want both, %d in all", resA.Chunks, resW.Chunks, all)
	}
	if n := b.scalar(t, "SELECT max(held) FROM cap_log"); n > 2 {
		t.Errorf("%d shard leases held at once, the run's cap is 2", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM cap_log"); n < 12 {
		t.Errorf("%d leases logged, want at least 12", n)
	}

	// Two runs with a database cap of 3 and 2 workers each.
	b.db.Exec(t, "TRUNCATE cap_log")
	b.db.Exec(t, "CREATE TABLE others (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)")
	b.db.Exec(t, "INSERT INTO others SELECT generate_series(1, 4000)")
	other := &backfill.Job{Name: "others", Version: "1", ChunkSize: 40,
		Source: &backfill.Table{Name: "others", Key: []string{"id"}}, Set: map[string]string{"n": "n + 1"}}
	for _, job := range []*backfill.Job{countJob(40), other} {
		wg.Go(func() {
			o := backfill.ApplyOptions{Workers: 2, Shards: 8, MaxDBWorkers: 3}
			if job.Name == "count" {
				o.NewRun = resA.Run.ID
			}
			if _, err := runnerOn(t, b, paced).Apply(ctx, job, o); err != nil {
				t.Errorf("apply %s: %v", job.Name, err)
			}
		})
	}
	wg.Wait()
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 2") + b.scalar(t, "SELECT count(*) FROM others WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	if n := b.scalar(t, "SELECT max(db_held) FROM cap_log"); n > 3 {
		t.Errorf("%d shard leases held at once in the database, the cap is 3", n)
	}
}

// Changing the worker count — more workers on resume, a work process
// joining, fewer again — never changes a row twice.
func TestChangingTheWorkerCountChangesEachRowOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	stopAfter := func(n int64) (context.Context, *backfill.Runner) {
		ctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		return ctx, runnerOn(t, b, func(c *backfill.Config) {
			c.Progress = func(p backfill.Progress) {
				if p.Chunks >= n {
					cancel()
				}
			}
		})
	}
	c1, r1 := stopAfter(10)
	if _, err := r1.Apply(c1, countJob(30), backfill.ApplyOptions{Workers: 2, Shards: 10}); !errors.Is(err, context.Canceled) {
		t.Fatalf("first apply: %v", err)
	}
	var id string
	b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&id)
	c2, r2 := stopAfter(40)
	if _, err := r2.Resume(c2, id, countJob(30), backfill.ApplyOptions{Workers: 4}); !errors.Is(err, context.Canceled) {
		t.Fatalf("resume with 4 workers: %v", err)
	}
	if st, _ := b.runner.Status(ctx, id); st.Workers != 4 || st.State != backfill.Interrupted {
		t.Fatalf("after a resume with 4 workers the run has %d, state %s", st.Workers, st.State)
	}
	var wg sync.WaitGroup
	var errW error
	wg.Go(func() {
		_, errW = runnerOn(t, b, func(*backfill.Config) {}).Work(ctx, id, countJob(30), backfill.WorkOptions{Workers: 2})
	})
	res, err := b.runner.Resume(ctx, id, countJob(30), backfill.ApplyOptions{Workers: 1})
	wg.Wait()
	if err != nil || errW != nil {
		t.Fatalf("resume with 1 worker: %+v, %v; work: %v", res, err, errW)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	if st, _ := b.runner.Status(ctx, id); st.State != backfill.Finished || st.RowsChanged != 3000 {
		t.Fatalf("status %+v", st)
	}
	checkShards(t, b.db.Pool, id, 3000)
}

// A run of an earlier version, which has no shards, is resumed as one
// shard from its last checkpoint; a work process refuses to join it.
func TestRunOfAnEarlierVersionResumesAsOneShard(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	ctx := context.Background()
	id := interrupt(t, b, countJob(50), 3)
	// The target as the earlier version left it.
	b.db.Exec(t, `DROP TABLE rewind.backfill_shards; DROP SEQUENCE rewind.backfill_shard_locks;
		ALTER TABLE rewind.backfill_leases DROP COLUMN workers, DROP COLUMN max_db_workers`)
	if st, err := b.runner.Status(ctx, id); err != nil || st.Chunks != 3 || len(st.Shards) != 0 {
		t.Fatalf("status of a run of an earlier version: %+v, %v", st, err)
	}
	if _, err := b.runner.Work(ctx, id, countJob(50), backfill.WorkOptions{}); !errors.Is(err, backfill.ErrRunNotRunning) ||
		!strings.Contains(err.Error(), "resume") {
		t.Fatalf("work on a run of an earlier version = %v", err)
	}
	res, err := b.runner.Resume(ctx, id, countJob(50), backfill.ApplyOptions{Workers: 3})
	if err != nil || res.Run.State != backfill.Finished || res.RowsChanged != 350 {
		t.Fatalf("resume %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	if n := checkShards(t, b.db.Pool, id, 500); n != 1 {
		t.Errorf("%d shards, want 1", n)
	}
	checkChunks(t, b, id, 500, 50)
}

// Cancelling a run stops the workers of other processes before their next
// commit.
func TestCancelStopsTheWorkersOfOtherProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	id := interruptParallel(t, b, countJob(20), backfill.ApplyOptions{Workers: 2, Shards: 6}, 2)
	var committed sync.WaitGroup
	committed.Add(3)
	var once [3]sync.Once
	var n int
	var mu sync.Mutex
	w := runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(backfill.Progress) {
			mu.Lock()
			if n < 3 {
				once[n].Do(committed.Done)
				n++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	errW := make(chan error, 1)
	go func() {
		_, err := w.Work(ctx, id, countJob(20), backfill.WorkOptions{Workers: 2})
		errW <- err
	}()
	committed.Wait()
	if st, err := b.runner.Status(ctx, id); err != nil || st.State != backfill.Running {
		t.Fatalf("a run that a work process applies is %v, %v; want running", st.State, err)
	}
	if err := b.runner.Cancel(ctx, id, nil); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	chunks := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	if err := <-errW; !errors.Is(err, backfill.ErrRunEnded) {
		t.Fatalf("the work process returned %v, want ErrRunEnded", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); n != chunks {
		t.Errorf("the work process committed %d chunks after the cancel", n-chunks)
	}
	changed := b.scalar(t, "SELECT coalesce(sum(rows_changed), 0) FROM rewind.backfill_chunks")
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n > 1"); n != 0 {
		t.Errorf("%d rows changed twice", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != changed || changed == 3000 {
		t.Errorf("%d rows changed, the checkpoints say %d of 3000", n, changed)
	}
	st, err := b.runner.Status(ctx, id)
	if err != nil || st.State != backfill.Cancelled {
		t.Fatalf("status %+v, %v", st, err)
	}
	for _, s := range st.Shards {
		if s.State != "done" && s.State != "cancelled" {
			t.Errorf("shard %d of the cancelled run is %s", s.Shard, s.State)
		}
	}
}

// interruptParallel starts job as workers workers and interrupts it after
// chunks chunks; it returns the run id.
func interruptParallel(t *testing.T, b *bundle, job *backfill.Job, o backfill.ApplyOptions, chunks int64) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			if p.Chunks >= chunks {
				cancel()
			}
		}
	})
	if _, err := r.Apply(ctx, job, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("apply: %v", err)
	}
	var id string
	b.db.Pool.QueryRow(context.Background(), "SELECT id FROM rewind.backfill_runs WHERE job_name = $1 ORDER BY created_at DESC LIMIT 1",
		job.Name).Scan(&id)
	return id
}

// Bad options and work on a run that cannot be joined are refused and
// write nothing.
func TestBadParallelOptionsWriteNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 100)
	ctx := context.Background()
	for _, o := range []backfill.ApplyOptions{{Workers: -1}, {Shards: -1}, {Shards: backfill.MaxShards + 1},
		{Workers: backfill.MaxWorkers + 1}, {LocalWorkers: -2}, {MaxDBWorkers: -1}, {Workers: 2, LocalWorkers: 3}} {
		_, err := b.runner.Apply(ctx, countJob(10), o)
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("apply with %+v = %v, want a validation error", o, err)
		}
	}
	if _, err := b.runner.Work(ctx, "aaaa0000", countJob(10), backfill.WorkOptions{Workers: -1}); err == nil {
		t.Error("work with -1 workers succeeded")
	}
	if n := b.scalar(t, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'"); n != 0 {
		t.Fatalf("bad options wrote the ledger's schema")
	}
	if _, err := b.runner.Work(ctx, "aaaa0000", countJob(10), backfill.WorkOptions{}); !errors.Is(err, backfill.ErrRunNotFound) {
		t.Errorf("work on an unknown run = %v", err)
	}
	res := b.apply(t, countJob(10), backfill.ApplyOptions{})
	if _, err := b.runner.Work(ctx, res.Run.ID, countJob(10), backfill.WorkOptions{}); !errors.Is(err, backfill.ErrRunEnded) {
		t.Errorf("work on a finished run = %v", err)
	}
	id := interruptParallel(t, b, countJob(10), backfill.ApplyOptions{NewRun: res.Run.ID, Workers: 2}, 2)
	if err := b.runner.Cancel(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	entries := b.scalar(t, "SELECT count(*) FROM rewind.audit_log")
	if _, err := b.runner.Work(ctx, id, countJob(10), backfill.WorkOptions{}); !errors.Is(err, backfill.ErrRunEnded) {
		t.Errorf("work on a cancelled run = %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log"); n != entries {
		t.Errorf("work on a cancelled run wrote %d audit entries", n-entries)
	}
}

// A data error in any worker's shard, in any process, fails the run once:
// the shard records it, every worker stops at its next shard, the run is
// marked failed with the key; resumed once the cause is fixed, the failed
// shard is applied again and every row is changed once.
func TestAShardsFailureFailsTheRunOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	b.db.Exec(t, "ALTER TABLE items ADD CONSTRAINT not_1700 CHECK (n < 1 OR id <> 1700)")
	paced := func(c *backfill.Config) { c.Progress = func(backfill.Progress) { time.Sleep(2 * time.Millisecond) } }
	a, w := runnerOn(t, b, paced), runnerOn(t, b, paced)
	var wg sync.WaitGroup
	var errA, errW error
	wg.Go(func() {
		_, errA = a.Apply(ctx, countJob(20), backfill.ApplyOptions{Workers: 3, LocalWorkers: 1, Shards: 10})
	})
	var id string
	waitFor(t, "the run to start", func() bool {
		return b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&id) == nil
	})
	wg.Go(func() { _, errW = w.Work(ctx, id, countJob(20), backfill.WorkOptions{Workers: 2}) })
	wg.Wait()
	for who, err := range map[string]error{"the run's process": errA, "the work process": errW} {
		var re *backfill.RunError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "not_1700") {
			t.Errorf("%s returned %v, want the shard's data error", who, err)
		}
	}
	st, err := b.runner.Status(ctx, id)
	if err != nil || st.State != backfill.Failed || st.ErrorKey.String() != "1700" && !strings.Contains(st.Error, "1700") {
		t.Fatalf("status %+v, %v", st, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.run.failed'"); n != 1 {
		t.Errorf("%d run.failed entries, want 1", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n > 1"); n != 0 {
		t.Fatalf("%d rows changed twice", n)
	}
	b.db.Exec(t, "ALTER TABLE items DROP CONSTRAINT not_1700")
	res, err := b.runner.Resume(ctx, id, countJob(20), backfill.ApplyOptions{})
	if err != nil || res.Run.State != backfill.Finished {
		t.Fatalf("resume after the fix: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	checkShards(t, b.db.Pool, id, 3000)
}

// A canary of a run with several workers is still the run's leading rows,
// applied in key order by one worker, shard after shard; work processes
// may not join it until it is promoted; then the workers apply the rest.
func TestCanaryOfAParallelRunIsItsLeadingRows(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx := context.Background()
	o := backfill.ApplyOptions{Workers: 3, Shards: 8, Canary: &backfill.Canary{Rows: 700, Wait: true}}
	res, err := b.runner.Apply(ctx, countOnce(100), o)
	if err != nil || res.Run.State != backfill.Paused || res.Canary == nil || res.Canary.Rows != 700 {
		t.Fatalf("apply with a canary: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 700 || b.scalar(t, "SELECT max(id) FROM items WHERE n = 1") != 700 {
		t.Fatalf("the canary changed %d rows, want the first 700 keys", n)
	}
	if _, err := b.runner.Work(ctx, res.Run.ID, countOnce(100), backfill.WorkOptions{}); !errors.Is(err, backfill.ErrRunNotRunning) {
		t.Fatalf("work on a paused run = %v", err)
	}
	res, err = b.runner.Promote(ctx, res.Run.ID, countOnce(100), backfill.ApplyOptions{Workers: 2})
	if err != nil || res.Run.State != backfill.Finished {
		t.Fatalf("promote: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	checkShards(t, b.db.Pool, res.Run.ID, 2000)
}
