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
	childEnv      = "REWIND_BACKFILL_TEST_CHILD" // "apply" or "resume"
	childDSNEnv   = "REWIND_BACKFILL_TEST_DSN"
	childRunEnv   = "REWIND_BACKFILL_TEST_RUN"
	childChunkEnv = "REWIND_BACKFILL_TEST_CHUNK"
	childPaceEnv  = "REWIND_BACKFILL_TEST_PACE" // pause after each chunk, so that kills land mid-run
)

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
	r, err := backfill.New(backfill.Config{DB: pool, Actor: "kill-test", Binary: "test-binary", Heartbeat: time.Second,
		Progress: func(backfill.Progress) { time.Sleep(pace) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if os.Getenv(childEnv) == "resume" {
		_, err = r.Resume(ctx, os.Getenv(childRunEnv), countJob(chunk), backfill.ApplyOptions{})
	} else {
		_, err = r.Apply(ctx, countJob(chunk), backfill.ApplyOptions{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
