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

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// WorkOptions tune Work.
type WorkOptions struct {
	// Workers is how many workers this process runs, each leasing one
	// shard at a time. The run's own cap (ApplyOptions.Workers) bounds the
	// leases of all its processes together, so workers beyond it wait for
	// a free one. Defaults to 1; at most MaxWorkers.
	Workers int
	// Throttle paces this process's workers, as ApplyOptions.Throttle.
	Throttle *throttle.Throttler
}

// ErrRunNotRunning: `work` joins only a run that is running (or
// interrupted): a failed run is resumed first, and a run of an earlier
// version, which has no shards, is continued by resume alone.
var ErrRunNotRunning = &codedError{"backfill: run is not running", rewind.ErrWrongExpectedVersion}

// Work joins run id as this process's o.Workers workers: they lease the
// run's pending shards, one at a time each, and apply them until no shard
// is left (other processes — the one that started the run, other Work
// calls — work on the same run meanwhile). Then, if no process holds the
// run's lease, it records the run finished. job must be the run's job:
// same hash and binary. A worker whose shard is taken over (its process
// was frozen past LeaseTimeout) stops before its next commit, with
// ErrLeaseLost; a cancelled run stops the workers with ErrRunEnded.
func (r *Runner) Work(ctx context.Context, id string, job *Job, o WorkOptions) (*Result, error) {
	if o.Workers < 0 || o.Workers > MaxWorkers {
		return nil, &rewind.ValidationError{Field: "workers", Value: fmt.Sprint(o.Workers),
			Reason: fmt.Sprintf("must be from 1 to %d", MaxWorkers)}
	}
	p, err := r.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if run.JobName != job.Name {
		return nil, &rewind.ValidationError{Field: "job", Value: job.Name,
			Reason: fmt.Sprintf("run %s belongs to job %s", run.ID, run.JobName)}
	}
	switch run.State {
	case Finished, Cancelled:
		return nil, fmt.Errorf("%w: run %s is %s: it has no shard left to work on", ErrRunEnded, run.ID, run.State)
	case Failed:
		return nil, fmt.Errorf("%w: run %s failed (%s); workers join a running run only: fix the cause, then "+
			"'rewind backfill resume %s' continues it, and workers may join it again", ErrRunNotRunning, run.ID, run.Error, run.ID)
	case Paused:
		// A run paused through its control may be joined: the workers
		// wait at a chunk boundary until it is resumed.
		if c, err := readControl(ctx, r.cfg.DB, run.ID); err != nil || c.Requested != requestPause || c.Reason.Kind == PauseCanary {
			return nil, fmt.Errorf("%w: run %s is paused after its canary; workers join a running run only: "+
				"'rewind backfill promote %s' continues it, and workers may join it then", ErrRunNotRunning, run.ID, run.ID)
		}
	}
	if err := refuseDisabled(ctx, r.ledger.runs, run.JobName); err != nil {
		return nil, err
	}
	if err := checkRecorded(run, p); err != nil {
		return nil, err
	}
	// Workers join with the run's job and binary only: a run's chunks
	// are applied by one job and one binary, or by a resume that records
	// the change.
	if _, err := r.checkSameAs(run, p, false, "workers join only with the run's job and binary: to go on "+
		"with this one anyway, stop the run's processes (or wait for them to finish), then run 'rewind backfill resume "+
		run.ID+" --allow-changed-job' with it (the change is recorded); workers of this binary may join that"); err != nil {
		return nil, err
	}
	// A canary's rows are applied by the run's own process, in key order.
	if run.Canary, err = r.ledger.canary(ctx, r.ledger.runs, run.ID); err != nil {
		return nil, err
	}
	if run.Canary.applying() {
		return nil, fmt.Errorf("%w: run %s is applying its canary (its first %d rows, by its own process); workers may "+
			"join once its validations pass", ErrRunNotRunning, run.ID, run.Canary.Rows)
	}
	var shards int
	if err := r.cfg.DB.QueryRow(ctx, "SELECT count(*) FROM rewind.backfill_shards WHERE run_id = $1", run.ID).Scan(&shards); err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42P01" {
			shards = 0 // a target database of an earlier version
		} else {
			return nil, fmt.Errorf("read the shards of run %s: %w", run.ID, err)
		}
	}
	if shards == 0 {
		return nil, fmt.Errorf("%w: run %s was started by an earlier version of rewind and has no shards: it is continued "+
			"as one shard, by one process: 'rewind backfill resume %s'", ErrRunNotRunning, run.ID, run.ID)
	}
	present, err := r.presence(ctx, run)
	if err != nil {
		return nil, err
	}
	defer present()
	res := &Result{Run: run}
	if err := ensureControl(ctx, r.cfg.DB, run.ID); err != nil {
		return res, err
	}
	t := newTally(run, res, r.cfg.Progress)
	if t.pace, err = r.newPacer(p, run, o.Throttle); err != nil {
		return nil, err
	}
	defer t.pace.close(r, run)
	err = r.runWorkers(ctx, p, run, t, max(o.Workers, 1))
	var re *RunError
	var pe *throttle.PauseError
	switch {
	case err == nil:
		finished, ferr := r.finishAsWorker(ctx, p, run)
		if ferr != nil {
			return res, ferr
		}
		res.Message = fmt.Sprintf("run %s: no shard left; this process applied %d chunks (%d rows seen, %d changed)",
			run.ID, res.Chunks, res.RowsSeen, res.RowsChanged)
		if finished {
			res.Message += "; the run is finished"
		}
		return res, nil
	case errors.Is(err, errCancelAsked) && ctx.Err() == nil:
		// Ended by the run's owner, or here when it has none.
		if _, ferr := r.asOwner(ctx, p, run, func() error {
			c, err := readControl(ctx, r.cfg.DB, run.ID)
			if err != nil {
				return err
			}
			return r.endCancelled(ctx, p.job, run, c)
		}); ferr != nil {
			return res, errors.Join(err, ferr)
		}
	case errors.As(err, &re) && ctx.Err() == nil:
		if ferr := r.failAsWorker(ctx, p, run, re); ferr != nil {
			return res, errors.Join(err, ferr)
		}
	case errors.As(err, &pe) && ctx.Err() == nil:
		return res, r.pauseAsWorker(ctx, p, run, pe)
	}
	return res, err
}

