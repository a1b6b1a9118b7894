package backfill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind/audit"
)

// Live control. Each run has a control record (rewind.backfill_control, in
// the target database, next to the checkpoints it fences): what was last
// asked of the run — go on, pause or cancel —, why, by whom and when, and
// the values an operator set for it (max rate, chunk time, workers).
// Every worker, in every process, reads it at each chunk boundary
// (Runner.boundary) and reads it FOR SHARE in each chunk's transaction
// (controlFenceSQL): a chunk that finds a pause or a cancel asked for
// rolls back, so once a request has committed no chunk commits, and a
// chunk in flight commits or rolls back, never half.
//
// A pause is "pausing" until every live worker holding a shard of the run
// has reached a chunk boundary and acknowledged it (backfill_shards.
// paused_gen), then "paused" (paused_at set, the run's stored state
// paused, a run.paused entry). A worker that does not acknowledge within
// Config.LeaseTimeout of the request (a frozen or lost process) no longer
// holds it up: its next commit is fenced off anyway. A dead worker's
// shard lease is gone with its connection, so it never holds a pause up.
const controlSchema = `CREATE TABLE IF NOT EXISTS rewind.backfill_control (
		run_id       text PRIMARY KEY,
		gen          bigint NOT NULL DEFAULT 1,
		requested    text NOT NULL DEFAULT 'run',
		reason_kind  text NOT NULL DEFAULT '',
		reason       text NOT NULL DEFAULT '',
		actor        text NOT NULL DEFAULT '',
		requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		paused_at    timestamptz,
		max_rate     double precision,
		chunk_time   interval,
		workers      int,
		set_by       text NOT NULL DEFAULT '',
		set_at       timestamptz)`

// What a control record asks of a run.
const (
	requestRun    = "run"
	requestPause  = "pause"
	requestCancel = "cancel"
)

// The run states a control request shows as while it takes effect; the
// run's stored state stays running until then.
const (
	Pausing    State = "pausing"
	Cancelling State = "cancelling"
)

// PauseKind says who paused a run.
type PauseKind string

// The kinds of pause.
const (
	PauseOperator PauseKind = "operator" // rewind backfill pause RUN
	PauseCanary   PauseKind = "canary"   // the run's canary; only promote lifts it
	PauseThrottle PauseKind = "throttle" // a throttle signal went critical
	PauseDisabled PauseKind = "disabled" // its job was disabled
)

