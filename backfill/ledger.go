package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync/atomic"
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
	work     *pgxpool.Pool
	runs     *pgxpool.Pool
	same     bool
	audit    *auditpg.Ledger
	upgraded atomic.Bool // the run ledger has this version's columns
}

// leaseClass is the first key of every run's advisory lock ("RWND"). The
// key (leaseClass, 0) serializes the ledger's setup.
const leaseClass = 0x52574e44

// newLedger returns the ledger; idle bounds how long a transaction holding
// the audit ledger's append lock may sit idle (Config.LeaseTimeout).
func newLedger(work, runs *pgxpool.Pool, idle time.Duration) (*ledger, error) {
	same := runs == nil || runs == work
	if runs == nil {
		runs = work
	}
	a, err := auditpg.New(runs, auditpg.Config{IdleTimeout: idle})
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
	// The fence: each owner of a run takes the next epoch, and a chunk
	// commits only while the row still holds its owner's epoch (see fence).
	`CREATE TABLE IF NOT EXISTS rewind.backfill_leases (
		run_id   text PRIMARY KEY,
		epoch    bigint NOT NULL,
		owner    text NOT NULL,
		taken_at timestamptz NOT NULL DEFAULT clock_timestamp())`,
	// The chunk's transaction ids, for verify (see verify.go): xid, the
	// transaction's own (txid_current()), and xid_end, the id of the
	// subtransaction that wrote the checkpoint, above the ids of all the
	// chunk's writes (see queueCheckpoint). NULL for chunks of earlier
	// versions.
	`ALTER TABLE rewind.backfill_chunks ADD COLUMN IF NOT EXISTS xid bigint, ADD COLUMN IF NOT EXISTS xid_end bigint`,
	// Before-images and what rollbacks did with them: see images.go.
	imagesTable, imagesLZ4, undoneTable, purgesTable, imageRowsView,
	// Parallel workers (shard.go): the run's worker caps on its fencing
	// token's row, its shards, and the keys of the shards' lease locks.
	`ALTER TABLE rewind.backfill_leases ADD COLUMN IF NOT EXISTS workers int NOT NULL DEFAULT 1`,
	`ALTER TABLE rewind.backfill_leases ADD COLUMN IF NOT EXISTS max_db_workers int NOT NULL DEFAULT 0`,
	shardSchema,
	`CREATE INDEX IF NOT EXISTS backfill_shards_lock ON rewind.backfill_shards (lock_obj) WHERE state = 'pending'`,
	`CREATE SEQUENCE IF NOT EXISTS rewind.backfill_shard_locks AS integer CYCLE`,
	// Live control (control.go): each run's control record, and the pause
	// generation each shard's worker acknowledged at a chunk boundary.
	controlSchema,
	`ALTER TABLE rewind.backfill_shards ADD COLUMN IF NOT EXISTS paused_gen bigint NOT NULL DEFAULT 0`,
	// What each process's throttle did on a run (pace.go).
	throttleSchema,
}

