package backfill_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind/backfill"
)

// badRows makes row 250 break a CHECK constraint and row 777 a NOT NULL
// one when doubled.
func badRows(t *testing.T, b *bundle) *backfill.Job {
	b.db.Exec(t, "ALTER TABLE items ADD CONSTRAINT small CHECK (val < 1000)")
	b.db.Exec(t, "UPDATE items SET val = 900 WHERE id = 250")
	job := doubleJob()
	job.Set["val"] = "CASE WHEN id = 777 THEN NULL ELSE val * 2 END"
	return job
}

func TestHaltPolicyNamesChunkAndKey(t *testing.T) {
	t.Parallel()
	b := setup(t, 1050)
	job := badRows(t, b)
	_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
	var re *backfill.RunError
	if !errors.As(err, &re) || re.Chunk != 3 || !slices.Equal(re.Key, backfill.Key{"250"}) || re.Class != backfill.Data {
		t.Fatalf("apply = %v, want a data error at chunk 3, key 250", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 200 {
		t.Fatalf("%d rows changed, want the 200 of chunks 1 and 2", n)
	}
	st, err := b.runner.Status(context.Background(), re.RunID)
	if err != nil || st.State != backfill.Failed || st.ErrorChunk != 3 || st.ErrorKey.String() != "250" || st.ErrorClass != "data" {
		t.Fatalf("status %+v, %v", st, err)
	}
	b.db.Exec(t, "UPDATE items SET val = 1 WHERE id = 250")
	b.db.Exec(t, "UPDATE items SET done = true, n = 1 WHERE id = 777") // fixed by hand
	res := b.apply(t, job, backfill.ApplyOptions{})
	if !res.Resumed || res.Run.ID != re.RunID {
		t.Fatalf("re-running did not resume the failed run: %+v", res)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	if k := b.auditKinds(t, re.RunID); k["backfill.run.failed"] != 1 || k["backfill.run.resumed"] != 1 {
		t.Fatalf("audit %v", k)
	}
}

func TestSkipPolicyQuarantinesAndRetryFailed(t *testing.T) {
	t.Parallel()
	b := setup(t, 1050)
	job := badRows(t, b)
	job.OnDataError = backfill.Skip
	ctx := context.Background()
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsSkipped != 2 || res.RowsChanged != 1048 || res.Run.State != backfill.Finished {
		t.Fatalf("apply %+v", res)
	}
	q, err := b.runner.Quarantine(ctx, res.Run.ID)
	if err != nil || len(q) != 2 || q[0].Key.String() != "250" || q[0].Code != "23514" || q[1].Key.String() != "777" || q[1].Code != "23502" {
		t.Fatalf("quarantine %+v, %v", q, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1 AND id NOT IN (250, 777)"); n != 0 {
		t.Fatalf("%d good rows not changed exactly once", n)
	}
	if k := b.auditKinds(t, res.Run.ID); k["backfill.chunk.skipped"] != 2 {
		t.Fatalf("audit %v", k)
	}
	// Fix one cause; retry-failed resolves that key and keeps the other.
	b.db.Exec(t, "ALTER TABLE items DROP CONSTRAINT small")
	rf, err := b.runner.RetryFailed(ctx, res.Run.ID, job, backfill.ApplyOptions{})
	if err != nil || rf.RowsChanged != 1 || rf.RowsSkipped != 1 {
		t.Fatalf("retry-failed %+v, %v", rf, err)
	}
	q, _ = b.runner.Quarantine(ctx, res.Run.ID)
	if q[0].Resolved == nil || q[1].Resolved != nil || q[1].Attempts != 2 {
		t.Fatalf("quarantine after retry %+v", q)
	}
	if n := b.scalar(t, "SELECT n FROM items WHERE id = 250"); n != 1 {
		t.Fatalf("row 250 n = %d after retry-failed", n)
	}
}

// injectOnce installs a trigger on items that runs action for row id the
// first times times.
func injectOnce(t *testing.T, b *bundle, id, times int, action string) {
	b.db.Exec(t, "CREATE SEQUENCE inject")
	b.db.Exec(t, `CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.id = `+itoa(id)+` AND nextval('inject') <= `+itoa(times)+` THEN `+action+`; END IF; RETURN NEW; END $$`)
	b.db.Exec(t, "CREATE TRIGGER inject BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION inject()")
}

func itoa(i int) string {
	return string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}

func TestTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, action, code string
	}{
		{"deadlock", "RAISE EXCEPTION 'injected' USING ERRCODE = 'deadlock_detected'", "40P01"},
		{"serialization failure", "RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure'", "40001"},
		{"dropped connection", "PERFORM pg_terminate_backend(pg_backend_pid())", "57P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 500)
			injectOnce(t, b, 150, 2, tt.action)
			res := b.apply(t, doubleJob(), backfill.ApplyOptions{})
			if res.RowsChanged != 500 {
				t.Fatalf("apply %+v", res)
			}
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
				t.Fatalf("%d rows not changed exactly once", n)
			}
			if a := b.scalar(t, "SELECT attempts FROM rewind.backfill_chunks WHERE seq = 2"); a != 3 {
				t.Fatalf("chunk 2 committed at attempt %d, want 3", a)
			}
			if k := b.auditKinds(t, res.Run.ID); k["backfill.chunk.retried"] != 2 {
				t.Fatalf("audit %v", k)
			}
		})
	}
}

func TestLockTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, 500, func(c *backfill.Config) {
		c.LockTimeout = 50 * time.Millisecond
		c.RetryMax = 200 * time.Millisecond
	})
	ctx := context.Background()
	tx, err := b.db.Pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM items WHERE id = 150 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	go func() { // hold the lock until the runner has recorded a retry
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var n int64
			err := b.db.Pool.QueryRow(ctx, "SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.chunk.retried'").Scan(&n)
			if err == nil && n > 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		tx.Rollback(ctx)
	}()
	res := b.apply(t, doubleJob(), backfill.ApplyOptions{})
	if res.RowsChanged != 500 {
		t.Fatalf("apply %+v", res)
	}
	if k := b.auditKinds(t, res.Run.ID); k["backfill.chunk.retried"] == 0 {
		t.Fatalf("no retry recorded: %v", k)
	}
}

func TestFatalErrorStopsTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	injectOnce(t, b, 150, 100, "RAISE EXCEPTION 'no access' USING ERRCODE = 'insufficient_privilege'")
	_, err := b.runner.Apply(context.Background(), doubleJob(), backfill.ApplyOptions{})
	var re *backfill.RunError
	if !errors.As(err, &re) || re.Class != backfill.Fatal || re.Chunk != 2 {
		t.Fatalf("apply = %v, want a fatal error at chunk 2", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 100 {
		t.Fatalf("%d rows changed, want chunk 1's 100", n)
	}
}
