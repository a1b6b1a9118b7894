package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
)

// The ledger keeps two kinds of state in a schema named rewind:
//
//   - in the ledger database (the target database unless another is
//     given): run records and the audit ledger;
//   - in the target database, always: chunk checkpoints, the quarantine and
//     sink intents, because they must commit in the same transaction as the
//     chunk's writes.
type ledger struct {
	work  *pgxpool.Pool
	runs  *pgxpool.Pool
	same  bool
	audit *auditpg.Ledger
}

// leaseClass is the first key of every run's advisory lock ("RWND").
const leaseClass = 0x52574e44

func newLedger(work, runs *pgxpool.Pool) (*ledger, error) {
	same := runs == nil || runs == work
	if runs == nil {
		runs = work
	}
	a, err := auditpg.New(runs, auditpg.Config{})
	if err != nil {
		return nil, err
	}
	return &ledger{work: work, runs: runs, same: same, audit: a}, nil
}

var workSchema = []string{
	`CREATE SCHEMA IF NOT EXISTS rewind`,
	`CREATE TABLE IF NOT EXISTS rewind.backfill_chunks (
		run_id          text NOT NULL,
		seq             bigint NOT NULL,
		retry           boolean NOT NULL DEFAULT false,
		after_key       text[],
		lo              text[],
		hi              text[] NOT NULL,
		rows_seen       bigint NOT NULL,
		rows_changed    bigint NOT NULL,
		rows_skipped    bigint NOT NULL,
		input_checksum  text NOT NULL,
		output_checksum text NOT NULL,
		attempts        int NOT NULL,
		committed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
		PRIMARY KEY (run_id, seq))`,
	`CREATE TABLE IF NOT EXISTS rewind.backfill_quarantine (
		run_id      text NOT NULL,
		key         text[] NOT NULL,
		chunk_seq   bigint NOT NULL,
		code        text NOT NULL,
		error       text NOT NULL,
		attempts    int NOT NULL DEFAULT 1,
		created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
		resolved_at timestamptz,
		PRIMARY KEY (run_id, key))`,
	`CREATE TABLE IF NOT EXISTS rewind.backfill_intents (
		run_id text NOT NULL,
		seq    bigint NOT NULL,
		intent jsonb NOT NULL,
		PRIMARY KEY (run_id, seq))`,
}

var runSchema = []string{
	`CREATE SCHEMA IF NOT EXISTS rewind`,
	`CREATE TABLE IF NOT EXISTS rewind.backfill_runs (
		id              text PRIMARY KEY,
		job_name        text NOT NULL,
		job_version     text NOT NULL,
		job_hash        text NOT NULL,
		job             jsonb NOT NULL,
		params          jsonb NOT NULL,
		plan_hash       text NOT NULL,
		binary_version  text NOT NULL,
		actor           text NOT NULL,
		host            text NOT NULL,
		command         text NOT NULL,
		state           text NOT NULL,
		policy          text NOT NULL,
		chunk_size      int NOT NULL,
		total           bigint NOT NULL,
		total_estimated boolean NOT NULL,
		end_key         text[],
		lock_obj        bigint NOT NULL,
		owner           text NOT NULL DEFAULT '',
		heartbeat_at    timestamptz,
		changes_allowed int NOT NULL DEFAULT 0,
		created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
		updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
		finished_at     timestamptz,
		error           text NOT NULL DEFAULT '',
		error_class     text NOT NULL DEFAULT '',
		error_chunk     bigint NOT NULL DEFAULT 0,
		error_key       text[])`,
	`CREATE INDEX IF NOT EXISTS backfill_runs_job ON rewind.backfill_runs (job_name, created_at)`,
	// One open run per job: two processes starting the same job at once
	// must not start two runs (each would apply every row).
	`CREATE UNIQUE INDEX IF NOT EXISTS backfill_runs_one_open ON rewind.backfill_runs (job_name)
		WHERE state IN ('running', 'failed')`,
}

