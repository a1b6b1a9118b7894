package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/pgtest"
)

func read(t *testing.T, s throttle.Signal) throttle.Reading {
	t.Helper()
	r, err := s.Read(t.Context())
	if err != nil {
		t.Fatalf("%s: %v", s.Name(), err)
	}
	return r
}

func TestLoadSignalSeesLockWaitsActiveBackendsAndLongTransactions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	db.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v int)")
	db.Exec(t, "INSERT INTO t VALUES (1, 0)")
	ctx := t.Context()
	// A transaction held open, with a row lock…
	holder, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(context.WithoutCancel(ctx))
	if _, err := holder.Exec(ctx, "UPDATE t SET v = 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	// …and a session waiting for it.
	waiter := make(chan error, 1)
	go func() {
		_, err := db.Pool.Exec(ctx, "UPDATE t SET v = 2 WHERE id = 1")
		waiter <- err
	}()
	l := &throttle.Load{DB: db.Pool, LockWaits: throttle.Threshold{Max: 1}}
	deadline := time.Now().Add(10 * time.Second)
	for read(t, l).Util < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the load signal never saw the lock wait")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := read(t, l); !strings.Contains(r.Reason, "waiting for locks") || r.Critical {
		t.Errorf("lock wait reading: %+v", r)
	}
	if r := read(t, &throttle.Load{DB: db.Pool, LockWaits: throttle.Threshold{Max: 1, Critical: 1}}); !r.Critical {
		t.Errorf("lock wait at critical 1: %+v, want critical", r)
	}
	// The waiting UPDATE is an active backend.
	if r := read(t, &throttle.Load{DB: db.Pool, Active: throttle.Threshold{Max: 1}}); r.Util < 1 || !strings.Contains(r.Reason, "active backends") {
		t.Errorf("active backends reading: %+v", r)
	}
	// The holder's transaction is older than a millisecond.
	time.Sleep(20 * time.Millisecond)
	r := read(t, &throttle.Load{DB: db.Pool, XactAge: time.Millisecond, XactAgeCritical: time.Hour * 24 * 365})
	if r.Util < 1 || r.Critical || !strings.Contains(r.Reason, "oldest transaction") {
		t.Errorf("transaction age reading: %+v", r)
	}
	holder.Rollback(ctx)
	if err := <-waiter; err != nil {
		t.Fatal(err)
	}
}

func TestReplicationLagWithoutReplicasIsIdle(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	// The test server has no replicas: pg_stat_replication is empty.
	r := read(t, &throttle.ReplicationLag{DB: db.Pool, Max: 1500 * time.Millisecond, Critical: time.Minute})
	if r.Util != 0 || r.Critical {
		t.Errorf("no replicas: %+v, want idle", r)
	}
}

func TestHeartbeatLag(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	db.Exec(t, "CREATE TABLE hb (at timestamptz)")
	hb := &throttle.HeartbeatLag{DB: db.Pool, Table: "public.hb", Max: time.Second, Critical: time.Hour}
	if _, err := hb.Read(t.Context()); err == nil || !strings.Contains(err.Error(), "no heartbeat") {
		t.Errorf("empty heartbeat table: %v, want an error", err)
	}
	db.Exec(t, "INSERT INTO hb VALUES (clock_timestamp() - interval '3 seconds')")
	if r := read(t, hb); r.Util < 1 || r.Critical || !strings.Contains(r.Reason, "heartbeat lag") {
		t.Errorf("a 3s old heartbeat against max 1s: %+v", r)
	}
	hb.Critical = 2 * time.Second
	if r := read(t, hb); !r.Critical {
		t.Errorf("a 3s old heartbeat against critical 2s: %+v, want critical", r)
	}
	if _, err := (&throttle.HeartbeatLag{DB: db.Pool, Table: "nope", Max: time.Second}).Read(t.Context()); err == nil {
		t.Error("a missing heartbeat table read without error")
	}
	// A heartbeat ahead of the replica's clock by less than the max is
	// skew and reads as no lag; by more, the clocks disagree too much for
	// any lag to be read (it would hide a real one): unreadable.
	db.Exec(t, "TRUNCATE hb")
	db.Exec(t, "INSERT INTO hb VALUES (clock_timestamp() + interval '200 milliseconds')")
	if r := read(t, hb); r.Util != 0 || r.Critical {
		t.Errorf("a heartbeat 200ms ahead: %+v, want no lag", r)
	}
	db.Exec(t, "INSERT INTO hb VALUES (clock_timestamp() + interval '1 hour')")
	if _, err := hb.Read(t.Context()); err == nil || !strings.Contains(err.Error(), "ahead of") {
		t.Errorf("a heartbeat an hour ahead: %v, want it unreadable", err)
	}
}

