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

// RollbackRef is a rollback of a run, as the run's status shows it.
type RollbackRef struct {
	Run        string     `json:"run"`
	State      State      `json:"state"`
	Chunks     string     `json:"chunks"`
	Force      bool       `json:"force"`
	Undone     int64      `json:"chunks_undone"`
	Restored   int64      `json:"rows_restored"`
	Conflicts  int64      `json:"conflicts"` // rows it left, still unresolved
	Actor      string     `json:"actor"`
	Created    time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// ImagesInfo is what is kept of a run's before-images.
type ImagesInfo struct {
	// Kept is false when the run's job set rollback: false.
	Kept bool `json:"kept"`
	// Chunks and Rows count the chunks with images and their image rows;
	// Events the events the run appended (recorded, not undoable).
	Chunks int64 `json:"chunks"`
	Rows   int64 `json:"rows"`
	Events int64 `json:"events"`
	// Undone counts the chunks rollbacks undid.
	Undone int64 `json:"chunks_undone"`
	// PurgedAt and PurgedBy say when and by whom they were purged.
	PurgedAt *time.Time `json:"purged_at,omitempty"`
	PurgedBy string     `json:"purged_by,omitempty"`
}

// fillRollback adds to runs what their status says of rollbacks: the
// rollbacks of each run and what is kept of its before-images. A ledger
// or target of an earlier version has none of it.
func (r *Runner) fillRollback(ctx context.Context, runs ...*Run) error {
	var have bool
	err := r.cfg.DB.QueryRow(ctx, `SELECT to_regclass('rewind.backfill_images') IS NOT NULL AND to_regclass('rewind.backfill_undone') IS NOT NULL
		AND to_regclass('rewind.backfill_image_purges') IS NOT NULL`).Scan(&have)
	if err != nil || !have {
		return err
	}
	cols, err := r.ledger.cols(ctx)
	if err != nil {
		return err
	}
	for _, run := range runs {
		if run.Kind == "rollback" {
			continue
		}
		keep, ok := run.Job["rollback"].(bool)
		info := &ImagesInfo{Kept: !ok || keep}
		err := r.cfg.DB.QueryRow(ctx, `SELECT count(DISTINCT seq) FILTER (WHERE kind <> 'events'),
			coalesce(sum(cardinality(keys)) FILTER (WHERE kind <> 'events'), 0), coalesce(sum(cardinality(keys)) FILTER (WHERE kind = 'events'), 0),
			(SELECT count(*) FROM rewind.backfill_undone WHERE run_id = $1),
			(SELECT purged_at FROM rewind.backfill_image_purges WHERE run_id = $1),
			coalesce((SELECT actor FROM rewind.backfill_image_purges WHERE run_id = $1), '')
			FROM rewind.backfill_images WHERE run_id = $1`, run.ID).
			Scan(&info.Chunks, &info.Rows, &info.Events, &info.Undone, &info.PurgedAt, &info.PurgedBy)
		if err != nil {
			return fmt.Errorf("read the before-images of run %s: %w", run.ID, err)
		}
		run.Images = info
		if !r.ledger.upgraded.Load() {
			continue // no rollback can have been recorded
		}
		rows, err := r.ledger.runs.Query(ctx, "SELECT "+cols+" FROM rewind.backfill_runs WHERE undoes = $1 ORDER BY created_at", run.ID)
		if err != nil {
			return fmt.Errorf("read the rollbacks of run %s: %w", run.ID, err)
		}
		rbs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Run, error) { return scanRun(row) })
		if err != nil {
			return fmt.Errorf("read the rollbacks of run %s: %w", run.ID, err)
		}
		run.Rollbacks = nil
		for _, rb := range rbs {
			if err := r.ledger.progress(ctx, rb); err != nil {
				return err
			}
			ref := RollbackRef{Run: rb.ID, State: rb.State, Restored: rb.RowsChanged, Conflicts: rb.Quarantined,
				Actor: rb.Actor, Created: rb.Created, FinishedAt: rb.FinishedAt}
			ref.Chunks, _ = rb.Job["chunks"].(string)
			ref.Force, _ = rb.Job["force"].(bool)
			if err := r.cfg.DB.QueryRow(ctx, "SELECT count(*) FROM rewind.backfill_undone WHERE by_run = $1", rb.ID).Scan(&ref.Undone); err != nil {
				return fmt.Errorf("read the rollbacks of run %s: %w", run.ID, err)
			}
			run.Rollbacks = append(run.Rollbacks, ref)
		}
	}
	return nil
}

