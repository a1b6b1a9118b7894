package backfill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// Toggles turn a correction off and on without a redeploy: a disabled job
// starts no run (Apply, Resume, Promote and Work refuse it) and its
// running runs pause (kind disabled); enabling it resumes the runs the
// disable paused, not those paused for another reason. The toggle is a
// row per job name in the ledger database (rewind.backfill_toggles).
const toggleSchema = `CREATE TABLE IF NOT EXISTS rewind.backfill_toggles (
		job_name   text PRIMARY KEY,
		disabled   boolean NOT NULL,
		actor      text NOT NULL,
		reason     text NOT NULL DEFAULT '',
		changed_at timestamptz NOT NULL DEFAULT clock_timestamp())`

// toggleClass is the advisory lock class ("RWNT") that orders a job's
// toggles against the start of its runs: a start holds it shared while it
// records its run, a toggle exclusively, so a run started as the job is
// disabled is among the runs the disable pauses.
const toggleClass = 0x52574e54

var (
	// ErrJobDisabled: the job is disabled; no run of it starts.
	ErrJobDisabled = &codedError{"backfill: job is disabled", rewind.ErrWrongExpectedVersion}
	// ErrJobNotFound: no run of that job name was ever recorded.
	ErrJobNotFound = &codedError{"backfill: job not found", rewind.ErrStreamNotFound}
)

// Toggle is a job's toggle, as the ledger records it.
type Toggle struct {
	Job      string    `json:"job"`
	Disabled bool      `json:"disabled"`
	Actor    string    `json:"actor"`
	Reason   string    `json:"reason,omitempty"`
	Changed  time.Time `json:"changed_at"`
	Runs     []string  `json:"runs,omitempty"` // runs the change paused or resumed
}

// toggle reads job name's toggle from q, nil when it has none.
func toggle(ctx context.Context, q querier, name string) (*Toggle, error) {
	t := &Toggle{Job: name}
	err := q.QueryRow(ctx, "SELECT disabled, actor, reason, changed_at FROM rewind.backfill_toggles WHERE job_name = $1", name).
		Scan(&t.Disabled, &t.Actor, &t.Reason, &t.Changed)
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && pe.Code == "42P01":
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read the toggle of job %s: %w", name, err)
	}
	return t, nil
}

// refuseDisabled returns ErrJobDisabled, saying who disabled job name and
// how to enable it, when it is disabled.
func refuseDisabled(ctx context.Context, q querier, name string) error {
	t, err := toggle(ctx, q, name)
	if err != nil || t == nil || !t.Disabled {
		return err
	}
	why := ""
	if t.Reason != "" {
		why = " (" + t.Reason + ")"
	}
	return fmt.Errorf("%w: job %s was disabled by %s at %s%s; no run of it starts until 'rewind backfill enable %s'",
		ErrJobDisabled, name, t.Actor, t.Changed.UTC().Format(time.RFC3339), why, name)
}

// Disable disables job name: no run of it starts, and its running runs
// pause (kind disabled) at their workers' next chunk boundary. Recorded
// with this runner's actor and reason (job.disabled). A job never run, or
// already disabled, is refused and nothing changes.
func (r *Runner) Disable(ctx context.Context, name, reason string) (*Toggle, error) {
	return r.setToggle(ctx, name, true, reason)
}

// Enable enables job name again and resumes the runs its disable paused.
func (r *Runner) Enable(ctx context.Context, name string) (*Toggle, error) {
	return r.setToggle(ctx, name, false, "")
}

func (r *Runner) setToggle(ctx context.Context, name string, disabled bool, reason string) (*Toggle, error) {
	if !nameRE.MatchString(name) {
		return nil, &rewind.ValidationError{Field: "job name", Value: name,
			Reason: "must be 1 to 100 letters, digits, '.', '_' or '-', as a job's name is; 'rewind backfill list' shows the jobs' runs"}
	}
	if err := checkText("reason", reason); err != nil {
		return nil, err
	}
	if ok, err := r.ledger.exists(ctx); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: %s: no backfill has run against this database (check --dsn, or --ledger-dsn)", ErrJobNotFound, name)
		}
		return nil, err
	}
	if err := r.ledger.setup(ctx); err != nil {
		return nil, err
	}
	verb := map[bool]string{true: "disabled", false: "enabled"}[disabled]
	job := &Job{Name: name}
	e := r.entry(job, "job."+verb, "job:"+name, map[string]string{"reason": reason}, nil)
	e.Message = reason
	err := inTx(ctx, r.ledger.runs, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", int32(toggleClass), name); err != nil {
			return err
		}
		var runs int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM rewind.backfill_runs WHERE job_name = $1", name).Scan(&runs); err != nil {
			return err
		}
		if runs == 0 {
			return fmt.Errorf("%w: no run of job %s was ever recorded; 'rewind backfill list' shows the jobs' runs", ErrJobNotFound, name)
		}
		t, err := toggle(ctx, tx, name)
		if err != nil {
			return err
		}
		if (t != nil && t.Disabled) == disabled {
			return fmt.Errorf("%w: job %s is already %s", rewind.ErrWrongExpectedVersion, name, verb)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rewind.backfill_toggles (job_name, disabled, actor, reason) VALUES ($1, $2, $3, $4)
			ON CONFLICT (job_name) DO UPDATE SET disabled = $2, actor = $3, reason = $4, changed_at = clock_timestamp()`,
			name, disabled, r.cfg.Actor, reason); err != nil {
			return err
		}
		_, err = r.ledger.audit.AppendTx(ctx, tx, e)
		return err
	})
	if err != nil {
		return nil, err
	}
	t, err := toggle(ctx, r.ledger.runs, name)
	if err != nil {
		return nil, err
	}
	t.Runs, err = r.toggleRuns(ctx, name, disabled, reason)
	return t, err
}

// toggleRuns pauses the running runs of job name (disabled) or resumes
// those a disable paused, and returns their ids.
func (r *Runner) toggleRuns(ctx context.Context, name string, disabled bool, reason string) ([]string, error) {
	runs, err := r.ledger.list(ctx, ListOptions{Job: name, Limit: 1000})
	if err != nil {
		return nil, err
	}
	kind := PauseDisabled
	var ids []string
	for _, run := range runs {
		if !run.open() || run.Undoes != "" || run.State == Failed {
			continue
		}
		c, err := readControl(ctx, r.cfg.DB, run.ID)
		if err != nil {
			return ids, err
		}
		switch {
		case disabled && c.Requested == requestRun:
			err = r.requestPause(ctx, &Job{Name: name, Version: run.JobVersion}, run,
				PauseReason{Kind: PauseDisabled, Detail: disabledDetail(name, reason)})
		case !disabled && c.Requested == requestPause && c.Reason.Kind == kind:
			err = r.unpause(ctx, run, &kind)
		default:
			continue
		}
		if err != nil {
			return ids, err
		}
		ids = append(ids, run.ID)
	}
	return ids, nil
}

// disabledDetail is the reason a disabled job's runs pause with.
func disabledDetail(name, reason string) string {
	if reason == "" {
		return "job " + name + " disabled"
	}
	return "job " + name + " disabled: " + reason
}
