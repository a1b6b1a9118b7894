package backfill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// cause is why ctx ended: a lost lease, or the caller's cancellation.
func cause(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, errStop) {
		return c
	}
	return ctx.Err()
}

// loop applies the run's remaining shards with workers workers of this
// process (other processes may work on the run too), then records the run
// finished.
func (r *Runner) loop(ctx context.Context, p *prepared, run *Run, res *Result, workers int, thr *throttle.Throttler) (*Result, error) {
	if !r.ledger.same {
		if err := r.reconcile(ctx, p, run); err != nil {
			return nil, err
		}
	}
	if err := ensureControl(ctx, r.cfg.DB, run.ID); err != nil {
		return nil, err
	}
	t := newTally(run, res, r.cfg.Progress)
	pc, err := r.newPacer(p, run, thr)
	if err != nil {
		return nil, err
	}
	defer pc.close(r, run)
	t.pace = pc
	if run.Canary.applying() {
		// A canary's rows are the run's leading rows: one worker applies
		// them, shard after shard in key order, and stops at their count;
		// then its validations decide (see canary.go).
		if err := r.runWorkers(ctx, p, run, t, 1); err != nil && !errors.Is(err, errCanaryApplied) {
			if errors.Is(err, errCancelAsked) && ctx.Err() == nil {
				return res, r.cancelAtRequest(ctx, p, run, res)
			}
			return res, r.stop(ctx, p, run, err)
		}
		if stop, err := r.canaryCheck(ctx, p, run, res, t.progress()); stop || err != nil {
			return res, err
		}
	}
	if err := r.runWorkers(ctx, p, run, t, workers); err != nil {
		if errors.Is(err, errCancelAsked) && ctx.Err() == nil {
			return res, r.cancelAtRequest(ctx, p, run, res)
		}
		return res, r.stop(ctx, p, run, err)
	}
	if err := r.ledger.progress(ctx, run); err != nil {
		return res, err
	}
	if err := r.endFinished(ctx, p, run); err != nil {
		return res, err
	}
	res.Message = fmt.Sprintf("run %s finished: %d rows changed in %d chunks (%d rows seen, %d skipped to the quarantine)",
		run.ID, res.RowsChanged, res.Chunks, res.RowsSeen, res.RowsSkipped)
	if res.RowsSeen == 0 {
		res.Message = fmt.Sprintf("run %s finished: nothing to do, no row matches the job's WHERE (already applied?); 0 rows changed", run.ID)
	}
	return res, nil
}

// cancelAtRequest ends run, which this process holds and whose workers
// all stopped at a chunk boundary, cancelled as its control asks.
func (r *Runner) cancelAtRequest(ctx context.Context, p *prepared, run *Run, res *Result) error {
	c, err := r.endAtRequest(ctx, p, run)
	if err != nil {
		return err
	}
	res.Message = fmt.Sprintf("run %s cancelled at the request of %s, at a chunk boundary: %d rows changed in %d chunks by this process",
		run.ID, c.Actor, res.RowsChanged, res.Chunks)
	return fmt.Errorf("%w: run %s was cancelled by %s", ErrRunEnded, run.ID, c.Actor)
}

// endAtRequest records run, which this process holds, cancelled as its
// control asks, and returns the control (who asked).
func (r *Runner) endAtRequest(ctx context.Context, p *prepared, run *Run) (*Control, error) {
	c, err := readControl(ctx, r.cfg.DB, run.ID)
	if err != nil {
		return nil, err
	}
	return c, r.endCancelled(ctx, p.job, run, c)
}

// endFinished records run finished, under its lease.
func (r *Runner) endFinished(ctx context.Context, p *prepared, run *Run) error {
	counts := map[string]int64{"chunks": run.Chunks, "rows_seen": run.RowsSeen, "rows_changed": run.RowsChanged,
		"rows_skipped": run.RowsSkipped, "quarantined": run.Quarantined}
	finished := r.entry(p.job, "run.finished", run.ID, nil, counts)
	if err := r.owning(ctx, run, func(tx pgx.Tx) error { return r.ledger.end(ctx, tx, run, Finished, nil, finished) }); err != nil {
		return err
	}
	run.State = Finished
	return nil
}

