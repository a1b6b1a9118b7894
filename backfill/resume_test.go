package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/internal/pgtest"
)

// interrupt applies job and cancels it after chunks chunks; it returns the run id.
func interrupt(t *testing.T, b *bundle, job *backfill.Job, chunks int64) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := b.cfg
	var runID string
	cfg.Progress = func(p backfill.Progress) {
		runID = p.RunID
		if p.Chunks == chunks {
			cancel()
		}
	}
	r, _ := backfill.New(cfg)
	if _, err := r.Apply(ctx, job, backfill.ApplyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted apply = %v", err)
	}
	return runID
}

func TestInterruptedRunResumes(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	id := interrupt(t, b, countJob(100), 3)
	st, err := b.runner.Status(context.Background(), id[:8])
	if err != nil || st.State != backfill.Interrupted || st.Chunks != 3 || st.RowsSeen != 300 || st.LastKey.String() != "300" {
		t.Fatalf("status %+v, %v", st, err)
	}
	res, err := b.runner.Resume(context.Background(), id, countJob(100), backfill.ApplyOptions{})
	if err != nil || !res.Resumed || res.RowsChanged != 700 {
		t.Fatalf("resume %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	// Issue 11, outside test round 2: resuming a finished run is an
	// error (exit 4), as cancelling one is, not a success.
	again, err := b.runner.Resume(context.Background(), id, countJob(100), backfill.ApplyOptions{})
	if !errors.Is(err, backfill.ErrRunEnded) || !errors.Is(err, rewind.ErrWrongExpectedVersion) || !strings.Contains(err.Error(), "--new-run") {
		t.Fatalf("resume of a finished run %+v, %v; want ErrRunEnded saying how to start a new run", again, err)
	}
}

func TestResumeRefusesChangedJobOrBinary(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	id := interrupt(t, b, countJob(100), 2)
	ctx := context.Background()
	changed := countJob(100)
	changed.Set["n"] = "n + 2"
	// Issue 11, outside test round 2: the refusal printed a Go map; it
	// lists what changed.
	if _, err := b.runner.Resume(ctx, id, changed, backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrJobChanged) ||
		!strings.Contains(err.Error(), `set.n: "n + 1" → "n + 2"`) || strings.Contains(err.Error(), "map[") {
		t.Fatalf("resume with a changed job = %v, want ErrJobChanged listing set.n's change", err)
	}
	if _, err := b.runner.Apply(ctx, changed, backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrUnfinishedRun) {
		t.Fatalf("apply of a changed job over an unfinished run = %v", err)
	}
	cfg := b.cfg
	cfg.Binary = "another-binary"
	other, _ := backfill.New(cfg)
	if _, err := other.Resume(ctx, id, countJob(100), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrJobChanged) ||
		!strings.Contains(err.Error(), "the binary: test-binary → another-binary") {
		t.Fatalf("resume under another binary = %v", err)
	}
	// Workers cannot lift it: the advice is the resume's flag, not one
	// that work does not take.
	if _, err := other.Work(ctx, id, countJob(100), backfill.WorkOptions{}); !errors.Is(err, backfill.ErrJobChanged) ||
		!strings.Contains(err.Error(), "'rewind backfill resume "+id+" --allow-changed-job'") ||
		strings.Contains(err.Error(), "pass --allow-changed-job") {
		t.Fatalf("work under another binary = %v, want ErrJobChanged advising a resume", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 200 {
		t.Fatalf("refused resumes changed rows: %d changed", n)
	}
	res, err := other.Resume(ctx, id, countJob(100), backfill.ApplyOptions{AllowChangedJob: true})
	if err != nil || res.RowsChanged != 800 {
		t.Fatalf("allowed resume %+v, %v", res, err)
	}
	st, _ := b.runner.Status(ctx, id)
	if st.ChangesAllowed != 1 || st.Binary != "another-binary" {
		t.Fatalf("status %+v", st)
	}
	l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
	found := false
	for e, err := range l.Entries(ctx, auditpg.Filter{Subject: id}) {
		if err != nil {
			t.Fatal(err)
		}
		found = found || e.Kind == "backfill.run.resumed" && e.Attrs["changed.binary"] == "test-binary → another-binary"
	}
	if !found {
		t.Fatal("the allowed change is not in the audit ledger")
	}
}

func TestCancelLetsAJobStartAfresh(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	id := interrupt(t, b, countJob(100), 1)
	ctx := context.Background()
	if err := b.runner.Cancel(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	res := b.apply(t, countJob(100), backfill.ApplyOptions{})
	if res.Resumed || res.Run.ID == id || res.RowsChanged != 500 {
		t.Fatalf("apply after cancel %+v", res)
	}
	runs, err := b.runner.List(ctx, backfill.ListOptions{})
	if err != nil || len(runs) != 2 || runs[1].State != backfill.Cancelled || runs[0].State != backfill.Finished {
		t.Fatalf("list %v, %v", runs, err)
	}
}

func TestLedgerInAnotherDatabase(t *testing.T) {
	t.Parallel()
	led := pgtest.New(t)
	b := setup(t, 1000, func(c *backfill.Config) { c.Ledger = led.Pool })
	if _, err := b.runner.Plan(context.Background(), countJob(100), backfill.PlanOptions{}); err != nil {
		t.Fatal(err)
	}
	// Chunk 3's audit entry fails after its checkpoint committed, as if the
	// process died in between: the resume must add it.
	led.Exec(t, "CREATE SEQUENCE inject")
	led.Exec(t, `CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.kind = 'backfill.chunk.committed' AND NEW.body LIKE '%"chunk":"3"%' AND nextval('inject') = 1 THEN
		RAISE EXCEPTION 'injected'; END IF; RETURN NEW; END $$`)
	led.Exec(t, "CREATE TRIGGER inject BEFORE INSERT ON rewind.audit_log FOR EACH ROW EXECUTE FUNCTION inject()")
	id := interrupt(t, b, countJob(100), 4)
	res, err := b.runner.Resume(context.Background(), id, countJob(100), backfill.ApplyOptions{})
	if err != nil || res.RowsChanged != 600 {
		t.Fatalf("resume %+v, %v", res, err)
	}
	var n int64
	led.Pool.QueryRow(context.Background(), "SELECT count(*) FROM rewind.backfill_runs").Scan(&n)
	if n != 1 || b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks") != 10 {
		t.Fatal("runs must live in the ledger database and chunks in the target")
	}
	if b.scalar(t, "SELECT count(*) FROM pg_tables WHERE tablename = 'backfill_runs'") != 0 {
		t.Fatal("the target database holds run records")
	}
	lb := &bundle{db: led}
	if k := lb.auditKinds(t, id); k["backfill.chunk.committed"] != 10 {
		t.Fatalf("audit %v", k)
	}
	l, _ := auditpg.New(led.Pool, auditpg.Config{})
	recovered := ""
	for e, err := range l.Entries(context.Background(), auditpg.Filter{Subject: id}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Attrs["recovered"] == "true" {
			recovered += e.Attrs["chunk"]
		}
	}
	if recovered != "3" {
		t.Fatalf("recovered entries for chunks %q, want 3", recovered)
	}
}

func TestLostLeaseStopsTheRunner(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	cfg := b.cfg
	cfg.Heartbeat = 20 * time.Millisecond
	started := make(chan string, 1)
	cfg.Progress = func(p backfill.Progress) {
		if p.Chunks == 1 {
			started <- p.RunID
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, _ := backfill.New(cfg)
	done := make(chan error, 1)
	go func() {
		_, err := r.Apply(context.Background(), countJob(10), backfill.ApplyOptions{})
		done <- err
	}()
	id := <-started
	b.db.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", "rewind backfill lease "+id)
	if err := <-done; !errors.Is(err, backfill.ErrLeaseLost) {
		t.Fatalf("apply after losing its lease = %v", err)
	}
	st, _ := b.runner.Status(context.Background(), id)
	if st.State != backfill.Interrupted || st.Chunks == 200 {
		t.Fatalf("status %+v", st)
	}
	res, err := b.runner.Resume(context.Background(), id, countJob(10), backfill.ApplyOptions{})
	if err != nil || st.RowsSeen+res.RowsSeen != 2000 {
		t.Fatalf("resume %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}

func TestSecretParametersAreMasked(t *testing.T) {
	t.Parallel()
	b := setup(t, 100)
	job := doubleJob()
	job.Source.(*backfill.Table).Where = "NOT done AND @pin::text <> ''"
	job.Params = backfill.Params{"pin": {Type: "text", Value: "s3cret-pin", Text: "s3cret-pin", Secret: true}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.Run.Params["pin"] != "***" {
		t.Fatalf("run params %v", res.Run.Params)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE body LIKE '%s3cret%'"); n != 0 {
		t.Fatalf("%d audit entries hold the secret", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs WHERE job::text LIKE '%s3cret%' OR params::text LIKE '%s3cret%'"); n != 0 {
		t.Fatal("the run record holds the secret")
	}
}
