package backfill

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// Errors of live control. Each is a conflict (exit 4): the run is not in
// a state the request applies to; nothing was changed.
var (
	// ErrAlreadyPaused: a pause of a run that is pausing or paused.
	ErrAlreadyPaused = &codedError{"backfill: run is already paused", rewind.ErrWrongExpectedVersion}
	// ErrNotControllable: a pause, resume or set of a run nobody can
	// apply now (failed) or that is being cancelled, or a set of what a
	// rollback does not have (workers, a chunk time).
	ErrNotControllable = &codedError{"backfill: run cannot be controlled now", rewind.ErrWrongExpectedVersion}
)

// ControlOptions tune Pause and Cancel.
type ControlOptions struct {
	// Reason says why, for the ledger and the progress line of the
	// processes applying the run.
	Reason string
	// Wait is how long to wait for the request to take effect (every
	// worker at a chunk boundary). Zero returns at once, pausing or
	// cancelling.
	Wait time.Duration
}

// controlTarget loads run id for a control request and refuses what no
// request applies to: an unknown run, one that ended. A rollback run is
// controlled as a run of a job: its loop stands at the same chunk
// boundary.
func (r *Runner) controlTarget(ctx context.Context, id, what string) (*Run, error) {
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if !run.open() {
		return nil, fmt.Errorf("%w: run %s is %s: nothing to %s", ErrRunEnded, run.ID, run.State, what)
	}
	if err := r.ledger.setup(ctx); err != nil {
		return nil, err
	}
	if settled, err := r.settleUnheld(ctx, run); err != nil {
		return nil, err
	} else if settled {
		return r.ledger.loadRun(ctx, run.ID)
	}
	return run, nil
}

// settleUnheld records the pause of a run nobody holds (its processes
// died while it was pausing) as taken effect: no worker is left to
// acknowledge it, and nothing of the run can commit. Status and the
// control commands call it, so that a run shown paused is recorded
// paused (settlePause: once, whoever records it). It reports whether it
// recorded it.
func (r *Runner) settleUnheld(ctx context.Context, run *Run) (bool, error) {
	if run.State != Interrupted {
		return false, nil
	}
	c, err := readControl(ctx, r.cfg.DB, run.ID)
	if err != nil || c.Since.IsZero() || c.Requested != requestPause || c.PausedAt != nil {
		return false, err
	}
	job := &Job{Name: run.JobName, Version: run.JobVersion}
	if err := r.settlePause(ctx, job, run, c); err != nil {
		return false, fmt.Errorf("record the pause of run %s: %w", run.ID, err)
	}
	return true, nil
}

// lockControl reads run's control record in tx FOR UPDATE, creating it
// when missing. It waits for the chunks that are committing.
func (r *Runner) lockControl(ctx context.Context, tx pgx.Tx, run *Run) (*Control, error) {
	if err := waitForChunks(ctx, tx, r.cfg.LeaseTimeout); err != nil {
		return nil, err
	}
	if err := ensureControl(ctx, tx, run.ID); err != nil {
		return nil, err
	}
	c, err := scanControl(tx.QueryRow(ctx, "SELECT "+controlCols+" FROM rewind.backfill_control WHERE run_id = $1 FOR UPDATE", run.ID))
	if err != nil {
		return nil, fmt.Errorf("control run %s: %w", run.ID, err)
	}
	return c, nil
}

