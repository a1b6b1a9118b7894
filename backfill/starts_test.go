package backfill_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/internal/pgtest"
)

var startTrials = flag.Int("start-trials", 51, "how many trials the concurrent-starts test runs (a third per kind of job)")

// The three kinds of change, each incrementing n: applied twice, a row
// shows n = 2.
func setIncrement() *backfill.Job {
	return &backfill.Job{Name: "inc", Version: "1", ChunkSize: 50,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Set:    map[string]string{"n": "n + 1"}}
}

func statementIncrement() *backfill.Job {
	return &backfill.Job{Name: "inc", Version: "1", ChunkSize: 50,
		Source:    &backfill.Table{Name: "items", Key: []string{"id"}},
		Statement: "UPDATE items SET n = n + 1 WHERE id BETWEEN @lo AND @hi"}
}

func processIncrement() *backfill.Job {
	return &backfill.Job{Name: "inc", Version: "1", ChunkSize: 50,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}, Columns: []string{"id", "n"}},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			out := make([]backfill.Change, len(items))
			for i, it := range items {
				out[i] = backfill.Change{Key: it.Key, Row: map[string]any{"id": it.Row["id"], "n": it.Row["n"].(int32) + 1}}
			}
			return out, nil
		},
		Sink: &backfill.TableSink{Table: "items", Key: []string{"id"}}}
}

// TestConcurrentStartsChangeEachRowOnce starts one short, non-idempotent
// job from several runners at once, each with its own connections, on a
// database without a ledger (so that they also race to create it), at
// offsets from "all at once" to "after the first one finished", with one
// more process resuming the run as soon as it sees it, for set, statement
// and Go jobs. Every other trial then has every runner ask for a new run
// after the first. Whatever the timing, every row is changed exactly once
// per run, each request for a run makes one run, every starter either did
// (part of) the work or was told the job is already applied, and the
// ledger tells each run's true story.
func TestConcurrentStartsChangeEachRowOnce(t *testing.T) {
	t.Parallel()
	kinds := []struct {
		name string
		job  func() *backfill.Job
	}{{"set", setIncrement}, {"statement", statementIncrement}, {"go", processIncrement}}
	spreads := []time.Duration{0, 30 * time.Millisecond, 150 * time.Millisecond, 600 * time.Millisecond}
	for k, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t) // one database per kind, its ledger dropped before each trial: creating databases is slow
			for trial := k; trial < *startTrials; trial += len(kinds) {
				spread := spreads[(trial/len(kinds))%len(spreads)]
				starters := 3 + trial%2
				t.Run(fmt.Sprintf("%d-%dx-spread%s", trial, starters, spread), func(t *testing.T) {
					startsOnce(t, db, kind.job, starters, spread, trial%2 == 1)
				})
			}
		})
	}
}