// PurgeOptions select the runs whose before-images to purge: one run, or
// every closed run that ended longer ago than OlderThan.
type PurgeOptions struct {
	// Run is a run id or a unique prefix of one.
	Run string
	// OlderThan selects the runs that finished or were cancelled at least
	// this long ago (by the ledger database's clock).
	OlderThan time.Duration
	// Execute deletes them; without it, PurgeImages only says what it
	// would delete.
	Execute bool
}

// PurgedRun is a run whose images a purge deletes.
type PurgedRun struct {
	Run      string     `json:"run"`
	Job      string     `json:"job"`
	State    State      `json:"state"`
	Finished *time.Time `json:"finished_at,omitempty"`
	Chunks   int64      `json:"chunks"`
	Images   int64      `json:"image_rows"`
}

// PurgeResult is what PurgeImages found or did.
type PurgeResult struct {
	Executed bool        `json:"executed"`
	Runs     []PurgedRun `json:"runs"`
	Message  string      `json:"message"`
}

// PurgeImages deletes the before-images of closed runs (finished or
// cancelled) so that they do not grow without bound; a purged run can no
// longer be rolled back, and its status says when and by whom its images
// were purged. Each run's purge is one transaction with its
// images.purged audit entry (when the ledger shares the target database).
// A run with an unfinished rollback is refused.
func (r *Runner) PurgeImages(ctx context.Context, o PurgeOptions) (*PurgeResult, error) {
	switch {
	case (o.Run == "") == (o.OlderThan == 0):
		return nil, &rewind.ValidationError{Field: "purge", Reason: "give a run, or an age (--older-than), not both"}
	case o.OlderThan < 0:
		return nil, &rewind.ValidationError{Field: "older-than", Value: o.OlderThan.String(), Reason: "must be positive, such as 720h"}
	}
	if err := r.cfg.DB.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connect to the target database: %w", err)
	}
	var runs []*Run
	if o.Run != "" {
		run, err := r.ledger.loadRun(ctx, o.Run)
		if err != nil {
			return nil, err
		}
		if err := r.purgeable(ctx, run); err != nil {
			return nil, err
		}
		runs = []*Run{run}
	} else {
		var err error
		if runs, err = r.oldRuns(ctx, o.OlderThan); err != nil {
			return nil, err
		}
	}
	res := &PurgeResult{Executed: o.Execute, Runs: []PurgedRun{}}
	for _, run := range runs {
		p := PurgedRun{Run: run.ID, Job: run.JobName, State: run.State, Finished: run.FinishedAt}
		err := r.cfg.DB.QueryRow(ctx, `SELECT count(DISTINCT seq), coalesce(sum(cardinality(keys)), 0) FROM rewind.backfill_images
			WHERE run_id = $1`, run.ID).Scan(&p.Chunks, &p.Images)
		if err != nil {
			return nil, fmt.Errorf("read the before-images of run %s: %w", run.ID, err)
		}
		if p.Chunks == 0 && o.Run == "" {
			continue
		}
		if o.Execute {
			if err := r.purge(ctx, run, p, o); err != nil {
				return res, err
			}
		}
		res.Runs = append(res.Runs, p)
	}
	verb := "would purge"
	if o.Execute {
		verb = "purged"
	}
	var rows int64
	for _, p := range res.Runs {
		rows += p.Images
	}
	res.Message = fmt.Sprintf("%s the before-images of %d run(s): %d image rows", verb, len(res.Runs), rows)
	if !o.Execute {
		res.Message += "; nothing was deleted: pass --execute (PurgeOptions.Execute) to delete them"
	}
	return res, nil
}

