package pgstore

import (
	"context"
	"errors"
	"fmt"
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
