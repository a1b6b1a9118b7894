package backfill

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
)

// A canary applies a first sample of a new run's rows, runs the job's
// validations on the data as it now is, and lets the run go on only if
// they all pass; otherwise, or when asked to wait, the run stops in state
// paused until someone promotes it (Runner.Promote, from any process) or
// cancels it. Nothing beyond the canary's rows is written before that.
//
// The sample is the run's leading rows in key order: the canary is the
// run's first chunks, cut at the canary's size. So the run goes on from
// the canary's last checkpoint like any resumed run, and each row is still
// changed at most once; no chunk is applied out of key order. The leading
// rows are not a random sample (they are often the oldest rows): write
// validations that would catch a wrong change on any row.

// Paused is the state of a run stopped on purpose, to be continued: by
// its canary (CanaryState says why) until Runner.Promote, or through its
// control record (see control.go) until it is resumed.
const Paused State = "paused"

var (
	// ErrCanaryFailed: a canary's validations failed; the run is paused
	// (see *CanaryError).
	ErrCanaryFailed = &codedError{"backfill: canary validations failed", nil}
	// ErrRunPaused: the run is paused: by its canary, until promoted
	// (resume is refused), or through its control, until resumed (a run
	// or takeover of it is refused).
	ErrRunPaused = &codedError{"backfill: run is paused", rewind.ErrWrongExpectedVersion}
	// ErrNotPaused: Promote of a run that is not waiting for promotion.
	ErrNotPaused = &codedError{"backfill: run is not waiting for promotion", rewind.ErrWrongExpectedVersion}
)

// Canary asks a new run to apply a first sample of its rows, run the
// job's validations and go on only if they pass (see ApplyOptions).
type Canary struct {
	// Rows is the sample's size in rows (rows the job's where selects),
	// or, with Percent, zero.
	Rows int64
	// Percent is the sample's size as a percentage (0 < Percent ≤ 100) of
	// the run's total at its start (an estimate when the total is).
	Percent float64
	// Wait stops the run after the canary even when its validations
	// pass: it goes on when promoted (Runner.Promote).
	Wait bool
}

// check refuses a canary that cannot be applied, before anything is
// written.
func (c *Canary) check(job *Job) error {
	if c == nil {
		return nil
	}
	switch {
	case c.Rows != 0 && c.Percent != 0:
		return &rewind.ValidationError{Field: "canary", Value: c.String(), Reason: "give a number of rows or a percentage, not both"}
	case c.Rows < 0 || c.Rows == 0 && !(c.Percent > 0 && c.Percent <= 100):
		return &rewind.ValidationError{Field: "canary", Value: c.String(),
			Reason: "must be a number of rows (1 or more) or a percentage above 0 and at most 100, such as 500 or 5%"}
	case len(job.Validate) == 0 && !c.Wait:
		return &rewind.ValidationError{Field: "canary", Value: c.String(), Reason: "the job has no validations, so the canary " +
			"would check nothing: add a validate: block to the job, or wait for a person to look (--canary-wait)"}
	}
	return nil
}

func (c *Canary) String() string {
	if c.Percent != 0 {
		return strconv.FormatFloat(c.Percent, 'f', -1, 64) + "%"
	}
	return strconv.FormatInt(c.Rows, 10)
}

// state is the canary a new run with total rows records.
func (c *Canary) state(total int64) *CanaryState {
	if c == nil {
		return nil
	}
	rows := c.Rows
	if c.Percent != 0 {
		rows = max(1, int64(math.Ceil(float64(total)*c.Percent/100)))
	}
	return &CanaryState{Rows: rows, Percent: c.Percent, Wait: c.Wait, State: CanaryApplying}
}

// The states of a canary.
const (
	CanaryApplying = "applying" // its rows are being applied
	CanaryPassed   = "passed"   // its validations passed; the run went on
	CanaryFailed   = "failed"   // its validations failed; the run is paused
	CanaryWaiting  = "waiting"  // its validations passed; the run is paused until promoted (Wait)
	CanaryPromoted = "promoted" // the run was promoted after a pause
)

// CanaryState is a run's canary, as the ledger records it.
type CanaryState struct {
	// Rows is the canary's size in rows.
	Rows int64 `json:"rows"`
	// Percent is the percentage asked for, or zero when a number of rows was.
	Percent float64 `json:"percent,omitempty"`
	Wait    bool    `json:"wait"`
	State   string  `json:"state"`
	// Message says what the validations found, once they ran.
	Message string `json:"message,omitempty"`
}

func (c *CanaryState) applying() bool { return c != nil && c.State == CanaryApplying }

// Holds reports whether the canary stopped the run until it is promoted.
func (c *CanaryState) Holds() bool {
	return c != nil && (c.State == CanaryFailed || c.State == CanaryWaiting)
}