const workReady = `SELECT to_regclass('rewind.backfill_chunks') IS NOT NULL AND to_regclass('rewind.backfill_quarantine') IS NOT NULL
	AND to_regclass('rewind.backfill_intents') IS NOT NULL AND to_regclass('rewind.backfill_leases') IS NOT NULL
	AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('rewind.backfill_chunks') AND attname = 'xid_end' AND NOT attisdropped)
	AND to_regclass('rewind.backfill_images') IS NOT NULL AND to_regclass('rewind.backfill_undone') IS NOT NULL
	AND to_regclass('rewind.backfill_image_purges') IS NOT NULL AND to_regclass('rewind.backfill_image_rows') IS NOT NULL
	AND to_regclass('rewind.backfill_shards') IS NOT NULL AND to_regclass('rewind.backfill_shard_locks') IS NOT NULL
	AND to_regclass('rewind.backfill_throttle') IS NOT NULL
	AND (SELECT count(*) = 2 FROM pg_attribute WHERE attrelid = to_regclass('rewind.backfill_leases')
		AND attname IN ('workers', 'max_db_workers') AND NOT attisdropped)
	AND to_regclass('rewind.backfill_control') IS NOT NULL
	AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('rewind.backfill_shards') AND attname = 'paused_gen' AND NOT attisdropped)`

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
	// The lineage: a run records the run of its job it follows ('' for
	// the first), and no two runs follow the same one. So the runs of a
	// job form one line, whatever the timing of their starts. Ledgers of
	// earlier versions get the line of their runs in creation order.
	`ALTER TABLE rewind.backfill_runs ADD COLUMN IF NOT EXISTS prev_run text`,
	`UPDATE rewind.backfill_runs r SET prev_run = l.prev FROM (SELECT id, coalesce(lag(id) OVER
		(PARTITION BY job_name ORDER BY created_at, id), '') AS prev FROM rewind.backfill_runs) l
		WHERE r.id = l.id AND r.prev_run IS NULL`,
	`ALTER TABLE rewind.backfill_runs ALTER COLUMN prev_run SET NOT NULL`,
	`CREATE UNIQUE INDEX IF NOT EXISTS backfill_runs_lineage ON rewind.backfill_runs (job_name, prev_run)`,
	// The epoch of the lease its owner holds, for the heartbeat and the
	// run's last transitions (the fence itself is in the target).
	`ALTER TABLE rewind.backfill_runs ADD COLUMN IF NOT EXISTS lease bigint NOT NULL DEFAULT 0`,
	// The settings that give the job its meaning and are not pinned (the
	// TimeZone, the search_path and the table it resolved), as the run's
	// start found them: a resume must find the same (RunSettingsError).
	// Runs of earlier versions have none recorded.
	`ALTER TABLE rewind.backfill_runs ADD COLUMN IF NOT EXISTS session jsonb NOT NULL DEFAULT '{}'`,
	canarySchema,
	// A rollback is a run too: undoes names the run it rolls back ('' for
	// a run of a job).
	`ALTER TABLE rewind.backfill_runs ADD COLUMN IF NOT EXISTS undoes text NOT NULL DEFAULT ''`,
	// Jobs turned off and on (toggle.go).
	toggleSchema,
}

// runsSetUp: the run ledger has everything this version uses (cols says
// which of its columns a ledger of an earlier version has).
const runsSetUp = `SELECT count(*) = 4 AND to_regclass('rewind.backfill_canaries') IS NOT NULL
	AND to_regclass('rewind.backfill_toggles') IS NOT NULL FROM pg_attribute
	WHERE attrelid = to_regclass('rewind.backfill_runs') AND attname IN ('prev_run', 'lease', 'session', 'undoes') AND NOT attisdropped`

// setup creates the ledger's tables where missing, and upgrades those of
// earlier versions. Concurrent setups (several processes starting on a
// fresh database) are serialized by an advisory lock taken before any
// DDL, and each checks again under the lock, so that DDL runs once and
// never against tables in use: running it again would take table locks
// that deadlock with chunk transactions.
func (l *ledger) setup(ctx context.Context) error {
	ok, err := l.ready(ctx)
	if err != nil || ok {
		return err
	}
	work := func(tx pgx.Tx) error { return setupSchema(ctx, tx, workReady, workSchema) }
	runs := func(tx pgx.Tx) error {
		// The audit ledger first: it takes the lock that serializes DDL
		// in the schema, held until this transaction ends.
		if err := l.audit.SetupTx(ctx, tx); err != nil {
			return err
		}
		return setupSchema(ctx, tx, runsSetUp, runSchema)
	}
	if l.same {
		if err := inTx(ctx, l.work, func(tx pgx.Tx) error {
			if err := runs(tx); err != nil {
				return err
			}
			return work(tx)
		}); err != nil {
			return fmt.Errorf("set up the backfill ledger: %w", err)
		}
		return nil
	}
	if err := inTx(ctx, l.work, work); err != nil {
		return fmt.Errorf("set up the backfill ledger in the target database: %w", err)
	}
	if err := inTx(ctx, l.runs, runs); err != nil {
		return fmt.Errorf("set up the backfill ledger: %w", err)
	}
	return nil
}

// ready reports whether setup has nothing to do.
func (l *ledger) ready(ctx context.Context) (bool, error) {
	var ok bool
	if err := l.work.QueryRow(ctx, workReady).Scan(&ok); err != nil {
		return false, fmt.Errorf("connect to the target database: %w", err)
	}
	if !ok {
		return false, nil
	}
	if err := l.runs.QueryRow(ctx, runsSetUp).Scan(&ok); err != nil {
		return false, fmt.Errorf("connect to the ledger database: %w", err)
	}
	if !ok {
		return false, nil
	}
	return l.audit.Exists(ctx)
}