// applyShard applies the chunks of the shard sh holds, in key order, one
// transaction each with its checkpoint, then marks the shard done. Each
// worker runs it for each shard it leases: this is the per-chunk loop.
func (r *Runner) applyShard(ctx context.Context, p *prepared, run *Run, sh *shardLease, t *tally) error {
	end := sh.end(run)
	if end == nil { // the run has nothing to do
		return finishShard(ctx, r.cfg.DB, run, sh)
	}
	var prefetched *chunkResult
	var took time.Duration // the last chunk's time: the throttle's slow-down rests in proportion
	for {
		// The chunk boundary: go on, wait while paused, stop if cancelled;
		// the overrides set for the run apply from here. After a chunk
		// committed, its fence read the control.
		var known *Control
		if prefetched != nil {
			known = prefetched.control
		}
		if err := r.boundary(ctx, p, run, sh, t, known); err != nil {
			return err
		}
		t.pace.apply(t.control())
		// Then the throttle: it may wait, or pause the run. Then the
		// chunk's size, which the sizer adapts to the chunk time unless
		// the job fixes it; a canary's chunks stop at its rows (see
		// canary.go).
		full := t.pace.sizer.Size()
		size := run.Canary.limit(full, t.seen())
		if size == 0 {
			return errCanaryApplied
		}
		// While it waits, the worker stays at its chunk boundary: a
		// pause, a cancel or a lowered worker cap still applies.
		if err := t.pace.wait(ctx, size, took, func() error { return r.boundary(ctx, p, run, sh, t, nil) }); err != nil {
			return err
		}
		start := time.Now()
		sh.size = full
		var b Bounds
		var ok bool
		var err error
		// The chunk found with the last checkpoint is used unless it is
		// larger than the sizer now wants (it shrinks at once) or a
		// canary cuts it.
		if prefetched != nil && prefetched.next != nil && size == full && prefetched.nextSize <= size {
			b, ok = *prefetched.next, prefetched.nextOK
		} else {
			b, ok, err = r.next(ctx, p, sh.after, end, size)
		}
		if err != nil {
			if ctx.Err() != nil {
				return cause(ctx)
			}
			return &RunError{RunID: run.ID, Chunk: sh.seq, Class: Classify(err), Err: err}
		}
		if !ok {
			return finishShard(ctx, r.cfg.DB, run, sh)
		}
		cr, err := r.chunk(ctx, p, run, sh, sh.seq, b, false)
		if errors.Is(err, errAtBoundary) { // rolled back: a pause or cancel was asked for
			prefetched = nil
			continue
		}
		if err != nil {
			return err
		}
		rows := b.Count
		if rows == 0 {
			rows = cr.Seen
		}
		took = time.Since(start)
		t.pace.sizer.Observe(int(rows), took)
		sh.after, sh.seq, prefetched = b.Hi, sh.seq+1, &cr
		t.add(cr)
	}
}

// next finds the next chunk, retrying transient errors.
func (r *Runner) next(ctx context.Context, p *prepared, after, end Key, size int) (Bounds, bool, error) {
	bo := r.backoff()
	for attempt := 1; ; attempt++ {
		b, ok, err := p.src.next(ctx, r.guard(p), p.args, after, end, size)
		if err == nil || Classify(err) != Transient || attempt >= r.cfg.MaxAttempts || ctx.Err() != nil {
			if ctx.Err() != nil {
				err = cause(ctx)
			}
			return b, ok, err
		}
		if err := sleep(ctx, bo.NextBackOff()); err != nil {
			return b, false, err
		}
	}
}

func (r *Runner) backoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.Multiplier, bo.RandomizationFactor = r.cfg.RetryInitial, r.cfg.RetryMax, 2, 0.5
	return bo
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return cause(ctx)
	case <-t.C:
		return nil
	}
}

