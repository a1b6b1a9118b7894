package backfill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/audit"
)

// A lease is a run's ownership. It has two parts:
//
//   - a session advisory lock held on a dedicated connection to the ledger
//     database, with a heartbeat. If the process dies, the database closes
//     the connection and the lock goes with it, so the run shows as
//     interrupted at once and can be taken over; no run stays "running"
//     forever. If the process is frozen (stopped, swapped out, its host
//     suspended) its connection stays open but idle: once it has been idle
//     for Config.LeaseTimeout, the next process that wants the run ends
//     that session and takes the lock.
//   - a fencing token in the target database: every new owner takes the
//     next epoch of the run's row in rewind.backfill_leases, and every
//     chunk commits only if that row still holds its owner's epoch, read
//     FOR SHARE in the chunk's own transaction. Taking the next epoch
//     waits for a chunk of the previous owner that is committing, and a
//     chunk that commits after it fails. So an owner that lost its lease
//     (its connection was cut, it was frozen and taken over) stops before
//     its next commit, and the new owner, which reads the run's progress
//     after taking the epoch, never finds its own chunk already taken.
type lease struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	conn   *pgx.Conn
	done   chan struct{}
	pool   *pgxpool.Pool // to wait for the lock to go when conn broke
	obj    int32
	// beating: the heartbeat runs, and closes done when it stops.
	beating bool
	// ended describes the frozen owner whose session was ended to take
	// the lease, or is empty.
	ended string
}

// lock takes run's advisory lock on a dedicated connection, waiting up to
// LeaseWait for its owner to let go, and ending the session of an owner
// that looks frozen.
func (r *Runner) lock(ctx context.Context, run *Run) (*lease, error) {
	return r.lockWithin(ctx, run, r.cfg.LeaseWait)
}

// lockWithin is lock, waiting up to wait.
func (r *Runner) lockWithin(ctx context.Context, run *Run, wait time.Duration) (*lease, error) {
	if run.lockObj == 0 {
		run.lockObj = lockObj(run.ID)
	}
	pc, err := r.ledger.runs.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the ledger: %w", err)
	}
	conn := pc.Hijack() // the lock lives as long as this connection
	fail := func(err error) (*lease, error) {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	l := &lease{conn: conn, done: make(chan struct{}), pool: r.ledger.runs, obj: int32(uint32(run.lockObj))}
	// Named while it waits, too: the throttle's load signal leaves the
	// backfill's own sessions out by name, and processes racing for a run
	// wait on its lock as active backends (they throttled each other).
	if _, err := conn.Exec(ctx, "SELECT set_config('application_name', $1, false)", "rewind backfill waiting for run "+run.ID); err != nil {
		return fail(fmt.Errorf("take the lease of run %s: %w", run.ID, err))
	}
	deadline := time.Now().Add(wait)
	for try := 0; ; try++ {
		// Wait on the lock itself, so that the wait ends the moment the
		// owner lets go, but for at most a second at a time, to look for
		// a frozen owner in between.
		wait := min(time.Until(deadline), time.Second)
		if try == 0 || wait < time.Millisecond {
			wait = time.Millisecond
		}
		_, err := conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d; SELECT pg_advisory_lock(%d, %d); RESET lock_timeout",
			wait.Milliseconds(), int32(leaseClass), l.obj))
		if err == nil {
			break
		}
		if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "55P03" {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fail(fmt.Errorf("take the lease of run %s: %w", run.ID, err))
		}
		h, err := r.endFrozen(ctx, conn, run)
		if err != nil {
			return fail(err)
		}
		if h.ended {
			l.ended = fmt.Sprintf("%s (session %d, idle %s)", run.Owner, h.pid, h.idle.Round(time.Second))
			r.cfg.Logger.Warn("backfill: ended the session of a frozen owner to take over its run", "run", run.ID,
				"owner", run.Owner, "pid", h.pid, "idle", h.idle.Round(time.Second))
			continue
		}
		if time.Now().After(deadline) {
			return fail(r.lockedErr(run, h))
		}
	}
	// The name shows lease holders in pg_stat_activity.
	if _, err := conn.Exec(ctx, "SELECT set_config('application_name', $1, false)", "rewind backfill lease "+run.ID); err != nil {
		return fail(fmt.Errorf("take the lease of run %s: %w", run.ID, err))
	}
	run.Owner = owner()
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	return l, nil
}

// holder is what endFrozen saw of the session holding a run's lock.
type holder struct {
	pid   int32
	state string // pg_stat_activity's state, empty when not visible
	idle  time.Duration
	ended bool
}

