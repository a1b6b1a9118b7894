package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// sleepingPID waits for the backend of db that sleeps in pg_sleep (an
// append held by its fate between its write and its COMMIT) and returns
// its pid.
func sleepingPID(t *testing.T, db *testDB) int {
	t.Helper()
	for range 500 {
		var pid int
		err := db.Pool.QueryRow(context.Background(), `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event = 'PgSleep' LIMIT 1`).Scan(&pid)
		if err == nil {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no append is sleeping before its commit")
	return 0
}

// TestBackendKilledMidAppend: the backend of an append that holds
// positions is terminated before its COMMIT (as a PostgreSQL restart
// would). The append fails with PostgreSQL's error (not "outcome
// unknown": the server answered for the statement before the COMMIT, so
// the COMMIT never ran), nothing of it is written, an append waiting behind it goes on, the horizon named the
// holder while it held, and a retry with the same ids writes the events
// once.
func TestBackendKilledMidAppend(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	installFates(s)
	ctx := context.Background()
	if _, err := s.Append(ctx, "k-0", rewind.Any, rewind.Event{Type: "T"}); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	held := []rewind.Event{{ID: uuid.New(), Type: "T"}, {ID: uuid.New(), Type: "T"}}
	heldErr := make(chan error, 1)
	go func() {
		_, err := s.Append(withFate(ctx, fate{sleep: time.Minute}), "k-1", rewind.Any, held...)
		heldErr <- err
	}()
	pid := sleepingPID(t, db)
	// Another process's append waits behind it for the append lock (the
	// appends of one store wait in its committer instead).
	other := db.open(t, Config{Schema: s.cfg.Schema})
	waiter := make(chan error, 1)
	waiterEv := rewind.Event{ID: uuid.New(), Type: "T"}
	go func() {
		_, err := other.Append(ctx, "k-2", rewind.Any, waiterEv)
		waiter <- err
	}()
	// The horizon names the holder and, soon, the append waiting behind it.
	var h Horizon
	for range 500 {
		if h, err = s.Horizon(ctx); err != nil {
			t.Fatal(err)
		}
		if h.Waiting == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.Safe != 1 || h.Holder == nil || h.Holder.PID != pid || h.Waiting != 1 || h.Holder.Age <= 0 {
		t.Fatalf("horizon while an append holds the lock: %+v (holder %+v), want safe 1, holder pid %d, 1 waiting", h, h.Holder, pid)
	}
	db.Exec(t, "SELECT pg_terminate_backend($1)", pid)
	if err := <-heldErr; err == nil || errors.Is(err, rewind.ErrOutcomeUnknown) || !strings.Contains(err.Error(), "57P01") {
		t.Fatalf("append whose backend was killed: %v, want PostgreSQL's error 57P01", err)
	}
	if err := <-waiter; err != nil {
		t.Fatalf("append waiting behind the killed one: %v", err)
	}
	if h, err := s.Horizon(ctx); err != nil || h.Holder != nil || h.Waiting != 0 || h.Safe != 2 {
		t.Fatalf("horizon after: %+v, %v", h, err)
	}
	// The killed append wrote nothing: the waiter took position 2.
	if ev := next(t, sub); ev.Position != 1 {
		t.Fatalf("first event at %d", ev.Position)
	}
	if ev := next(t, sub); ev.Position != 2 || ev.ID != waiterEv.ID {
		t.Fatalf("second event: %+v, want the waiter's at 2", ev)
	}
	res, err := s.Append(ctx, "k-1", rewind.Any, held...)
	if err != nil || res.Duplicate || res.FirstPosition != 3 || res.FirstVersion != 1 {
		t.Fatalf("retry of the killed append: %+v, %v; want it written at 3 as version 1", res, err)
	}
	if again, err := s.Append(ctx, "k-1", rewind.Any, held...); err != nil || !again.Duplicate || again.FirstPosition != 3 {
		t.Fatalf("second retry: %+v, %v; want a duplicate", again, err)
	}
}

// next waits for a subscription's next event, for at most a minute.
func next(t *testing.T, sub rewind.Subscription) rewind.RecordedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ev, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("next after %d: %v", sub.Position(), err)
	}
	return ev.Clone()
}

// TestListenerReconnects: the listener's connection is killed; an append by
// another process (another Store, so no local wake-up) still reaches a
// caught-up subscription whose poll interval is an hour, because the
// listener reconnects and wakes it.
func TestListenerReconnects(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	schema := db.schema(t, true)
	s := db.open(t, Config{Schema: schema, PollInterval: time.Hour})
	other := db.open(t, Config{Schema: schema})
	sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := other.Append(ctx, "l-1", rewind.Any, rewind.Event{Type: "T"}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sub); ev.Position != 1 {
		t.Fatalf("event at %d over NOTIFY", ev.Position)
	}
	for round := range 3 {
		db.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`)
		if _, err := other.Append(ctx, "l-1", rewind.Any, rewind.Event{Type: "T"}); err != nil {
			t.Fatal(err)
		}
		if ev := next(t, sub); ev.Position != rewind.Position(round+2) {
			t.Fatalf("round %d: event at %d", round, ev.Position)
		}
	}
}

// TestRacingIDsAcrossStreams: the same batch sent at once to different
// streams is written once; every other sender gets a conflict (another
// stream) or a duplicate (the winner's stream), never a second copy.
func TestRacingIDsAcrossStreams(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	ctx := context.Background()
	for round := range 20 {
		batch := []rewind.Event{{ID: uuid.New(), Type: "T"}, {ID: uuid.New(), Type: "T"}}
		type result struct {
			stream string
			res    rewind.AppendResult
			err    error
		}
		results := make([]result, 8)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				stream := fmt.Sprintf("race-%d-%d", round, i%4)
				res, err := s.Append(ctx, stream, rewind.NoStream, batch...)
				results[i] = result{stream, res, err}
			})
		}
		wg.Wait()
		winner := ""
		for _, r := range results {
			if r.err == nil && !r.res.Duplicate {
				if winner != "" {
					t.Fatalf("round %d: two appends of the same ids wrote: %s and %s", round, winner, r.stream)
				}
				winner = r.stream
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no append wrote: %+v", round, results)
		}
		for _, r := range results {
			switch {
			case r.stream == winner && (r.err != nil || r.res.FirstVersion != 1):
				t.Fatalf("round %d: an append to the winning stream: %+v, %v", round, r.res, r.err)
			case r.stream != winner && !errors.Is(r.err, rewind.ErrIdempotencyConflict):
				t.Fatalf("round %d: an append to another stream: %+v, %v; want a conflict", round, r.res, r.err)
			}
		}
		for i := range 4 {
			stream := fmt.Sprintf("race-%d-%d", round, i)
			_, err := s.StreamInfo(ctx, stream)
			if (stream == winner) != (err == nil) {
				t.Fatalf("round %d: stream %s: %v", round, stream, err)
			}
		}
	}
}

// TestCancelledMidAppend: an append whose context ends while PostgreSQL
// still works on it fails with the context's error or as outcome unknown,
// and a retry with the same ids leaves exactly one copy.
func TestCancelledMidAppend(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	installFates(s)
	for round := range 5 {
		evs := []rewind.Event{{ID: uuid.New(), Type: "T"}, {ID: uuid.New(), Type: "T"}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(10+round*20)*time.Millisecond)
		_, err := s.Append(withFate(ctx, fate{sleep: 100 * time.Millisecond}), "c-1", rewind.Any, evs...)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, rewind.ErrOutcomeUnknown) {
			t.Fatalf("round %d: append cancelled mid-way: %v, want the deadline or outcome unknown", round, err)
		}
		res, err := s.Append(context.Background(), "c-1", rewind.Any, evs...)
		if err != nil {
			t.Fatalf("round %d: retry: %v", round, err)
		}
		got, err := s.ReadStream(context.Background(), "c-1", rewind.ReadStreamOptions{})
		if err != nil || len(got) != 2*(round+1) || got[len(got)-1].ID != evs[1].ID {
			t.Fatalf("round %d: retry %+v left %d events (%v), want one copy of each append", round, res, len(got), err)
		}
	}
}