// setupSchema runs stmts in tx unless ready says they ran, under the
// setup lock.
func setupSchema(ctx context.Context, tx pgx.Tx, ready string, stmts []string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", int32(leaseClass)); err != nil {
		return err
	}
	var ok bool
	if err := tx.QueryRow(ctx, ready).Scan(&ok); err != nil || ok {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// inTx runs fn in a transaction of db and commits it.
func inTx(ctx context.Context, db *pgxpool.Pool, fn func(pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
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
	ID         string `json:"id"`
	JobName    string `json:"job_name"`
	JobVersion string `json:"job_version"`
	JobHash    string `json:"job_hash"`
	// PrevRun is the run of the same job this one followed (empty for
	// the job's first run): a job's runs form one line.
	PrevRun        string            `json:"prev_run,omitempty"`
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
	// Control is the run's control record (see control.go), when it has
	// one: a pause or cancel asked for, by whom and why, and overrides.
	Control *Control `json:"control,omitempty"`
	// Canary is the run's canary (see ApplyOptions.Canary), when it has one.
	Canary *CanaryState `json:"canary,omitempty"`
	// Session is what the run's start found of the settings that give the
	// job its meaning and are not pinned: time_zone, search_path and
	// table (the job's table, schema-qualified). Empty for runs of
	// earlier versions.
	Session map[string]string `json:"session,omitempty"`
	// Kind is "apply" for a run of a job and "rollback" for a rollback,
	// which names the run it undoes in Undoes.
	Kind   string `json:"kind"`
	Undoes string `json:"undoes,omitempty"`
	// Rollbacks are the rollbacks of this run, and Images what is kept of
	// its before-images (filled by Status and List; see rollback.go).
	Rollbacks []RollbackRef `json:"rollbacks,omitempty"`
	Images    *ImagesInfo   `json:"images,omitempty"`

	// Workers caps the shard leases the run's workers hold at once, in
	// all processes; MaxDBWorkers, when not 0, caps those of every run
	// in the target database (see shard.go). Shards is filled by Status.
	Workers      int           `json:"workers,omitempty"`
	MaxDBWorkers int           `json:"max_db_workers,omitempty"`
	Shards       []ShardStatus `json:"shards,omitempty"`
	// Throttle is what the run's throttle did (filled by Status and
	// List; nil for a run never paced).
	Throttle *ThrottleStatus `json:"throttle,omitempty"`
	lockObj  int64
	epoch    int64 // the lease epoch this process holds, or 0

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

// open reports whether the run can still be applied: running (or
// interrupted) or failed.
func (r *Run) open() bool { return r.State != Finished && r.State != Cancelled }

const runCols = `id, job_name, job_version, job_hash, job, params, plan_hash, binary_version, actor, host, command,
	CASE WHEN state = 'running' AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'
		AND l.classid IN (1381453380, 1381453399) AND l.objid::bigint = lock_obj AND l.objsubid = 2 AND l.granted
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
	THEN 'interrupted' ELSE state END,
	policy, chunk_size, total, total_estimated, end_key, lock_obj, owner, heartbeat_at, changes_allowed,
	created_at, updated_at, finished_at, error, error_class, error_chunk, error_key, `

// cols returns the columns to select runs with: a ledger of an earlier
// version, which only a run (setup) upgrades, lacks the later ones.
func (l *ledger) cols(ctx context.Context) (string, error) {
	if l.upgraded.Load() {
		return runCols + "prev_run, session, undoes", nil
	}
	var prev, sess, undoes bool
	if err := l.runs.QueryRow(ctx, `SELECT coalesce(bool_or(attname = 'prev_run'), false), coalesce(bool_or(attname = 'session'), false),
		coalesce(bool_or(attname = 'undoes'), false) FROM pg_attribute
		WHERE attrelid = to_regclass('rewind.backfill_runs') AND NOT attisdropped`).Scan(&prev, &sess, &undoes); err != nil {
		return "", fmt.Errorf("read the run ledger: %w", err)
	}
	if prev && sess && undoes {
		l.upgraded.Store(true)
	}
	pick := func(ok bool, col, missing string) string {
		if ok {
			return col
		}
		return missing
	}
	return runCols + pick(prev, "prev_run", "''") + ", " + pick(sess, "session", "'{}'::jsonb") + ", " + pick(undoes, "undoes", "''"), nil
}

func scanRun(row pgx.Row) (*Run, error) {
	var r Run
	var job, params, sess []byte
	var end, ekey []string
	err := row.Scan(&r.ID, &r.JobName, &r.JobVersion, &r.JobHash, &job, &params, &r.PlanHash, &r.Binary, &r.Actor,
		&r.Host, &r.Command, &r.State, &r.Policy, &r.ChunkSize, &r.Total, &r.TotalEstimated, &end, &r.lockObj,
		&r.Owner, &r.Heartbeat, &r.ChangesAllowed, &r.Created, &r.Updated, &r.FinishedAt, &r.Error, &r.ErrorClass,
		&r.ErrorChunk, &ekey, &r.PrevRun, &sess, &r.Undoes)
	if err != nil {
		return nil, err
	}
	r.Kind = "apply"
	if r.Undoes != "" {
		r.Kind = "rollback"
	}
	if err := json.Unmarshal(sess, &r.Session); err != nil {
		return nil, fmt.Errorf("decode run %s: %w", r.ID, err)
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

// createRun records a new run, owned by this process under lease epoch
// r.epoch, and its run.started entry, in one transaction: no other
// process can see the run before its story begins. It returns
// errRunStarted when another run of the job is open or already follows
// r.PrevRun.
func (l *ledger) createRun(ctx context.Context, r *Run, started func(*Run) audit.Entry) error {
	job, _ := json.Marshal(r.Job)
	params, _ := json.Marshal(r.Params)
	sess, _ := json.Marshal(r.Session)
	err := inTx(ctx, l.runs, func(tx pgx.Tx) error {
		// A disabled job starts no run; the lock orders this start and a
		// disable, so that a run started meanwhile is paused by it.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))", int32(toggleClass), r.JobName); err != nil {
			return err
		}
		if err := refuseDisabled(ctx, tx, r.JobName); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `INSERT INTO rewind.backfill_runs (id, job_name, job_version, job_hash, job, params,
			plan_hash, binary_version, actor, host, command, state, policy, chunk_size, total, total_estimated, end_key,
			lock_obj, owner, heartbeat_at, prev_run, lease, session, undoes)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,'running',$12,$13,$14,$15,$16,$17,$18,clock_timestamp(),$19,$20,$21,$22)
			RETURNING created_at, updated_at`,
			r.ID, r.JobName, r.JobVersion, r.JobHash, job, params, r.PlanHash, r.Binary, r.Actor, r.Host, r.Command,
			r.Policy, r.ChunkSize, r.Total, r.TotalEstimated, []string(r.End), r.lockObj, r.Owner, r.PrevRun, r.epoch, sess,
			r.Undoes).Scan(&r.Created, &r.Updated)
		if err != nil {
			return err
		}
		if err := insertCanary(ctx, tx, r); err != nil {
			return err
		}
		_, err = l.audit.AppendTx(ctx, tx, started(r))
		return err
	})
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23505" &&
		(pe.ConstraintName == "backfill_runs_one_open" || pe.ConstraintName == "backfill_runs_lineage") {
		return errRunStarted
	}
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	return nil
}

// errRunStarted: another process started a run of the same job meanwhile.
var errRunStarted = errors.New("backfill: another process started a run of this job")

// errRunClosed: the run finished or was cancelled (run.State says which)
// before this process could apply it.
var errRunClosed = errors.New("backfill: run is closed")

// loadRun finds a run by id or unique id prefix, with its progress.
func (l *ledger) loadRun(ctx context.Context, id string) (*Run, error) {
	if ok, err := l.exists(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: %s: no backfill has run against this database (check --dsn, or --ledger-dsn if the runs are recorded elsewhere)", ErrRunNotFound, id)
	}
	if len(id) < 4 {
		return nil, &rewind.ValidationError{Field: "run id", Value: id, Reason: "give at least 4 characters"}
	}
	cols, err := l.cols(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := l.runs.Query(ctx, "SELECT "+cols+" FROM rewind.backfill_runs WHERE starts_with(id, $1) ORDER BY id LIMIT 2", id)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	switch len(runs) {
	case 0:
		return nil, fmt.Errorf("%w: no run id starts with %s; 'rewind backfill list' shows the runs", ErrRunNotFound, id)
	case 2:
		return nil, &rewind.ValidationError{Field: "run id", Value: id, Reason: "matches several runs; give more characters"}
	}
	return runs[0], l.progress(ctx, runs[0])
}

// lineage is what Apply decides on: the last run of a job (the one no
// other run follows) and the last one that finished.
type lineage struct {
	last, finished *Run
}

func (l *ledger) lineage(ctx context.Context, name string) (lineage, error) {
	var ln lineage
	one := func(where string) (*Run, error) {
		r, err := scanRun(l.runs.QueryRow(ctx, "SELECT "+runCols+"prev_run, session, undoes FROM rewind.backfill_runs r WHERE job_name = $1 AND "+where, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the runs of job %s: %w", name, err)
		}
		return r, l.progress(ctx, r)
	}
	var err error
	if ln.last, err = one(`NOT EXISTS (SELECT 1 FROM rewind.backfill_runs n WHERE n.job_name = r.job_name AND n.prev_run = r.id)
		ORDER BY created_at DESC LIMIT 1`); err != nil {
		return ln, err
	}
	if ln.finished, err = one("state = 'finished' ORDER BY finished_at DESC LIMIT 1"); err != nil {
		return ln, err
	}
	return ln, nil
}

// resumeRun makes run this process's again under lease epoch run.epoch,
// and records its run.resumed entry, in one transaction, unless it was
// finished or cancelled meanwhile (errRunClosed, run.State updated).
func (l *ledger) resumeRun(ctx context.Context, run *Run, jobHash, binary string, job map[string]any, changes int,
	takenOver func(prevOwner string, prevLease int64) audit.Entry, resumed func(from State) audit.Entry) error {
	jobJSON, _ := json.Marshal(job)
	return inTx(ctx, l.runs, func(tx pgx.Tx) error {
		if err := l.takeOver(ctx, tx, run, takenOver); err != nil {
			return err
		}
		from := run.State
		if from == Finished || from == Cancelled {
			return errRunClosed
		}
		if _, err := tx.Exec(ctx, `UPDATE rewind.backfill_runs SET state = 'running', owner = $2, lease = $3, job_hash = $4,
			binary_version = $5, job = $6, changes_allowed = changes_allowed + $7, heartbeat_at = clock_timestamp(),
			updated_at = clock_timestamp(), error = '', error_class = '', error_chunk = 0, error_key = NULL WHERE id = $1`,
			run.ID, run.Owner, run.epoch, jobHash, binary, jobJSON, changes); err != nil {
			return fmt.Errorf("resume run %s: %w", run.ID, err)
		}
		if _, err := l.audit.AppendTx(ctx, tx, resumed(from)); err != nil {
			return err
		}
		run.State = Running
		return nil
	})
}

// claim records this process as run's owner under lease epoch run.epoch,
// without changing its state (for retry-failed and cancel). A run still
// marked running was taken over: takenOver's entry records it.
func (l *ledger) claim(ctx context.Context, run *Run, takenOver func(prevOwner string, prevLease int64) audit.Entry) error {
	return inTx(ctx, l.runs, func(tx pgx.Tx) error {
		if err := l.takeOver(ctx, tx, run, takenOver); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE rewind.backfill_runs SET owner = $2, lease = $3, heartbeat_at = clock_timestamp() WHERE id = $1",
			run.ID, run.Owner, run.epoch)
		if err != nil {
			return fmt.Errorf("take run %s: %w", run.ID, err)
		}
		return nil
	})
}

// takeOver locks run's record in tx and, when it is still marked running
// under another lease (its owner died, was cut off or frozen, and never
// recorded an end), appends takenOver's entry: the ledger says who ran the
// run before and who runs it now. It returns the run's stored state in
// run.State.
func (l *ledger) takeOver(ctx context.Context, tx pgx.Tx, run *Run, takenOver func(prevOwner string, prevLease int64) audit.Entry) error {
	var prevOwner string
	var prevLease int64
	if err := tx.QueryRow(ctx, "SELECT state, owner, lease FROM rewind.backfill_runs WHERE id = $1 FOR UPDATE", run.ID).
		Scan(&run.State, &prevOwner, &prevLease); err != nil {
		return fmt.Errorf("take run %s: %w", run.ID, err)
	}
	if run.State != Running || prevLease == run.epoch {
		return nil
	}
	if _, err := l.audit.AppendTx(ctx, tx, takenOver(prevOwner, prevLease)); err != nil {
		return err
	}
	return nil
}

// end moves a running run this process holds (lease epoch run.epoch) to
// state s (finished, failed or cancelled) and records entry, in one
// transaction: tx, the transaction holding the run's fence (see
// Runner.owning), when the ledger shares the target database. A run
// another process took over meanwhile is left alone: ErrLeaseLost. So a
// run has one end in the ledger, never two.
func (l *ledger) end(ctx context.Context, tx pgx.Tx, run *Run, s State, rerr *RunError, entry audit.Entry) error {
	var msg, class string
	var chunk int64
	var key []string
	if rerr != nil {
		_, msg = describeErr(rerr.Err)
		class, chunk, key = string(rerr.Class), rerr.Chunk, rerr.Key
	}
	do := func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE rewind.backfill_runs SET state = $2, error = $3, error_class = $4, error_chunk = $5,
			error_key = $6, updated_at = clock_timestamp(),
			finished_at = CASE WHEN $2 IN ('finished', 'cancelled') THEN clock_timestamp() ELSE finished_at END
			WHERE id = $1 AND lease = $7 AND state IN ('running', 'failed', 'paused')`,
			run.ID, string(s), msg, class, chunk, key, run.epoch)
		if err != nil {
			return fmt.Errorf("update run %s: %w", run.ID, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: run %s was taken over by another process (or closed) before it could be marked %s",
				ErrLeaseLost, run.ID, s)
		}
		_, err = l.audit.AppendTx(ctx, tx, entry)
		return err
	}
	if l.same && tx != nil {
		return do(tx)
	}
	return inTx(ctx, l.runs, do)
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
		      AND committed_at > clock_timestamp() - interval '1 minute' ORDER BY committed_at DESC LIMIT 50) c`, r.ID).Scan(&rows, &span)
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
	cols, err := l.cols(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := l.runs.Query(ctx, "SELECT "+cols+` FROM rewind.backfill_runs
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
		if err := l.throttleStatus(ctx, r); err != nil {
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

// txIDs are a chunk's transaction ids, as its checkpoint records them
// (see verify.go); set once the batch has run.
type txIDs struct{ xid, xidEnd int64 }

// queueCheckpoint queues the insert of a chunk's checkpoint. The primary
// key (run, seq) fences out a second process applying the same run: its
// checkpoint fails and its transaction, writes included, rolls back. The
// ids it returns are filled in when the batch has run, for the chunk's
// audit entry.
func (l *ledger) queueCheckpoint(b *pgx.Batch, runID string, seq int64, retry bool, bd Bounds, r chunkResult, attempts int) *txIDs {
	ids := &txIDs{}
	// The checkpoint is written in a subtransaction of its own, whose id,
	// assigned by that write, is above the ids of everything the chunk
	// wrote before (its own and its subtransactions'): xid_end, for verify.
	b.Queue("SAVEPOINT rewind_checkpoint")
	b.Queue(`INSERT INTO rewind.backfill_chunks (run_id, seq, retry, after_key, lo, hi, rows_seen, rows_changed,
		rows_skipped, input_checksum, output_checksum, attempts, xid) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12, txid_current())`,
		runID, seq, retry, []string(bd.After), []string(bd.Lo), []string(bd.Hi), r.Seen, r.Changed, r.Skipped, r.In, r.Out, attempts)
	b.Queue(`UPDATE rewind.backfill_chunks SET xid_end = xid + ((((xmin::text::bigint - xid) % 4294967296) + 4294967296) % 4294967296)
		WHERE run_id = $1 AND seq = $2 RETURNING xid, xid_end`, runID, seq).QueryRow(func(row pgx.Row) error {
		return row.Scan(&ids.xid, &ids.xidEnd)
	})
	b.Queue("RELEASE SAVEPOINT rewind_checkpoint")
	return ids
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
