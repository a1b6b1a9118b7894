package backfill

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
)

// RollbackResult is what Rollback did.
type RollbackResult struct {
	// Run is the rollback run; Undoes the run it rolled back.
	Run    *Run   `json:"run"`
	Undoes string `json:"undoes"`
	// Resumed: an unfinished rollback was continued.
	Resumed bool `json:"resumed"`
	// This call's work: chunks undone, image rows read, rows restored,
	// rows already as before, conflicts left (changed since the run wrote
	// them) and a set job's rows deleted since (not restorable).
	Chunks    int64 `json:"chunks"`
	Rows      int64 `json:"rows"`
	Restored  int64 `json:"restored"`
	Unchanged int64 `json:"unchanged"`
	Conflicts int64 `json:"conflicts"`
	Deleted   int64 `json:"deleted"`
	// ConflictRows are the first rows the rollback left, with their values
	// now, as the run wrote them and before it.
	ConflictRows []RollbackDiff `json:"conflict_rows"`
	// Events the run appended, which the rollback could not take back.
	Events  int64  `json:"events"`
	Message string `json:"message"`
}

// Rollback rolls back run id (a finished or cancelled run): for each of
// its chunks in o.Chunks, one transaction restores the rows the chunk
// changed from its before-images, with the rollback's checkpoint, the
// chunk marked undone and its audit entry. A row changed since the run
// wrote it is left as it is and recorded in the rollback's quarantine
// (code conflict), unless o.Force. A rollback is a run (kind rollback,
// job "rollback:JOB"): it holds a lease, it is continued where it
// stopped by calling Rollback again with the same options, and each
// chunk is undone once, whatever the crashes and the rollbacks. It is
// paced by o.Throttle and controlled as a run: Pause, Unpause, Cancel and
// Set (max rate) apply at the boundary before each chunk; a rollback
// paused through its control is un-paused by calling Rollback again. Call
// PlanRollback first to see what it would do.
func (r *Runner) Rollback(ctx context.Context, id string, o RollbackOptions) (*RollbackResult, error) {
	tg, err := r.rollbackTarget(ctx, id, o)
	if err != nil {
		return nil, err
	}
	if err := tg.nothingToDo(o, false); err != nil {
		return nil, err
	}
	if err := r.prepareTables(ctx, tg); err != nil {
		return nil, err
	}
	if err := r.openRunOfJob(ctx, tg.run); err != nil {
		return nil, err
	}
	if err := r.ledger.setup(ctx); err != nil {
		return nil, err
	}
	spec, hash := rollbackSpec(tg, o)
	name := tg.job().Name
	for {
		ln, err := r.ledger.lineage(ctx, name)
		if err != nil {
			return nil, err
		}
		if last := ln.last; last != nil && last.open() {
			if last.Undoes != tg.run.ID || last.JobHash != hash {
				return nil, fmt.Errorf("%w: rollback %s (of run %s, chunks %v, force %v) of job %s is %s; continue it with "+
					"'rewind backfill rollback %s --chunks %v --execute' (with --force if it had it), or cancel it "+
					"(rewind backfill cancel %s), before another rollback of the job", ErrUnfinishedRun, last.ID, last.Undoes,
					last.Job["chunks"], last.Job["force"], tg.run.JobName, last.State, last.Undoes, last.Job["chunks"], last.ID)
			}
			// A rollback paused through its control (an operator, its
			// throttle) is un-paused: the process waiting at its chunk
			// boundary goes on, or, with none, this one continues it.
			if st, goesOn, err := r.liftPause(ctx, last); err != nil {
				return nil, err
			} else if goesOn {
				return &RollbackResult{Run: st, Undoes: tg.run.ID, Resumed: true, ConflictRows: []RollbackDiff{},
					Message: fmt.Sprintf("rollback %s of run %s resumed: the process waiting at a chunk boundary (%s) goes on "+
						"with it; 'rewind backfill status %s' follows it", last.ID, tg.run.ID, st.Owner, last.ID)}, nil
			}
			res, err := r.continueRollback(ctx, tg, o, last, spec, hash)
			if errors.Is(err, errRunClosed) {
				continue
			}
			return res, err
		}
		// No rollback is open: what is left to undo is what the target
		// says now, read after the lineage. One read before it could
		// predate a rollback another process finished meanwhile, and
		// start a second, empty one.
		if tg, err = r.rollbackTarget(ctx, id, o); err != nil {
			return nil, err
		}
		if err := tg.nothingToDo(o, false); err != nil {
			return nil, err
		}
		res, err := r.startRollback(ctx, tg, o, ln.last, spec, hash)
		if !errors.Is(err, errRunStarted) {
			return res, err
		}
	}
}

