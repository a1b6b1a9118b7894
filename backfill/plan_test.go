package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/backfill"
)

func TestDryRunWritesNothingToTheTarget(t *testing.T) {
	t.Parallel()
	b := setup(t, 1050)
	before := b.db.Checksum(t, "items", "id")
	plan, err := b.runner.Plan(context.Background(), doubleJob(), backfill.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after := b.db.Checksum(t, "items", "id"); after != before {
		t.Fatal("the dry run changed the table")
	}
	if plan.Rows != 1050 || plan.Estimated || plan.Chunks != 11 || plan.FirstChunk == nil || plan.FirstChunk.Hi[0] != "100" {
		t.Fatalf("plan %+v", plan)
	}
	if len(plan.Diffs) != 10 || plan.Diffs[2].Key[0] != "3" || plan.Diffs[2].Before["val"] != "3" || plan.Diffs[2].After["val"] != "6" {
		t.Fatalf("diffs %+v", plan.Diffs)
	}
	if !strings.Contains(plan.Explain, "Update on items") {
		t.Fatalf("explain: %s", plan.Explain)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs"); n != 0 {
		t.Fatalf("the dry run created %d runs", n)
	}
	if k := b.auditKinds(t, ""); k["backfill.run.planned"] != 1 {
		t.Fatalf("audit: %v", k)
	}
	est, err := b.runner.Plan(context.Background(), doubleJob(), backfill.PlanOptions{Estimate: true})
	if err != nil || !est.Estimated || est.Rows <= 0 {
		t.Fatalf("estimated plan %+v, %v", est, err)
	}
}

func TestPlanHashGuardsTheInput(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	p1, err := b.runner.Plan(ctx, doubleJob(), backfill.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b.runner.Plan(ctx, doubleJob(), backfill.PlanOptions{})
	if err != nil || p2.PlanHash != p1.PlanHash {
		t.Fatalf("plan hash not stable: %s, %s (%v)", p1.PlanHash, p2.PlanHash, err)
	}
	b.db.Exec(t, "UPDATE items SET val = 1000 WHERE id = 42")
	_, err = b.runner.Apply(ctx, doubleJob(), backfill.ApplyOptions{PlanHash: p1.PlanHash})
	if !errors.Is(err, backfill.ErrPlanMismatch) {
		t.Fatalf("apply with a stale plan: %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n > 0"); n != 0 {
		t.Fatalf("a refused apply changed %d rows", n)
	}
	changed := doubleJob()
	changed.Version = "2"
	p3, _ := b.runner.Plan(ctx, changed, backfill.PlanOptions{})
	if _, err := b.runner.Apply(ctx, doubleJob(), backfill.ApplyOptions{PlanHash: p3.PlanHash}); !errors.Is(err, backfill.ErrPlanMismatch) {
		t.Fatalf("apply of another job's plan: %v", err)
	}
	p4, _ := b.runner.Plan(ctx, doubleJob(), backfill.PlanOptions{})
	res := b.apply(t, doubleJob(), backfill.ApplyOptions{PlanHash: p4.PlanHash})
	if res.RowsChanged != 300 || res.Run.PlanHash != p4.PlanHash {
		t.Fatalf("apply with a fresh plan: %+v", res)
	}
}
