package backfill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Shards. A run's key range is split into shards when it starts, from the
// key distribution, and the shards are recorded in the target database in
// the transaction that takes the run's first fencing token: a crash leaves
// all of the plan or none of it. Workers — goroutines of the process that
// runs the job, and of any `rewind backfill work RUN` process — lease one
// shard at a time and apply its chunks in key order. Each shard keeps its
// own checkpoint (its last committed key), updated in each chunk's
// transaction under the shard lease's epoch: the fence, generalized from
// the run's.
//
// A shard lease has the run lease's two parts. Liveness is a session
// advisory lock (shardClass, lock_obj) held on the worker's own connection
// to the target database, heartbeated; a dead worker's lock goes with its
// connection, and the lock of a worker whose connection has been idle for
// LeaseTimeout (a frozen process) is ended by the worker that wants its
// shard. The fence is the shard row's epoch: taking a lease takes the next
// epoch, and a chunk commits only if the row still holds its worker's
// epoch, checked by the UPDATE of the shard's checkpoint in the chunk's
// transaction. A worker of the process holding the run's lease also
// commits only under that run lease (the run's fencing token): once the
// run is taken over, its shard leases are void, and the new owner's
// workers take those shards at once.
//
// Each claim takes a fresh lock key (a sequence), so a void lease still
// held by a stopping worker does not block the shard's new lease.
const shardSchema = `CREATE TABLE IF NOT EXISTS rewind.backfill_shards (
		run_id       text NOT NULL,
		shard        int NOT NULL,
		lo           text[],
		hi           text[],
		state        text NOT NULL DEFAULT 'pending',
		last_key     text[],
		chunks       bigint NOT NULL DEFAULT 0,
		rows_seen    bigint NOT NULL DEFAULT 0,
		epoch        bigint NOT NULL DEFAULT 0,
		run_lease    bigint NOT NULL DEFAULT 0,
		lock_obj     int NOT NULL DEFAULT 0,
		owner        text NOT NULL DEFAULT '',
		leased_at    timestamptz,
		heartbeat_at timestamptz,
		done_at      timestamptz,
		error        text NOT NULL DEFAULT '',
		error_class  text NOT NULL DEFAULT '',
		error_chunk  bigint NOT NULL DEFAULT 0,
		error_key    text[],
		PRIMARY KEY (run_id, shard))`

// Advisory lock classes besides leaseClass ("RWND"): a shard lease in the
// target database ("RWNS", objid from rewind.backfill_shard_locks); a
// worker process's presence on a run in the ledger database, shared
// ("RWNW", objid the run's lock_obj); and the transaction lock that
// serializes claims in the target database ("RWNC", 0).
const (
	shardClass    = 0x52574e53
	presenceClass = 0x52574e57
	claimClass    = 0x52574e43
)

// Bounds of ApplyOptions and WorkOptions.
const (
	MaxShards  = 10000
	MaxWorkers = 1000
)

// seqBlock is the sequence numbers of shard s's chunks: (s<<32, (s+1)<<32].
// So (run_id, seq) stays unique across shards without a shared counter,
// a chunk keeps its number across crashes (the store sink's intents are
// found by it), and a run of one shard numbers its chunks 1, 2, 3… as
// before shards existed.
func seqBlock(shard int) (after, last int64) {
	return int64(shard) << 32, int64(shard+1) << 32
}