// errIsRollback refuses to resume or retry a rollback run as if it were
// a run of a job.
func errIsRollback(run *Run) error {
	return &rewind.ValidationError{Field: "run id", Value: run.ID, Reason: fmt.Sprintf("run %s is a rollback of run %s: "+
		"continue it with 'rewind backfill rollback %s --execute' (Runner.Rollback), with the same --chunks and --force",
		run.ID, run.Undoes, run.Undoes)}
}

// resumeRollback continues rollback run as Rollback does, with the
// chunks and force it was started with: a pause through its control is
// lifted, and the process waiting at its chunk boundary goes on, or this
// one continues it. A canary's promote does not apply to a rollback.
func (r *Runner) resumeRollback(ctx context.Context, run *Run, o ApplyOptions) (*Result, error) {
	if o.promote {
		return nil, errIsRollback(run)
	}
	if !run.open() {
		return nil, fmt.Errorf("%w: rollback %s of run %s is %s: nothing to resume; 'rewind backfill rollback %s --execute' "+
			"rolls back what is left", ErrRunEnded, run.ID, run.Undoes, run.State, run.Undoes)
	}
	chunks, _ := run.Job["chunks"].(string)
	rng, err := ParseChunkRange(chunks)
	if err != nil {
		return nil, fmt.Errorf("rollback %s recorded chunks %q: %w", run.ID, chunks, err)
	}
	force, _ := run.Job["force"].(bool)
	rr, err := r.Rollback(ctx, run.Undoes, RollbackOptions{Chunks: rng, Force: force, Throttle: o.Throttle})
	if rr == nil {
		return nil, err
	}
	return &Result{Run: rr.Run, Resumed: true, Chunks: rr.Chunks, RowsSeen: rr.Rows, RowsChanged: rr.Restored,
		RowsSkipped: rr.Conflicts + rr.Deleted, Message: rr.Message}, err
}

// openRunOfJob refuses a rollback while the run's job has an open run:
// it would change the same rows at the same time.
func (r *Runner) openRunOfJob(ctx context.Context, run *Run) error {
	var open, state string
	err := r.ledger.runs.QueryRow(ctx, `SELECT id, state FROM rewind.backfill_runs WHERE job_name = $1 AND state IN ('running', 'failed', 'paused')
		ORDER BY created_at DESC LIMIT 1`, run.JobName).Scan(&open, &state)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the runs of job %s: %w", run.JobName, err)
	}
	return fmt.Errorf("%w: job %s has an unfinished run, %s (%s): it and the rollback of run %s would change the same rows; "+
		"finish it (rewind backfill resume %s) or cancel it (rewind backfill cancel %s) first", ErrUnfinishedRun, run.JobName,
		open, state, run.ID, open, open)
}

func (r *Runner) startRollback(ctx context.Context, tg *rbTarget, o RollbackOptions, prev *Run, spec map[string]any, hash string) (*RollbackResult, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return nil, err
	}
	job := tg.job()
	origin := r.origin(job)
	var pending int64
	for _, p := range tg.pending {
		pending += p.n
	}
	run := &Run{ID: id.String(), JobName: job.Name, JobVersion: job.Version, JobHash: hash, Job: spec, Params: map[string]string{},
		Binary: r.cfg.Binary, Actor: origin.Actor, Host: origin.Host, Command: origin.Command, State: Running, Policy: Halt,
		ChunkSize: tg.run.ChunkSize, Total: tg.rows + pending, Undoes: tg.run.ID, Session: map[string]string{}}
	attrs := map[string]string{"undoes": tg.run.ID, "chunks": tg.rng.String(), "force": strconv.FormatBool(o.Force)}
	if prev != nil {
		run.PrevRun = prev.ID
		attrs["prev_run"] = prev.ID
	}
	l, err := r.lock(ctx, run)
	if err != nil {
		return nil, err
	}
	defer l.release()
	if err := r.fence(ctx, run); err != nil {
		return nil, err
	}
	started := func(run *Run) audit.Entry {
		return r.entry(job, "rollback.started", run.ID, attrs, map[string]int64{"total": run.Total})
	}
	if err := r.ledger.createRun(ctx, run, started); err != nil {
		if errors.Is(err, errRunStarted) {
			r.cfg.DB.Exec(context.WithoutCancel(ctx), "DELETE FROM rewind.backfill_leases WHERE run_id = $1", run.ID)
		}
		return nil, err
	}
	l.beat(run, r.cfg.Heartbeat)
	return r.rollbackLoop(l.ctx, tg, o, run, &RollbackResult{Run: run, Undoes: tg.run.ID})
}