// Pause asks run id to pause: every worker applying it, in any process,
// stops at its next chunk boundary and waits there, holding its shard,
// until the run is resumed (Unpause, or Resume). The run is pausing until
// they all are at a boundary, then paused; with o.Wait, Pause waits up to
// that long for it. Recorded with this runner's actor (run.pausing, then
// run.paused). A run that is not running, or already pausing, paused or
// cancelling, is refused, and nothing is changed.
func (r *Runner) Pause(ctx context.Context, id string, o ControlOptions) (*Run, error) {
	if err := checkText("reason", o.Reason); err != nil {
		return nil, err
	}
	run, err := r.controlTarget(ctx, id, "pause")
	if err != nil {
		return nil, err
	}
	if run.State == Failed {
		return nil, fmt.Errorf("%w: run %s failed (%s): nothing applies it, so there is nothing to pause; "+
			"'rewind backfill resume %s' continues it once the cause is fixed", ErrNotControllable, run.ID, run.Error, run.ID)
	}
	job := &Job{Name: run.JobName, Version: run.JobVersion}
	reason := PauseReason{Kind: PauseOperator, Detail: o.Reason}
	e := r.entry(job, "run.pausing", run.ID, map[string]string{"reason_kind": string(reason.Kind), "reason": reason.Detail}, nil)
	e.Message = reason.Detail
	var gen int64
	err = r.controlTx(ctx, run, func(tx pgx.Tx) (*entryFn, error) {
		c, err := r.lockControl(ctx, tx, run)
		if err != nil {
			return nil, err
		}
		switch c.Requested {
		case requestPause:
			return nil, fmt.Errorf("%w: run %s is already %s by %s since %s (%s: %s); 'rewind backfill resume %s' continues it",
				ErrAlreadyPaused, run.ID, c.state(), c.Actor, c.Since.UTC().Format(time.RFC3339), c.Reason.Kind, c.Reason.Detail, run.ID)
		case requestCancel:
			return nil, fmt.Errorf("%w: run %s is being cancelled (asked by %s): it cannot be paused", ErrNotControllable, run.ID, c.Actor)
		}
		gen, err = setControl(ctx, tx, run.ID, requestPause, reason, r.cfg.Actor, false, r.cfg.LeaseTimeout)
		return &entryFn{entry: e}, err
	})
	if err != nil {
		return nil, err
	}
	return r.awaitPause(ctx, job, run, gen, o.Wait)
}

