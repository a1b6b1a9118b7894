package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

// A ledger written by an earlier version (no run lineage, no fencing
// tokens) is read as it is, and upgraded by the first run: its runs get
// their line in creation order, and a job that finished there is not
// applied again.
func TestLedgerOfAnEarlierVersionIsUpgraded(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
	if err := l.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	// The tables as the previous version created them.
	b.db.Exec(t, `CREATE TABLE rewind.backfill_chunks (run_id text NOT NULL, seq bigint NOT NULL, retry boolean NOT NULL DEFAULT false,
		after_key text[], lo text[], hi text[] NOT NULL, rows_seen bigint NOT NULL, rows_changed bigint NOT NULL,
		rows_skipped bigint NOT NULL, input_checksum text NOT NULL, output_checksum text NOT NULL, attempts int NOT NULL,
		committed_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run_id, seq))`)
	b.db.Exec(t, `CREATE TABLE rewind.backfill_quarantine (run_id text NOT NULL, key text[] NOT NULL, chunk_seq bigint NOT NULL,
		code text NOT NULL, error text NOT NULL, attempts int NOT NULL DEFAULT 1, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		resolved_at timestamptz, PRIMARY KEY (run_id, key))`)
	b.db.Exec(t, `CREATE TABLE rewind.backfill_intents (run_id text NOT NULL, seq bigint NOT NULL, intent jsonb NOT NULL, PRIMARY KEY (run_id, seq))`)
	b.db.Exec(t, `CREATE TABLE rewind.backfill_runs (id text PRIMARY KEY, job_name text NOT NULL, job_version text NOT NULL,
		job_hash text NOT NULL, job jsonb NOT NULL, params jsonb NOT NULL, plan_hash text NOT NULL, binary_version text NOT NULL,
		actor text NOT NULL, host text NOT NULL, command text NOT NULL, state text NOT NULL, policy text NOT NULL,
		chunk_size int NOT NULL, total bigint NOT NULL, total_estimated boolean NOT NULL, end_key text[], lock_obj bigint NOT NULL,
		owner text NOT NULL DEFAULT '', heartbeat_at timestamptz, changes_allowed int NOT NULL DEFAULT 0,
		created_at timestamptz NOT NULL DEFAULT clock_timestamp(), updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		finished_at timestamptz, error text NOT NULL DEFAULT '', error_class text NOT NULL DEFAULT '',
		error_chunk bigint NOT NULL DEFAULT 0, error_key text[])`)
	b.db.Exec(t, `CREATE UNIQUE INDEX backfill_runs_one_open ON rewind.backfill_runs (job_name) WHERE state IN ('running', 'failed')`)
	hash := doubleJob().Hash()
	for i, r := range []struct{ id, state, age string }{
		{"aaaa0000-0000-4000-8000-000000000001", "finished", "3 hours"},
		{"aaaa0000-0000-4000-8000-000000000002", "cancelled", "2 hours"},
		{"aaaa0000-0000-4000-8000-000000000003", "finished", "1 hour"},
	} {
		b.db.Exec(t, `INSERT INTO rewind.backfill_runs (id, job_name, job_version, job_hash, job, params, plan_hash, binary_version,
			actor, host, command, state, policy, chunk_size, total, total_estimated, lock_obj, created_at, finished_at)
			VALUES ($1, 'double', '1', $2, '{}', '{}', '', 'test-binary', 'old', 'h', 'rewind', $3, 'halt', 100, 300, false, $4,
			now() - $5::interval, now() - $5::interval)`, r.id, hash, r.state, int64(i+1), r.age)
	}
	st, err := b.runner.Status(ctx, "aaaa0000-0000-4000-8000-000000000003")
	if err != nil || st.State != backfill.Finished {
		t.Fatalf("status on a ledger of an earlier version: %+v, %v", st, err)
	}
	_, err = b.runner.Apply(ctx, doubleJob(), backfill.ApplyOptions{})
	if !errors.Is(err, backfill.ErrAlreadyApplied) || !strings.Contains(err.Error(), "--new-run aaaa0000-0000-4000-8000-000000000003") {
		t.Fatalf("apply of a job finished under the earlier version = %v", err)
	}
	lines := map[string]string{}
	rows, _ := b.db.Pool.Query(ctx, "SELECT id, prev_run FROM rewind.backfill_runs")
	for rows.Next() {
		var id, prev string
		rows.Scan(&id, &prev)
		lines[id] = prev
	}
	if lines["aaaa0000-0000-4000-8000-000000000001"] != "" || lines["aaaa0000-0000-4000-8000-000000000002"] != "aaaa0000-0000-4000-8000-000000000001" ||
		lines["aaaa0000-0000-4000-8000-000000000003"] != "aaaa0000-0000-4000-8000-000000000002" {
		t.Fatalf("lineage after the upgrade: %v", lines)
	}
	res, err := b.runner.Apply(ctx, doubleJob(), backfill.ApplyOptions{NewRun: "aaaa0000-0000-4000-8000-000000000003"})
	if err != nil || res.Run.PrevRun != "aaaa0000-0000-4000-8000-000000000003" || res.RowsChanged != 300 {
		t.Fatalf("new run after the upgrade: %+v, %v", res, err)
	}
}