func (r *Runner) continueRollback(ctx context.Context, tg *rbTarget, o RollbackOptions, run *Run, spec map[string]any, hash string) (*RollbackResult, error) {
	job := tg.job()
	l, err := r.lock(ctx, run)
	if err != nil {
		return nil, err
	}
	defer l.release()
	if err := r.fence(ctx, run); err != nil {
		return nil, err
	}
	if err := r.ledger.progress(ctx, run); err != nil {
		return nil, err
	}
	resumed := func(from State) audit.Entry {
		attrs := map[string]string{"from_state": string(from), "undoes": tg.run.ID, "kind": "rollback"}
		if l.ended != "" {
			attrs["ended_frozen_owner"] = l.ended
		}
		return r.entry(job, "run.resumed", run.ID, attrs, map[string]int64{"chunks_done": run.Chunks, "rows_done": run.RowsSeen})
	}
	if err := r.ledger.resumeRun(ctx, run, hash, r.cfg.Binary, spec, 0, r.takenOverEntry(job, run, l), resumed); err != nil {
		return nil, err
	}
	l.beat(run, r.cfg.Heartbeat)
	if !r.ledger.same {
		if err := r.reconcileRollback(l.ctx, job, run); err != nil {
			return nil, err
		}
	}
	return r.rollbackLoop(l.ctx, tg, o, run, &RollbackResult{Run: run, Undoes: tg.run.ID, Resumed: true})
}