// presence takes a shared lock that tells status that a worker process
// applies the run (it shows as running, not interrupted, while one does),
// on a connection of its own to the ledger database.
func (r *Runner) presence(ctx context.Context, run *Run) (func(), error) {
	pc, err := r.ledger.runs.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the ledger: %w", err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "SELECT set_config('application_name', $1, false), pg_advisory_lock_shared($2, $3)",
		"rewind backfill worker "+run.ID, int32(presenceClass), int32(uint32(run.lockObj))); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("join run %s: %w", run.ID, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
		conn.Close(ctx)
	}, nil
}

// asOwner runs fn holding run's lease, if no other process holds it: a
// worker process records the run's end only when no owner will. It
// reports whether fn ran.
func (r *Runner) asOwner(ctx context.Context, p *prepared, run *Run, fn func() error) (bool, error) {
	// A second at most: a process that just died lets go that fast.
	l, err := r.lockWithin(ctx, run, min(r.cfg.LeaseWait, time.Second))
	if errors.Is(err, ErrRunLocked) {
		return false, nil // its owner records the end
	}
	if err != nil {
		return false, err
	}
	defer l.release()
	if err := r.fence(ctx, run); err != nil {
		return false, err
	}
	if err := r.ledger.claim(ctx, run, r.takenOverEntry(p.job, run, l)); err != nil {
		return false, err
	}
	if !run.open() {
		return false, nil
	}
	return true, fn()
}

// finishAsWorker records run finished when its shards are all done and
// no process holds its lease.
func (r *Runner) finishAsWorker(ctx context.Context, p *prepared, run *Run) (bool, error) {
	finished := false
	_, err := r.asOwner(ctx, p, run, func() error {
		var left int64
		if err := r.cfg.DB.QueryRow(ctx, "SELECT count(*) FROM rewind.backfill_shards WHERE run_id = $1 AND state <> 'done'",
			run.ID).Scan(&left); err != nil || left > 0 {
			return err
		}
		if err := r.ledger.progress(ctx, run); err != nil {
			return err
		}
		if err := r.endFinished(ctx, p, run); err != nil {
			return err
		}
		finished = true
		return nil
	})
	return finished, err
}

// failAsWorker records run failed with re when no process holds its
// lease; otherwise its owner's workers find the failed shard and stop.
func (r *Runner) failAsWorker(ctx context.Context, p *prepared, run *Run, re *RunError) error {
	_, err := r.asOwner(ctx, p, run, func() error {
		if run.State == Failed { // recorded by its owner, or another worker process
			return nil
		}
		if err := r.stop(ctx, p, run, re); !errors.Is(err, re) {
			return err
		}
		return nil
	})
	return err
}