func TestQuerySignal(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	q := &throttle.Query{Label: "five", DB: db.Pool, SQL: "SELECT 5", Threshold: throttle.Threshold{Max: 4}}
	if r := read(t, q); r.Util < 1 || r.Critical || !strings.Contains(r.Reason, "query:five 5") {
		t.Errorf("5 against max 4: %+v", r)
	}
	q.Critical = 5
	if r := read(t, q); !r.Critical {
		t.Errorf("5 against critical 5: %+v, want critical", r)
	}
	q.Max, q.Critical = 10, 0
	if r := read(t, q); r.Util != 0.5 || r.Reason != "" {
		t.Errorf("5 against max 10: %+v, want util 0.5", r)
	}
	for _, bad := range []string{"SELEC 1", "SELECT NULL", "SELECT 1 WHERE false", "SELECT 'x'"} {
		if _, err := (&throttle.Query{Label: "bad", DB: db.Pool, SQL: bad, Threshold: throttle.Threshold{Max: 1}}).Read(t.Context()); err == nil {
			t.Errorf("query %q read without error", bad)
		}
	}
}

func TestHTTPSignalContract(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/number":
			fmt.Fprintln(w, r.URL.Query().Get("v"))
		case "/busy":
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintln(w, "queue is deep")
		case "/unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/locked":
			w.WriteHeader(http.StatusLocked)
			fmt.Fprintln(w, "maintenance window")
		case "/long":
			fmt.Fprint(w, strings.Repeat("9", 500)+"x")
		case "/broken":
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	h := func(path string, th throttle.Threshold) *throttle.HTTP {
		return &throttle.HTTP{Label: "ops", URL: srv.URL + path, Threshold: th}
	}
	if r := read(t, h("/ok", throttle.Threshold{})); r.Util != 0 || r.Critical {
		t.Errorf("200: %+v, want go on", r)
	}
	if r := read(t, h("/number?v=0.25", throttle.Threshold{Max: 1})); r.Util != 0.25 {
		t.Errorf("200 0.25 against max 1: %+v", r)
	}
	if r := read(t, h("/number?v=7", throttle.Threshold{Max: 1, Critical: 5})); !r.Critical {
		t.Errorf("200 7 against critical 5: %+v, want critical", r)
	}
	if r := read(t, h("/busy", throttle.Threshold{})); r.Util < 1 || r.Critical || !strings.Contains(r.Reason, "queue is deep") {
		t.Errorf("429: %+v, want at max with the body's reason", r)
	}
	if r := read(t, h("/unavailable", throttle.Threshold{})); r.Util < 1 || r.Critical {
		t.Errorf("503: %+v, want at max", r)
	}
	if r := read(t, h("/locked", throttle.Threshold{})); !r.Critical || !strings.Contains(r.Reason, "maintenance window") {
		t.Errorf("423: %+v, want critical", r)
	}
	for _, bad := range []*throttle.HTTP{h("/broken", throttle.Threshold{}), h("/ok", throttle.Threshold{Max: 1})} {
		if _, err := bad.Read(t.Context()); err == nil {
			t.Errorf("%s read without error", bad.URL)
		}
	}
	// A body that is not one number is quoted whole (truncated), not only
	// its first line: "0.1\njunk" was reported as "0.1", not a number.
	if _, err := h("/number?v=0.1%0Ajunk", throttle.Threshold{Max: 1}).Read(t.Context()); err == nil || !strings.Contains(err.Error(), `"0.1\njunk"`) {
		t.Errorf("200 \"0.1\\njunk\": %v, want the whole body quoted", err)
	}
	if _, err := h("/long", throttle.Threshold{Max: 1}).Read(t.Context()); err == nil || len(err.Error()) > 400 {
		t.Errorf("a long bad body: %v, want it quoted truncated", err)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if _, err := (&throttle.HTTP{Label: "gone", URL: closed.URL}).Read(t.Context()); err == nil {
		t.Error("a refused connection read without error")
	}
}

func TestFileSignal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := &throttle.File{Path: filepath.Join(dir, "throttle"), Critical: filepath.Join(dir, "pause")}
	if r := read(t, f); r.Util != 0 {
		t.Errorf("no files: %+v", r)
	}
	os.WriteFile(f.Path, nil, 0o600)
	if r := read(t, f); r.Util < 1 || r.Critical {
		t.Errorf("flag file: %+v, want at max", r)
	}
	os.WriteFile(f.Critical, nil, 0o600)
	if r := read(t, f); !r.Critical {
		t.Errorf("critical file: %+v, want critical", r)
	}
	// A flag file in a directory that does not exist could never be
	// created: it cannot be read (an outside test saw it count as absent).
	for _, typo := range []*throttle.File{{Path: filepath.Join(dir, "nosuchdir", "throttle")}, {Critical: filepath.Join(dir, "nosuchdir", "x", "pause")}} {
		if _, err := typo.Read(t.Context()); err == nil {
			t.Errorf("flag file %+v in a missing directory read without error", typo)
		}
	}
}

