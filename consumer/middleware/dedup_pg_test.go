package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/pgtest"
)

func TestDedupPostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	s := NewPGDedup(db.Pool, "public.consumer_dedup")
	if err := s.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	// PostgreSQL's clock cannot be moved: expire by rewriting the marks.
	dedupContract(t, s, func(d time.Duration) {
		if _, err := db.Pool.Exec(context.Background(),
			`UPDATE consumer_dedup SET expires_at = expires_at - $1::interval`, d); err != nil {
			t.Fatal(err)
		}
	})
	if n, err := s.Sweep(context.Background()); err != nil || n == 0 {
		t.Fatalf("sweep %d %v", n, err)
	}
}