// stop records why a run stopped. A cancelled context leaves the run
// resumable (it shows as interrupted); a lost lease leaves it to its new
// owner; anything else marks it failed.
func (r *Runner) stop(ctx context.Context, p *prepared, run *Run, err error) error {
	bg := context.WithoutCancel(ctx)
	if errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrRunEnded) { // the run is another process's now, or cancelled
		return err
	}
	if ctx.Err() != nil {
		c := cause(ctx)
		if errors.Is(c, ErrLeaseLost) {
			return c
		}
		// Only while this process still holds the run: one taken over
		// meanwhile is its new owner's story to tell.
		wctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		e := r.entry(p.job, "run.interrupted", run.ID, map[string]string{"reason": c.Error()}, nil)
		if err := r.appendOwned(wctx, run, e); errors.Is(err, ErrLeaseLost) {
			return err
		}
		return c
	}
	if pe := (*throttle.PauseError)(nil); errors.As(err, &pe) {
		return r.pauseThrottled(bg, p, run, pe)
	}
	var re *RunError
	if !errors.As(err, &re) {
		re = &RunError{RunID: run.ID, Class: Classify(err), Err: err}
	}
	re.RunID = run.ID
	if p.job.Params.hasSecrets() {
		re.Err = withholdDetail(re.Err)
	}
	code, msg := describeErr(re.Err)
	attrs := map[string]string{"class": string(re.Class), "code": code, "key": re.Key.String()}
	e := r.entry(p.job, "run.failed", run.ID, attrs, map[string]int64{"chunk": re.Chunk})
	e.Message = msg
	if serr := r.owning(bg, run, func(tx pgx.Tx) error { return r.ledger.end(bg, tx, run, Failed, re, e) }); serr != nil {
		if errors.Is(serr, ErrLeaseLost) {
			return serr
		}
		return errors.Join(re, serr)
	}
	run.State = Failed
	return re
}

// chunk applies one chunk, retrying transient errors with backoff and
// handling data errors by the run's policy. retry marks a retry-failed
// chunk: one quarantined key, resolved when it commits.
// sh is the worker's shard lease, nil for a retry-failed chunk.
func (r *Runner) chunk(ctx context.Context, p *prepared, run *Run, sh *shardLease, seq int64, b Bounds, retry bool) (chunkResult, error) {
	bo := r.backoff()
	isolating := false
	for attempt := 1; ; attempt++ {
		var cr chunkResult
		var err error
		if isolating {
			cr, err = r.isolate(ctx, p, run, sh, seq, b, attempt)
		} else {
			cr, err = r.commit(ctx, p, run, sh, seq, b, attempt, retry, nil)
		}
		if err != nil && p.job.Params.hasSecrets() {
			// Before the error is logged, recorded or quarantined.
			err = withholdDetail(err)
		}
		if err == nil {
			return cr, nil
		}
		if ctx.Err() != nil {
			return cr, cause(ctx)
		}
		if errors.Is(err, ErrLeaseLost) || errors.Is(err, errAtBoundary) {
			return cr, err
		}
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "backfill_chunks_pkey" {
			// The checkpoint's key is the fence between owners: another
			// process committed this chunk. Not a data error: stop, and
			// leave the run to that process.
			return cr, fmt.Errorf("%w: run %s: chunk %d was committed by another process; stopping so that no two processes apply it",
				ErrLeaseLost, run.ID, seq)
		}
		var re *RunError
		if errors.As(err, &re) {
			return cr, err
		}
		switch class := Classify(err); {
		case class == Transient && attempt < r.cfg.MaxAttempts:
			wait := bo.NextBackOff()
			code, msg := describeErr(err)
			r.cfg.Logger.Warn("backfill: transient error, retrying the chunk", "run", run.ID, "chunk", seq,
				"attempt", attempt, "wait", wait, "code", code, "error", msg)
			e := r.entry(p.job, "chunk.retried", run.ID, map[string]string{"code": code, "wait": wait.String()},
				map[string]int64{"chunk": seq, "attempt": int64(attempt)})
			e.Message = msg
			if aerr := r.appendFenced(ctx, run, sh, e); errors.Is(aerr, ErrLeaseLost) {
				return cr, aerr
			} else if aerr != nil {
				r.cfg.Logger.Warn("backfill: could not record the retry", "run", run.ID, "error", aerr)
			}
			if err := sleep(ctx, wait); err != nil {
				return cr, err
			}
		case class == Transient:
			return cr, &RunError{RunID: run.ID, Chunk: seq, Class: Transient,
				Err: fmt.Errorf("gave up after %d attempts: %w", attempt, err)}
		case class == Data && !isolating && !retry:
			isolating = true // find the failing keys, one by one
			attempt = 0
			bo.Reset()
		default:
			k := b.Hi
			if !retry {
				k = nil
				if ie := itemErrors(err); len(ie) > 0 {
					k = ie[0].Key
				}
			}
			return cr, &RunError{RunID: run.ID, Chunk: seq, Key: k, Class: class, Err: err}
		}
	}
}

