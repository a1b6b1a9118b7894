package backfill_test

import (
	"context"
	"errors"
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
	// Parallel runs (shards_kill_test.go): the run's workers, this
	// process's workers and the shards, as "workers/local/shards".
	childParEnv = "REWIND_BACKFILL_TEST_PARALLEL"
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
	var o backfill.ApplyOptions
	fmt.Sscanf(os.Getenv(childParEnv), "%d/%d/%d", &o.Workers, &o.LocalWorkers, &o.Shards)
	switch os.Getenv(childEnv) {
	case "rollback":
		_, err = r.Rollback(ctx, os.Getenv(childRunEnv), backfill.RollbackOptions{})
	case "resume":
		_, err = r.Resume(ctx, os.Getenv(childRunEnv), job, o)
	case "promote":
		_, err = r.Promote(ctx, os.Getenv(childRunEnv), job, o)
	case "work":
		_, err = r.Work(ctx, os.Getenv(childRunEnv), job, backfill.WorkOptions{Workers: o.LocalWorkers})
	default:
		_, err = r.Apply(ctx, job, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return childStatus(err)
	}
	return 0
}

// childStatus tells the parent how a child ended: 4 the run had ended,
// 6 another process held the run, 7 the child lost a lease, 1 else.
func childStatus(err error) int {
	switch {
	case errors.Is(err, backfill.ErrRunEnded), errors.Is(err, backfill.ErrAlreadyApplied):
		return 4
	case errors.Is(err, backfill.ErrRunLocked):
		return 6
	case errors.Is(err, backfill.ErrLeaseLost):
		return 7
	}
	return 1
}
