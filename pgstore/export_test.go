package pgstore

import (
	"context"
	"time"
)

// fateKey carries a per-call fate in its context, for tests that roll back
// or slow down chosen transactions.
type fateKey struct{}

// fate is what a test asks of one append's transaction: a pause in
// PostgreSQL between its write and its COMMIT, or a ROLLBACK.
type fate struct {
	sleep    time.Duration
	rollback bool
	// killAfterCommit ends the session right after its COMMIT answered.
	killAfterCommit bool
}

func withFate(ctx context.Context, f fate) context.Context {
	return context.WithValue(ctx, fateKey{}, f)
}

// installFates makes s follow the fates carried by its calls' contexts.
func installFates(s *Store) {
	s.testFate = func(ctx context.Context) (time.Duration, bool) {
		f, _ := ctx.Value(fateKey{}).(fate)
		return f.sleep, f.rollback
	}
	s.testKillAfterCommit = func(ctx context.Context) bool {
		f, _ := ctx.Value(fateKey{}).(fate)
		return f.killAfterCommit
	}
}
