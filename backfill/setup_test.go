package backfill_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/internal/pgtest"
)

var exampleDB *pgtest.DB

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(pgtest.Main(m, &exampleDB))
}

// bundle is a test's database with a table "items" and a runner on it.
type bundle struct {
	db     *pgtest.DB
	runner *backfill.Runner
	cfg    backfill.Config
}

// setup creates items(id bigint primary key, val int, n int, done bool)
// with rows rows, val = id % 97.
func setup(t *testing.T, rows int, mutate ...func(*backfill.Config)) *bundle {
	t.Helper()
	db := pgtest.New(t)
	db.Exec(t, `CREATE TABLE items (id bigint PRIMARY KEY, val int NOT NULL, n int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`)
	db.Exec(t, `INSERT INTO items (id, val) SELECT g, g % 97 FROM generate_series(1, $1::int) g`, rows)
	cfg := backfill.Config{DB: db.Pool, Actor: "tester", Binary: "test-binary", Command: []string{"rewind", "test"},
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, LeaseWait: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	r, err := backfill.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, runner: r, cfg: cfg}
}

// doubleJob doubles val once per row: its WHERE selects rows not done yet.
func doubleJob() *backfill.Job {
	return &backfill.Job{Name: "double", Version: "1", ChunkSize: 100,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "NOT done"},
		Set:    map[string]string{"val": "val * 2", "done": "true", "n": "n + 1"}}
}

// countJob increments n of every row: not idempotent by itself, so that a
// chunk applied twice shows as n = 2.
func countJob(chunk int) *backfill.Job {
	return &backfill.Job{Name: "count", Version: "1", ChunkSize: chunk,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Set:    map[string]string{"n": "n + 1"}}
}

func (b *bundle) scalar(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := b.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// auditKinds counts the audit entries of a run by kind, and verifies the chain.
func (b *bundle) auditKinds(t *testing.T, runID string) map[string]int {
	t.Helper()
	l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
	if _, err := l.Verify(context.Background()); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	kinds := map[string]int{}
	for e, err := range l.Entries(context.Background(), auditpg.Filter{Subject: runID}) {
		if err != nil {
			t.Fatal(err)
		}
		kinds[e.Kind]++
	}
	return kinds
}

// apply applies job and fails the test on error.
func (b *bundle) apply(t *testing.T, job *backfill.Job, o backfill.ApplyOptions) *backfill.Result {
	t.Helper()
	res, err := b.runner.Apply(context.Background(), job, o)
	if err != nil {
		t.Fatalf("apply %s: %v", job.Name, err)
	}
	return res
}

var _ = fmt.Sprint
