package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// TestDeletedRowIsDataLoss: a row deleted from the events table behind the
// store's back (a superuser's DELETE) is a hole in positions that are
// contiguous by design. Every reader of the whole log — ReadAll, a
// subscription, an export for a copy — stops at it with a *GapError that
// matches rewind.ErrCorruption, after delivering what comes before it, and
// never jumps over it (F6: read and tail went from 99 to 101 silently).
func TestDeletedRowIsDataLoss(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	s := db.open(t, Config{})
	for i := range 4 {
		if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i%2), rewind.Any, benchEvents(50)...); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, err error, missing rewind.Position) {
		t.Helper()
		var ge *GapError
		if !errors.Is(err, rewind.ErrCorruption) || !errors.As(err, &ge) || ge.Missing != missing {
			t.Fatalf("%s over a deleted position %d: %v; want a *GapError there", what, missing, err)
		}
	}
	readAll := func(opts rewind.ReadAllOptions) (rewind.Position, error) {
		var last rewind.Position
		for ev, err := range s.ReadAll(ctx, opts) {
			if err != nil {
				return last, err
			}
			if ev.Position != last+1 && last != 0 {
				t.Fatalf("read delivered position %d after %d", ev.Position, last)
			}
			last = ev.Position
		}
		return last, nil
	}
	for _, missing := range []rewind.Position{100, 200, 1} {
		db.Exec(t, "DELETE FROM "+s.cfg.Schema+".events WHERE position = $1", int64(missing))
		last, err := readAll(rewind.ReadAllOptions{})
		check("read all", err, missing)
		if first := rewind.Position(1); missing > first && last != missing-1 {
			t.Fatalf("read all delivered up to %d before the gap at %d", last, missing)
		}
		_, err = readAll(rewind.ReadAllOptions{From: missing - min(missing-1, 3)})
		check("read from just before", err, missing)
		sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{After: missing - 1 - min(missing-1, 2)})
		if err != nil {
			t.Fatal(err)
		}
		for {
			nctx, cancel := context.WithTimeout(ctx, time.Minute)
			ev, err := sub.Next(nctx)
			cancel()
			if err != nil {
				check("subscription", err, missing)
				if sub.Position() != missing-1 {
					t.Fatalf("subscription stopped at position %d, want %d", sub.Position(), missing-1)
				}
				break
			}
			if ev.Position >= missing {
				t.Fatalf("subscription delivered position %d past the gap at %d", ev.Position, missing)
			}
		}
		sub.Close()
		_, err = s.ExportLog(ctx, 1, 1000)
		check("export", err, missing)
		// Put a row back, so that the next round tests one hole at a time.
		db.Exec(t, "INSERT INTO "+s.cfg.Schema+".events (position, stream, version, kind, event_id, generated, type, "+
			"schema_version, content_type, data, recorded_at, batch_first, batch_last) SELECT $1, 'filler', $1, 0, "+
			"gen_random_uuid(), true, 'T', 1, 'application/json', '', now(), $1, $1", int64(missing))
	}
	// With every hole filled, the whole log reads again.
	if _, err := readAll(rewind.ReadAllOptions{}); err != nil {
		t.Fatalf("read all with every hole filled: %v", err)
	}
}

// TestHorizonShowsBlockedAppends: a session that keeps a stream's row
// locked stalls the appends to that stream (and the committer's group with
// them); the horizon lists the waiting session and the one it waits for
// (F3: it showed nothing).
func TestHorizonShowsBlockedAppends(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	s := db.open(t, Config{})
	if _, err := s.Append(ctx, "locked", rewind.Any, benchEvents(1)...); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var locker int32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&locker); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+s.cfg.Schema+".streams WHERE name = 'locked' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "locked", rewind.Any, benchEvents(1)...)
		appended <- err
	}()
	var h Horizon
	for i := 0; len(h.Blocked) == 0; i++ {
		if i == 12000 {
			t.Fatal("the horizon never listed the blocked append")
		}
		time.Sleep(5 * time.Millisecond)
		if h, err = s.Horizon(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b := h.Blocked[0]; len(h.Blocked) != 1 || len(b.BlockedBy) != 1 || b.BlockedBy[0] != int(locker) ||
		b.WaitEvent == "" {
		t.Fatalf("horizon's blocked sessions: %+v; want one, blocked by session %d", h.Blocked, locker)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-appended; err != nil {
		t.Fatalf("append once the row was released: %v", err)
	}
	if h, err = s.Horizon(ctx); err != nil || len(h.Blocked) != 0 || h.Safe != 2 {
		t.Fatalf("horizon after: %+v, %v", h, err)
	}
}

// TestHorizonNamesHeadLockHolder: a session that keeps the head row locked
// (SELECT * FROM head FOR UPDATE left open) stalls every append; the
// horizon lists the waiting committer and names that session.
func TestHorizonNamesHeadLockHolder(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	s := db.open(t, Config{})
	if _, err := s.Append(ctx, "a", rewind.Any, benchEvents(1)...); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var locker int32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&locker); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT * FROM "+s.cfg.Schema+".head FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "b", rewind.Any, benchEvents(1)...)
		appended <- err
	}()
	var h Horizon
	for i := 0; len(h.Blocked) == 0; i++ {
		if i == 1000 {
			t.Fatalf("the horizon never listed the append waiting for the head row: %+v", h)
		}
		time.Sleep(5 * time.Millisecond)
		if h, err = s.Horizon(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b := h.Blocked[0]; len(h.Blocked) != 1 || !slices.Equal(b.BlockedBy, []int{int(locker)}) || b.WaitEvent == "" {
		t.Fatalf("horizon's blocked sessions: %+v; want one, blocked by session %d", h.Blocked, locker)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-appended; err != nil {
		t.Fatalf("append once the head row was released: %v", err)
	}
	if h, err = s.Horizon(ctx); err != nil || len(h.Blocked) != 0 || h.Safe != 2 {
		t.Fatalf("horizon after: %+v, %v", h, err)
	}
}
