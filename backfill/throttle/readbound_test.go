package throttle_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/pgtest"
)

// A signal whose read hangs (a query stuck behind a lock or sleeping) must
// not hang the run: a read that takes longer than ReadTimeout cannot be
// read, and the throttle fails closed. (An outside test saw a query signal
// of pg_sleep(3600) hold a run forever, its status saying running.)
func TestASignalThatHangsCannotBeRead(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	q := &throttle.Query{Label: "slow", DB: db.Pool, SQL: "SELECT 1 FROM pg_sleep(30)", Threshold: throttle.Threshold{Max: 5}}
	thr := newThrottler(t, throttle.Config{Signals: []throttle.Signal{q}, ReadTimeout: 200 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- thr.Wait(t.Context(), 10) }()
	select {
	case err := <-done:
		var pe *throttle.PauseError
		if !errors.As(err, &pe) || !pe.Unreadable || pe.Signal != "query:slow" || !strings.Contains(err.Error(), "did not answer") {
			t.Fatalf("hanging query: %v, want an unreadable PauseError naming query:slow", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the throttle still waits on a hanging query")
	}
}

// NaN and ±Inf are not readings: a query or endpoint answering one cannot
// be read (fail closed), rather than counting as healthy.
func TestANonFiniteReadingCannotBeRead(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for _, sql := range []string{"SELECT 'NaN'::float8", "SELECT 'NaN'::numeric", "SELECT '-Infinity'::float8", "SELECT 'Infinity'::float8"} {
		for _, th := range []throttle.Threshold{{Max: 5, Critical: 10}, {Critical: 10}, {Max: 5}} {
			q := &throttle.Query{Label: "nan", DB: db.Pool, SQL: sql, Threshold: th}
			err := newThrottler(t, throttle.Config{Signals: []throttle.Signal{q}}).Wait(t.Context(), 10)
			var pe *throttle.PauseError
			if !errors.As(err, &pe) || !pe.Unreadable {
				t.Errorf("%s against %+v: %v, want unreadable", sql, th, err)
			}
		}
	}
}

// A signal that turns critical while a worker sleeps for rate tokens
// pauses before the chunk: the signals are read again after the rate
// wait (an outside test saw a chunk start up to a second after the flip).
func TestACriticalSignalDuringARateWaitPausesBeforeTheChunk(t *testing.T) {
	t.Parallel()
	s := &flip{name: "file", at: func(n int) (throttle.Reading, error) {
		if n <= 2 {
			return throttle.Reading{}, nil
		}
		return throttle.Reading{Util: 1, Critical: true, Reason: "pause file exists"}, nil
	}}
	thr := newThrottler(t, throttle.Config{Signals: []throttle.Signal{s}, MaxRate: 10000, ReadEvery: -1})
	if err := thr.Wait(t.Context(), 10000); err != nil { // the bucket's second
		t.Fatal(err)
	}
	err := thr.Wait(t.Context(), 500) // waits for tokens; the signal flips meanwhile
	var pe *throttle.PauseError
	if !errors.As(err, &pe) || pe.Signal != "file" || s.reads != 3 {
		t.Fatalf("after a rate wait: %v after %d reads, want a PauseError from the third read", err, s.reads)
	}
}

// A wait going on counts in Status: a run waiting from its first chunk
// showed "throttled 0s (0 waits)" next to its reason (an outside test).
// Once the wait ends it is counted once, not twice.
func TestAnOngoingWaitCountsInStatus(t *testing.T) {
	t.Parallel()
	s := &flip{name: "file", at: func(int) (throttle.Reading, error) {
		return throttle.Reading{Util: 1, Reason: "flag file exists"}, nil
	}}
	thr := newThrottler(t, throttle.Config{Signals: []throttle.Signal{s}, Interval: time.Millisecond})
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- thr.Wait(ctx, 10) }()
	deadline := time.Now().Add(20 * time.Second)
	for st := thr.Status(); st.Waits != 1 || st.Throttled <= 0 || st.Reason == ""; st = thr.Status() {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("while a worker waits: %+v, want 1 wait, a time throttled and the reason", st)
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the wait ended with %v", err)
	}
	if st := thr.Status(); st.Waits != 1 || st.Throttled <= 0 || st.Reason != "" {
		t.Errorf("after the wait: %+v, want 1 wait and no reason", st)
	}
}

// A query the read gave up on does not go on in the database: the read's
// deadline ends it there too (pgx sends the server a cancel request when
// the context ends; a dropped connection alone would leave a sleeping
// backend running, as an outside test saw after killing the process).
func TestAQueryTheReadGaveUpOnEndsInTheDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	q := &throttle.Query{Label: "slow", DB: db.Pool, SQL: "SELECT 1 FROM pg_sleep(60)", Threshold: throttle.Threshold{Max: 5}}
	thr := newThrottler(t, throttle.Config{Signals: []throttle.Signal{q}, ReadTimeout: 300 * time.Millisecond})
	var pe *throttle.PauseError
	if err := thr.Wait(t.Context(), 10); !errors.As(err, &pe) || !pe.Unreadable {
		t.Fatalf("hanging query: %v, want unreadable", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%pg_sleep(60)%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backend(s) still run the query the read gave up on", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