// limit is the size of the next chunk: full, cut so that the canary stops
// at its rows; 0 when they are applied.
func (c *CanaryState) limit(full int, seen int64) int {
	if !c.applying() {
		return full
	}
	return int(max(0, min(int64(full), c.Rows-seen)))
}

func (c *CanaryState) describe(attrs map[string]string) {
	if c == nil {
		return
	}
	attrs["canary_rows"] = strconv.FormatInt(c.Rows, 10)
	if c.Percent != 0 {
		attrs["canary_percent"] = strconv.FormatFloat(c.Percent, 'f', -1, 64)
	}
	attrs["canary_wait"] = strconv.FormatBool(c.Wait)
}

// CanaryReport is what a run's canary found.
type CanaryReport struct {
	Rows        int64           `json:"rows"`   // rows the canary applied
	Chunks      int64           `json:"chunks"` // chunks the canary applied
	State       string          `json:"state"`
	Validations *ValidateReport `json:"validations"`
}

// canarySchema keeps each run's canary, in the ledger database.
const canarySchema = `CREATE TABLE IF NOT EXISTS rewind.backfill_canaries (
		run_id     text PRIMARY KEY,
		rows       bigint NOT NULL,
		percent    double precision NOT NULL DEFAULT 0,
		wait       boolean NOT NULL,
		state      text NOT NULL,
		message    text NOT NULL DEFAULT '',
		updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`

// insertCanary records a new run's canary in the transaction that records
// the run: a run that has a canary never exists without it.
func insertCanary(ctx context.Context, tx pgx.Tx, r *Run) error {
	c := r.Canary
	if c == nil {
		return nil
	}
	_, err := tx.Exec(ctx, "INSERT INTO rewind.backfill_canaries (run_id, rows, percent, wait, state) VALUES ($1, $2, $3, $4, $5)",
		r.ID, c.Rows, c.Percent, c.Wait, c.State)
	return err
}

// canary reads run id's canary from q (the ledger database), nil when it
// has none (or the ledger predates canaries).
func (l *ledger) canary(ctx context.Context, q querier, id string) (*CanaryState, error) {
	var c CanaryState
	err := q.QueryRow(ctx, "SELECT rows, percent, wait, state, message FROM rewind.backfill_canaries WHERE run_id = $1", id).
		Scan(&c.Rows, &c.Percent, &c.Wait, &c.State, &c.Message)
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && pe.Code == "42P01":
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read the canary of run %s: %w", id, err)
	}
	return &c, nil
}

// canaries fills the Canary of runs.
func (l *ledger) canaries(ctx context.Context, runs ...*Run) error {
	for _, r := range runs {
		c, err := l.canary(ctx, l.runs, r.ID)
		if err != nil {
			return err
		}
		r.Canary = c
	}
	return nil
}