// setup creates the ledger's tables where missing.
func (l *ledger) setup(ctx context.Context) error {
	var ok bool
	err := l.work.QueryRow(ctx, `SELECT to_regclass('rewind.backfill_chunks') IS NOT NULL AND to_regclass('rewind.backfill_quarantine') IS NOT NULL
		AND to_regclass('rewind.backfill_intents') IS NOT NULL`).Scan(&ok)
	if err != nil {
		return fmt.Errorf("connect to the target database: %w", err)
	}
	if ok {
		if ok, err = l.exists(ctx); err != nil {
			return fmt.Errorf("connect to the ledger database: %w", err)
		}
	}
	if ok {
		if ok, err = l.audit.Exists(ctx); err == nil && ok {
			return nil
		}
	}
	run := func(db *pgxpool.Pool, stmts []string) error {
		tx, err := db.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", int32(leaseClass)); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	}
	if err := run(l.work, workSchema); err != nil {
		return fmt.Errorf("set up the backfill ledger in the target database: %w", err)
	}
	if err := run(l.runs, runSchema); err != nil {
		return fmt.Errorf("set up the backfill ledger: %w", err)
	}
	return l.audit.Setup(ctx)
}

// exists reports whether setup ever ran.
func (l *ledger) exists(ctx context.Context) (bool, error) {
	var ok bool
	err := l.runs.QueryRow(ctx, "SELECT to_regclass('rewind.backfill_runs') IS NOT NULL").Scan(&ok)
	return ok, err
}

// State is a run's state.
type State string

// The run states. Interrupted is not stored: it is a running run whose
// owner no longer holds the lease.
const (
	Running     State = "running"
	Interrupted State = "interrupted"
	Finished    State = "finished"
	Failed      State = "failed"
	Cancelled   State = "cancelled"
)

// Run is a run record with its progress.
type Run struct {
	ID             string            `json:"id"`
	JobName        string            `json:"job_name"`
	JobVersion     string            `json:"job_version"`
	JobHash        string            `json:"job_hash"`
	Job            map[string]any    `json:"job"`
	Params         map[string]string `json:"params"` // secrets masked
	PlanHash       string            `json:"plan_hash,omitempty"`
	Binary         string            `json:"binary"`
	Actor          string            `json:"actor"`
	Host           string            `json:"host"`
	Command        string            `json:"command"`
	State          State             `json:"state"`
	Policy         Policy            `json:"policy"`
	ChunkSize      int               `json:"chunk_size"`
	Total          int64             `json:"total"`
	TotalEstimated bool              `json:"total_estimated"`
	End            Key               `json:"end,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	Heartbeat      *time.Time        `json:"heartbeat_at,omitempty"`
	ChangesAllowed int               `json:"changes_allowed"`
	Created        time.Time         `json:"created_at"`
	Updated        time.Time         `json:"updated_at"`
	FinishedAt     *time.Time        `json:"finished_at,omitempty"`
	Error          string            `json:"error,omitempty"`
	ErrorClass     string            `json:"error_class,omitempty"`
	ErrorChunk     int64             `json:"error_chunk,omitempty"`
	ErrorKey       Key               `json:"error_key,omitempty"`
	lockObj        int64

	// Progress, from the checkpoints.
	Chunks      int64   `json:"chunks"`
	RowsSeen    int64   `json:"rows_seen"`
	RowsChanged int64   `json:"rows_changed"`
	RowsSkipped int64   `json:"rows_skipped"`
	Quarantined int64   `json:"quarantined"` // keys still in the quarantine
	LastKey     Key     `json:"last_key,omitempty"`
	RecentRate  float64 `json:"recent_rows_per_sec"`
	ETASeconds  float64 `json:"eta_seconds,omitempty"`
}

const runCols = `id, job_name, job_version, job_hash, job, params, plan_hash, binary_version, actor, host, command,
	CASE WHEN state = 'running' AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'
		AND l.classid = 1381453380 AND l.objid::bigint = lock_obj AND l.objsubid = 2 AND l.granted
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
	THEN 'interrupted' ELSE state END,
	policy, chunk_size, total, total_estimated, end_key, lock_obj, owner, heartbeat_at, changes_allowed,
	created_at, updated_at, finished_at, error, error_class, error_chunk, error_key`

func scanRun(row pgx.Row) (*Run, error) {
	var r Run
	var job, params []byte
	var end, ekey []string
	err := row.Scan(&r.ID, &r.JobName, &r.JobVersion, &r.JobHash, &job, &params, &r.PlanHash, &r.Binary, &r.Actor,
		&r.Host, &r.Command, &r.State, &r.Policy, &r.ChunkSize, &r.Total, &r.TotalEstimated, &end, &r.lockObj,
		&r.Owner, &r.Heartbeat, &r.ChangesAllowed, &r.Created, &r.Updated, &r.FinishedAt, &r.Error, &r.ErrorClass,
		&r.ErrorChunk, &ekey)
	if err != nil {
		return nil, err
	}
	r.End, r.ErrorKey = end, ekey
	if err := json.Unmarshal(job, &r.Job); err != nil {
		return nil, fmt.Errorf("decode run %s: %w", r.ID, err)
	}
	if err := json.Unmarshal(params, &r.Params); err != nil {
		return nil, fmt.Errorf("decode run %s: %w", r.ID, err)
	}
	return &r, nil
}

func lockObj(id string) int64 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int64(h.Sum32())
}

// createRun inserts a running run owned by owner.
func (l *ledger) createRun(ctx context.Context, r *Run) error {
	job, _ := json.Marshal(r.Job)
	params, _ := json.Marshal(r.Params)
	r.lockObj = lockObj(r.ID)
	_, err := l.runs.Exec(ctx, `INSERT INTO rewind.backfill_runs (id, job_name, job_version, job_hash, job, params,
		plan_hash, binary_version, actor, host, command, state, policy, chunk_size, total, total_estimated, end_key,
		lock_obj, owner, heartbeat_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,'running',$12,$13,$14,$15,$16,$17,$18,clock_timestamp())`,
		r.ID, r.JobName, r.JobVersion, r.JobHash, job, params, r.PlanHash, r.Binary, r.Actor, r.Host, r.Command,
		r.Policy, r.ChunkSize, r.Total, r.TotalEstimated, []string(r.End), r.lockObj, r.Owner)
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "backfill_runs_one_open" {
		return errRunStarted
	}
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	return nil
}

// errRunStarted: another process started a run of the same job meanwhile.
var errRunStarted = errors.New("backfill: another process started a run of this job")

// loadRun finds a run by id or unique id prefix, with its progress.
func (l *ledger) loadRun(ctx context.Context, id string) (*Run, error) {
	if ok, err := l.exists(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: %s (no backfill has run against this database)", ErrRunNotFound, id)
	}
	if len(id) < 4 {
		return nil, &rewind.ValidationError{Field: "run id", Value: id, Reason: "give at least 4 characters"}
	}
	rows, err := l.runs.Query(ctx, "SELECT "+runCols+" FROM rewind.backfill_runs WHERE starts_with(id, $1) ORDER BY id LIMIT 2", id)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	switch len(runs) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrRunNotFound, id)
	case 2:
		return nil, &rewind.ValidationError{Field: "run id", Value: id, Reason: "matches several runs; give more characters"}
	}
	return runs[0], l.progress(ctx, runs[0])
}

// stillOpen checks, once its lease is held, that run was neither finished
// nor cancelled meanwhile; run.State is updated.
func (l *ledger) stillOpen(ctx context.Context, run *Run) error {
	if err := l.runs.QueryRow(ctx, "SELECT state FROM rewind.backfill_runs WHERE id = $1", run.ID).Scan(&run.State); err != nil {
		return fmt.Errorf("load run %s: %w", run.ID, err)
	}
	switch run.State {
	case Finished:
		return fmt.Errorf("%w: run %s is already finished", ErrUnfinishedRun, run.ID)
	case Cancelled:
		return fmt.Errorf("%w: run %s was cancelled; start a new run", ErrUnfinishedRun, run.ID)
	}
	return nil
}

// unfinished returns the newest run of job name that is not finished or
// cancelled, or nil.
func (l *ledger) unfinished(ctx context.Context, name string) (*Run, error) {
	row := l.runs.QueryRow(ctx, "SELECT "+runCols+` FROM rewind.backfill_runs
		WHERE job_name = $1 AND state IN ('running', 'failed') ORDER BY created_at DESC LIMIT 1`, name)
	r, err := scanRun(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for unfinished runs of %s: %w", name, err)
	}
	return r, l.progress(ctx, r)
}

// progress fills r's progress from the checkpoints and the quarantine.
func (l *ledger) progress(ctx context.Context, r *Run) error {
	var last []string
	err := l.work.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT retry), coalesce(sum(rows_seen) FILTER (WHERE NOT retry), 0),
		coalesce(sum(rows_changed), 0), coalesce(sum(rows_skipped) FILTER (WHERE NOT retry), 0),
		(SELECT hi FROM rewind.backfill_chunks WHERE run_id = $1 AND NOT retry ORDER BY seq DESC LIMIT 1),
		(SELECT count(*) FROM rewind.backfill_quarantine WHERE run_id = $1 AND resolved_at IS NULL)
		FROM rewind.backfill_chunks WHERE run_id = $1`, r.ID).
		Scan(&r.Chunks, &r.RowsSeen, &r.RowsChanged, &r.RowsSkipped, &last, &r.Quarantined)
	if err != nil {
		return fmt.Errorf("read the progress of run %s: %w", r.ID, err)
	}
	r.LastKey = last
	// The recent rate: rows over the last chunks committed within a minute.
	var rows int64
	var span float64
	err = l.work.QueryRow(ctx, `SELECT coalesce(sum(rows_seen), 0), coalesce(extract(epoch FROM max(committed_at) - min(committed_at)), 0)
		FROM (SELECT rows_seen, committed_at FROM rewind.backfill_chunks WHERE run_id = $1 AND NOT retry
		      AND committed_at > clock_timestamp() - interval '1 minute' ORDER BY seq DESC LIMIT 50) c`, r.ID).Scan(&rows, &span)
	if err != nil {
		return fmt.Errorf("read the progress of run %s: %w", r.ID, err)
	}
	if span > 0 {
		r.RecentRate = float64(rows) / span
		if left := r.Total - r.RowsSeen; left > 0 && r.State == Running {
			r.ETASeconds = float64(left) / r.RecentRate
		}
	}
	return nil
}