// ShardStatus is one shard of a run, as Status shows it.
type ShardStatus struct {
	Shard int `json:"shard"`
	// After and Hi bound the shard's keys: after After (empty: from the
	// first key) up to Hi included (empty: the run's end).
	After Key `json:"after,omitempty"`
	Hi    Key `json:"hi,omitempty"`
	// State is done, leased (pending, and a live worker holds it),
	// pending, failed or cancelled.
	State     string     `json:"state"`
	Owner     string     `json:"owner,omitempty"`
	Heartbeat *time.Time `json:"heartbeat_at,omitempty"`
	Chunks    int64      `json:"chunks"`
	RowsSeen  int64      `json:"rows_seen"`
	LastKey   Key        `json:"last_key,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// shardPlan is how a run's key range is split: bounds[i] is the last key
// of shard i; the last shard ends at the run's end.
type shardPlan struct {
	bounds []Key
	method string // one, histogram or sample
}

func (sp shardPlan) count() int { return len(sp.bounds) + 1 }

// planShards splits the range up to end into at most n shards. A window
// of events, and a run with nothing to do, is one shard.
func (r *Runner) planShards(ctx context.Context, p *prepared, end Key, n int) (shardPlan, error) {
	t, ok := p.src.(*Table)
	if n <= 1 || end == nil || !ok {
		return shardPlan{method: "one"}, nil
	}
	sp, err := t.shardBounds(ctx, r.cfg.DB, end, n)
	if err != nil {
		return sp, fmt.Errorf("split the run into shards: %w", err)
	}
	return sp, nil
}

// shardBounds finds up to n-1 keys below end that split the table's keys
// into n parts of about as many rows: from the histogram PostgreSQL keeps
// of the first key column when it has one with enough buckets and the
// table changed little since it was made, else from a sample of the keys.
// Bounds are whole keys (a histogram value is replaced by the last key at
// or below it), so composite keys split like single ones. The job's where
// is not applied: shards are even in rows, not in rows to change.
func (t *Table) shardBounds(ctx context.Context, db querier, end Key, n int) (shardPlan, error) {
	var hist []string
	var fresh bool
	var tuples, pages float64
	err := db.QueryRow(ctx, `SELECT (SELECT s.histogram_bounds::text::text[] FROM pg_stats s
			WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = $2),
		coalesce(u.n_mod_since_analyze <= greatest(c.reltuples, 1) * 0.2 AND (u.last_analyze IS NOT NULL OR u.last_autoanalyze IS NOT NULL), false),
		greatest(c.reltuples, 0)::float8, (pg_relation_size(c.oid) / current_setting('block_size')::int)::float8
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables u ON u.relid = c.oid
		WHERE c.oid = $1`, t.oid, t.Key[0]).Scan(&hist, &fresh, &tuples, &pages)
	if err != nil {
		return shardPlan{}, err
	}
	if fresh && len(hist)-1 >= n {
		vals := make([]string, 0, n-1)
		for i := 1; i < n; i++ {
			vals = append(vals, hist[i*(len(hist)-1)/n])
		}
		keys, err := t.keysAtOrBelow(ctx, db, vals, end)
		if err != nil {
			return shardPlan{}, err
		}
		return shardPlan{bounds: distinctKeys(keys), method: "histogram"}, nil
	}
	want := min(max(float64(n)*100, 10_000), 200_000)
	est := max(tuples, pages*50)
	pct := 100.0
	if est > 2*want {
		pct = max(100*want/est, 0.0001)
	}
	keys, err := t.sampleBounds(ctx, db, end, n, pct)
	if err == nil && pct < 100 && len(keys) < n-1 {
		keys, err = t.sampleBounds(ctx, db, end, n, 100) // the statistics were wrong: read every key
	}
	if err != nil {
		return shardPlan{}, err
	}
	return shardPlan{bounds: distinctKeys(keys), method: "sample"}, nil
}

// keysAtOrBelow returns, for each value of the first key column, the last
// key at or below it and below end (none when there is no such key).
func (t *Table) keysAtOrBelow(ctx context.Context, db querier, vals []string, end Key) ([]Key, error) {
	a := pgx.NamedArgs{"_rw_vals": vals}
	q := fmt.Sprintf(`SELECT k.key FROM unnest(CAST(@_rw_vals AS text[])) WITH ORDINALITY AS v(x, i)
		CROSS JOIN LATERAL (SELECT ARRAY[%s] AS key FROM %s t WHERE t.%s <= CAST(v.x AS %s) AND (%s) < %s ORDER BY %s LIMIT 1) k
		ORDER BY v.i`, t.keyText("t."), t.ref, quote(t.Key[0]), t.types[t.Key[0]], t.keyCols("t."),
		t.keyParams(a, "e", end), desc(t.keyCols("t.")))
	return t.collectKeys(ctx, db, q, a)
}

// sampleBounds returns the last key of each of the first n-1 of n equal
// parts of a pct percent sample of the keys below end.
func (t *Table) sampleBounds(ctx context.Context, db querier, end Key, n int, pct float64) ([]Key, error) {
	a := pgx.NamedArgs{}
	sample := ""
	if pct < 100 {
		sample = " TABLESAMPLE SYSTEM (" + strconv.FormatFloat(pct, 'f', 6, 64) + ")"
	}
	q := fmt.Sprintf(`WITH s AS (SELECT %s FROM %s t%s WHERE (%s) < %s),
		q AS (SELECT s.*, ntile(%d) OVER (ORDER BY %s) AS b FROM s)
		SELECT DISTINCT ON (b) ARRAY[%s] FROM q WHERE b < %d ORDER BY b, %s`,
		t.keyCols("t."), t.ref, sample, t.keyCols("t."), t.keyParams(a, "e", end),
		n, t.keyCols("s."), t.keyText("q."), n, desc(t.keyCols("q.")))
	return t.collectKeys(ctx, db, q, a)
}

func (t *Table) collectKeys(ctx context.Context, db querier, q string, a pgx.NamedArgs) ([]Key, error) {
	rows, err := db.Query(ctx, q, bindArgs(a))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Key, error) {
		var k []string
		err := row.Scan(&k)
		return k, err
	})
}

// distinctKeys drops repeated keys from ascending keys.
func distinctKeys(keys []Key) []Key {
	return slices.CompactFunc(keys, func(a, b Key) bool { return slices.Equal(a, b) })
}

// queueShards queues the insert of a new run's shards.
func queueShards(b *pgx.Batch, runID string, sp shardPlan) {
	var lo Key
	for i := range sp.count() {
		var hi Key
		if i < len(sp.bounds) {
			hi = sp.bounds[i]
		}
		b.Queue("INSERT INTO rewind.backfill_shards (run_id, shard, lo, hi) VALUES ($1, $2, $3, $4)",
			runID, i, []string(lo), []string(hi))
		lo = hi
	}
}

// ensureShards, in the transaction that takes a run's fencing token to
// continue it, gives a run of an earlier version (no shards) one shard
// holding its progress, and makes failed shards pending again. It returns
// the run's shard count.
func ensureShards(ctx context.Context, tx pgx.Tx, runID string) (int, error) {
	_, err := tx.Exec(ctx, `INSERT INTO rewind.backfill_shards (run_id, shard, last_key, chunks, rows_seen)
		SELECT $1, 0, c.last, c.n, c.seen FROM (SELECT
			(SELECT hi FROM rewind.backfill_chunks WHERE run_id = $1 AND NOT retry ORDER BY seq DESC LIMIT 1) AS last,
			count(*) FILTER (WHERE NOT retry) AS n, coalesce(sum(rows_seen) FILTER (WHERE NOT retry), 0) AS seen
			FROM rewind.backfill_chunks WHERE run_id = $1) c
		WHERE NOT EXISTS (SELECT 1 FROM rewind.backfill_shards WHERE run_id = $1)
		ON CONFLICT (run_id, shard) DO NOTHING`, runID)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE rewind.backfill_shards SET state = 'pending', error = '', error_class = '', error_chunk = 0,
		error_key = NULL WHERE run_id = $1 AND state = 'failed'`, runID); err != nil {
		return 0, err
	}
	var n int
	err = tx.QueryRow(ctx, "SELECT count(*) FROM rewind.backfill_shards WHERE run_id = $1", runID).Scan(&n)
	return n, err
}