// setCanary moves run's canary from one of the states from to state with
// msg, records entry, and, when pause is set, pauses the run (which this
// process holds under lease run.epoch): in tx, the transaction holding the
// run's fencing token (see Runner.owning), when the ledger shares the
// target database, else in one transaction of the ledger database.
func (l *ledger) setCanary(ctx context.Context, tx pgx.Tx, run *Run, from []string, state, msg string, pause bool, entry audit.Entry) error {
	do := func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE rewind.backfill_canaries SET state = $2, message = $3, updated_at = clock_timestamp()
			WHERE run_id = $1 AND state = ANY($4)`, run.ID, state, msg, from)
		if err != nil {
			return fmt.Errorf("record the canary of run %s: %w", run.ID, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: the canary of run %s is no longer %v", ErrLeaseLost, run.ID, from)
		}
		if pause {
			tag, err := tx.Exec(ctx, `UPDATE rewind.backfill_runs SET state = 'paused', updated_at = clock_timestamp()
				WHERE id = $1 AND lease = $2 AND state = 'running'`, run.ID, run.epoch)
			if err != nil {
				return fmt.Errorf("pause run %s: %w", run.ID, err)
			}
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("%w: run %s was taken over by another process before it could be paused", ErrLeaseLost, run.ID)
			}
		}
		_, err = l.audit.AppendTx(ctx, tx, entry)
		return err
	}
	if l.same {
		return do(tx)
	}
	return inTx(ctx, l.runs, do)
}

// canaryOfOpen refuses a canary asked for when the job's open run has
// none: a canary is a new run's first rows.
func (r *Runner) canaryOfOpen(ctx context.Context, prev *Run) error {
	c, err := r.ledger.canary(ctx, r.ledger.runs, prev.ID)
	if err != nil || c != nil {
		return err
	}
	return fmt.Errorf("%w: run %s of job %s is %s and was started without a canary; a canary is a new run's first rows: "+
		"continue it without --canary ('rewind backfill resume %s'), or cancel it ('rewind backfill cancel %s') to start a "+
		"new run with one", ErrUnfinishedRun, prev.ID, prev.JobName, prev.State, prev.ID, prev.ID)
}

// canaryGate reads run's canary once this process holds the run's lease.
// A run its canary paused goes on only when promoted: with promote, the
// promotion is recorded (run.promoted, with its actor); without, it is
// refused (ErrRunPaused).
func (r *Runner) canaryGate(ctx context.Context, p *prepared, run *Run, promote bool) error {
	c, err := r.ledger.canary(ctx, r.ledger.runs, run.ID)
	if err != nil {
		return err
	}
	run.Canary = c
	switch {
	case promote && !c.Holds():
		what := "has no canary"
		if c != nil {
			what = "'s canary is " + c.State
		}
		return fmt.Errorf("%w: run %s %s, it is not paused after a canary: nothing to promote "+
			"('rewind backfill resume %s' continues an interrupted or failed run)", ErrNotPaused, run.ID, what, run.ID)
	case !promote && c.Holds():
		return fmt.Errorf("%w: run %s waits to be promoted (its canary: %s); look at the rows "+
			"(rewind backfill status %s, rewind backfill validate %s), then continue it with 'rewind backfill promote %s', "+
			"or cancel it with 'rewind backfill cancel %s'", ErrRunPaused, run.ID, c.Message, run.ID, run.ID, run.ID, run.ID)
	case !promote:
		return nil
	}
	e := r.entry(p.job, "run.promoted", run.ID, map[string]string{"canary_state": c.State, "canary": c.Message},
		map[string]int64{"canary_rows": c.Rows})
	if err := r.owning(ctx, run, func(tx pgx.Tx) error {
		if _, err := setControl(ctx, tx, run.ID, requestRun, PauseReason{}, r.cfg.Actor, false, r.cfg.LeaseTimeout); err != nil {
			return err
		}
		return r.ledger.setCanary(ctx, tx, run, []string{CanaryFailed, CanaryWaiting}, CanaryPromoted, c.Message, false, e)
	}); err != nil {
		return err
	}
	c.State = CanaryPromoted
	return nil
}

// canaryCheck runs the job's validations once the canary's rows are
// applied, and records the outcome. It returns stop when the run must
// stop: paused, its validations failed (a *CanaryError) or the canary
// waits to be promoted (no error).
func (r *Runner) canaryCheck(ctx context.Context, p *prepared, run *Run, res *Result, pr Progress) (stop bool, err error) {
	c := run.Canary
	rep, err := r.runValidations(ctx, p)
	if err != nil { // the run stops, its canary still to check: resuming it checks it
		return true, r.stop(ctx, p, run, err)
	}
	state, msg := CanaryPassed, rep.summary()
	switch {
	case !rep.OK():
		state = CanaryFailed
	case c.Wait:
		state = CanaryWaiting
		msg += "; waiting to be promoted (--canary-wait)"
	}
	attrs := validationAttrs(rep)
	attrs["canary_state"] = state
	e := r.entry(p.job, "run.canary", run.ID, attrs, map[string]int64{"rows": pr.RowsSeen, "chunks": pr.Chunks,
		"canary_rows": c.Rows, "validations": int64(len(rep.Results)), "failed": int64(rep.Failed)})
	e.Message = msg
	pause := state != CanaryPassed
	if err := r.owning(ctx, run, func(tx pgx.Tx) error {
		// The run's control says paused, kind canary, from now: its owner
		// stops here, nothing is left in flight.
		if pause {
			if _, err := setControl(ctx, tx, run.ID, requestPause, PauseReason{Kind: PauseCanary, Detail: msg}, r.cfg.Actor,
				true, r.cfg.LeaseTimeout); err != nil {
				return err
			}
		}
		return r.ledger.setCanary(ctx, tx, run, []string{CanaryApplying}, state, msg, pause, e)
	}); err != nil {
		return true, err
	}
	c.State, c.Message = state, msg
	res.Canary = &CanaryReport{Rows: pr.RowsSeen, Chunks: pr.Chunks, State: state, Validations: rep}
	if !pause {
		return false, nil
	}
	run.State = Paused
	if state == CanaryFailed {
		res.Message = fmt.Sprintf("run %s paused after its canary: %s", run.ID, msg)
		return true, &CanaryError{RunID: run.ID, Report: res.Canary}
	}
	res.Message = fmt.Sprintf("run %s applied its canary (%d rows in %d chunk(s)) and is paused: %s. Nothing beyond the canary "+
		"was written; continue it with 'rewind backfill promote %s', or cancel it with 'rewind backfill cancel %s'",
		run.ID, pr.RowsSeen, pr.Chunks, msg, run.ID, run.ID)
	return true, nil
}

// Promote continues a run its canary paused (its validations failed, or it
// was asked to wait), from any process: the promotion is recorded with its
// actor (run.promoted), then the run goes on as Resume does. job must be
// the run's job, as for Resume.
func (r *Runner) Promote(ctx context.Context, id string, job *Job, o ApplyOptions) (*Result, error) {
	o.promote = true
	return r.Resume(ctx, id, job, o)
}