// commit applies b in one transaction with its checkpoint and its audit
// entry (when the ledger shares the database). skipped are keys the
// transaction quarantined (by isolate).
func (r *Runner) commit(ctx context.Context, p *prepared, run *Run, sh *shardLease, seq int64, b Bounds, attempt int, retry bool,
	apply func(*chunkEnv) (chunkResult, []Key, error)) (chunkResult, error) {
	var cr chunkResult
	tx, err := r.beginChunk(ctx)
	if err != nil {
		return cr, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// The chunk begins with the session the job was prepared on: the
	// job's SQL also runs outside chunks (its where finds the next chunk),
	// and a change made there would otherwise go on unseen. Such a
	// connection is closed, so that the pool does not hand it out again.
	var sessionChanged bool
	checkStart := func(row pgx.Row) error {
		var start session
		if err := start.scan(row); err != nil {
			return err
		}
		if err := p.session.compare(start); err != nil {
			sessionChanged = true
			err.(*SessionChangedError).When = "before the chunk began: outside a chunk (its where finding the chunks), or on a " +
				"connection that started so (a database or role setting, such as session_replication_role, changed during the run)"
			return err
		}
		return nil
	}
	env := &chunkEnv{tx: tx, args: p.args, runID: run.ID, seq: seq, jobHash: p.hash, intents: &intents{db: r.cfg.DB},
		images: !p.job.NoRollback, log: r.cfg.Logger}
	if _, ok := p.ch.(firstStatement); ok && apply == nil {
		env.checkStart = checkStart // checked with the chunk's statement (scanFirst)
	} else if err := checkStart(tx.QueryRow(ctx, sessionSQL)); err != nil {
		if sessionChanged {
			tx.Conn().Close(context.WithoutCancel(ctx))
		}
		return cr, err
	}
	var skipped []Key
	if apply != nil {
		cr, skipped, err = apply(env)
	} else {
		cr, err = p.ch.apply(ctx, env, b)
	}
	if err != nil {
		if sessionChanged {
			tx.Conn().Close(context.WithoutCancel(ctx))
		}
		return cr, err
	}
	if cr.At.IsZero() {
		if err := tx.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&cr.At); err != nil {
			return cr, err
		}
	}
	// The fence, the checkpoint, the quarantine's resolution and the
	// intent's removal in one round trip, the audit entries in a second
	// (they record the transaction ids the first assigns), then the commit.
	// A worker of a process without the run's lease is fenced by its
	// shard's lease alone.
	batch := &pgx.Batch{}
	end := run.End
	if run.epoch != 0 || sh == nil {
		batch.Queue(fenceSQL, run.ID).QueryRow(func(row pgx.Row) error { return checkFence(row, run) })
	}
	if sh != nil {
		// A worker's chunk commits only while no pause or cancel is asked
		// for (see control.go); the request waits for it.
		batch.Queue(controlFenceSQL, run.ID).QueryRow(fenceControl(&cr.control))
		queueShardCheckpoint(batch, run, sh, b.Hi, cr.Seen)
		end = sh.end(run)
	}
	ids := r.ledger.queueCheckpoint(batch, run.ID, seq, retry, b, cr, attempt)
	if retry {
		batch.Queue("UPDATE rewind.backfill_quarantine SET resolved_at = clock_timestamp() WHERE run_id = $1 AND key = $2",
			run.ID, []string(b.Lo))
	}
	if env.intents.used {
		batch.Queue("DELETE FROM rewind.backfill_intents WHERE run_id = $1 AND seq = $2", run.ID, seq)
	}
	var next nextScan
	t, prefetch := p.src.(*Table)
	if prefetch = prefetch && apply == nil && !retry && len(p.job.Set) > 0; prefetch {
		// A set job writes only the chunk's rows, so the next chunk can be
		// found now, in this round trip.
		size := p.job.chunkSize()
		if sh != nil && sh.size > 0 {
			size = sh.size
		}
		cr.nextSize = size
		q, a := t.nextSQL(p.args, b.Hi, end, size)
		batch.Queue(q, a).QueryRow(next.scan)
	}
	// Last of the job's SQL in the transaction (the prefetch evaluates its
	// where): the session must be as the job was prepared.
	batch.Queue(sessionSQL).QueryRow(func(row pgx.Row) error {
		var after session
		if err := after.scan(row); err != nil {
			return err
		}
		return p.session.compare(after)
	})
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return cr, err
	}
	batch = &pgx.Batch{}
	entries := []audit.Entry{r.chunkEntry(p, run.ID, seq, b, cr, attempt, retry, ids)}
	if len(skipped) > 0 {
		keys := make([]string, len(skipped))
		for i, k := range skipped {
			keys[i] = k.String()
		}
		e := r.entry(p.job, "chunk.skipped", run.ID, map[string]string{"keys": strings.Join(keys, " ")},
			map[string]int64{"chunk": seq, "keys": int64(len(skipped))})
		entries = append([]audit.Entry{e}, entries...)
	}
	for i := range entries {
		entries[i].Time = cr.At
		if r.ledger.same {
			if _, err := r.ledger.audit.QueueAppend(batch, entries[i]); err != nil {
				return cr, err
			}
		}
	}
	if r.ledger.same {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return cr, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return cr, err
	}
	if prefetch {
		nb, ok, _ := next.bounds(b.Hi)
		cr.next, cr.nextOK = &nb, ok
	}
	if !r.ledger.same {
		// The checkpoint is committed; the audit entry follows. If the
		// process dies in between, reconcile adds it when the run resumes.
		for _, e := range entries {
			e.Time = time.Time{}
			if err := r.appendFenced(ctx, run, sh, e); err != nil {
				r.cfg.Logger.Warn("backfill: audit entry deferred to the next resume", "run", run.ID, "chunk", seq, "error", err)
				break
			}
		}
	}
	return cr, nil
}

