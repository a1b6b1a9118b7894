package backfill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// boundary is where every worker, in every process, stands between two
// chunks (and before it claims a shard): it reads the run's control
// record and goes on (nil), waits there while the run is paused, holding
// its shard, its leases and their heartbeats, or stops when a cancel was
// asked for (an ErrRunEnded). sh is the worker's shard, nil between shards.
//
// The read is one row by its key; known, when not nil, is the record as
// the worker's last chunk committed, read by its fence, and no read is
// made. If the read fails, the worker goes on: the chunk's own transaction
// reads the record again, FOR SHARE, and rolls back if a pause or cancel
// was asked for (see controlFenceSQL).
func (r *Runner) boundary(ctx context.Context, p *prepared, run *Run, sh *shardLease, t *tally, known *Control) error {
	c := known
	if c == nil {
		var err error
		if c, err = readControl(ctx, r.cfg.DB, run.ID); err != nil {
			if ctx.Err() != nil {
				return cause(ctx)
			}
			r.cfg.Logger.Warn("backfill: could not read the run's control; its chunks check it as they commit", "run", run.ID, "error", err)
			return nil
		}
	}
	t.setControl(c)
	switch c.Action() {
	case GoOn:
		return r.overCap(ctx, run, sh, c)
	case Stop:
		return cancelAsked(run, c)
	}
	return r.waitPaused(ctx, p, run, sh, t, c)
}

// errYield: a worker lets its shard go at a chunk boundary because the
// run has more shards leased than its worker cap, lowered by Set.
var errYield = errors.New("backfill: the run's worker cap was lowered; letting the shard go")

// overCap returns errYield when a worker cap was set on run and more of
// its shards are leased than it allows: the shard's checkpoint is
// committed, so another worker goes on from it later, each row once.
func (r *Runner) overCap(ctx context.Context, run *Run, sh *shardLease, c *Control) error {
	if sh == nil || c.Workers == nil {
		return nil
	}
	var leased int
	err := r.cfg.DB.QueryRow(ctx, `WITH `+heldSQL+` SELECT count(*) FROM rewind.backfill_shards s
		LEFT JOIN rewind.backfill_leases f ON f.run_id = s.run_id
		WHERE s.run_id = $1 AND s.state = 'pending' AND `+leasedFSQL, run.ID).Scan(&leased)
	if err != nil || leased <= *c.Workers {
		return nil
	}
	return errYield
}

// errCancelAsked marks the error of a worker that stopped for a cancel
// asked for through the control record: its run is to be ended cancelled
// by whoever holds it.
var errCancelAsked = errors.New("cancel asked for")

func cancelAsked(run *Run, c *Control) error {
	return fmt.Errorf("%w: run %s: %w by %s at %s; stopping at a chunk boundary", ErrRunEnded, run.ID, errCancelAsked,
		c.Actor, c.Since.UTC().Format(time.RFC3339))
}

// waitPaused waits at a chunk boundary while run is paused: it
// acknowledges the pause on its shard, records the pause once every live
// worker has (settlePause), and reads the control again every half second
// at most, until the run is resumed or cancelled.
func (r *Runner) waitPaused(ctx context.Context, p *prepared, run *Run, sh *shardLease, t *tally, c *Control) error {
	wait := 20 * time.Millisecond
	var acked int64
	for {
		if sh != nil && acked < c.gen {
			if _, err := r.cfg.DB.Exec(ctx, `UPDATE rewind.backfill_shards SET paused_gen = $4
				WHERE run_id = $1 AND shard = $2 AND epoch = $3 AND paused_gen < $4`, run.ID, sh.shard, sh.epoch, c.gen); err == nil {
				acked = c.gen
			}
		}
		if c.PausedAt == nil {
			if err := r.settlePause(ctx, p.job, run, c); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Warn("backfill: could not record the pause", "run", run.ID, "error", err)
			}
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, 500*time.Millisecond)
		next, err := readControl(ctx, r.cfg.DB, run.ID)
		if err != nil {
			if ctx.Err() != nil {
				return cause(ctx)
			}
			continue // still paused, as far as this worker knows
		}
		c = next
		t.setControl(c)
		switch c.Action() {
		case GoOn:
			return nil
		case Stop:
			return cancelAsked(run, c)
		}
	}
}

// settleSQL records a pause of generation $2 as taken effect when no live
// worker holding a pending shard of the run has yet to acknowledge it, or
// when it was asked for over $3 seconds ago (LeaseTimeout: such a worker
// is frozen or lost, and its next commit is fenced off anyway). It returns
// how many workers had not acknowledged it.
var settleSQL = `WITH ` + heldSQL + `, u AS (SELECT count(*) AS n FROM rewind.backfill_shards s
		LEFT JOIN rewind.backfill_leases f ON f.run_id = s.run_id
		WHERE s.run_id = $1 AND s.state = 'pending' AND s.paused_gen < $2 AND ` + leasedFSQL + `)
	UPDATE rewind.backfill_control c SET paused_at = clock_timestamp() FROM u
	WHERE c.run_id = $1 AND c.gen = $2 AND c.requested = 'pause' AND c.paused_at IS NULL
	AND (u.n = 0 OR c.requested_at < clock_timestamp() - make_interval(secs => $3))
	RETURNING u.n, c.paused_at`

// leasedFSQL is leasedSQL against the run's fencing token f.
var leasedFSQL = fmt.Sprintf(leasedSQL, "f.epoch")

// settlePause moves run from pausing to paused once its pause c has taken
// effect (see settleSQL): the control's paused_at, the run's stored state
// paused and a run.paused entry, once, whoever records it.
func (r *Runner) settlePause(ctx context.Context, job *Job, run *Run, c *Control) error {
	tx, err := r.cfg.DB.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var unacked int64
	var at time.Time
	err = tx.QueryRow(ctx, settleSQL, run.ID, c.gen, r.cfg.LeaseTimeout.Seconds()).Scan(&unacked, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // not yet, or recorded by another worker
	}
	if err != nil {
		return err
	}
	attrs := map[string]string{"reason_kind": string(c.Reason.Kind), "reason": c.Reason.Detail, "requested_by": c.Actor,
		"requested_at": c.Since.UTC().Format(time.RFC3339Nano)}
	if unacked > 0 {
		attrs["forced"] = fmt.Sprintf("%d worker(s) did not reach a chunk boundary within %s of the request; their commits are fenced off",
			unacked, r.cfg.LeaseTimeout)
	}
	e := r.entry(job, "run.paused", run.ID, attrs, map[string]int64{"generation": c.gen})
	e.Message = c.Reason.Detail
	mark := func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE rewind.backfill_runs SET state = 'paused', updated_at = clock_timestamp()
			WHERE id = $1 AND state = 'running'`, run.ID)
		if err != nil {
			return err
		}
		_, err = r.ledger.audit.AppendTx(ctx, tx, e)
		return err
	}
	if r.ledger.same {
		if err := mark(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return inTx(ctx, r.ledger.runs, mark)
}