// pauseAsWorker pauses run for its throttle when no process holds its
// lease; otherwise this process stops and leaves the run to its owner,
// whose throttle reads the signals too.
func (r *Runner) pauseAsWorker(ctx context.Context, p *prepared, run *Run, pe *throttle.PauseError) error {
	var paused error
	_, err := r.asOwner(ctx, p, run, func() error {
		if run.State != Paused { // not paused by another process already
			paused = r.stop(ctx, p, run, pe)
		}
		return nil
	})
	if err != nil {
		return errors.Join(&ThrottlePausedError{RunID: run.ID, PauseError: pe}, err)
	}
	if paused != nil {
		return paused
	}
	return &ThrottlePausedError{RunID: run.ID, PauseError: pe}
}

// tally adds up what this process's workers did, for the Result and
// Config.Progress, which it calls after every chunk, one call at a time.
type tally struct {
	pace *pacer // the process's throttle and sizer on the run
	mu   sync.Mutex
	res  *Result
	pr   Progress
	fn   func(Progress)
	ctl  *Control // as a worker last read it
}

func newTally(run *Run, res *Result, fn func(Progress)) *tally {
	return &tally{res: res, fn: fn, pr: Progress{RunID: run.ID, Chunks: run.Chunks, RowsSeen: run.RowsSeen,
		RowsChanged: run.RowsChanged, RowsSkipped: run.RowsSkipped, Total: run.Total, Estimated: run.TotalEstimated}}
}

// progress is the run's progress as this process knows it.
func (t *tally) progress() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pr
}

// seen is the rows the run has seen, as this process knows it.
func (t *tally) seen() int64 { return t.progress().RowsSeen }

// setControl keeps the run's control as a worker read it at a chunk
// boundary, and tells Config.Progress when the run is paused or goes on.
func (t *tally) setControl(c *Control) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ctl = c
	paused := ""
	if c.Action() == Wait {
		paused = fmt.Sprintf("paused by %s", c.Actor)
		if c.Reason.Detail != "" {
			paused += ": " + c.Reason.Detail
		}
		if c.PausedAt == nil {
			paused = "pausing (" + paused + ")"
		}
	}
	if paused != t.pr.Paused {
		t.pr.Paused = paused
		if t.fn != nil {
			t.fn(t.pr)
		}
	}
}

// control is the run's control as this process's workers last read it
// (nil before the first boundary): the overrides Runner.Set stored
// (max rate, chunk time, workers) for the throttle to apply.
func (t *tally) control() *Control {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ctl
}

// errCanaryApplied: a canary's worker applied the canary's rows.
var errCanaryApplied = errors.New("backfill: the canary's rows are applied")

func (t *tally) add(cr chunkResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.res.Chunks++
	t.res.RowsSeen += cr.Seen
	t.res.RowsChanged += cr.Changed
	t.res.RowsSkipped += cr.Skipped
	t.pr.Chunks++
	t.pr.RowsSeen += cr.Seen
	t.pr.RowsChanged += cr.Changed
	t.pr.RowsSkipped += cr.Skipped
	if t.fn != nil {
		t.fn(t.pr)
	}
}

// runWorkers runs n workers of run in this process until no shard of the
// run is left, and returns the first error that stopped one; the others
// stop then, before their next commit. Workers of the process holding the
// run's lease (run.epoch) commit only under it.
func (r *Runner) runWorkers(ctx context.Context, p *prepared, run *Run, t *tally, n int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	// Workers are named host:pid/tag.wN: the tag tells apart the runs of
	// workers of one process.
	tag := uuid.NewString()[:4]
	var mu sync.Mutex
	started, running := 0, 0
	idle := make(chan struct{}) // closed when the last worker ends
	start := func() {
		started++
		running++
		name := fmt.Sprintf("%s/%s.w%d", owner(), tag, started)
		wg.Go(func() {
			if err := r.runWorker(ctx, p, run, name, t); err != nil {
				once.Do(func() { first = err; cancel(errStop) })
			}
			mu.Lock()
			if running--; running == 0 {
				close(idle)
			}
			mu.Unlock()
		})
	}
	mu.Lock()
	for range n {
		start()
	}
	mu.Unlock()
	// A worker cap raised by Set starts workers here, up to it, while
	// workers run (never after the last one ended: the run is done). A
	// canary's rows are applied by one worker.
	grow := !run.Canary.applying()
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-idle:
				return
			case <-tick.C:
			}
			c := t.control()
			mu.Lock()
			for grow && running > 0 && c != nil && c.Workers != nil && running < min(*c.Workers, MaxWorkers) {
				start()
			}
			mu.Unlock()
		}
	})
	wg.Wait()
	return first
}

