package backfill_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/backfill"
)

// The kill test re-executes this test binary as the runner: TestMain sees
// childEnv and calls runChild instead of running tests.
const (
	childEnv      = "REWIND_BACKFILL_TEST_CHILD" // "apply", "resume", "promote" or "rollback"
	childDSNEnv   = "REWIND_BACKFILL_TEST_DSN"
	childRunEnv   = "REWIND_BACKFILL_TEST_RUN"
	childChunkEnv = "REWIND_BACKFILL_TEST_CHUNK"
	childPaceEnv  = "REWIND_BACKFILL_TEST_PACE" // pause after each chunk, so that kills land mid-run
	childSlowEnv  = "REWIND_BACKFILL_TEST_SLOW" // a Go job pausing this long inside each chunk's transaction
	childLeaseEnv = "REWIND_BACKFILL_TEST_LEASE_TIMEOUT"
)

// slowIncrement increments n of every row with a Go process function that
// takes pause per chunk, inside the chunk's transaction.
func slowIncrement(chunk int, pause time.Duration) *backfill.Job {
	job := processIncrement()
	job.ChunkSize = chunk
	process := job.Process
	job.Process = func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
		time.Sleep(pause)
		return process(ctx, items)
	}
	return job
}

func runChild() int {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv(childDSNEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	pace, _ := time.ParseDuration(os.Getenv(childPaceEnv))
	chunk, _ := strconv.Atoi(os.Getenv(childChunkEnv))
	leaseTimeout, _ := time.ParseDuration(os.Getenv(childLeaseEnv))
	r, err := backfill.New(backfill.Config{DB: pool, Actor: "kill-test", Binary: "test-binary", Heartbeat: time.Second,
		LeaseTimeout: leaseTimeout, Progress: func(backfill.Progress) { time.Sleep(pace) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	job := countJob(chunk)
	if slow, _ := time.ParseDuration(os.Getenv(childSlowEnv)); slow > 0 {
		job = slowIncrement(chunk, slow)
	}
	switch os.Getenv(childEnv) {
	case "rollback":
		_, err = r.Rollback(ctx, os.Getenv(childRunEnv), backfill.RollbackOptions{})
	case "resume":
		_, err = r.Resume(ctx, os.Getenv(childRunEnv), job, backfill.ApplyOptions{})
	case "promote":
		_, err = r.Promote(ctx, os.Getenv(childRunEnv), job, backfill.ApplyOptions{})
	default:
		_, err = r.Apply(ctx, job, backfill.ApplyOptions{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