// PauseReason is why a run is paused: its kind, and a sentence.
type PauseReason struct {
	Kind   PauseKind `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// Control is a run's control record.
type Control struct {
	// Requested is run, pause or cancel.
	Requested string      `json:"requested"`
	Reason    PauseReason `json:"reason"`
	// Actor asked for it, at Since.
	Actor string    `json:"actor,omitempty"`
	Since time.Time `json:"since"`
	// PausedAt is when a pause took effect (every worker at a boundary).
	PausedAt *time.Time `json:"paused_at,omitempty"`
	// Overrides set with Runner.Set; nil when not set. MaxRate is in rows
	// per second.
	MaxRate   *float64       `json:"max_rate,omitempty"`
	ChunkTime *time.Duration `json:"chunk_time,omitempty"`
	Workers   *int           `json:"workers,omitempty"`
	SetBy     string         `json:"set_by,omitempty"`
	SetAt     *time.Time     `json:"set_at,omitempty"`
	gen       int64
}

// Action is what a worker does at a chunk boundary.
type Action int

// The actions.
const (
	GoOn Action = iota // apply the next chunk
	Wait               // paused: hold the shard, apply nothing
	Stop               // cancelled: stop
)

// Action is what the control asks of a worker at a chunk boundary.
func (c *Control) Action() Action {
	switch c.Requested {
	case requestPause:
		return Wait
	case requestCancel:
		return Stop
	}
	return GoOn
}

// state is the state the control shows the run in, or "" when it shows
// the run's own.
func (c *Control) state() State {
	switch {
	case c == nil:
		return ""
	case c.Requested == requestPause && c.PausedAt == nil:
		return Pausing
	case c.Requested == requestPause:
		return Paused
	case c.Requested == requestCancel:
		return Cancelling
	}
	return ""
}

const controlCols = `gen, requested, reason_kind, reason, actor, requested_at, paused_at, max_rate,
	extract(epoch FROM chunk_time)::float8, workers, set_by, set_at`

func scanControl(row pgx.Row) (*Control, error) {
	c := &Control{}
	var chunkTime *float64
	err := row.Scan(&c.gen, &c.Requested, &c.Reason.Kind, &c.Reason.Detail, &c.Actor, &c.Since, &c.PausedAt, &c.MaxRate,
		&chunkTime, &c.Workers, &c.SetBy, &c.SetAt)
	if chunkTime != nil {
		d := time.Duration(*chunkTime * float64(time.Second))
		c.ChunkTime = &d
	}
	return c, err
}

// readControl reads run id's control record: one row by its key. A run
// without one (never controlled, or of an earlier version) goes on.
func readControl(ctx context.Context, q querier, id string) (*Control, error) {
	c, err := scanControl(q.QueryRow(ctx, "SELECT "+controlCols+" FROM rewind.backfill_control WHERE run_id = $1", id))
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && pe.Code == "42P01":
		return &Control{Requested: requestRun}, nil
	case err != nil:
		return nil, fmt.Errorf("read the control of run %s: %w", id, err)
	}
	return c, nil
}

// ensureControl creates run id's control record, empty, if it has none.
// Every process applying a run calls it before its first chunk: a chunk
// commits while holding the record FOR SHARE (controlFenceSQL), which
// makes every request wait for the chunks committing; with no record to
// lock, the first request (which created it) waited for none, and a chunk
// could commit after a pause or cancel was recorded.
func ensureControl(ctx context.Context, db querier, id string) error {
	if _, err := db.Exec(ctx, "INSERT INTO rewind.backfill_control (run_id, gen) VALUES ($1, 0) ON CONFLICT DO NOTHING", id); err != nil {
		return fmt.Errorf("create the control record of run %s: %w", id, err)
	}
	return nil
}

// waitForChunks sets tx's lock_timeout so that a control request waits
// for the chunks that are committing, however long the session's
// lock_timeout: up to a lease timeout and ten seconds, time for a frozen
// owner's chunk to be ended.
func waitForChunks(ctx context.Context, tx pgx.Tx, leaseTimeout time.Duration) error {
	_, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", (leaseTimeout+10*time.Second).Milliseconds()))
	return err
}

// controlFenceSQL, in a worker's chunk transaction, locks the run's
// control record until the transaction ends: a request waits for the
// chunks committing, and a chunk that finds one rolls back. It reads the
// whole record: no request commits between that read and the chunk's
// commit, so the worker's next boundary takes it as the run's control
// rather than reading it again (a request that commits after the chunk
// is found by the next chunk's fence, which rolls back).
const controlFenceSQL = "SELECT " + controlCols + " FROM rewind.backfill_control WHERE run_id = $1 FOR SHARE"

// errAtBoundary: a chunk found a pause or a cancel asked for and rolled
// back; its worker goes to the boundary.
var errAtBoundary = errors.New("backfill: a pause or cancel was asked for; the chunk rolled back")

// fenceControl scans controlFenceSQL's row into *c, or returns
// errAtBoundary when a pause or a cancel was asked for.
func fenceControl(c **Control) func(pgx.Row) error {
	return func(row pgx.Row) error {
		got, err := scanControl(row)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // a run never controlled
			got = &Control{Requested: requestRun}
		case err != nil:
			return err
		}
		if got.Action() != GoOn {
			return errAtBoundary
		}
		*c = got
		return nil
	}
}

func checkControlFence(row pgx.Row) error {
	var c *Control
	return fenceControl(&c)(row)
}

// setControl writes a request into run's control record in tx (of the
// target database), a new generation of it, and returns that generation.
// A request waits for the chunks that are committing (they hold the
// record FOR SHARE), however long the session's lock_timeout.
func setControl(ctx context.Context, tx pgx.Tx, runID, requested string, reason PauseReason, actor string, pausedNow bool,
	leaseTimeout time.Duration) (int64, error) {
	if err := waitForChunks(ctx, tx, leaseTimeout); err != nil {
		return 0, err
	}
	var gen int64
	err := tx.QueryRow(ctx, `INSERT INTO rewind.backfill_control AS c (run_id, requested, reason_kind, reason, actor, paused_at)
		VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN clock_timestamp() END)
		ON CONFLICT (run_id) DO UPDATE SET gen = c.gen + 1, requested = EXCLUDED.requested, reason_kind = EXCLUDED.reason_kind,
			reason = EXCLUDED.reason, actor = EXCLUDED.actor, requested_at = clock_timestamp(), paused_at = EXCLUDED.paused_at
		RETURNING gen`, runID, requested, string(reason.Kind), reason.Detail, actor, pausedNow).Scan(&gen)
	if err != nil {
		return 0, fmt.Errorf("record the control of run %s: %w", runID, err)
	}
	return gen, nil
}

// pause asks run's workers, in every process, to stop at their next chunk
// boundary and wait there, holding their shards, until the run is resumed
// (Runner.resumePaused). It records a run.pausing entry with the reason.
// The process applying a run calls it with kind throttle when a throttle
// signal goes critical; the pause command calls it with kind operator.
func (r *Runner) pause(ctx context.Context, p *prepared, run *Run, reason PauseReason) error {
	return r.requestPause(ctx, p.job, run, reason)
}

// requestPause records a pause of run with reason, asked by this runner's
// actor: the control record in the target database, and the run.pausing
// entry.
func (r *Runner) requestPause(ctx context.Context, job *Job, run *Run, reason PauseReason) error {
	e := r.entry(job, "run.pausing", run.ID, map[string]string{"reason_kind": string(reason.Kind), "reason": reason.Detail}, nil)
	e.Message = reason.Detail
	return r.controlTx(ctx, run, func(tx pgx.Tx) (*entryFn, error) {
		_, err := setControl(ctx, tx, run.ID, requestPause, reason, r.cfg.Actor, false, r.cfg.LeaseTimeout)
		return &entryFn{entry: e}, err
	})
}

// requestCancel records a cancel of run asked by this runner's actor (a
// run.cancelling entry), whatever it was asked before.
func (r *Runner) requestCancel(ctx context.Context, job *Job, run *Run) error {
	e := r.entry(job, "run.cancelling", run.ID, nil, nil)
	return r.controlTx(ctx, run, func(tx pgx.Tx) (*entryFn, error) {
		_, err := setControl(ctx, tx, run.ID, requestCancel, PauseReason{}, r.cfg.Actor, false, r.cfg.LeaseTimeout)
		return &entryFn{entry: e}, err
	})
}

// entryFn is what a control change records in the ledger database: its
// audit entry, and mark, when not nil, the change of the run's record.
type entryFn struct {
	entry audit.Entry
	mark  func(pgx.Tx) error
}

// controlTx runs write in a transaction of the target database and
// records what it returns (nothing when nil) in the same transaction when
// the ledger shares the database, else in one of the ledger database
// right after it commits.
func (r *Runner) controlTx(ctx context.Context, run *Run, write func(pgx.Tx) (*entryFn, error)) error {
	tx, err := r.cfg.DB.Begin(ctx)
	if err != nil {
		return fmt.Errorf("control run %s: %w", run.ID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	ef, err := write(tx)
	if err != nil {
		return err
	}
	record := func(tx pgx.Tx) error {
		if ef == nil {
			return nil
		}
		if ef.mark != nil {
			if err := ef.mark(tx); err != nil {
				return fmt.Errorf("control run %s: %w", run.ID, err)
			}
		}
		_, err := r.ledger.audit.AppendTx(ctx, tx, ef.entry)
		return err
	}
	if r.ledger.same {
		if err := record(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return inTx(ctx, r.ledger.runs, record)
}

// controls fills the Control of runs, and shows a request that is taking
// effect in their state: pausing, paused (also a pause of a run nobody
// applies: nothing of it can commit) or cancelling.
func (l *ledger) controls(ctx context.Context, runs ...*Run) error {
	for _, run := range runs {
		c, err := readControl(ctx, l.work, run.ID)
		if err != nil {
			return err
		}
		if c.Since.IsZero() { // no record
			continue
		}
		run.Control = c
		s := c.state()
		if s == "" || (run.State != Running && run.State != Interrupted) {
			continue
		}
		if s == Pausing && run.State == Interrupted {
			s = Paused
		}
		run.State = s
	}
	return nil
}

// checkText refuses a reason that status and the progress
// line could not print as written (audit.CheckText: the check replay
// runs make of their actor too).
func checkText(field, s string) error { return audit.CheckText(field, s) }
