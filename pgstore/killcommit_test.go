package pgstore

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// TestSessionEndedAfterCommit: PostgreSQL answers an append's (or a
// delete's) COMMIT, then ends the session (FATAL 57P01, as
// pg_terminate_backend or a fast shutdown does) before the pipeline's
// end. The write is committed, so the call succeeds with its positions:
// answering "unavailable: nothing was written" made clients retry a write
// that was there (an outside tester's duplicates).
func TestSessionEndedAfterCommit(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	installFates(s)
	ctx := context.Background()
	killed := withFate(ctx, fate{killAfterCommit: true})
	for i := range 5 {
		ev := rewind.Event{ID: uuid.New(), Type: "T"}
		res, err := s.Append(killed, "k-1", rewind.Any, ev)
		if err != nil {
			t.Fatalf("append %d, its session ended after its COMMIT: %v", i, err)
		}
		got, err := s.ReadStream(ctx, "k-1", rewind.ReadStreamOptions{From: res.FirstVersion, Limit: 1})
		if err != nil || len(got) != 1 || got[0].ID != ev.ID || got[0].Position != res.FirstPosition {
			t.Fatalf("append %d answered %+v; the stream holds %+v (%v)", i, res, got, err)
		}
	}
	if _, err := s.DeleteStream(killed, "k-1", rewind.Any); err != nil {
		t.Fatalf("delete, its session ended after its COMMIT: %v", err)
	}
	if _, err := s.Append(ctx, "k-2", rewind.Any, rewind.Event{Type: "T"}); err != nil {
		t.Fatalf("an append after the sessions ended: %v", err)
	}
}