// awaitPause records the pause of generation gen once it took effect
// (settlePause), trying for up to wait, and returns the run as Status
// shows it.
func (r *Runner) awaitPause(ctx context.Context, job *Job, run *Run, gen int64, wait time.Duration) (*Run, error) {
	deadline := time.Now().Add(wait)
	for {
		c, err := readControl(ctx, r.cfg.DB, run.ID)
		if err != nil {
			return nil, err
		}
		if c.gen != gen || c.PausedAt != nil {
			break
		}
		if err := r.settlePause(ctx, job, run, c); err != nil {
			return nil, err
		}
		if !time.Now().Before(deadline) {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return r.Status(ctx, run.ID)
}

// Unpause lifts a pause of run id asked through its control (by an
// operator, a throttle, or a disable of its job that was since enabled):
// the workers waiting at a chunk boundary, in any process, go on. A run
// its canary paused is refused (Promote lifts that), and so is a run of a
// disabled job. It returns the run, and whether a process is there to
// go on with it (false: nobody applies it; Resume continues it).
func (r *Runner) Unpause(ctx context.Context, id string) (*Run, bool, error) {
	run, err := r.controlTarget(ctx, id, "resume")
	if err != nil {
		return nil, false, err
	}
	if err := r.unpause(ctx, run, nil); err != nil {
		return nil, false, err
	}
	st, err := r.Status(ctx, run.ID)
	if err != nil {
		return nil, false, err
	}
	return st, st.State == Running, nil
}

// unpause lifts run's pause, if only is nil or holds its kind, and
// records run.resumed_by (the control's story; run.resumed is the
// story of an owner taking the run). A run that is not paused is refused
// with ErrNotPaused.
func (r *Runner) unpause(ctx context.Context, run *Run, only *PauseKind) error {
	job := &Job{Name: run.JobName, Version: run.JobVersion}
	return r.controlTx(ctx, run, func(tx pgx.Tx) (*entryFn, error) {
		c, err := r.lockControl(ctx, tx, run)
		if err != nil {
			return nil, err
		}
		switch {
		case c.Requested != requestPause:
			return nil, fmt.Errorf("%w: run %s is not paused (it is %s): nothing to resume", ErrNotPaused, run.ID, run.State)
		case only != nil && c.Reason.Kind != *only:
			return nil, nil // paused for another reason: left alone
		case c.Reason.Kind == PauseDisabled && only == nil:
			if err := refuseDisabled(ctx, r.ledger.runs, run.JobName); err != nil {
				return nil, err
			}
		case c.Reason.Kind == PauseCanary:
			return nil, fmt.Errorf("%w: run %s is paused by its canary (%s); look at the rows (rewind backfill status %s, "+
				"rewind backfill validate %s), then continue it with 'rewind backfill promote %s'",
				ErrRunPaused, run.ID, c.Reason.Detail, run.ID, run.ID, run.ID)
		}
		if _, err := setControl(ctx, tx, run.ID, requestRun, PauseReason{}, r.cfg.Actor, false, r.cfg.LeaseTimeout); err != nil {
			return nil, err
		}
		e := r.entry(job, "run.unpaused", run.ID, map[string]string{"paused_by": c.Actor, "reason_kind": string(c.Reason.Kind),
			"reason": c.Reason.Detail}, map[string]int64{"generation": c.gen + 1})
		return &entryFn{entry: e, mark: func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE rewind.backfill_runs SET state = 'running', updated_at = clock_timestamp()
				WHERE id = $1 AND state = 'paused'`, run.ID)
			return err
		}}, nil
	})
}

// resumePaused lifts a pause asked through run's control (not its
// canary's: promote does) before Resume continues it. When a process is
// there to go on with it (its owner, or work processes, waiting at a
// chunk boundary), they do, and done is true: nothing is applied here.
func (r *Runner) resumePaused(ctx context.Context, run *Run, promote bool) (res *Result, done bool, err error) {
	if promote {
		return nil, false, nil
	}
	st, done, err := r.liftPause(ctx, run)
	if !done || err != nil {
		return nil, false, err
	}
	return &Result{Run: st, Message: fmt.Sprintf("run %s resumed: the process(es) waiting at a chunk boundary (%s) go on with it; "+
		"'rewind backfill status %s' follows it", run.ID, st.Owner, run.ID)}, true, nil
}

// liftPause lifts a pause asked through run's control, but its canary's,
// and returns the run as Status shows it then, and whether a process is
// there to go on with it (goesOn): one waiting at a chunk boundary.
func (r *Runner) liftPause(ctx context.Context, run *Run) (st *Run, goesOn bool, err error) {
	c, err := readControl(ctx, r.cfg.DB, run.ID)
	if err != nil || c.Requested != requestPause || c.Reason.Kind == PauseCanary {
		return nil, false, err
	}
	if err := r.unpause(ctx, run, nil); err != nil {
		return nil, false, err
	}
	st, err = r.Status(ctx, run.ID)
	if err != nil || st.State != Running {
		return nil, false, err
	}
	return st, true, nil
}

// controlGate, once this process holds run's lease, completes a cancel
// asked for while nobody applied the run (the forced transition:
// errRunClosed, run cancelled), and refuses to apply a run paused through
// its control (ErrRunPaused): Resume lifts the pause first.
func (r *Runner) controlGate(ctx context.Context, p *prepared, run *Run, l *lease) error {
	c, err := readControl(ctx, r.cfg.DB, run.ID)
	if err != nil {
		return err
	}
	switch {
	case c.Requested == requestCancel:
		if err := r.ledger.claim(ctx, run, r.takenOverEntry(p.job, run, l)); err != nil {
			return err
		}
		if !run.open() { // its owner ended it while this process waited for the lease
			return errRunClosed
		}
		if err := r.endCancelled(ctx, p.job, run, c); err != nil {
			return err
		}
		return errRunClosed
	}
	return pausedErr(run, c)
}

// pausedErr is ErrRunPaused when run is paused through its control c
// (not by its canary: canaryGate answers that), else nil.
func pausedErr(run *Run, c *Control) error {
	if c.Requested != requestPause || c.Reason.Kind == PauseCanary {
		return nil
	}
	return fmt.Errorf("%w: run %s is paused by %s since %s (%s: %s); continue it with 'rewind backfill resume %s'",
		ErrRunPaused, run.ID, c.Actor, c.Since.UTC().Format(time.RFC3339), c.Reason.Kind, c.Reason.Detail, run.ID)
}

// refusePaused refuses, before waiting for run's lease, to apply a run
// paused through its control: its owner may be alive and waiting at a
// boundary, holding the lease, and the answer is resume, not a wait
// (controlGate checks again once the lease is held).
func (r *Runner) refusePaused(ctx context.Context, run *Run) error {
	c, err := readControl(ctx, r.cfg.DB, run.ID)
	if err != nil {
		return err
	}
	return pausedErr(run, c)
}
