package backfill_test

const childEnv = "REWIND_BACKFILL_TEST_CHILD"

func runChild() int { return 0 }
