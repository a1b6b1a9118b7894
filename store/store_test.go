package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

type bundle struct {
	dir string
	cfg Config
}

func setup(t testing.TB, cfg Config) (*Store, *bundle) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &bundle{dir: t.TempDir(), cfg: cfg}
	s, err := Open(b.dir, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, b
}

func reopen(t testing.TB, s *Store, b *bundle) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s2, err := Open(b.dir, b.cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func ev(typ, data string) rewind.Event {
	return rewind.Event{Type: typ, Data: []byte(data)}
}

var ctx = context.Background()

func TestAppendReadStreamAndAll(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	res, err := s.Append(ctx, "orders-1", rewind.NoStream, ev("Placed", `{"n":1}`), ev("Paid", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstPosition != 1 || res.LastPosition != 2 || res.FirstVersion != 1 || res.LastVersion != 2 {
		t.Fatalf("result %+v", res)
	}
	if _, err := s.Append(ctx, "orders-2", rewind.Any, ev("Placed", `{}`)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, "orders-1", rewind.Exactly(1), ev("Shipped", `{}`))
	var wev *rewind.WrongExpectedVersionError
	if !errors.As(err, &wev) || wev.Actual != 2 {
		t.Fatalf("wrong expected version: %v", err)
	}
	for round := 0; round < 2; round++ {
		evs, err := s.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{})
		if err != nil || len(evs) != 2 || evs[0].Type != "Placed" || evs[1].Version != 2 || string(evs[0].Data) != `{"n":1}` {
			t.Fatalf("read stream: %v %+v", err, evs)
		}
		back, err := s.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{Backward: true, Limit: 1})
		if err != nil || len(back) != 1 || back[0].Version != 2 {
			t.Fatalf("read backward: %v %+v", err, back)
		}
		var all []rewind.Position
		for e, err := range s.ReadAll(ctx, rewind.ReadAllOptions{Filter: rewind.Filter{Types: []string{"Placed"}}}) {
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, e.Position)
		}
		if fmt.Sprint(all) != "[1 3]" {
			t.Fatalf("read all filtered: %v", all)
		}
		s = reopen(t, s, b)
	}
}

func TestIdempotentRetry(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	e1, e2 := ev("A", "1"), ev("B", "2")
	e1.ID, e2.ID = uuid.New(), uuid.New()
	first, err := s.Append(ctx, "s", rewind.NoStream, e1, e2)
	if err != nil {
		t.Fatal(err)
	}
	s.Append(ctx, "other", rewind.Any, ev("X", "x"))
	for round := 0; round < 2; round++ {
		again, err := s.Append(ctx, "s", rewind.NoStream, e1, e2)
		if err != nil || !again.Duplicate || again.FirstPosition != first.FirstPosition || again.LastVersion != 2 {
			t.Fatalf("retry: %+v %v", again, err)
		}
		changed := e2
		changed.Data = []byte("3")
		_, err = s.Append(ctx, "s", rewind.Any, e1, changed)
		if !errors.Is(err, rewind.ErrIdempotencyConflict) {
			t.Fatalf("changed body: %v", err)
		}
		_, err = s.Append(ctx, "s", rewind.Any, e1, ev("C", "new"))
		if !errors.Is(err, rewind.ErrIdempotencyConflict) {
			t.Fatalf("partial retry: %v", err)
		}
		if info, _ := s.StreamInfo(ctx, "s"); info.Version != 2 {
			t.Fatalf("version after retries = %d", info.Version)
		}
		s = reopen(t, s, b)
	}
}

func TestSubscribeCatchUpThenLive(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{Log: eventlog.Config{SegmentSize: 64 << 10}})
	const before, during = 500, 2000
	for i := 0; i < before; i++ {
		if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i%7), rewind.Any, ev("T", "x")); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{After: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := 0; i < during/4; i++ {
				if _, err := s.Append(ctx, fmt.Sprintf("w-%d", w), rewind.Any, ev("T", "y")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	want := rewind.Position(101)
	for want <= before+during {
		e, err := sub.Next(cctx)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if e.Position != want {
			t.Fatalf("got position %d, want %d", e.Position, want)
		}
		want++
	}
	wg.Wait()
}

func TestDeleteStream(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	s.Append(ctx, "d", rewind.NoStream, ev("A", "1"), ev("B", "2"))
	if _, err := s.DeleteStream(ctx, "d", rewind.Exactly(2)); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		if _, err := s.ReadStream(ctx, "d", rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrStreamNotFound) {
			t.Fatalf("read deleted: %v", err)
		}
		n := 0
		for range s.ReadAll(ctx, rewind.ReadAllOptions{}) {
			n++
		}
		if n != 3 {
			t.Fatalf("whole log has %d records, want 3", n)
		}
		s = reopen(t, s, b)
	}
	res, err := s.Append(ctx, "d", rewind.NoStream, ev("C", "3"))
	if err != nil || res.FirstVersion != 3 {
		t.Fatalf("recreate: %+v %v", res, err)
	}
	evs, _ := s.ReadStream(ctx, "d", rewind.ReadStreamOptions{})
	if len(evs) != 1 || evs[0].Type != "C" {
		t.Fatalf("recreated stream: %+v", evs)
	}
}

// After a crash, open replays only the events after the last background
// snapshot, and the index it builds is the same.
func TestBackgroundSnapshotBoundsReplay(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{SnapshotEvery: 500})
	for i := 0; i < 2000; i++ {
		if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i%37), rewind.Any, ev("T", "x")); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the background snapshot to settle, append a little more,
	// then "crash": close the log without the store's final snapshot.
	var at uint64
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.mu.Lock()
		busy := s.snapshotting
		at = s.snapshotPos
		s.mu.Unlock()
		if !busy && at >= 1500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no background snapshot (at %d)", at)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 2000; i < 2100; i++ {
		if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i%37), rewind.Any, ev("T", "x")); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := s.ReadStream(ctx, "s-5", rewind.ReadStreamOptions{})
	s.closeOnce.Do(func() { close(s.closed) })
	s.wg.Wait()
	// The appends above may have started one more snapshot; with the
	// snapshotter stopped, the one on disk is final.
	at = s.durableSnapshotPos.Load()
	if err := s.log.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(b.dir, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if uint64(s2.replayed) != 2100-at {
		t.Fatalf("replayed %d events after the snapshot at %d, want %d", s2.replayed, at, 2100-at)
	}
	got, err := s2.ReadStream(ctx, "s-5", rewind.ReadStreamOptions{})
	if err != nil || len(got) != len(want) || got[len(got)-1].Position != want[len(want)-1].Position {
		t.Fatalf("stream after reopen: %d events (%v), want %d", len(got), err, len(want))
	}
	if info, _ := s2.StreamInfo(ctx, "s-36"); info.Version != 56 {
		t.Fatalf("s-36 version %d, want 56", info.Version)
	}
}