// worker is one worker: its own connection to the target database, which
// holds its shard lease, and the lease's heartbeat.
type worker struct {
	r      *Runner
	run    *Run
	owner  string
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	mu     sync.Mutex // guards the use of conn, and cur
	conn   *pgx.Conn
	cur    *shardLease
}

// runWorker leases the run's shards one after the other and applies them,
// until none is pending.
func (r *Runner) runWorker(ctx context.Context, p *prepared, run *Run, name string, t *tally) error {
	w, err := r.newWorker(ctx, run, name)
	if err != nil {
		return err
	}
	defer w.close()
	ctx = w.ctx
	wait := 20 * time.Millisecond
	for {
		if ctx.Err() != nil {
			return cause(ctx)
		}
		// No shard is claimed while the run is paused.
		if err := r.boundary(ctx, p, run, nil, t, nil); err != nil {
			return err
		}
		w.mu.Lock()
		sh, prev, err := claim(ctx, w.conn, run, run.epoch, w.owner, r.cfg.LeaseTimeout)
		w.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return cause(ctx)
		case errors.Is(err, errNoShard) || (err != nil && Classify(err) == Transient && !w.conn.IsClosed()):
			// Wait for a shard (or a free worker slot), and end the
			// leases of frozen workers that hold shards.
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			wait = min(2*wait, 500*time.Millisecond)
			w.mu.Lock()
			_, err := endFrozenShards(ctx, w.conn, run, r.cfg.LeaseTimeout)
			w.mu.Unlock()
			if err != nil && (ctx.Err() != nil || Classify(err) != Transient) {
				return err
			}
			continue
		case err != nil:
			return fmt.Errorf("lease a shard of run %s: %w", run.ID, err)
		case sh == nil:
			return nil // no shard left
		}
		wait = 20 * time.Millisecond
		w.setCur(sh)
		if prev != "" && prev != w.owner {
			err = r.appendFenced(ctx, run, sh, r.entry(p.job, "shard.taken_over", run.ID,
				map[string]string{"shard": fmt.Sprint(sh.shard), "previous_owner": prev, "owner": w.owner},
				map[string]int64{"shard": int64(sh.shard), "lease": sh.epoch}))
		}
		if err == nil {
			err = r.applyShard(ctx, p, run, sh, t)
		}
		w.setCur(nil)
		w.release(sh)
		if errors.Is(err, errYield) {
			continue // to a claim, which waits while the cap is reached
		}
		if err != nil {
			return w.stopped(ctx, p, sh, err)
		}
	}
}

func (r *Runner) newWorker(ctx context.Context, run *Run, name string) (*worker, error) {
	pc, err := r.cfg.DB.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the target database: %w", err)
	}
	conn := pc.Hijack() // the shard leases live as long as this connection
	// The name shows shard lease holders in pg_stat_activity.
	if _, err := conn.Exec(ctx, "SELECT set_config('application_name', $1, false)", "rewind backfill shard "+run.ID); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("connect to the target database: %w", err)
	}
	w := &worker{r: r, run: run, owner: name, conn: conn, done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	go w.heartbeat(r.cfg.Heartbeat)
	return w, nil
}

func (w *worker) setCur(sh *shardLease) {
	w.mu.Lock()
	w.cur = sh
	w.mu.Unlock()
}

// heartbeatSQL proves the lease alive (heartbeat_at; skipped while the
// worker's own chunk holds the row) and reads whether it still holds it.
const heartbeatSQL = `WITH u AS (UPDATE rewind.backfill_shards SET heartbeat_at = clock_timestamp()
		WHERE (run_id, shard) IN (SELECT run_id, shard FROM rewind.backfill_shards WHERE run_id = $1 AND shard = $2 AND epoch = $3
		FOR UPDATE SKIP LOCKED) RETURNING 1)
	SELECT epoch, state FROM rewind.backfill_shards WHERE run_id = $1 AND shard = $2`