func startsOnce(t *testing.T, db *pgtest.DB, job func() *backfill.Job, starters int, spread time.Duration, again bool) {
	const rows = 300
	db.Exec(t, `DROP SCHEMA IF EXISTS rewind CASCADE; DROP TABLE IF EXISTS items`)
	db.Exec(t, `CREATE TABLE items (id bigint PRIMARY KEY, val int NOT NULL, n int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`)
	db.Exec(t, `INSERT INTO items (id, val) SELECT g, g % 97 FROM generate_series(1, $1::int) g`, rows)
	runners := make([]*backfill.Runner, starters)
	for i := range runners {
		pool, err := pgxpool.New(context.Background(), db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		runners[i], err = backfill.New(backfill.Config{DB: pool, Actor: fmt.Sprintf("starter-%d", i), Binary: "test-binary",
			Command: []string{"rewind", "test"}, LeaseWait: 60 * time.Second, Heartbeat: 100 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
	}
	first := startAll(t, runners, job, backfill.ApplyOptions{}, spread, "")
	counts(t, db, 1, rows)
	checkStory(t, db.Pool, rows/50, 1)
	if !again {
		return
	}
	// Every starter asks for a new run after the first one, at once or
	// nearly: one new run applies the job once more.
	second := startAll(t, runners, job, backfill.ApplyOptions{NewRun: first[:8]}, spread, first)
	if second == first {
		t.Fatal("no new run")
	}
	counts(t, db, 2, rows)
	checkStory(t, db.Pool, rows/50, 2)
	var prev string
	db.Pool.QueryRow(context.Background(), "SELECT prev_run FROM rewind.backfill_runs WHERE id = $1", second).Scan(&prev)
	if prev != first {
		t.Fatalf("run %s follows %q, want %s", second, prev, first)
	}
}

// startAll applies job with every runner, each after a random delay
// within spread, and with one more goroutine resuming the job's open run
// as soon as it sees one. Each must succeed or be told the job is already
// applied (or, for the resumer, that the run already finished). It
// returns the id of the run they applied.
func startAll(t *testing.T, runners []*backfill.Runner, job func() *backfill.Job, o backfill.ApplyOptions,
	spread time.Duration, prev string) string {
	t.Helper()
	errs := make([]error, len(runners)+1)
	ids := make([]string, len(runners)+1)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, r := range runners {
		delay := time.Duration(0)
		if spread > 0 {
			delay = time.Duration(rand.Int64N(int64(spread)))
		}
		wg.Go(func() {
			<-gate
			time.Sleep(delay)
			res, err := r.Apply(context.Background(), job(), o)
			if err == nil {
				ids[i] = res.Run.ID
			}
			errs[i] = err
		})
	}
	wg.Go(func() { // a resumer
		<-gate
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			runs, err := runners[0].List(context.Background(), backfill.ListOptions{Job: "inc", Limit: 1})
			if err != nil || len(runs) == 0 || runs[0].ID == prev {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			res, err := runners[0].Resume(context.Background(), runs[0].ID, job(), backfill.ApplyOptions{})
			if err == nil {
				ids[len(runners)] = res.Run.ID
			}
			errs[len(runners)] = err
			return
		}
		errs[len(runners)] = errors.New("the resumer saw no run")
	})
	close(gate)
	wg.Wait()
	id, worked := "", 0
	for i, err := range errs {
		switch {
		case err == nil:
			if id != "" && ids[i] != id {
				t.Fatalf("starters applied two runs: %s and %s", id, ids[i])
			}
			id = ids[i]
			worked++
		case errors.Is(err, backfill.ErrAlreadyApplied):
		case i == len(runners) && errors.Is(err, backfill.ErrRunEnded): // the resumer came after the end
		default:
			t.Errorf("starter %d: %v", i, err)
		}
	}
	if worked == 0 {
		t.Fatalf("no starter applied the job: %v", errs)
	}
	return id
}

// counts checks that every row was changed exactly want times, by runs runs.
func counts(t *testing.T, db *pgtest.DB, want int, rows int64) {
	t.Helper()
	var wrong, runs int64
	db.Pool.QueryRow(context.Background(), "SELECT count(*) FILTER (WHERE n <> $1) FROM items", want).Scan(&wrong)
	db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM rewind.backfill_runs").Scan(&runs)
	if wrong != 0 || runs != int64(want) {
		t.Fatalf("%d of %d rows not changed exactly %d times; %d runs, want %d", wrong, rows, want, runs, want)
	}
}

// checkStory checks each run's audit entries, in ledger order: first
// run.started, once; run.resumed only after it; chunks 1…chunks committed
// once each; run.finished once, last.
func checkStory(t *testing.T, pool *pgxpool.Pool, chunks, runs int) {
	t.Helper()
	ctx := context.Background()
	l, _ := auditpg.New(pool, auditpg.Config{})
	if _, err := l.Verify(ctx); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	type story struct {
		kinds     []string
		committed map[string]int
	}
	stories := map[string]*story{}
	for e, err := range l.Entries(ctx, auditpg.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Subject == "" {
			continue
		}
		s := stories[e.Subject]
		if s == nil {
			s = &story{committed: map[string]int{}}
			stories[e.Subject] = s
		}
		s.kinds = append(s.kinds, e.Kind)
		if e.Kind == "backfill.chunk.committed" {
			s.committed[e.Attrs["chunk"]]++
		}
	}
	if len(stories) != runs {
		t.Errorf("the ledger tells of %d runs, want %d", len(stories), runs)
	}
	for run, s := range stories {
		count := map[string]int{}
		for _, k := range s.kinds {
			count[k]++
		}
		if s.kinds[0] != "backfill.run.started" || count["backfill.run.started"] != 1 {
			t.Errorf("run %s: story does not begin with one run.started: %v", run, s.kinds)
		}
		if count["backfill.run.finished"] != 1 || s.kinds[len(s.kinds)-1] != "backfill.run.finished" {
			t.Errorf("run %s: story does not end with one run.finished: %v", run, s.kinds)
		}
		if len(s.committed) != chunks {
			t.Errorf("run %s: %d chunks committed, want %d: %v", run, len(s.committed), chunks, s.kinds)
		}
		for c, n := range s.committed {
			if n != 1 {
				t.Errorf("run %s: chunk %s committed %d times", run, c, n)
			}
		}
	}
}