// ListOptions select runs to list.
type ListOptions struct {
	// Job keeps runs of one job name. Empty keeps all.
	Job string
	// Limit caps the number of runs, newest first. Defaults to 50.
	Limit int
}

func (l *ledger) list(ctx context.Context, o ListOptions) ([]*Run, error) {
	if ok, err := l.exists(ctx); err != nil || !ok {
		return nil, err
	}
	if o.Limit <= 0 {
		o.Limit = 50
	}
	rows, err := l.runs.Query(ctx, "SELECT "+runCols+` FROM rewind.backfill_runs
		WHERE $1 = '' OR job_name = $1 ORDER BY created_at DESC LIMIT $2`, o.Job, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	for _, r := range runs {
		if err := l.progress(ctx, r); err != nil {
			return nil, err
		}
	}
	return runs, nil
}

// lastChunk returns the upper key of the run's last checkpoint (nil when
// none) and the highest chunk sequence number in use.
func (l *ledger) lastChunk(ctx context.Context, runID string) (hi Key, maxSeq int64, err error) {
	var h []string
	err = l.work.QueryRow(ctx, `SELECT (SELECT hi FROM rewind.backfill_chunks WHERE run_id = $1 AND NOT retry ORDER BY seq DESC LIMIT 1),
		coalesce((SELECT max(seq) FROM rewind.backfill_chunks WHERE run_id = $1), 0)`, runID).Scan(&h, &maxSeq)
	if err != nil {
		return nil, 0, fmt.Errorf("read the last checkpoint of run %s: %w", runID, err)
	}
	return h, maxSeq, nil
}

// queueCheckpoint queues the insert of a chunk's checkpoint. The primary
// key (run, seq) fences out a second process applying the same run: its
// checkpoint fails and its transaction, writes included, rolls back.
func (l *ledger) queueCheckpoint(b *pgx.Batch, runID string, seq int64, retry bool, bd Bounds, r chunkResult, attempts int) {
	b.Queue(`INSERT INTO rewind.backfill_chunks (run_id, seq, retry, after_key, lo, hi, rows_seen, rows_changed,
		rows_skipped, input_checksum, output_checksum, attempts) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
		runID, seq, retry, []string(bd.After), []string(bd.Lo), []string(bd.Hi), r.Seen, r.Changed, r.Skipped, r.In, r.Out, attempts)
}

// setState updates a run's state and error.
func (l *ledger) setState(ctx context.Context, runID string, s State, rerr *RunError) error {
	var msg, class string
	var chunk int64
	var key []string
	if rerr != nil {
		_, msg = describeErr(rerr.Err)
		class, chunk, key = string(rerr.Class), rerr.Chunk, rerr.Key
	}
	_, err := l.runs.Exec(ctx, `UPDATE rewind.backfill_runs SET state = $2, error = $3, error_class = $4, error_chunk = $5,
		error_key = $6, updated_at = clock_timestamp(),
		finished_at = CASE WHEN $2 IN ('finished', 'cancelled') THEN clock_timestamp() ELSE finished_at END WHERE id = $1`,
		runID, string(s), msg, class, chunk, key)
	if err != nil {
		return fmt.Errorf("update run %s: %w", runID, err)
	}
	return nil
}

// quarantine records failing keys in tx.
func (l *ledger) quarantine(ctx context.Context, tx pgx.Tx, runID string, seq int64, key Key, err error) error {
	code, msg := describeErr(err)
	if code == "" {
		code = string(Data)
	}
	_, qerr := tx.Exec(ctx, `INSERT INTO rewind.backfill_quarantine (run_id, key, chunk_seq, code, error) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (run_id, key) DO UPDATE SET attempts = backfill_quarantine.attempts + 1, code = EXCLUDED.code,
		error = EXCLUDED.error, resolved_at = NULL`, runID, []string(key), seq, code, msg)
	return qerr
}

// Quarantined is a key that failed with a data error under the skip policy.
type Quarantined struct {
	Key      Key        `json:"key"`
	Chunk    int64      `json:"chunk"`
	Code     string     `json:"code"`
	Error    string     `json:"error"`
	Attempts int        `json:"attempts"`
	Resolved *time.Time `json:"resolved_at,omitempty"`
}

func (l *ledger) quarantined(ctx context.Context, runID string, unresolvedOnly bool) ([]Quarantined, error) {
	rows, err := l.work.Query(ctx, `SELECT key, chunk_seq, code, error, attempts, resolved_at FROM rewind.backfill_quarantine
		WHERE run_id = $1 AND (NOT $2 OR resolved_at IS NULL) ORDER BY chunk_seq, created_at`, runID, unresolvedOnly)
	if err != nil {
		return nil, fmt.Errorf("read the quarantine of run %s: %w", runID, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Quarantined, error) {
		var q Quarantined
		var k []string
		err := row.Scan(&k, &q.Chunk, &q.Code, &q.Error, &q.Attempts, &q.Resolved)
		q.Key = k
		return q, err
	})
}

// appendAudit appends an entry in its own transaction.
func (l *ledger) appendAudit(ctx context.Context, e audit.Entry) error {
	_, err := l.audit.Append(ctx, e)
	return err
}