// heartbeat runs a statement on the lease connection every period, so
// that a live worker never looks frozen, and stops the worker when its
// lease is gone: taken over, its connection broken, or the run cancelled.
func (w *worker) heartbeat(every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		sh := w.cur
		var epoch int64
		var state string
		var err error
		if sh != nil {
			err = w.conn.QueryRow(w.ctx, heartbeatSQL, w.run.ID, sh.shard, sh.epoch).Scan(&epoch, &state)
		}
		w.mu.Unlock()
		switch {
		case sh == nil || w.ctx.Err() != nil:
		case err != nil:
			w.cancel(fmt.Errorf("%w: run %s, shard %d: its lease connection failed, so another worker may take it over (%v); "+
				"stopping so that no two workers apply it", ErrLeaseLost, w.run.ID, sh.shard, err))
		case state == "cancelled":
			w.cancel(fmt.Errorf("%w: run %s was cancelled; stopping", ErrRunEnded, w.run.ID))
		case epoch != sh.epoch:
			w.cancel(shardLost(w.run, sh))
		}
	}
}

// release lets the shard go: its owner is cleared while it is still this
// worker's and pending (so that its next lease is not a takeover), and its
// lock is dropped.
func (w *worker) release(sh *shardLease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn.IsClosed() {
		return
	}
	w.conn.Exec(ctx, "UPDATE rewind.backfill_shards SET owner = '' WHERE run_id = $1 AND shard = $2 AND epoch = $3 AND state = 'pending'",
		w.run.ID, sh.shard, sh.epoch)
	if _, err := w.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", int32(shardClass), sh.lockObj); err != nil {
		w.conn.Close(ctx) // the lock goes with the connection; the worker stops at its next claim
	}
}

// stopped says why a shard stopped: an error that stops the run is
// recorded on the shard, under its lease, so that the run's other workers
// stop at their next claim; a lost fence is told apart from a cancelled run.
func (w *worker) stopped(ctx context.Context, p *prepared, sh *shardLease, err error) error {
	if ctx.Err() != nil {
		return cause(ctx)
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var re *RunError
	switch {
	case errors.As(err, &re):
		if p.job.Params.hasSecrets() { // as the run's record keeps it (see stop)
			re.Err = withholdDetail(re.Err)
		}
		if fe := failShard(bg, w.r.cfg.DB, w.run, sh, re); fe != nil {
			w.r.cfg.Logger.Warn("backfill: could not record the shard's failure", "run", w.run.ID, "shard", sh.shard, "error", fe)
		}
	case errors.Is(err, ErrLeaseLost) && shardState(bg, w.r.cfg.DB, w.run.ID, sh.shard) == "cancelled":
		return fmt.Errorf("%w: run %s was cancelled; stopping", ErrRunEnded, w.run.ID)
	}
	return err
}

// close stops the heartbeat and closes the connection, which drops any
// lock left.
func (w *worker) close() {
	w.cancel(errStop)
	<-w.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	w.conn.Close(ctx)
}

// owningShard runs write in a transaction of the target database that
// holds run's fencing token (when this process holds the run's lease) and
// sh's row FOR SHARE, only while both are still this worker's: what a
// worker writes about its shard outside a chunk, it writes under its lease.
func (r *Runner) owningShard(ctx context.Context, run *Run, sh *shardLease, write func(tx pgx.Tx) error) error {
	if sh == nil {
		return r.owning(ctx, run, write)
	}
	tx, err := r.beginChunk(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if run.epoch != 0 {
		if err := checkFence(tx.QueryRow(ctx, fenceSQL, run.ID), run); err != nil {
			return err
		}
	}
	var ok bool
	err = tx.QueryRow(ctx, `SELECT true FROM rewind.backfill_shards WHERE run_id = $1 AND shard = $2 AND epoch = $3
		AND state = 'pending' FOR SHARE`, run.ID, sh.shard, sh.epoch).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return shardLost(run, sh)
	}
	if err != nil {
		return err
	}
	if err := write(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// appendFenced appends e about run under the worker's shard lease (sh),
// or under the run's lease when sh is nil (see owning).
func (r *Runner) appendFenced(ctx context.Context, run *Run, sh *shardLease, e audit.Entry) error {
	return r.owningShard(ctx, run, sh, func(tx pgx.Tx) error {
		if r.ledger.same {
			_, err := r.ledger.audit.AppendTx(ctx, tx, e)
			return err
		}
		return r.ledger.appendAudit(ctx, e)
	})
}