// heldSQL lists the shard lease locks held in the target database.
const heldSQL = `held AS MATERIALIZED (SELECT l.objid::bigint AS obj, l.pid FROM pg_locks l WHERE l.locktype = 'advisory'
	AND l.classid = 1381453395 AND l.objsubid = 2 AND l.granted
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`

// leasedSQL is true for a shard row s whose lease is live: its lock is
// held, and it was not taken under a run lease that is no longer the
// run's (epoch: the run's fencing token).
const leasedSQL = `(s.lock_obj IN (SELECT obj FROM held) AND (s.run_lease = 0 OR s.run_lease = %s))`

// shardLease is a worker's lease on one shard.
type shardLease struct {
	shard   int
	lo, hi  Key // after lo (nil: from the first key), up to hi (nil: the run's end)
	after   Key // the last key committed, or lo
	epoch   int64
	seq     int64 // the sequence number of the shard's next chunk
	lockObj int32
	size    int // the chunk size the sizer wants now, for the prefetch
}

// end is the last key of the shard.
func (s *shardLease) end(run *Run) Key {
	if s.hi != nil {
		return s.hi
	}
	return run.End
}

// errNoShard: no shard can be leased now, but some are pending (held by
// other workers, or the workers cap is reached).
var errNoShard = errors.New("backfill: no shard free")