// beginChunk begins a chunk's transaction, with its lock timeout and the
// bound on idleness that keeps a frozen owner from holding its locks (and
// the run's fence) past LeaseTimeout, in one round trip. The session is
// named for the chunk, so that the throttle's load signal leaves the
// run's own chunks out of the load it measures (see throttle.Load).
func (r *Runner) beginChunk(ctx context.Context) (pgx.Tx, error) {
	return r.cfg.DB.BeginTx(ctx, pgx.TxOptions{BeginQuery: r.beginSQL()})
}

func (r *Runner) beginSQL() string {
	return fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = %d; SET LOCAL idle_in_transaction_session_timeout = %d; "+
		"SET LOCAL application_name = 'rewind backfill chunk'", r.cfg.LockTimeout.Milliseconds(), r.cfg.LeaseTimeout.Milliseconds())
}

// beginUndo begins a rollback chunk's transaction: beginChunk's, with
// PostgreSQL's generic plans for the restore statements. Their custom
// plans are the same (the images by primary key, each row by its key)
// and were planned again at every chunk, because PostgreSQL estimates a
// generic plan's = ANY(@_rw_seqs) dearer than one chunk's: 0.3 ms of a
// chunk's statement time with pg_stat_statements.track_planning.
func (r *Runner) beginUndo(ctx context.Context) (pgx.Tx, error) {
	return r.cfg.DB.BeginTx(ctx, pgx.TxOptions{BeginQuery: r.beginSQL() + "; SET LOCAL plan_cache_mode = force_generic_plan"})
}

// chunkEntry is a chunk's chunk.committed audit entry. ids (nil when the
// checkpoint has none) are its transaction ids, which verify compares with
// the checkpoint's and trusts over them.
func (r *Runner) chunkEntry(p *prepared, runID string, seq int64, b Bounds, cr chunkResult, attempt int, retry bool, ids *txIDs) audit.Entry {
	attrs := map[string]string{"chunk": fmt.Sprint(seq), "after": b.After.String(), "lo": b.Lo.String(), "hi": b.Hi.String(),
		"input_checksum": cr.In, "output_checksum": cr.Out}
	if ids != nil {
		attrs["xid"], attrs["xid_end"] = fmt.Sprint(ids.xid), fmt.Sprint(ids.xidEnd)
	}
	if retry {
		attrs["retry_failed"] = "true"
	}
	return r.entry(p.job, "chunk.committed", runID, attrs, map[string]int64{"chunk": seq, "rows_seen": cr.Seen,
		"rows_changed": cr.Changed, "rows_skipped": cr.Skipped, "attempt": int64(attempt)})
}