// purgeable refuses a run whose images cannot or must not be purged.
func (r *Runner) purgeable(ctx context.Context, run *Run) error {
	if run.Undoes != "" {
		return &rewind.ValidationError{Field: "run id", Value: run.ID,
			Reason: fmt.Sprintf("run %s is a rollback (of run %s): it keeps no before-images", run.ID, run.Undoes)}
	}
	if run.open() {
		return fmt.Errorf("%w: run %s is %s: its before-images are what a rollback of it needs; finish or cancel it first",
			ErrRunOpen, run.ID, run.State)
	}
	var have bool
	if err := r.cfg.DB.QueryRow(ctx, "SELECT to_regclass('rewind.backfill_image_purges') IS NOT NULL").Scan(&have); err != nil {
		return fmt.Errorf("connect to the target database: %w", err)
	}
	if !have {
		return fmt.Errorf("%w: this database holds no before-images (run %s was applied by an earlier version of rewind)", ErrNoImages, run.ID)
	}
	if err := r.checkPurged(ctx, run); err != nil {
		return err
	}
	if keep, ok := run.Job["rollback"].(bool); ok && !keep {
		return fmt.Errorf("%w: run %s's job sets rollback: false: there are no before-images to purge", ErrNoImages, run.ID)
	}
	var open string
	err := r.ledger.runs.QueryRow(ctx, `SELECT id FROM rewind.backfill_runs WHERE undoes = $1 AND state IN ('running', 'failed', 'paused') LIMIT 1`,
		run.ID).Scan(&open)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil && !isUndefinedColumn(err):
		return fmt.Errorf("read the rollbacks of run %s: %w", run.ID, err)
	case err != nil:
		return nil // a ledger of an earlier version: no rollbacks
	}
	return fmt.Errorf("%w: rollback %s of run %s is unfinished and needs its before-images: continue it (rewind backfill "+
		"rollback %s --execute) or cancel it (rewind backfill cancel %s) first", ErrRunOpen, open, run.ID, run.ID, open)
}

// oldRuns are the closed runs of jobs that ended before now - age.
func (r *Runner) oldRuns(ctx context.Context, age time.Duration) ([]*Run, error) {
	if ok, err := r.ledger.exists(ctx); err != nil || !ok {
		return nil, err
	}
	cols, err := r.ledger.cols(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := r.ledger.runs.Query(ctx, "SELECT "+cols+` FROM rewind.backfill_runs WHERE state IN ('finished', 'cancelled')
		AND finished_at < clock_timestamp() - make_interval(secs => $1) ORDER BY finished_at`, age.Seconds())
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []*Run
	for _, run := range all {
		if err := r.purgeable(ctx, run); err == nil {
			out = append(out, run)
		} else if !errors.Is(err, ErrNoImages) && !errors.Is(err, ErrRunOpen) && rewind.CodeOf(err) != rewind.CodeInvalidArgument {
			return nil, err
		}
	}
	return out, nil
}

// purge deletes run's images and records the purge, in one transaction
// of the target (with the audit entry when the ledger is there too).
func (r *Runner) purge(ctx context.Context, run *Run, p PurgedRun, o PurgeOptions) error {
	reason := "run"
	if o.OlderThan > 0 {
		reason = "older than " + o.OlderThan.String()
	}
	e := r.entry(&Job{Name: run.JobName, Version: run.JobVersion}, "images.purged", run.ID, map[string]string{"reason": reason},
		map[string]int64{"chunks": p.Chunks, "image_rows": p.Images})
	write := func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM rewind.backfill_images WHERE run_id = $1", run.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO rewind.backfill_image_purges (run_id, actor, chunks, images) VALUES ($1, $2, $3, $4)`,
			run.ID, e.Origin.Actor, p.Chunks, p.Images)
		return err
	}
	err := inTx(ctx, r.cfg.DB, func(tx pgx.Tx) error {
		if err := write(tx); err != nil {
			return err
		}
		if r.ledger.same {
			_, err := r.ledger.audit.AppendTx(ctx, tx, e)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("purge the before-images of run %s: %w", run.ID, err)
	}
	if !r.ledger.same {
		return r.ledger.appendAudit(ctx, e)
	}
	return nil
}

// isUndefinedColumn: a ledger of an earlier version lacks a column.
func isUndefinedColumn(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42703"
}