// claim leases the next free shard of the run on conn, for owner, under
// runLease (0 for a worker of a process not holding the run's lease). It
// returns nil when no shard is pending any more, errNoShard when the free
// ones are all held or the workers caps are reached, a *RunError when a
// shard failed, and ErrRunEnded when the run was cancelled. Claims in a
// database are serialized, so that the caps hold across processes; idle
// bounds how long a claim's transaction may sit idle (LeaseTimeout).
func claim(ctx context.Context, conn *pgx.Conn, run *Run, runLease int64, owner string, idle time.Duration) (_ *shardLease, prev string, err error) {
	// A worker frozen in the middle of a claim would hold the claims lock
	// of the database: the server ends its transaction once idle that long.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: fmt.Sprintf("BEGIN; SET LOCAL idle_in_transaction_session_timeout = %d",
		idle.Milliseconds())})
	if err != nil {
		return nil, "", err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", int32(claimClass)); err != nil {
		return nil, "", err
	}
	var workers, maxDB int
	var epoch, pending, leased, cancelled, dbLeased int64
	var failed *int32
	err = tx.QueryRow(ctx, `WITH `+heldSQL+`,
		f AS (SELECT epoch, workers, max_db_workers FROM rewind.backfill_leases WHERE run_id = $1),
		s AS (SELECT s.shard, s.state, `+fmt.Sprintf(leasedSQL, "(SELECT epoch FROM f)")+` AS leased
			FROM rewind.backfill_shards s WHERE s.run_id = $1)
		SELECT coalesce((SELECT workers FROM f), 1), coalesce((SELECT max_db_workers FROM f), 0), coalesce((SELECT epoch FROM f), 0),
			count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'pending' AND leased),
			count(*) FILTER (WHERE state = 'cancelled'), min(shard) FILTER (WHERE state = 'failed'),
			CASE WHEN (SELECT max_db_workers FROM f) > 0 THEN (SELECT count(*) FROM held h
				JOIN rewind.backfill_shards s ON s.lock_obj = h.obj AND s.state = 'pending'
				JOIN rewind.backfill_leases o ON o.run_id = s.run_id WHERE `+fmt.Sprintf(leasedSQL, "o.epoch")+`) ELSE 0 END
		FROM s`, run.ID).Scan(&workers, &maxDB, &epoch, &pending, &leased, &cancelled, &failed, &dbLeased)
	switch {
	case err != nil:
		return nil, "", err
	case cancelled > 0:
		return nil, "", fmt.Errorf("%w: run %s was cancelled; stopping", ErrRunEnded, run.ID)
	case failed != nil:
		return nil, "", shardFailure(ctx, tx, run.ID, int(*failed))
	case pending == 0:
		return nil, "", nil
	case leased >= int64(workers), maxDB > 0 && dbLeased >= int64(maxDB):
		return nil, "", errNoShard
	}
	sh := &shardLease{}
	var lastKey []string
	err = tx.QueryRow(ctx, `WITH `+heldSQL+` SELECT s.shard, s.lo, s.hi, s.last_key, s.owner FROM rewind.backfill_shards s
		WHERE s.run_id = $1 AND s.state = 'pending' AND NOT `+fmt.Sprintf(leasedSQL, "$2")+`
		ORDER BY s.shard LIMIT 1 FOR UPDATE OF s SKIP LOCKED`, run.ID, epoch).Scan(&sh.shard, &sh.lo, &sh.hi, &lastKey, &prev)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", errNoShard // held, or locked by a chunk committing
	}
	if err != nil {
		return nil, "", err
	}
	var locked bool
	if err := tx.QueryRow(ctx, "SELECT k::int, pg_try_advisory_lock($1, k::int) FROM nextval('rewind.backfill_shard_locks') AS k",
		int32(shardClass)).Scan(&sh.lockObj, &locked); err != nil {
		return nil, "", err
	}
	if !locked {
		return nil, "", errNoShard
	}
	defer func() {
		if err != nil {
			conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1, $2)", int32(shardClass), sh.lockObj)
		}
	}()
	after, last := seqBlock(sh.shard)
	err = tx.QueryRow(ctx, `UPDATE rewind.backfill_shards SET epoch = epoch + 1, run_lease = $3, lock_obj = $4, owner = $5,
		leased_at = clock_timestamp(), heartbeat_at = clock_timestamp() WHERE run_id = $1 AND shard = $2
		RETURNING epoch, (SELECT coalesce(max(seq), $6) + 1 FROM rewind.backfill_chunks WHERE run_id = $1 AND seq > $6 AND seq <= $7)`,
		run.ID, sh.shard, runLease, sh.lockObj, owner, after, last).Scan(&sh.epoch, &sh.seq)
	if err != nil {
		return nil, "", err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, "", err
	}
	sh.after = lastKey
	if sh.after == nil {
		sh.after = sh.lo
	}
	return sh, prev, nil
}

