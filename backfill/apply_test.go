package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/backfill"
)

func TestApplySetJobAndRerunChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 1050)
	res := b.apply(t, doubleJob(), backfill.ApplyOptions{})
	if res.RowsChanged != 1050 || res.Chunks != 11 || res.Run.State != backfill.Finished {
		t.Fatalf("apply: %+v", res)
	}
	// The result's run carries its times (--json printed year 1 before).
	if res.Run.Created.IsZero() || res.Run.Updated.IsZero() {
		t.Fatalf("the run's created/updated times are zero: %v, %v", res.Run.Created, res.Run.Updated)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1 OR val <> (id % 97) * 2"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	// Starting it again is refused, and with a new run asked for, the
	// job's where makes that run change nothing.
	if _, err := b.runner.Apply(context.Background(), doubleJob(), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrAlreadyApplied) {
		t.Fatalf("re-run without a new run: %v, want ErrAlreadyApplied", err)
	}
	again := b.apply(t, doubleJob(), backfill.ApplyOptions{NewRun: res.Run.ID})
	if again.RowsChanged != 0 || again.Run.ID == res.Run.ID || !strings.Contains(again.Message, "nothing to do") {
		t.Fatalf("re-run: %+v", again)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("re-run changed %d rows", n)
	}
	kinds := b.auditKinds(t, res.Run.ID)
	if kinds["backfill.run.started"] != 1 || kinds["backfill.chunk.committed"] != 11 || kinds["backfill.run.finished"] != 1 {
		t.Fatalf("audit entries: %v", kinds)
	}
}