// flip is a signal that reads as its fields say, counting reads.
type flip struct {
	name  string
	reads int
	at    func(n int) (throttle.Reading, error)
}

func (f *flip) Name() string { return f.name }
func (f *flip) Read(context.Context) (throttle.Reading, error) {
	f.reads++
	return f.at(f.reads)
}

func TestThrottlerWaitsWhileASignalIsAtItsMax(t *testing.T) {
	t.Parallel()
	s := &flip{name: "busy", at: func(n int) (throttle.Reading, error) {
		if n <= 3 {
			return throttle.Reading{Util: 1.2, Reason: "busy"}, nil
		}
		return throttle.Reading{Util: 0.5}, nil
	}}
	thr := newThrottler(t, throttle.Config{Signals: []throttle.Signal{s}, Interval: time.Millisecond, ReadEvery: -1})
	if err := thr.Wait(t.Context(), 100); err != nil {
		t.Fatal(err)
	}
	st := thr.Status()
	if s.reads != 4 || st.Waits != 1 || st.Throttled <= 0 || st.Rows != 100 || st.Reason != "" {
		t.Errorf("reads %d, status %+v: want 4 reads, one wait, 100 rows, no reason left", s.reads, st)
	}
}

func TestThrottlerPausesOnACriticalOrUnreadableSignal(t *testing.T) {
	t.Parallel()
	critical := &flip{name: "query:depth", at: func(int) (throttle.Reading, error) {
		return throttle.Reading{Util: 3, Critical: true, Reason: "depth 30 at or over its critical 20"}, nil
	}}
	err := newThrottler(t, throttle.Config{Signals: []throttle.Signal{critical}}).Wait(t.Context(), 10)
	var pe *throttle.PauseError
	if !errors.As(err, &pe) || pe.Signal != "query:depth" || pe.Unreadable || !errors.Is(err, throttle.ErrPaused) {
		t.Errorf("critical: %v, want a PauseError naming query:depth", err)
	}
	broken := errors.New("connection refused")
	unreadable := &flip{name: "http:ops", at: func(int) (throttle.Reading, error) { return throttle.Reading{}, broken }}
	err = newThrottler(t, throttle.Config{Signals: []throttle.Signal{unreadable}}).Wait(t.Context(), 10)
	if !errors.As(err, &pe) || pe.Signal != "http:ops" || !pe.Unreadable || !errors.Is(err, broken) ||
		!strings.Contains(err.Error(), "fails closed") {
		t.Errorf("unreadable: %v, want a PauseError naming http:ops, failing closed", err)
	}
	// With a grace of one read, one failure waits and the next read goes on.
	once := &flip{name: "file", at: func(n int) (throttle.Reading, error) {
		if n == 1 {
			return throttle.Reading{}, broken
		}
		return throttle.Reading{}, nil
	}}
	thr := newThrottler(t, throttle.Config{Signals: []throttle.Signal{once}, Grace: 1, Interval: time.Millisecond})
	if err := thr.Wait(t.Context(), 10); err != nil || once.reads != 2 {
		t.Errorf("one transient failure with grace 1: %v after %d reads, want nil after 2", err, once.reads)
	}
	// Two in a row pause even with a grace of one.
	twice := &flip{name: "file", at: func(int) (throttle.Reading, error) { return throttle.Reading{}, broken }}
	thr = newThrottler(t, throttle.Config{Signals: []throttle.Signal{twice}, Grace: 1, Interval: time.Millisecond})
	if err := thr.Wait(t.Context(), 10); !errors.As(err, &pe) || twice.reads != 2 {
		t.Errorf("two failures with grace 1: %v after %d reads, want a pause after 2", err, twice.reads)
	}
}