// rollbackLoop undoes the chunks left, then, with Force, the conflicts
// earlier rollbacks left, and ends the rollback run. Each chunk is undone
// as a forward run applies one: at a chunk boundary that reads the run's
// control (a pause waits there, holding the lease; a cancel ends the
// rollback cancelled), after the run's throttle (which may wait, or pause
// the rollback), in one transaction fenced by the control record.
func (r *Runner) rollbackLoop(ctx context.Context, tg *rbTarget, o RollbackOptions, run *Run, res *RollbackResult) (*RollbackResult, error) {
	p := &prepared{job: tg.job()}
	// What is left, now that this process holds the rollback: its previous
	// owner may have undone chunks while this one waited.
	tg.groups, tg.undone, tg.rows = nil, map[string]int64{}, 0
	if err := r.readChunks(ctx, tg); err != nil {
		return res, r.stop(ctx, p, run, err)
	}
	if err := r.prepareTables(ctx, tg); err != nil {
		return res, r.stop(ctx, p, run, err)
	}
	_, seq, err := r.ledger.lastChunk(ctx, run.ID)
	if err != nil {
		return res, err
	}
	if err := ensureControl(ctx, r.cfg.DB, run.ID); err != nil {
		return res, err
	}
	t := newTally(run, &Result{}, r.cfg.Progress)
	if t.pace, err = r.newPacer(p, run, o.Throttle); err != nil {
		return res, err
	}
	defer t.pace.close(r, run)
	var took time.Duration // the last chunk's time: the throttle's slow-down rests in proportion
	step := func(u undo) error {
		for {
			// The chunk boundary, then the throttle, as a forward run's
			// worker (applyShard); the chunk's size is the run's chunk's.
			if err := r.boundary(ctx, p, run, nil, t, nil); err != nil {
				return err
			}
			t.pace.apply(t.control())
			if err := t.pace.wait(ctx, int(max(u.rows, 1)), took, func() error { return r.boundary(ctx, p, run, nil, t, nil) }); err != nil {
				return err
			}
			start := time.Now()
			cr, err := r.undoChunk(ctx, p, tg, run, seq+1, u)
			took = time.Since(start)
			if errors.Is(err, errAtBoundary) { // rolled back: a pause or cancel was asked for
				continue
			}
			if err != nil {
				return err
			}
			seq++
			res.Chunks++
			res.Rows += cr.Seen
			res.Restored += cr.Changed
			res.Conflicts += cr.conflicts
			res.Deleted += cr.deleted
			res.Unchanged += cr.unchanged
			t.add(cr.chunkResult)
			return nil
		}
	}
	stop := func(err error) (*RollbackResult, error) {
		if errors.Is(err, errCancelAsked) && ctx.Err() == nil {
			c, err := r.endAtRequest(ctx, p, run)
			if err != nil {
				return res, err
			}
			res.Message = fmt.Sprintf("rollback %s of run %s cancelled at the request of %s, at a chunk boundary: %d rows "+
				"restored in %d chunks by this process; the chunks undone stay undone, and 'rewind backfill rollback %s "+
				"--execute' starts a rollback of the rest", run.ID, tg.run.ID, c.Actor, res.Restored, res.Chunks, tg.run.ID)
			return res, fmt.Errorf("%w: rollback %s was cancelled by %s", ErrRunEnded, run.ID, c.Actor)
		}
		return res, r.stop(ctx, p, run, err)
	}
	for _, g := range tg.groups {
		for _, s := range g.seqs {
			if err := step(undo{seq: s, rs: g.rs, rows: tg.sizes[s]}); err != nil {
				return stop(err)
			}
		}
	}
	if o.Force {
		pending, err := r.pendingConflicts(ctx, tg.run.ID, tg.rng)
		if err != nil {
			return stop(err)
		}
		for _, pc := range pending {
			if pc.prev == run.ID {
				continue
			}
			rs, err := r.restorerOf(ctx, tg, pc.seq)
			if err != nil {
				return stop(err)
			}
			if err := step(undo{seq: pc.seq, rs: rs, prev: pc.prev, rows: pc.n}); err != nil {
				return stop(err)
			}
		}
	}
	// A purge of the images while this ran would leave chunks undone
	// without a word: say so instead.
	if err := r.checkPurged(ctx, tg.run); err != nil {
		return stop(err)
	}
	return res, r.finishRollback(ctx, tg, o, run, res)
}

// undo is one chunk of the run to undo: all its images, or (prev set)
// only the conflicts rollback prev left in it.
type undo struct {
	seq  int64
	rs   *restorer
	prev string
	rows int64 // rows to restore, for the throttle's max rate
}

// undoneChunk is a chunk's result with the rollback's own counts.
type undoneChunk struct {
	chunkResult
	conflicts, deleted, unchanged int64
}

func (r *Runner) finishRollback(ctx context.Context, tg *rbTarget, o RollbackOptions, run *Run, res *RollbackResult) error {
	if err := r.ledger.progress(ctx, run); err != nil {
		return err
	}
	counts := map[string]int64{"chunks": run.Chunks, "rows": run.RowsSeen, "restored": run.RowsChanged,
		"skipped": run.RowsSkipped, "conflicts": run.Quarantined}
	finished := r.entry(tg.job(), "rollback.finished", run.ID, map[string]string{"undoes": tg.run.ID, "chunks": tg.rng.String(),
		"force": strconv.FormatBool(o.Force)}, counts)
	undone := r.entry(&Job{Name: tg.run.JobName, Version: tg.run.JobVersion}, "run.rolled_back", tg.run.ID,
		map[string]string{"by": run.ID, "chunks": tg.rng.String(), "force": strconv.FormatBool(o.Force)}, counts)
	err := r.owning(ctx, run, func(tx pgx.Tx) error {
		if err := r.ledger.end(ctx, tx, run, Finished, nil, finished); err != nil {
			return err
		}
		if r.ledger.same {
			_, err := r.ledger.audit.AppendTx(ctx, tx, undone)
			return err
		}
		return r.ledger.appendAudit(ctx, undone)
	})
	if err != nil {
		return err
	}
	run.State = Finished
	left, err := r.leftConflicts(ctx, tg, run.ID, r.cfg.PreviewRows)
	if err != nil {
		return err
	}
	res.ConflictRows = left
	res.Events = tg.events
	res.Message = fmt.Sprintf("rollback %s of run %s finished: %d rows restored in %d chunks (%d image rows; %d already as before)",
		run.ID, tg.run.ID, res.Restored, res.Chunks, res.Rows, res.Unchanged)
	if run.Quarantined > 0 {
		res.Message += fmt.Sprintf("; %d rows were left as they are: changed (or deleted) since the run wrote them "+
			"('rewind backfill status %s' lists them; 'rewind backfill rollback %s --chunks %s --force --execute' overwrites the "+
			"changed ones)", run.Quarantined, run.ID, tg.run.ID, tg.rng)
	}
	if tg.events > 0 {
		res.Message += fmt.Sprintf("; the %d event(s) the run appended were not taken back (an event store is append-only)", tg.events)
	}
	return nil
}

