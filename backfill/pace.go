package backfill

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind/backfill/throttle"
)

// Pacing: before each chunk a worker waits on the run's throttle, and takes
// the chunk's size from its sizer (see package throttle). One throttle and
// one sizer serve all the workers of a process on a run, so a max rate is
// per run per process. What the throttle did is written, every heartbeat,
// to rewind.backfill_throttle in the target database, one row per process
// on the run, for status and list in other processes.

// throttleSchema holds each process's throttle state on a run.
const throttleSchema = `CREATE TABLE IF NOT EXISTS rewind.backfill_throttle (
		run_id       text NOT NULL,
		process      text NOT NULL,
		reason       text NOT NULL DEFAULT '',
		throttled_ms bigint NOT NULL DEFAULT 0,
		waits        bigint NOT NULL DEFAULT 0,
		chunk_size   int NOT NULL DEFAULT 0,
		updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
		PRIMARY KEY (run_id, process))`

// ThrottleStatus is what the throttle did on a run, from every process
// that applied it (status and list fill it).
type ThrottleStatus struct {
	// Reason is why the run's workers wait now ("" when they do not, or
	// the run is not running).
	Reason string `json:"reason,omitempty"`
	// ThrottledSeconds is the time workers spent waiting, summed over
	// workers and processes.
	ThrottledSeconds float64 `json:"throttled_seconds"`
	// Waits counts the chunks that waited.
	Waits int64 `json:"waits"`
	// ChunkSize is the effective chunk size, as the last process to
	// report it chose it.
	ChunkSize int `json:"chunk_size"`
	// PausedBy names the signal that paused the run, when a throttle
	// signal did (the run is then paused with the reason in Error).
	PausedBy string `json:"paused_by,omitempty"`
}

// ThrottlePausedError is a run paused by its throttle: a signal crossed
// its critical threshold or could not be read. The run is in state paused;
// resume continues it.
type ThrottlePausedError struct {
	RunID string
	// Undoes is the run a paused rollback undoes ("" for a run of a job).
	Undoes string
	*throttle.PauseError
}

func (e *ThrottlePausedError) Error() string {
	how := "rewind backfill resume " + e.RunID
	if e.Undoes != "" {
		how = "rewind backfill rollback " + e.Undoes + " --execute' (with the same --chunks and --force) or '" + how
	}
	return fmt.Sprintf("run %s paused: %s; nothing after the last committed chunk was written. Once the signal is "+
		"below its critical threshold (or readable again), continue with '%s'", e.RunID, e.PauseError.Error(), how)
}

// ErrThrottled is matched by a *ThrottlePausedError.
var ErrThrottled = &codedError{"backfill: run paused by its throttle", nil}

// Is matches ErrThrottled, and what the PauseError matches.
func (e *ThrottlePausedError) Is(target error) bool { return target == ErrThrottled }

// Unwrap gives the PauseError.
func (e *ThrottlePausedError) Unwrap() error { return e.PauseError }

// pacer is one process's throttle and sizer on a run.
type pacer struct {
	thr     *throttle.Throttler
	sizer   *throttle.Sizer
	release func()
	process string

	stop chan struct{}
	done sync.WaitGroup
	once sync.Once

	mu        sync.Mutex // guards the overrides applied
	rate      *float64
	chunkTime *time.Duration
	// ownRate and ownChunkTime are the run's own (job file, flags), put
	// back when an override is cleared.
	ownRate      float64
	ownChunkTime time.Duration
}

// newPacer starts the pacing of run by this process: thr, or the default
// throttle on the target when nil; its state is reported every heartbeat.
func (r *Runner) newPacer(p *prepared, run *Run, thr *throttle.Throttler) (*pacer, error) {
	release := func() {}
	if thr == nil {
		var err error
		if thr, release, err = (throttle.Spec{}).Build(r.cfg.DB, throttle.Config{Logger: r.cfg.Logger}); err != nil {
			return nil, err
		}
	}
	pc := &pacer{thr: thr, sizer: thr.NewSizer(p.job.ChunkSize, defaultChunk), release: release,
		process: owner() + "/" + uuid.NewString()[:4], stop: make(chan struct{})}
	pc.ownRate, pc.ownChunkTime = thr.MaxRate(), pc.sizer.Target()
	pc.done.Go(func() {
		t := time.NewTicker(r.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-pc.stop:
				return
			case <-t.C:
				pc.report(r, run)
			}
		}
	})
	return pc, nil
}

// defaultChunk is the first chunk's size when it adapts, and a job's
// chunk size when it does not say.
const defaultChunk = 1000

// close stops the reports, writes the last one and releases the
// throttle's own resources.
func (pc *pacer) close(r *Runner, run *Run) {
	pc.once.Do(func() {
		close(pc.stop)
		pc.done.Wait()
		pc.report(r, run)
		pc.release()
	})
}

// report writes this process's throttle state on run.
func (pc *pacer) report(r *Runner, run *Run) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := pc.thr.Status()
	_, err := r.cfg.DB.Exec(ctx, `INSERT INTO rewind.backfill_throttle (run_id, process, reason, throttled_ms, waits, chunk_size)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, process) DO UPDATE SET reason = EXCLUDED.reason,
		throttled_ms = EXCLUDED.throttled_ms, waits = EXCLUDED.waits, chunk_size = EXCLUDED.chunk_size, updated_at = clock_timestamp()`,
		run.ID, pc.process, s.Reason, s.Throttled.Milliseconds(), s.Waits, pc.sizer.Size())
	if err != nil {
		r.cfg.Logger.Warn("backfill: could not record the throttle's state", "run", run.ID, "error", err)
	}
}