// shardFailure is the error a worker recorded on shard.
func shardFailure(ctx context.Context, q querier, runID string, shard int) error {
	var msg, class string
	var chunk int64
	var key []string
	if err := q.QueryRow(ctx, "SELECT error, error_class, error_chunk, error_key FROM rewind.backfill_shards WHERE run_id = $1 AND shard = $2",
		runID, shard).Scan(&msg, &class, &chunk, &key); err != nil {
		return err
	}
	return &RunError{RunID: runID, Chunk: chunk, Key: key, Class: Class(class),
		Err: fmt.Errorf("shard %d failed: %s", shard, msg)}
}

// queueShardCheckpoint queues, in a chunk's transaction, the update of
// the shard's checkpoint under the worker's epoch: the fence. It fails
// the transaction when the lease was taken over or the run cancelled.
func queueShardCheckpoint(b *pgx.Batch, run *Run, sh *shardLease, hi Key, seen int64) {
	b.Queue(`UPDATE rewind.backfill_shards SET last_key = $4, chunks = chunks + 1, rows_seen = rows_seen + $5,
		heartbeat_at = clock_timestamp() WHERE run_id = $1 AND shard = $2 AND epoch = $3 AND state = 'pending'`,
		run.ID, sh.shard, sh.epoch, []string(hi), seen).Exec(func(ct pgconn.CommandTag) error {
		if ct.RowsAffected() != 1 {
			return shardLost(run, sh)
		}
		return nil
	})
}

func shardLost(run *Run, sh *shardLease) error {
	return fmt.Errorf("%w: run %s, shard %d: another worker took the shard over (this worker held lease %d), or the run "+
		"was cancelled; stopping before this chunk commits, so that no two workers apply it", ErrLeaseLost, run.ID, sh.shard, sh.epoch)
}

// finishShard marks a shard whose keys are all done, under the lease.
func finishShard(ctx context.Context, db querier, run *Run, sh *shardLease) error {
	tag, err := db.Exec(ctx, `UPDATE rewind.backfill_shards SET state = 'done', done_at = clock_timestamp(), heartbeat_at = clock_timestamp()
		WHERE run_id = $1 AND shard = $2 AND epoch = $3 AND state = 'pending'`, run.ID, sh.shard, sh.epoch)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return shardLost(run, sh)
	}
	return nil
}