// A ledger and work schema of the version before before-images (no
// rewind.backfill_images, no undoes column), holding a finished run and a
// run interrupted after two chunks: status reads them as they are; a
// rollback of the finished run says it kept no images and writes
// nothing; resuming the interrupted run upgrades the schemas and images
// its remaining chunks, so that those can be rolled back (--chunks), and
// a rollback of the whole run names the chunks without images.
func TestLedgerWithoutBeforeImagesIsUpgraded(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	ctx := context.Background()
	old := b.apply(t, &backfill.Job{Name: "old", Version: "1", ChunkSize: 100,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"val": "val + 1"}}, backfill.ApplyOptions{})
	before := b.db.Checksum(t, "items", "id")
	// Interrupted after two chunks.
	cctx, cancel := context.WithCancel(ctx)
	cfg := b.cfg
	cfg.Progress = func(p backfill.Progress) {
		if p.Chunks == 2 {
			cancel()
		}
	}
	r2, _ := backfill.New(cfg)
	if _, err := r2.Apply(cctx, countJob(100), backfill.ApplyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted apply: %v", err)
	}
	var runID string
	b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs WHERE job_name = 'count'").Scan(&runID)
	// What the earlier version had: no images, no rollbacks.
	b.db.Exec(t, "DROP VIEW rewind.backfill_image_rows")
	b.db.Exec(t, "DROP TABLE rewind.backfill_images, rewind.backfill_undone, rewind.backfill_image_purges")
	b.db.Exec(t, "ALTER TABLE rewind.backfill_runs DROP COLUMN undoes")
	fresh, _ := backfill.New(b.cfg) // a process of this version, new to this ledger
	st, err := fresh.Status(ctx, old.Run.ID)
	if err != nil || st.State != backfill.Finished || st.Session["time_zone"] == "" || st.Kind != "apply" {
		t.Fatalf("status on the earlier ledger: %+v, %v", st, err)
	}
	audits := b.scalar(t, "SELECT count(*) FROM rewind.audit_log")
	if _, err := fresh.Rollback(ctx, old.Run.ID, backfill.RollbackOptions{}); !errors.Is(err, backfill.ErrNoImages) ||
		!strings.Contains(err.Error(), "earlier version") {
		t.Fatalf("rollback of a run of the earlier version: %v", err)
	}
	if b.scalar(t, "SELECT count(*) FROM rewind.audit_log") != audits ||
		b.scalar(t, "SELECT count(*) FROM pg_class WHERE relname = 'backfill_images'") != 0 {
		t.Fatal("the refused rollback wrote something")
	}
	res, err := fresh.Resume(ctx, runID, countJob(100), backfill.ApplyOptions{})
	if err != nil || res.RowsChanged != 300 {
		t.Fatalf("resume after the upgrade: %+v, %v", res, err)
	}
	_, err = fresh.Rollback(ctx, runID, backfill.RollbackOptions{})
	if !errors.Is(err, backfill.ErrNoImages) || !strings.Contains(err.Error(), "chunk(s) 1-2") || !strings.Contains(err.Error(), "--chunks") {
		t.Fatalf("rollback of a run half applied by the earlier version: %v", err)
	}
	rb, err := fresh.Rollback(ctx, runID, backfill.RollbackOptions{Chunks: backfill.ChunkRange{From: 3}})
	if err != nil || rb.Restored != 300 {
		t.Fatalf("rollback of the chunks this version applied: %+v, %v", rb, err)
	}
	// Rows 201-500 are as before the count job; rows 1-200 keep its change.
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> CASE WHEN id <= 200 THEN 1 ELSE 0 END"); n != 0 {
		t.Fatalf("%d rows not as expected", n)
	}
	b.db.Exec(t, "UPDATE items SET n = 0 WHERE id <= 200")
	if got := b.db.Checksum(t, "items", "id"); got != before {
		t.Fatal("rows 201-500 differ from before the run")
	}
}