// isolate applies a chunk that failed with a data error key by key, each
// under a savepoint, in one transaction. Under the skip policy failing keys
// go to the quarantine and the rest commits; under halt the first failing
// key stops the run and nothing of the chunk is written.
func (r *Runner) isolate(ctx context.Context, p *prepared, run *Run, sh *shardLease, seq int64, b Bounds, attempt int) (chunkResult, error) {
	return r.commit(ctx, p, run, sh, seq, b, attempt, false, func(env *chunkEnv) (chunkResult, []Key, error) {
		// The keys are read in the chunk's transaction, whose end checks
		// that the job's where left the session alone.
		keys, err := p.src.keys(ctx, env.tx, p.args, b)
		if err != nil {
			return chunkResult{}, nil, err
		}
		var total chunkResult
		var ins, outs []string
		var skipped []Key
		for _, k := range keys {
			if _, err := env.tx.Exec(ctx, "SAVEPOINT rewind_key"); err != nil {
				return total, nil, err
			}
			cr, err := p.ch.apply(ctx, env, Bounds{Lo: k, Hi: k})
			if err == nil {
				if _, err := env.tx.Exec(ctx, "RELEASE SAVEPOINT rewind_key"); err != nil {
					return total, nil, err
				}
				total.Seen, total.Changed = total.Seen+cr.Seen, total.Changed+cr.Changed
				ins, outs = append(ins, cr.In), append(outs, cr.Out)
				continue
			}
			if Classify(err) != Data {
				return total, nil, err
			}
			if p.job.policy() == Halt {
				return total, nil, &RunError{RunID: run.ID, Chunk: seq, Key: k, Class: Data, Err: err}
			}
			if _, rerr := env.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT rewind_key"); rerr != nil {
				return total, nil, rerr
			}
			if qerr := r.ledger.quarantine(ctx, env.tx, run.ID, seq, k, err); qerr != nil {
				return total, nil, qerr
			}
			skipped = append(skipped, k)
			total.Seen++
			total.Skipped++
		}
		// Sums of the keys' sums are the chunk's checksums as one statement
		// would have recorded them, which verify recomputes.
		total.In, total.Out = combineSums(ins), combineSums(outs)
		if rs, ok := p.ch.(rangeOutputer); ok {
			if total.Out, err = rs.rangeOut(ctx, env.tx, b); err != nil {
				return total, nil, err
			}
		}
		return total, skipped, nil
	})
}

