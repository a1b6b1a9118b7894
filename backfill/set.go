package backfill

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// Bounds of a chunk time set on a run (Spirit allows 100 ms to 5 s; a
// little wider here, for slow process functions).
const (
	MinChunkTime = 50 * time.Millisecond
	MaxChunkTime = time.Minute
)

// SetOptions are the values Set changes on a run; nil leaves one as it is.
type SetOptions struct {
	// MaxRate caps the run's rate in rows per second; 0 clears the cap.
	MaxRate *float64
	// ChunkTime is the time a chunk should take (the throttle sizes the
	// chunks to it), from MinChunkTime to MaxChunkTime; ClearChunkTime
	// clears it.
	ChunkTime      *time.Duration
	ClearChunkTime bool
	// Workers is the run's worker cap, in all its processes together,
	// from 1 to its max-db-workers (or MaxWorkers): workers beyond it let
	// their shard go at their next chunk boundary, and the executing
	// process starts workers up to it.
	Workers *int
}

// validate checks the values before anything is read or written.
func (o SetOptions) validate() error {
	switch {
	case o.MaxRate == nil && o.ChunkTime == nil && !o.ClearChunkTime && o.Workers == nil:
		return &rewind.ValidationError{Field: "set", Reason: "give --max-rate, --chunk-time or --workers"}
	case o.MaxRate != nil && throttle.CheckRate(*o.MaxRate) != nil:
		return &rewind.ValidationError{Field: "max rate", Value: fmt.Sprint(*o.MaxRate),
			Reason: throttle.CheckRate(*o.MaxRate).Error() + " (0 or off removes the cap)"}
	case o.ChunkTime != nil && o.ClearChunkTime:
		return &rewind.ValidationError{Field: "chunk time", Reason: "give a duration or off, not both"}
	case o.ChunkTime != nil && (*o.ChunkTime < MinChunkTime || *o.ChunkTime > MaxChunkTime):
		return &rewind.ValidationError{Field: "chunk time", Value: o.ChunkTime.String(),
			Reason: fmt.Sprintf("must be from %s to %s (such as 500ms), or off", MinChunkTime, MaxChunkTime)}
	case o.Workers != nil && (*o.Workers < 1 || *o.Workers > MaxWorkers):
		return &rewind.ValidationError{Field: "workers", Value: fmt.Sprint(*o.Workers), Reason: fmt.Sprintf("must be from 1 to %d", MaxWorkers)}
	}
	return nil
}

// Set changes a run's max rate, chunk time or worker cap while it runs,
// from any process: stored in its control record with this runner's
// actor (a run.set entry), and picked up by its workers at their next
// chunk boundary. A run that ended, failed or is being cancelled is
// refused, as are values out of bounds and a worker cap or chunk time
// for a rollback (its chunks are the run's); nothing is changed.
func (r *Runner) Set(ctx context.Context, id string, o SetOptions) (*Run, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	run, err := r.controlTarget(ctx, id, "set")
	if err != nil {
		return nil, err
	}
	if run.State == Failed {
		return nil, fmt.Errorf("%w: run %s failed (%s): nothing applies it, so there is nothing to set; "+
			"'rewind backfill resume %s' continues it once the cause is fixed, with --workers and --max-rate for its new start",
			ErrNotControllable, run.ID, run.Error, run.ID)
	}
	if run.Undoes != "" && (o.Workers != nil || o.ChunkTime != nil || o.ClearChunkTime) {
		return nil, fmt.Errorf("%w: run %s is a rollback of run %s: it undoes the run's chunks as they were, one at a time, "+
			"so it has no worker cap or chunk time to set; --max-rate paces it", ErrNotControllable, run.ID, run.Undoes)
	}
	job := &Job{Name: run.JobName, Version: run.JobVersion}
	err = r.controlTx(ctx, run, func(tx pgx.Tx) (*entryFn, error) {
		if o.Workers != nil {
			// The worker cap is written into the run's fencing token's
			// row, which a worker's chunk locks before the control
			// record (both FOR SHARE): locked here in the same order,
			// or Set and every chunk committing meanwhile deadlock.
			if err := waitForChunks(ctx, tx, r.cfg.LeaseTimeout); err != nil {
				return nil, err
			}
			if _, err := tx.Exec(ctx, "SELECT FROM rewind.backfill_leases WHERE run_id = $1 FOR NO KEY UPDATE", run.ID); err != nil {
				return nil, fmt.Errorf("set the workers of run %s: %w", run.ID, err)
			}
		}
		c, err := r.lockControl(ctx, tx, run)
		if err != nil {
			return nil, err
		}
		if c.Requested == requestCancel {
			return nil, fmt.Errorf("%w: run %s is being cancelled (asked by %s): nothing to set", ErrNotControllable, run.ID, c.Actor)
		}
		attrs, err := r.setValues(ctx, tx, run, c, o)
		if err != nil {
			return nil, err
		}
		return &entryFn{entry: r.entry(job, "run.set", run.ID, attrs, nil)}, nil
	})
	if err != nil {
		return nil, err
	}
	return r.Status(ctx, run.ID)
}