// failShard records the error that stopped a shard, under the lease, so
// that every worker of the run stops at its next claim.
func failShard(ctx context.Context, db querier, run *Run, sh *shardLease, re *RunError) error {
	_, msg := describeErr(re.Err)
	_, err := db.Exec(ctx, `UPDATE rewind.backfill_shards SET state = 'failed', error = $4, error_class = $5, error_chunk = $6,
		error_key = $7 WHERE run_id = $1 AND shard = $2 AND epoch = $3 AND state = 'pending'`,
		run.ID, sh.shard, sh.epoch, msg, string(re.Class), re.Chunk, []string(re.Key))
	return err
}

// shardState is the state of a shard now (after a lost fence: cancelled
// tells the run's end from a takeover).
func shardState(ctx context.Context, db querier, runID string, shard int) string {
	var s string
	db.QueryRow(ctx, "SELECT state FROM rewind.backfill_shards WHERE run_id = $1 AND shard = $2", runID, shard).Scan(&s)
	return s
}

// endFrozenShards ends the sessions holding live leases of the run's
// pending shards that have been idle for timeout: their workers no longer
// heartbeat (frozen, or their host suspended). It reports how many.
func endFrozenShards(ctx context.Context, conn *pgx.Conn, run *Run, timeout time.Duration) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `WITH `+heldSQL+` SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid, 5000))
		FROM rewind.backfill_shards s JOIN held h ON h.obj = s.lock_obj JOIN pg_stat_activity a ON a.pid = h.pid
		WHERE s.run_id = $1 AND s.state = 'pending'
		AND (s.run_lease = 0 OR s.run_lease = (SELECT epoch FROM rewind.backfill_leases WHERE run_id = $1))
		AND a.state = 'idle' AND a.state_change < clock_timestamp() - make_interval(secs => $2)`,
		run.ID, timeout.Seconds()).Scan(&n)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return 0, fmt.Errorf("%w: a shard of run %s is held by a worker whose session has been idle for over %s (a frozen "+
			"process?), but this database role may not end it (%s); stop that process, or ask an administrator to run "+
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rewind backfill shard %s'",
			ErrRunLocked, run.ID, timeout, pe.Message, run.ID)
	}
	return n, err
}

// shardStatus reads the shards of runs for Status; a target database of
// an earlier version has none.
func (l *ledger) shardStatus(ctx context.Context, run *Run) error {
	var ok bool
	if err := l.work.QueryRow(ctx, workReady).Scan(&ok); err != nil || !ok {
		return err
	}
	if err := l.work.QueryRow(ctx, "SELECT workers, max_db_workers FROM rewind.backfill_leases WHERE run_id = $1", run.ID).
		Scan(&run.Workers, &run.MaxDBWorkers); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read the shards of run %s: %w", run.ID, err)
	}
	rows, err := l.work.Query(ctx, `WITH `+heldSQL+` SELECT s.shard, s.lo, s.hi,
		CASE WHEN s.state = 'pending' AND `+fmt.Sprintf(leasedSQL, "f.epoch")+` THEN 'leased' ELSE s.state END,
		s.owner, s.heartbeat_at, s.chunks, s.rows_seen, s.last_key, s.error
		FROM rewind.backfill_shards s LEFT JOIN rewind.backfill_leases f ON f.run_id = s.run_id
		WHERE s.run_id = $1 ORDER BY s.shard`, run.ID)
	if err != nil {
		return fmt.Errorf("read the shards of run %s: %w", run.ID, err)
	}
	run.Shards, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (ShardStatus, error) {
		var s ShardStatus
		var lo, hi, last []string
		err := row.Scan(&s.Shard, &lo, &hi, &s.State, &s.Owner, &s.Heartbeat, &s.Chunks, &s.RowsSeen, &last, &s.Error)
		s.After, s.Hi, s.LastKey = lo, hi, last
		return s, err
	})
	if err != nil {
		return fmt.Errorf("read the shards of run %s: %w", run.ID, err)
	}
	return nil
}