// endFrozen ends the session holding run's lock if it has been idle for
// LeaseTimeout: its process no longer heartbeats (a live owner's
// heartbeat runs a statement on it every Heartbeat). The owner, if it ever
// wakes up, finds its lease gone and its next commit fenced off.
func (r *Runner) endFrozen(ctx context.Context, conn *pgx.Conn, run *Run) (holder, error) {
	var h holder
	var idle float64
	err := conn.QueryRow(ctx, `SELECT a.pid, coalesce(a.state, ''), coalesce(extract(epoch FROM clock_timestamp() - a.state_change), 0)::float8,
		CASE WHEN a.state = 'idle' AND a.state_change < clock_timestamp() - make_interval(secs => $3)
			THEN pg_terminate_backend(a.pid, 5000) ELSE false END
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2 AND l.granted
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		int64(leaseClass), run.lockObj, r.cfg.LeaseTimeout.Seconds()).Scan(&h.pid, &h.state, &idle, &h.ended)
	h.idle = time.Duration(idle * float64(time.Second))
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows): // let go meanwhile
		return h, nil
	case errors.As(err, &pe) && pe.Code == "42501":
		return h, fmt.Errorf("%w: run %s is held by %s, whose session has been idle for over %s (a frozen process?), "+
			"but this database role may not end it (%s); stop that process, or ask an administrator to run "+
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rewind backfill lease %s'",
			ErrRunLocked, run.ID, run.Owner, r.cfg.LeaseTimeout, pe.Message, run.ID)
	case err != nil:
		return h, fmt.Errorf("take the lease of run %s: %w", run.ID, err)
	}
	return h, nil
}

func (r *Runner) lockedErr(run *Run, h holder) error {
	hb := "never"
	if run.Heartbeat != nil {
		hb = time.Since(*run.Heartbeat).Round(time.Second).String() + " ago"
	}
	switch {
	case h.state == "":
		return fmt.Errorf("%w: run %s is held by %s (last heartbeat %s); wait for it or stop that process",
			ErrRunLocked, run.ID, run.Owner, hb)
	case h.state == "idle":
		return fmt.Errorf("%w: run %s is held by %s (last heartbeat %s), whose session has been idle for %s; "+
			"if that process is frozen, it is taken over once idle for %s (Config.LeaseTimeout): try again then, or stop that process",
			ErrRunLocked, run.ID, run.Owner, hb, h.idle.Round(time.Second), r.cfg.LeaseTimeout)
	}
	return fmt.Errorf("%w: run %s is held by %s (last heartbeat %s), which is applying it; wait for it or stop that process",
		ErrRunLocked, run.ID, run.Owner, hb)
}

// fence takes the next epoch of run's fencing token in the target
// database (into run.epoch). It waits for a chunk of the previous owner
// that is committing; chunks of the previous owner that commit after it
// fail. Call it after lock, before reading the run's progress.
//
// The wait is bounded by LeaseTimeout (plus a margin), whatever the
// session's lock_timeout: a chunk transaction that a frozen owner left
// holding the token is ended by the server after LeaseTimeout idle, and
// the process taking over must outwait it rather than fail.
func (r *Runner) fence(ctx context.Context, run *Run) error {
	return r.fenceWith(ctx, run, nil)
}

// fenceWith is fence, running also, when not nil, in the same transaction
// of the target database: then a run's shards and settings change with
// the token, all or nothing.
func (r *Runner) fenceWith(ctx context.Context, run *Run, also func(pgx.Tx) error) error {
	tx, err := r.cfg.DB.BeginTx(ctx, pgx.TxOptions{BeginQuery: fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = %d",
		(r.cfg.LeaseTimeout + 10*time.Second).Milliseconds())})
	if err != nil {
		return fmt.Errorf("take the lease of run %s: %w", run.ID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	err = tx.QueryRow(ctx, `INSERT INTO rewind.backfill_leases AS f (run_id, epoch, owner) VALUES ($1, 1, $2)
		ON CONFLICT (run_id) DO UPDATE SET epoch = f.epoch + 1, owner = EXCLUDED.owner, taken_at = clock_timestamp()
		RETURNING epoch`, run.ID, run.Owner).Scan(&run.epoch)
	if err == nil && also != nil {
		err = also(tx)
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		return fmt.Errorf("take the lease of run %s: %w", run.ID, err)
	}
	return nil
}

// fenceSQL, run in a chunk's transaction, locks the run's fencing token
// until the transaction ends and returns its epoch; checkFence compares it
// with this owner's.
const fenceSQL = "SELECT epoch FROM rewind.backfill_leases WHERE run_id = $1 FOR SHARE"

func checkFence(row pgx.Row, run *Run) error {
	var epoch int64
	if err := row.Scan(&epoch); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if epoch != run.epoch {
		return fmt.Errorf("%w: run %s was taken over by another process (lease %d, this process held %d); "+
			"stopping before this chunk commits, so that no two processes apply it", ErrLeaseLost, run.ID, epoch, run.epoch)
	}
	return nil
}

// beat starts the heartbeat, once the run records this lease.
func (l *lease) beat(run *Run, every time.Duration) {
	l.beating = true
	go l.heartbeat(run.ID, run.epoch, every)
}

func (l *lease) heartbeat(runID string, epoch int64, every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		tag, err := l.conn.Exec(l.ctx, "UPDATE rewind.backfill_runs SET heartbeat_at = clock_timestamp() WHERE id = $1 AND lease = $2", runID, epoch)
		if l.ctx.Err() != nil {
			return
		}
		if err != nil || tag.RowsAffected() != 1 {
			reason := "another process took the run over"
			if err != nil {
				reason = "its lease connection failed, so another process may take the run over (" + err.Error() + ")"
			}
			l.cancel(fmt.Errorf("%w: run %s: %s; stopping so that no two processes apply it; "+
				"'rewind backfill status %s' shows who holds it, 'rewind backfill resume %s' continues it if nobody does",
				ErrLeaseLost, runID, reason, runID, runID))
			return
		}
	}
}

// release ends the heartbeat, drops the lock and closes the connection.
// The explicit unlock matters: a closed connection drops the lock only once
// the server has noticed, so without it a status read right after the run
// returned could still see the run as held (running, not interrupted).
func (l *lease) release() {
	l.cancel(errStop)
	if l.beating {
		<-l.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	l.conn.Close(ctx)
	if err == nil {
		return
	}
	// The connection broke (a query cancelled in flight closes it): the
	// server drops the lock when it notices. Wait for that, briefly, by
	// taking and dropping the lock from another connection.
	for ctx.Err() == nil {
		var ok bool
		err := l.pool.QueryRow(ctx, "SELECT CASE WHEN pg_try_advisory_lock($1, $2) THEN pg_advisory_unlock($1, $2) ELSE false END",
			int32(leaseClass), l.obj).Scan(&ok)
		if err != nil || ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// owning runs write while this process still holds run's lease: in a
// transaction of the target database that holds the run's fencing token
// FOR SHARE, so that no process can take the run over (its fence waits)
// until write is done. write gets that transaction, which is the
// ledger's too when the ledger shares the target database; otherwise
// write uses its own transaction in the ledger database, which commits
// before the fence lets go. It returns ErrLeaseLost, having written
// nothing, when another process took the run over: an owner that lost its
// run never writes about it again, so the run's entries tell one story.
func (r *Runner) owning(ctx context.Context, run *Run, write func(tx pgx.Tx) error) error {
	tx, err := r.beginChunk(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := checkFence(tx.QueryRow(ctx, fenceSQL, run.ID), run); err != nil {
		return err
	}
	if err := write(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// appendOwned appends e about run while this process still holds the
// run's lease (see owning).
func (r *Runner) appendOwned(ctx context.Context, run *Run, e audit.Entry) error {
	return r.owning(ctx, run, func(tx pgx.Tx) error {
		if r.ledger.same {
			_, err := r.ledger.audit.AppendTx(ctx, tx, e)
			return err
		}
		return r.ledger.appendAudit(ctx, e)
	})
}

// takenOverEntry records that this process took run over from prevOwner,
// which held it under lease prevLease and never recorded an end.
func (r *Runner) takenOverEntry(job *Job, run *Run, l *lease) func(prevOwner string, prevLease int64) audit.Entry {
	return func(prevOwner string, prevLease int64) audit.Entry {
		how := "the previous owner's lease was gone: its process ended or its connection to the ledger was cut"
		if l.ended != "" {
			how = "the previous owner looked frozen: its session was ended (" + l.ended + ")"
		}
		return r.entry(job, "run.taken_over", run.ID, map[string]string{"previous_owner": prevOwner, "owner": run.Owner,
			"how": how}, map[string]int64{"previous_lease": prevLease, "lease": run.epoch})
	}
}
