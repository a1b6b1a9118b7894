package auditpg

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/pgtest"
)

// An append must stay cheap when the head table carries dead row versions
// and has no statistics yet: the planner then estimates the one-row head
// from its pages, and the append's old plan (head joined to head) cost
// more than jit_above_cost, so PostgreSQL JIT-compiled every append:
// about 30 ms each, which made a backfill's chunks four times slower.
func TestAppendIsNotPlannedAsAJoinOfABloatedHead(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	l, err := New(db.Pool, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, "ALTER TABLE "+l.head+" SET (autovacuum_enabled = false)")
	// Dead versions of the head row: a snapshot held open keeps them from
	// being pruned, so the table grows by pages.
	hold, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := hold.QueryRow(ctx, "SELECT count(*) FROM "+l.head).Scan(&n); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `DO $$ BEGIN FOR i IN 1..4000 LOOP UPDATE `+l.head+` SET seq = seq; END LOOP; END $$`)
	var pages int
	db.Pool.QueryRow(ctx, "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int", l.head).Scan(&pages)
	if pages < 20 {
		t.Fatalf("the head table has %d pages; the test needs it bloated", pages)
	}
	var plan []struct {
		Plan struct {
			TotalCost float64 `json:"Total Cost"`
		} `json:"Plan"`
	}
	var raw string
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+l.appendSQL(), time.Now(), "k", "s", "a", `"x":1}`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(raw), &plan); err != nil || len(plan) == 0 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	var jitAbove float64
	tx.QueryRow(ctx, "SELECT current_setting('jit_above_cost')::float8").Scan(&jitAbove)
	if c := plan[0].Plan.TotalCost; c >= jitAbove || c > 10000 {
		t.Fatalf("an append is planned at cost %.0f with a bloated head (%d pages; jit_above_cost %.0f): it would be JIT-compiled", c, pages, jitAbove)
	}
}
