package backfill_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// A critical signal pauses the run before the next chunk: after the chunk
// during which the signal crossed, no chunk commits. The run is paused
// with the signal's name, the ledger says so, status shows it, and resume
// finishes it with each row changed once.
func TestCriticalSignalPausesTheRunWithinOneChunk(t *testing.T) {
	t.Parallel()
	critical := filepath.Join(t.TempDir(), "pause")
	var chunks, flippedAt atomic.Int64
	b := setup(t, 2000, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			chunks.Store(p.Chunks)
			if p.Chunks == 5 { // the signal crosses during chunk 5's commit
				os.WriteFile(critical, nil, 0o600)
				flippedAt.Store(p.Chunks)
			}
		}
	})
	thr, err := throttle.New(throttle.Config{Signals: []throttle.Signal{&throttle.File{Critical: critical}}, ReadEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.runner.Apply(t.Context(), countJob(100), backfill.ApplyOptions{Throttle: thr})
	var tp *backfill.ThrottlePausedError
	if !errors.As(err, &tp) || tp.Signal != "file" || !errors.Is(err, backfill.ErrThrottled) {
		t.Fatalf("apply: %v, want the run paused by signal file", err)
	}
	if after := chunks.Load() - flippedAt.Load(); after > 1 {
		t.Errorf("%d chunks committed after the signal crossed, want at most 1", after)
	}
	run, err := b.runner.Status(t.Context(), res.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.State != backfill.Paused || run.Throttle == nil || run.Throttle.PausedBy != "file" ||
		!strings.Contains(run.Throttle.Reason, "critical flag file") {
		t.Errorf("status: state %s, throttle %+v; want paused by file", run.State, run.Throttle)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE kind = 'backfill.run.paused' AND (body::jsonb)->'attrs'->>'signal' = 'file' AND (body::jsonb)->'attrs'->>'reason_kind' = 'throttle'"); n != 1 {
		t.Errorf("%d run.paused entries naming the signal, want 1", n)
	}
	os.Remove(critical)
	if _, err := b.runner.Resume(t.Context(), res.Run.ID, countJob(100), backfill.ApplyOptions{Throttle: thr}); err != nil {
		t.Fatal(err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Errorf("%d rows not changed exactly once after the resume", n)
	}
}

// A signal that cannot be read pauses the run (fail closed), naming it:
// bad SQL, an endpoint answering 500, one refusing connections, a replica
// that cannot be reached. Nothing is written by the paused run.
func TestUnreadableSignalPausesTheRun(t *testing.T) {
	t.Parallel()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer broken.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, c := range []struct {
		name   string
		spec   throttle.Spec
		signal string
	}{
		{"bad sql", throttle.Spec{Queries: []throttle.QuerySpec{{Name: "depth", SQL: "SELECT count(*) FROM no_such_table", Max: 10}}}, "query:depth"},
		{"http 500", throttle.Spec{HTTP: []throttle.HTTPSpec{{Name: "ops", URL: broken.URL}}}, "http:ops"},
		{"http refused", throttle.Spec{HTTP: []throttle.HTTPSpec{{Name: "ops", URL: gone.URL}}}, "http:ops"},
		{"replica unreachable", throttle.Spec{Heartbeats: []throttle.HeartbeatSpec{{Name: "r2",
			DSN: "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=2", Table: "hb", Max: time.Second}}}, "heartbeat_lag:r2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 300)
			thr, release, err := c.spec.Build(b.db.Pool, throttle.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			res, err := b.runner.Apply(t.Context(), countJob(100), backfill.ApplyOptions{Throttle: thr})
			var tp *backfill.ThrottlePausedError
			if !errors.As(err, &tp) || tp.Signal != c.signal || !tp.Unreadable {
				t.Fatalf("apply: %v, want paused by unreadable %s", err, c.signal)
			}
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 0 {
				t.Errorf("%d rows changed by a run paused before its first chunk", n)
			}
			run, err := b.runner.Status(t.Context(), res.Run.ID)
			if err != nil {
				t.Fatal(err)
			}
			if run.State != backfill.Paused || run.Throttle == nil || run.Throttle.PausedBy != c.signal {
				t.Errorf("status: %s %+v", run.State, run.Throttle)
			}
		})
	}
}

// A max rate is respected: the limiter admitted every row the run
// changed, and the run waited for it (time throttled is recorded with the
// rate as its reason while it waits). Chunk sizes adapt when the job does
// not fix them, and status reports the size. The rate is low enough that
// a run on a loaded machine still outruns it (at 2,000 rows/s, a run slowed
// to 600 rows/s under load never waited, and the test failed).
func TestMaxRateAndAdaptiveChunksShowInStatus(t *testing.T) {
	t.Parallel()
	b := setup(t, 600, func(c *backfill.Config) { c.Heartbeat = 50 * time.Millisecond; c.LeaseTimeout = time.Second })
	thr, err := throttle.New(throttle.Config{MaxRate: 150, MinChunk: 50, MaxChunk: 150}) // burst: one second, 150 rows
	if err != nil {
		t.Fatal(err)
	}
	job := countJob(0) // adaptive
	res, err := b.runner.Apply(t.Context(), job, backfill.ApplyOptions{Throttle: thr})
	if err != nil {
		t.Fatal(err)
	}
	st := thr.Status()
	if st.Rows < 600 || st.Waits == 0 || st.Throttled <= 0 {
		t.Errorf("throttle status %+v: want at least 600 rows admitted through waits", st)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Errorf("%d rows not changed once", n)
	}
	// Chunks of an adaptive job stay within the sizer's bounds.
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks WHERE run_id = $1 AND rows_seen > 150", res.Run.ID); n != 0 {
		t.Errorf("%d chunks over max_chunk 150", n)
	}
	run, err := b.runner.Status(t.Context(), res.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Throttle == nil || run.Throttle.ChunkSize < 50 || run.Throttle.ChunkSize > 150 || run.Throttle.ThrottledSeconds <= 0 {
		t.Errorf("status throttle %+v: want the chunk size and the time throttled", run.Throttle)
	}
}

// The overrides an operator sets on a run (the control record's max_rate
// and chunk_time, as 'rewind backfill set' stores them) are applied at the
// next chunk boundary, by the running process.
func TestOverridesSetOnTheRunApplyAtTheNextBoundary(t *testing.T) {
	t.Parallel()
	var set atomic.Bool
	var b *bundle
	b = setup(t, 1000, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			if p.Chunks == 2 && !set.Swap(true) {
				b.db.Exec(t, `INSERT INTO rewind.backfill_control (run_id, max_rate, chunk_time) VALUES ($1, 50000, '200ms')
					ON CONFLICT (run_id) DO UPDATE SET max_rate = 50000, chunk_time = '200ms'`, p.RunID)
			}
		}
	})
	thr, err := throttle.New(throttle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.runner.Apply(t.Context(), countJob(100), backfill.ApplyOptions{Throttle: thr}); err != nil {
		t.Fatal(err)
	}
	if got := thr.MaxRate(); got != 50000 {
		t.Errorf("max rate after the override: %g, want 50000", got)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Errorf("%d rows not changed once", n)
	}
}

// An override cleared (set --max-rate off, --chunk-time off) gives the run
// its own rate back at the next boundary: an outside test saw the process
// keep pacing at the cleared override.
func TestAClearedOverrideGivesTheRunItsOwnRateBack(t *testing.T) {
	t.Parallel()
	var b *bundle
	rates := map[int64]float64{}
	var thr *throttle.Throttler
	b = setup(t, 1000, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			rates[p.Chunks] = thr.MaxRate()
			switch p.Chunks {
			case 2:
				b.db.Exec(t, `INSERT INTO rewind.backfill_control (run_id, max_rate) VALUES ($1, 50000)
					ON CONFLICT (run_id) DO UPDATE SET max_rate = 50000`, p.RunID)
			case 5:
				b.db.Exec(t, `UPDATE rewind.backfill_control SET max_rate = NULL WHERE run_id = $1`, p.RunID)
			}
		}
	})
	var err error
	if thr, err = throttle.New(throttle.Config{MaxRate: 900000}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.runner.Apply(t.Context(), countJob(100), backfill.ApplyOptions{Throttle: thr}); err != nil {
		t.Fatal(err)
	}
	if rates[4] != 50000 || rates[7] != 900000 || thr.MaxRate() != 900000 {
		t.Errorf("max rate after chunks 4 and 7 and at the end: %g, %g, %g; want 50000 (the override), then 900000 (the run's own)",
			rates[4], rates[7], thr.MaxRate())
	}
}