// restorerOf finds the restorer of chunk seq's images.
func (r *Runner) restorerOf(ctx context.Context, tg *rbTarget, seq int64) (*restorer, error) {
	var h imageHeader
	err := r.cfg.DB.QueryRow(ctx, `SELECT rel, kind, key_columns, columns FROM rewind.backfill_images WHERE run_id = $1 AND seq = $2
		ORDER BY part LIMIT 1`, tg.run.ID, seq).Scan(&h.rel, &h.kind, &h.keyCols, &h.cols)
	if err != nil {
		return nil, fmt.Errorf("read the before-images of chunk %d of run %s: %w", seq, tg.run.ID, err)
	}
	for _, g := range tg.groups {
		if g.h.same(h) && g.rs != nil {
			return g.rs, nil
		}
	}
	tg.groups = append(tg.groups, rbGroup{h: h})
	if err := r.prepareTables(ctx, tg); err != nil {
		return nil, err
	}
	return tg.groups[len(tg.groups)-1].rs, nil
}

// undoChunk undoes one chunk, retrying transient errors with backoff.
// Any other error stops the rollback, which can then be continued.
func (r *Runner) undoChunk(ctx context.Context, p *prepared, tg *rbTarget, run *Run, seq int64, u undo) (undoneChunk, error) {
	bo := r.backoff()
	for attempt := 1; ; attempt++ {
		cr, err := r.commitUndo(ctx, p, tg, run, seq, u, attempt)
		if err == nil {
			return cr, nil
		}
		if ctx.Err() != nil {
			return cr, cause(ctx)
		}
		if errors.Is(err, ErrLeaseLost) || errors.Is(err, errAtBoundary) {
			return cr, err
		}
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23505" &&
			(pe.ConstraintName == "backfill_chunks_pkey" || pe.ConstraintName == "backfill_undone_pkey") {
			return cr, fmt.Errorf("%w: rollback %s: chunk %d of run %s was undone by another process; stopping so that "+
				"no two processes undo it", ErrLeaseLost, run.ID, u.seq, tg.run.ID)
		}
		class := Classify(err)
		if class != Transient || attempt >= r.cfg.MaxAttempts {
			if class == Transient {
				err = fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return cr, &RunError{RunID: run.ID, Chunk: seq, Class: class,
				Err: fmt.Errorf("undo chunk %d of run %s: %w", u.seq, tg.run.ID, err)}
		}
		wait := bo.NextBackOff()
		code, msg := describeErr(err)
		r.cfg.Logger.Warn("backfill: transient error, retrying the rollback chunk", "run", run.ID, "chunk", seq,
			"attempt", attempt, "wait", wait, "code", code, "error", msg)
		e := r.entry(p.job, "chunk.retried", run.ID, map[string]string{"code": code, "wait": wait.String()},
			map[string]int64{"chunk": seq, "attempt": int64(attempt)})
		e.Message = msg
		if aerr := r.appendOwned(ctx, run, e); errors.Is(aerr, ErrLeaseLost) {
			return cr, aerr
		}
		if err := sleep(ctx, wait); err != nil {
			return cr, err
		}
	}
}

// commitUndo undoes one chunk of the run in one transaction: the restore
// statement, then the fence, the rollback's checkpoint (its key range is
// the undone chunk's number), the chunk marked undone (or, for a pass
// over an earlier rollback's conflicts, those restored marked resolved,
// by the statement) and the audit entry, then the commit.
func (r *Runner) commitUndo(ctx context.Context, p *prepared, tg *rbTarget, run *Run, seq int64, u undo, attempt int) (undoneChunk, error) {
	var cr undoneChunk
	tx, err := r.beginUndo(ctx)
	if err != nil {
		return cr, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if cr, err = r.restoreChunk(ctx, tx, tg, run, u); err != nil {
		return cr, err
	}
	cr.Skipped = cr.conflicts + cr.deleted
	b := Bounds{Lo: Key{fmt.Sprint(u.seq)}, Hi: Key{fmt.Sprint(u.seq)}}
	batch := &pgx.Batch{}
	batch.Queue(fenceSQL, run.ID).QueryRow(func(row pgx.Row) error { return checkFence(row, run) })
	// It commits only while no pause or cancel is asked for, as a forward
	// run's chunk (see control.go).
	batch.Queue(controlFenceSQL, run.ID).QueryRow(checkControlFence)
	r.ledger.queueCheckpoint(batch, run.ID, seq, u.prev != "", b, cr.chunkResult, attempt)
	if u.prev == "" {
		batch.Queue("INSERT INTO rewind.backfill_undone (run_id, seq, by_run) VALUES ($1, $2, $3)", tg.run.ID, u.seq, run.ID)
	}
	e := undoEntry(r, p.job, run.ID, tg.run.ID, seq, u, cr, attempt)
	e.Time = cr.At
	if r.ledger.same {
		if _, err := r.ledger.audit.QueueAppend(batch, e); err != nil {
			return cr, err
		}
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return cr, err
	}
	if err := tx.Commit(ctx); err != nil {
		return cr, err
	}
	if !r.ledger.same {
		e.Time = time.Time{}
		if err := r.appendOwned(ctx, run, e); err != nil {
			r.cfg.Logger.Warn("backfill: audit entry deferred to the next resume", "run", run.ID, "chunk", seq, "error", err)
		}
	}
	return cr, nil
}

// restoreChunk restores chunk u of the run in tx: first every row as the
// run wrote it, in one statement (fastSQL); if some are not, the full
// classification (restoreSQL) restores what it can and records the rest.
// A pass over an earlier rollback's conflicts takes the second way only.
func (r *Runner) restoreChunk(ctx context.Context, tx pgx.Tx, tg *rbTarget, run *Run, u undo) (undoneChunk, error) {
	var cr undoneChunk
	a := restoreArgs(tg.run.ID, []int64{u.seq}, tg.force(u), u.prev)
	a["_rw_rb"] = typed{typ: "text", v: run.ID}
	var fast int64
	var fastOut string
	if u.prev == "" {
		if err := tx.QueryRow(ctx, u.rs.fastSQL(), bindArgs(a)).Scan(&cr.Seen, &fast, &cr.In, &fastOut, &cr.At); err != nil {
			return cr, err
		}
		if cr.Seen == 0 {
			return cr, fmt.Errorf("the before-images of chunk %d of run %s are gone (purged while the rollback ran?)", u.seq, tg.run.ID)
		}
		if fast == cr.Seen {
			cr.Changed, cr.Out = fast, fastOut
			return cr, nil
		}
	}
	var want, seen int64
	var in, out string
	err := tx.QueryRow(ctx, u.rs.restoreSQL(u.prev != ""), bindArgs(a)).Scan(&seen, &want, &cr.Changed, &cr.conflicts,
		&cr.deleted, &cr.unchanged, &in, &out, &cr.At)
	if err != nil {
		return cr, err
	}
	if cr.Changed != want {
		return cr, errChangedMeanwhile(fmt.Sprintf("%d row(s) to restore", want-cr.Changed))
	}
	if u.prev != "" {
		cr.Seen, cr.In, cr.Out = seen, in, out
		return cr, nil
	}
	// The rows the first statement restored are as before now.
	cr.Changed += fast
	cr.unchanged -= fast
	cr.Out = addSums(fastOut, out)
	return cr, nil
}

// addSums adds two checksums (decimal sums of 64-bit hashes).
func addSums(a, b string) string {
	x, _ := new(big.Int).SetString(a, 10)
	y, _ := new(big.Int).SetString(b, 10)
	if x == nil || y == nil {
		return a + "+" + b
	}
	return x.Add(x, y).String()
}

// force: a pass over an earlier rollback's conflicts restores them.
func (tg *rbTarget) force(u undo) bool { return tg.forced || u.prev != "" }

func undoEntry(r *Runner, job *Job, runID, undoes string, seq int64, u undo, cr undoneChunk, attempt int) audit.Entry {
	attrs := map[string]string{"chunk": fmt.Sprint(seq), "undoes": undoes, "undone_chunk": fmt.Sprint(u.seq),
		"input_checksum": cr.In, "output_checksum": cr.Out}
	if u.prev != "" {
		attrs["conflicts_of"] = u.prev
	}
	return r.entry(job, "rollback.chunk", runID, attrs, map[string]int64{"chunk": seq, "undone_chunk": u.seq,
		"rows": cr.Seen, "restored": cr.Changed, "conflicts": cr.conflicts, "deleted": cr.deleted,
		"unchanged": cr.unchanged, "attempt": int64(attempt)})
}

// reconcileRollback adds the chunk entries a rollback that died between a
// chunk's commit and its audit entry did not write (a ledger in another
// database than the target's).
func (r *Runner) reconcileRollback(ctx context.Context, job *Job, run *Run) error {
	have := map[string]bool{}
	for e, err := range r.ledger.audit.Entries(ctx, auditpg.Filter{Subject: run.ID}) {
		if err != nil {
			return err
		}
		if e.Kind == "backfill.rollback.chunk" {
			have[e.Attrs["chunk"]] = true
		}
	}
	rows, err := r.ledger.work.Query(ctx, `SELECT seq, lo[1]::bigint, rows_seen, rows_changed, rows_skipped, input_checksum,
		output_checksum, attempts FROM rewind.backfill_chunks WHERE run_id = $1 ORDER BY seq`, run.ID)
	if err != nil {
		return fmt.Errorf("reconcile rollback %s: %w", run.ID, err)
	}
	type row struct {
		seq     int64
		u       undo
		cr      undoneChunk
		attempt int
	}
	done, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var x row
		err := cr.Scan(&x.seq, &x.u.seq, &x.cr.Seen, &x.cr.Changed, &x.cr.Skipped, &x.cr.In, &x.cr.Out, &x.attempt)
		return x, err
	})
	if err != nil {
		return fmt.Errorf("reconcile rollback %s: %w", run.ID, err)
	}
	undoes, _ := run.Job["rollback_of"].(string)
	for _, x := range done {
		if have[fmt.Sprint(x.seq)] {
			continue
		}
		e := undoEntry(r, job, run.ID, undoes, x.seq, x.u, x.cr, x.attempt)
		e.Attrs["recovered"] = "true"
		if err := r.appendOwned(ctx, run, e); err != nil {
			return err
		}
	}
	return nil
}

// leftConflicts lists the first n rows rollback rb left (its quarantine),
// with their values now, as the run wrote them and before it.
func (r *Runner) leftConflicts(ctx context.Context, tg *rbTarget, rb string, n int) ([]RollbackDiff, error) {
	out := []RollbackDiff{}
	rows, err := r.cfg.DB.Query(ctx, `SELECT DISTINCT chunk_seq FROM rewind.backfill_quarantine WHERE run_id = $1
		AND resolved_at IS NULL ORDER BY 1 LIMIT $2`, rb, n)
	if err != nil {
		return nil, fmt.Errorf("read the conflicts of rollback %s: %w", rb, err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	for _, s := range seqs {
		if len(out) >= n {
			break
		}
		rs, err := r.restorerOf(ctx, tg, s)
		if err != nil {
			return nil, err
		}
		a := restoreArgs(tg.run.ID, []int64{s}, false, "")
		a["_rw_rb"] = typed{typ: "text", v: rb}
		got, err := r.sample(ctx, r.cfg.DB, tg, rbGroup{h: rs.h, rs: rs}, a, []string{"conflict", "deleted"}, n-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}
