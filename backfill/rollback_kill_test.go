package backfill_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

var rollbackKills = flag.Int("rollback-kills", 8, "how many times the rollback kill test SIGKILLs the rollback")

// TestRollbackKilledAndResumedRestoresEachRowOnce rolls back a run of a
// non-idempotent job (n = n + 1) in a child process that is SIGKILLed at
// random moments and started again each time (the same call continues
// the rollback). A trigger counts, per row, the updates that commit: each
// row must be restored exactly once, the table must be as before the run,
// each chunk undone once, and the ledger must show one entry per chunk.
func TestRollbackKilledAndResumedRestoresEachRowOnce(t *testing.T) {
	t.Parallel()
	const rows, chunk = 4000, 40
	b := setup(t, rows)
	ctx := context.Background()
	before := b.db.Checksum(t, "items", "id")
	runID := b.apply(t, countJob(chunk), backfill.ApplyOptions{}).Run.ID
	b.db.Exec(t, "CREATE TABLE restores (id bigint PRIMARY KEY, times int NOT NULL)")
	b.db.Exec(t, `CREATE FUNCTION count_restore() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO restores VALUES (NEW.id, 1) ON CONFLICT (id) DO UPDATE SET times = restores.times + 1; RETURN NEW; END $$`)
	b.db.Exec(t, "CREATE TRIGGER count_restore AFTER UPDATE ON items FOR EACH ROW EXECUTE FUNCTION count_restore()")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	kills, rbID := 0, ""
	for round := 0; ; round++ {
		if round > 4**rollbackKills+10 {
			t.Fatalf("the rollback did not finish after %d rounds", round)
		}
		pace := "10ms"
		if kills >= *rollbackKills {
			pace = "0s"
		}
		var stderr strings.Builder
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=rollback", childDSNEnv+"="+b.db.DSN, childRunEnv+"="+runID,
			childChunkEnv+"="+fmt.Sprint(chunk), childPaceEnv+"="+pace)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if kills < *rollbackKills {
			select {
			case <-b.killMoment(t, round, rbID):
				cmd.Process.Kill()
				<-exited
				kills++
			case err := <-exited:
				t.Fatalf("the rollback ended after %d kills, before %d (err %v): make it longer\n%s", kills, *rollbackKills, err, stderr.String())
			}
		} else if err := <-exited; err != nil {
			t.Fatalf("final rollback failed: %v\n%s", err, stderr.String())
		} else {
			break
		}
		if rbID == "" {
			b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs WHERE undoes = $1", runID).Scan(&rbID)
		}
	}
	if n := b.scalar(t, "SELECT count(*) FROM restores WHERE times <> 1"); n != 0 {
		t.Fatalf("%d rows were restored more than once", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM restores"); n != rows {
		t.Fatalf("%d rows restored, want %d", n, rows)
	}
	if got := b.db.Checksum(t, "items", "id"); got != before {
		t.Fatal("the table differs from before the run")
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs WHERE undoes = $1", runID); n != 1 {
		t.Fatalf("%d rollback runs, want 1", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_undone WHERE run_id = $1 AND by_run = $2", runID, rbID); n != rows/chunk {
		t.Fatalf("%d chunks undone, want %d", n, rows/chunk)
	}
	st, err := b.runner.Status(ctx, rbID)
	if err != nil || st.State != backfill.Finished || st.RowsChanged != rows || st.Chunks != rows/chunk {
		t.Fatalf("rollback status %+v, %v", st, err)
	}
	l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
	if _, err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	entries := map[string]int{}
	resumed := 0
	for e, err := range l.Entries(ctx, auditpg.Filter{Subject: rbID}) {
		if err != nil {
			t.Fatal(err)
		}
		switch e.Kind {
		case "backfill.rollback.chunk":
			entries[e.Attrs["undone_chunk"]]++
		case "backfill.run.resumed":
			resumed++
		}
	}
	if len(entries) != rows/chunk || resumed == 0 {
		t.Fatalf("audit: %d chunks, %d resumes", len(entries), resumed)
	}
	for c, n := range entries {
		if n != 1 {
			t.Fatalf("audit shows chunk %s undone %d times", c, n)
		}
	}
	t.Logf("%d kills", kills)
}