// wait waits for the throttle before a chunk of size rows; boundary is
// the worker's chunk boundary, called while it waits.
func (pc *pacer) wait(ctx context.Context, size int, took time.Duration, boundary func() error) error {
	if err := pc.thr.WaitAfter(ctx, size, took, boundary); err != nil {
		if ctx.Err() != nil {
			return cause(ctx)
		}
		return err
	}
	return nil
}

// pauseThrottled pauses run, which this process holds, because its
// throttle said so: through the run's control record (kind throttle,
// paused at once, as a canary's pause: workers of other processes wait at
// their next chunk boundary and a chunk of theirs in flight rolls back),
// the run's state paused with the reason in its error (class throttle),
// and a run.paused entry naming the signal, in one transaction.
func (r *Runner) pauseThrottled(ctx context.Context, p *prepared, run *Run, pe *throttle.PauseError) error {
	attrs := map[string]string{"reason_kind": string(PauseThrottle), "signal": pe.Signal, "reason": pe.Reason,
		"unreadable": fmt.Sprint(pe.Unreadable)}
	e := r.entry(p.job, "run.paused", run.ID, attrs, nil)
	e.Message = pe.Error()
	// The run's error is the pause's whole sentence (status reads the
	// signal's name from it), not the database error a query signal met.
	re := &RunError{RunID: run.ID, Class: throttleClass, Err: errors.New(pe.Error())}
	if err := r.owning(ctx, run, func(tx pgx.Tx) error {
		if _, err := setControl(ctx, tx, run.ID, requestPause, PauseReason{Kind: PauseThrottle, Detail: pe.Error()},
			r.cfg.Actor, true, r.cfg.LeaseTimeout); err != nil {
			return err
		}
		return r.ledger.end(ctx, tx, run, Paused, re, e)
	}); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
		return errors.Join(&ThrottlePausedError{RunID: run.ID, Undoes: run.Undoes, PauseError: pe}, err)
	}
	run.State = Paused
	return &ThrottlePausedError{RunID: run.ID, Undoes: run.Undoes, PauseError: pe}
}

// apply applies the overrides set on the run (Runner.Set: max rate, chunk
// time), as a worker read them at a chunk boundary. An override stays in
// force until it is set again.
func (pc *pacer) apply(c *Control) {
	if c == nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch {
	case c.MaxRate != nil && (pc.rate == nil || *pc.rate != *c.MaxRate):
		if pc.thr.SetMaxRate(*c.MaxRate) == nil {
			v := *c.MaxRate
			pc.rate = &v
		}
	case c.MaxRate == nil && pc.rate != nil: // cleared: the run's own rate again
		if pc.thr.SetMaxRate(pc.ownRate) == nil {
			pc.rate = nil
		}
	}
	switch {
	case c.ChunkTime != nil && (pc.chunkTime == nil || *pc.chunkTime != *c.ChunkTime):
		pc.sizer.SetTarget(*c.ChunkTime)
		v := *c.ChunkTime
		pc.chunkTime = &v
	case c.ChunkTime == nil && pc.chunkTime != nil:
		pc.sizer.SetTarget(pc.ownChunkTime)
		pc.chunkTime = nil
	}
}

// throttleClass is the error class of a run its throttle paused.
const throttleClass Class = "throttle"

// throttleStatus fills run.Throttle from the target database.
func (l *ledger) throttleStatus(ctx context.Context, run *Run) error {
	var s ThrottleStatus
	var ms int64
	var reason *string
	var size *int
	err := l.work.QueryRow(ctx, `SELECT coalesce(sum(throttled_ms), 0)::bigint, coalesce(sum(waits), 0)::bigint,
		(SELECT reason FROM rewind.backfill_throttle WHERE run_id = $1 AND reason <> '' ORDER BY updated_at DESC LIMIT 1),
		(SELECT chunk_size FROM rewind.backfill_throttle WHERE run_id = $1 ORDER BY updated_at DESC LIMIT 1)
		FROM rewind.backfill_throttle WHERE run_id = $1`, run.ID).Scan(&ms, &s.Waits, &reason, &size)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000"): // a ledger of an earlier version
		return nil
	case err != nil:
		return fmt.Errorf("read the throttle of run %s: %w", run.ID, err)
	}
	if size == nil && run.ErrorClass != string(throttleClass) {
		return nil // never paced
	}
	s.ThrottledSeconds = float64(ms) / 1000
	if size != nil {
		s.ChunkSize = *size
	}
	if reason != nil && run.State == Running {
		s.Reason = *reason
	}
	if run.State == Paused && run.ErrorClass == string(throttleClass) {
		s.PausedBy, s.Reason = pausedBy(run.Error), run.Error
	}
	run.Throttle = &s
	return nil
}

// pausedBy reads the signal's name from a pause's message.
func pausedBy(msg string) string {
	var name string
	if _, err := fmt.Sscanf(msg, "throttle signal %s paused", &name); err != nil {
		return ""
	}
	return name
}
