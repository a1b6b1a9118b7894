package backfill_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

// run --execute over a run paused through its control, whose owner is
// alive and waiting at a chunk boundary, is refused at once with
// ErrRunPaused (exit 4) pointing at resume, not after waiting LeaseWait
// for the owner's lease (ErrRunLocked, exit 6).
func TestApplyOverAPausedRunWithALiveOwnerIsRefusedAsPaused(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4})
		done <- err
	}()
	id := runningID(t, b, "count")
	if st, err := b.runner.Pause(ctx, id, backfill.ControlOptions{Reason: "look", Wait: 20 * time.Second}); err != nil ||
		st.State != backfill.Paused {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	other := runnerOn(t, b, func(c *backfill.Config) { c.LeaseWait = 30 * time.Second })
	_, err := other.Apply(ctx, countJob(50), backfill.ApplyOptions{})
	if !errors.Is(err, backfill.ErrRunPaused) || errors.Is(err, backfill.ErrRunLocked) ||
		!strings.Contains(err.Error(), "rewind backfill resume "+id) {
		t.Fatalf("apply over a paused run with a live owner = %v, want ErrRunPaused naming resume", err)
	}
	if _, live, err := b.runner.Unpause(ctx, id); err != nil || !live {
		t.Fatalf("unpause: live %v, %v", live, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the owner after resume: %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}