// setValues writes o into run's locked control c (and the worker cap into
// its fencing token's row, where claims read it) and returns the change
// as the run.set entry's attributes (old → new).
func (r *Runner) setValues(ctx context.Context, tx pgx.Tx, run *Run, c *Control, o SetOptions) (map[string]string, error) {
	attrs := map[string]string{}
	show := func(v any) string {
		switch x := v.(type) {
		case *float64:
			if x != nil {
				return fmt.Sprint(*x)
			}
		case *time.Duration:
			if x != nil {
				return x.String()
			}
		case *int:
			if x != nil {
				return fmt.Sprint(*x)
			}
		}
		return "off"
	}
	rate, chunkTime, workers := c.MaxRate, c.ChunkTime, c.Workers
	if o.MaxRate != nil {
		rate = o.MaxRate
		if *rate == 0 {
			rate = nil
		}
		attrs["max_rate"] = show(c.MaxRate) + " → " + show(rate)
	}
	if o.ChunkTime != nil || o.ClearChunkTime {
		chunkTime = o.ChunkTime
		attrs["chunk_time"] = show(c.ChunkTime) + " → " + show(chunkTime)
	}
	if o.Workers != nil {
		var was, maxDB int
		if err := tx.QueryRow(ctx, "SELECT workers, max_db_workers FROM rewind.backfill_leases WHERE run_id = $1", run.ID).
			Scan(&was, &maxDB); err != nil {
			return nil, fmt.Errorf("read the workers of run %s: %w", run.ID, err)
		}
		if maxDB > 0 && *o.Workers > maxDB {
			return nil, &rewind.ValidationError{Field: "workers", Value: fmt.Sprint(*o.Workers),
				Reason: fmt.Sprintf("must be from 1 to the run's max-db-workers, %d", maxDB)}
		}
		if _, err := tx.Exec(ctx, "UPDATE rewind.backfill_leases SET workers = $2 WHERE run_id = $1", run.ID, *o.Workers); err != nil {
			return nil, err
		}
		workers = o.Workers
		attrs["workers"] = fmt.Sprint(was) + " → " + show(workers)
	}
	var secs *float64
	if chunkTime != nil {
		s := chunkTime.Seconds()
		secs = &s
	}
	_, err := tx.Exec(ctx, `UPDATE rewind.backfill_control SET max_rate = $2, chunk_time = make_interval(secs => $3), workers = $4,
		set_by = $5, set_at = clock_timestamp() WHERE run_id = $1`, run.ID, rate, secs, workers, r.cfg.Actor)
	if err != nil {
		return nil, fmt.Errorf("set run %s: %w", run.ID, err)
	}
	return attrs, nil
}