// RetryFailed processes only the keys run id quarantined, each in its own
// transaction; a key that commits is marked resolved, one that fails again
// stays quarantined with its new error.
func (r *Runner) RetryFailed(ctx context.Context, id string, job *Job, o ApplyOptions) (*Result, error) {
	p, err := r.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if run.Undoes != "" {
		return nil, errIsRollback(run)
	}
	if err := checkRecorded(run, p); err != nil {
		return nil, err
	}
	if err := r.ledger.setup(ctx); err != nil {
		return nil, err
	}
	changes, err := r.checkSame(run, p, o.AllowChangedJob)
	if err != nil {
		return nil, err
	}
	l, err := r.lock(ctx, run)
	if err != nil {
		return nil, err
	}
	defer l.release()
	if err := r.fence(ctx, run); err != nil {
		return nil, err
	}
	if err := r.ledger.claim(ctx, run, r.takenOverEntry(p.job, run, l)); err != nil {
		return nil, err
	}
	l.beat(run, r.cfg.Heartbeat)
	ctx = l.ctx
	keys, err := r.ledger.quarantined(ctx, run.ID, true)
	if err != nil {
		return nil, err
	}
	attrs := map[string]string{}
	for k, v := range changes {
		attrs["changed."+k] = v
	}
	if err := r.appendOwned(ctx, run, r.entry(p.job, "run.retry_failed", run.ID, attrs,
		map[string]int64{"keys": int64(len(keys))})); err != nil {
		return nil, err
	}
	_, seq, err := r.ledger.lastChunk(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	res := &Result{Run: run}
	var still int64
	for _, q := range keys {
		b := Bounds{Lo: q.Key, Hi: q.Key}
		cr, err := r.chunk(ctx, p, run, nil, seq+1, b, true)
		if err != nil {
			var re *RunError
			if ctx.Err() != nil || !errors.As(err, &re) || re.Class != Data {
				return res, err
			}
			still++
			if err := r.requarantine(ctx, p, run, q, re.Err); err != nil {
				return res, err
			}
			continue
		}
		seq++
		res.Chunks++
		res.RowsSeen += cr.Seen
		res.RowsChanged += cr.Changed
	}
	if err := r.ledger.progress(ctx, run); err != nil {
		return res, err
	}
	res.RowsSkipped = still
	res.Message = fmt.Sprintf("run %s: %d quarantined keys retried, %d rows changed, %d still failing",
		run.ID, len(keys), res.RowsChanged, still)
	return res, nil
}

func (r *Runner) requarantine(ctx context.Context, p *prepared, run *Run, q Quarantined, cause error) error {
	tx, err := r.beginChunk(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := checkFence(tx.QueryRow(ctx, fenceSQL, run.ID), run); err != nil {
		return err
	}
	if err := r.ledger.quarantine(ctx, tx, run.ID, q.Chunk, q.Key, cause); err != nil {
		return err
	}
	code, msg := describeErr(cause)
	e := r.entry(p.job, "chunk.skipped", run.ID, map[string]string{"keys": q.Key.String(), "code": code, "retry_failed": "true"},
		map[string]int64{"chunk": q.Chunk, "keys": 1})
	e.Message = msg
	if r.ledger.same {
		if _, err := r.ledger.audit.AppendTx(ctx, tx, e); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return r.appendOwned(ctx, run, e)
}

// reconcile adds the chunk entries a process that died between a chunk's
// commit and its audit entry did not write (only when the ledger is in
// another database than the checkpoints).
func (r *Runner) reconcile(ctx context.Context, p *prepared, run *Run) error {
	have := map[string]bool{}
	for e, err := range r.ledger.audit.Entries(ctx, auditpg.Filter{Subject: run.ID}) {
		if err != nil {
			return err
		}
		if e.Kind == "backfill.chunk.committed" {
			have[e.Attrs["chunk"]] = true
		}
	}
	rows, err := r.ledger.work.Query(ctx, `SELECT seq, retry, after_key, lo, hi, rows_seen, rows_changed, rows_skipped,
		input_checksum, output_checksum, attempts, xid, xid_end FROM rewind.backfill_chunks WHERE run_id = $1 ORDER BY seq`, run.ID)
	if err != nil {
		return fmt.Errorf("reconcile run %s: %w", run.ID, err)
	}
	type chunkRow struct {
		seq     int64
		retry   bool
		b       Bounds
		cr      chunkResult
		attempt int
		xid     *int64
		xidEnd  *int64
	}
	missing, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chunkRow, error) {
		var c chunkRow
		var after, lo, hi []string
		err := row.Scan(&c.seq, &c.retry, &after, &lo, &hi, &c.cr.Seen, &c.cr.Changed, &c.cr.Skipped, &c.cr.In, &c.cr.Out, &c.attempt,
			&c.xid, &c.xidEnd)
		c.b = Bounds{After: after, Lo: lo, Hi: hi}
		return c, err
	})
	if err != nil {
		return fmt.Errorf("reconcile run %s: %w", run.ID, err)
	}
	for _, c := range missing {
		if have[fmt.Sprint(c.seq)] {
			continue
		}
		var ids *txIDs
		if c.xid != nil && c.xidEnd != nil {
			ids = &txIDs{xid: *c.xid, xidEnd: *c.xidEnd}
		}
		e := r.chunkEntry(p, run.ID, c.seq, c.b, c.cr, c.attempt, c.retry, ids)
		e.Attrs["recovered"] = "true"
		if err := r.appendOwned(ctx, run, e); err != nil {
			return err
		}
	}
	return nil
}
