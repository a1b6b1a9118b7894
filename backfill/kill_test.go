package backfill_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

var killRounds = flag.Int("kill-rounds", 20, "how many times the kill test SIGKILLs the runner")

// TestKillAndResume SIGKILLs a runner process at random moments, resumes
// it each time, and checks that every row changed exactly once, that the
// table is identical to an uninterrupted run's, and that the ledger shows
// every chunk committed exactly once.
func TestKillAndResume(t *testing.T) {
	t.Parallel()
	const rows, chunk = 8000, 40
	b := setup(t, rows)
	ref := setup(t, rows)
	ref.apply(t, countJob(chunk), backfill.ApplyOptions{})
	want := ref.db.Checksum(t, "items", "id")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kills, runID := 0, ""
	var progressed []int64 // chunks committed after each round
	for round := 0; ; round++ {
		if round > 4**killRounds+10 {
			t.Fatalf("the run did not finish after %d rounds", round)
		}
		mode := "apply" // re-running the same command resumes
		if runID != "" && round%2 == 0 {
			mode = "resume"
		}
		pace := "10ms"
		if kills >= *killRounds {
			pace = "0s" // the last runner finishes at full speed
		}
		var stderr strings.Builder
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+mode, childDSNEnv+"="+b.db.DSN, childRunEnv+"="+runID,
			childChunkEnv+"="+fmt.Sprint(chunk), childPaceEnv+"="+pace)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if kills < *killRounds {
			select {
			case <-b.killMoment(t, round, runID):
				cmd.Process.Kill() // SIGKILL
				<-exited
				kills++
			case err := <-exited:
				if err != nil {
					t.Fatalf("runner (%s) failed: %v\n%s", mode, err, stderr.String())
				}
				t.Fatalf("the run finished after %d kills, before %d: make the job longer", kills, *killRounds)
			}
		} else if err := <-exited; err != nil {
			t.Fatalf("final runner (%s) failed: %v\n%s", mode, err, stderr.String())
		} else {
			break
		}
		if runID == "" {
			err := b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs").Scan(&runID)
			if err != nil && !isMissing(err) {
				t.Fatal(err)
			}
		}
		if runID != "" {
			progressed = append(progressed, b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks WHERE run_id = $1", runID))
		}
		if runID != "" && kills%5 == 0 {
			waitInterrupted(t, b, runID)
		}
	}

	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows were not changed exactly once", n)
	}
	if got := b.db.Checksum(t, "items", "id"); got != want {
		t.Fatalf("table differs from an uninterrupted run's")
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs"); n != 1 {
		runs, _ := b.runner.List(ctx, backfill.ListOptions{})
		for _, r := range runs {
			t.Logf("run %s %s created %s chunks %d", r.ID, r.State, r.Created, r.Chunks)
		}
		t.Fatalf("%d runs, want 1 (run id %s)", n, runID)
	}
	checkChunks(t, b, runID, rows, chunk)
	st, err := b.runner.Status(ctx, runID)
	if err != nil || st.State != backfill.Finished || st.RowsChanged != rows {
		t.Fatalf("status %+v, %v", st, err)
	}
	t.Logf("%d kills, %d chunks; chunks committed after each kill: %v", kills, st.Chunks, progressed)
}

// killMoment fires at a random moment of a runner's life: every fourth
// round anywhere in its first 300ms (start-up, lease takeover, the first
// chunk); otherwise once it has committed a chunk in this life, a random
// 0–60ms later, so that most kills land among chunk transactions.
func (b *bundle) killMoment(t *testing.T, round int, runID string) <-chan time.Time {
	if round%4 == 3 {
		return time.After(time.Duration(rand.IntN(300)) * time.Millisecond)
	}
	count := func() int64 { // chunks of the run, or runs while there is none
		q := "SELECT count(*) FROM rewind.backfill_chunks WHERE run_id = $1"
		if runID == "" {
			q = "SELECT count(*) FROM rewind.backfill_runs WHERE $1 = ''"
		}
		var n int64
		if err := b.db.Pool.QueryRow(context.Background(), q, runID).Scan(&n); err != nil && !isMissing(err) {
			t.Fatal(err)
		}
		return n
	}
	start := count()
	deadline := time.Now().Add(30 * time.Second)
	for count() == start && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	return time.After(time.Duration(rand.IntN(60)) * time.Millisecond)
}

func isMissing(err error) bool {
	return errors.Is(err, pgx.ErrNoRows) || strings.Contains(err.Error(), "does not exist")
}

// waitInterrupted checks that a killed runner's run shows as interrupted,
// not running, once the database has noticed the dead connection.
func waitInterrupted(t *testing.T, b *bundle, runID string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := b.runner.Status(context.Background(), runID)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == backfill.Interrupted || st.State == backfill.Finished {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run of a killed runner is %s, want interrupted", st.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkChunks checks that the checkpoints tile the key space: sequence
// numbers 1…K, each chunk starting after the previous one's last key, rows
// adding up; and that the audit ledger has one committed entry per chunk.
func checkChunks(t *testing.T, b *bundle, runID string, rows, chunk int) {
	t.Helper()
	ctx := context.Background()
	r, err := b.db.Pool.Query(ctx, "SELECT seq, after_key, hi, rows_seen FROM rewind.backfill_chunks WHERE run_id = $1 ORDER BY seq", runID)
	if err != nil {
		t.Fatal(err)
	}
	var prevHi []string
	var seen int64
	var n int64
	for r.Next() {
		var seq, rs int64
		var after, hi []string
		if err := r.Scan(&seq, &after, &hi, &rs); err != nil {
			t.Fatal(err)
		}
		n++
		if seq != n || !slices.Equal(after, prevHi) {
			t.Fatalf("chunk %d (after %v) does not follow chunk %d (hi %v)", seq, after, n-1, prevHi)
		}
		prevHi, seen = hi, seen+rs
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != int64(rows) || n != int64(rows/chunk) {
		t.Fatalf("%d chunks saw %d rows, want %d chunks and %d rows", n, seen, rows/chunk, rows)
	}
	l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
	if _, err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	committed := map[string]int{}
	resumed := 0
	for e, err := range l.Entries(ctx, auditpg.Filter{Subject: runID}) {
		if err != nil {
			t.Fatal(err)
		}
		switch e.Kind {
		case "backfill.chunk.committed":
			committed[e.Attrs["chunk"]]++
		case "backfill.run.resumed":
			resumed++
		}
	}
	if int64(len(committed)) != n {
		t.Fatalf("audit has %d committed chunks, want %d", len(committed), n)
	}
	for c, k := range committed {
		if k != 1 {
			t.Fatalf("audit shows chunk %s committed %d times", c, k)
		}
	}
	if resumed == 0 {
		t.Fatal("audit shows no resume")
	}
}
