// Package backfill runs backfills and one-off data corrections against
// PostgreSQL so that they are idempotent, restartable and audited.
//
// A Job is a source iterated in key order (a *Table, composite keys
// included, or a window of *Events from the embedded store), a change (Set
// columns to SQL expressions, an SQL Statement per chunk, or a Go Process
// function with a *TableSink or *StoreSink), typed Params, a name and a
// version. Its definition and parameters hash to the job hash.
//
// Runner.Plan is the dry run: it counts the rows to change (exactly, or
// estimated and labelled so), shows the first before → after diffs, EXPLAINs
// the chunk statement and returns a plan hash, writing nothing to the
// target. Runner.Apply runs the job in chunks found by keyset (the next N
// keys after the last one, never OFFSET), optionally refusing to start if
// the input no longer matches a plan hash.
//
// # Guarantees
//
// Each chunk is one transaction: its rows are locked, changed, and its
// checkpoint (key range, rows seen and changed, checksums of input and
// output) is inserted in the same transaction, together with its audit entry
// when the ledger shares the database. So a chunk is applied exactly once
// even if the process dies at any instant: either the chunk and its
// checkpoint committed, or neither did. Resume (or re-running Apply)
// continues after the last committed chunk.
//
// A job is applied once, whatever the timing of the processes that start,
// resume and finish it: while it has an open run, Apply continues that run;
// once a run finished, Apply refuses with ErrAlreadyApplied unless
// ApplyOptions.NewRun names the job's last run. The runs of a job form one
// line (no two runs follow the same run, enforced by a unique index), so
// concurrent starts, or concurrent requests for a new run, make one run.
// With a WHERE that selects only rows that still need the change, a new
// run changes 0 rows, and the result says so.
//
// A run holds a lease: a PostgreSQL advisory lock on a dedicated
// connection, plus a heartbeat, and a fencing token in the target database
// that every chunk checks in its own transaction. When the process dies its
// connection closes and the lock goes with it, so the run shows as
// interrupted at once (never "running" forever) and can be resumed; a
// process that lost its lease stops before its next commit; a frozen
// process is taken over once its lease connection has been idle for
// Config.LeaseTimeout. A run refuses to resume under a different job hash or
// binary unless ApplyOptions.AllowChangedJob is set, which is recorded.
//
// A run may be applied by several workers (ApplyOptions.Workers), in this
// process and in others that join it (Runner.Work). Its keys are split
// into shards when it starts; each worker leases one shard at a time, with
// a lease like the run's (an advisory lock on its own connection, a
// heartbeat, and an epoch that every chunk's transaction checks when it
// updates the shard's checkpoint). A dead worker's shard is leased again at
// once, a frozen one's after LeaseTimeout, and a worker whose shard was
// taken over stops before its next commit. So a row is still changed at
// most once per run, whatever the number of workers and their failures.
//
// A job's SQL means what plain SQL would: every @parameter is bound with
// its declared type, as the literal 'value'::type. A Statement can never
// change a row outside the chunk it is given: the keys of the rows it
// changes are checked in its own transaction, and one outside fails the
// run (*EscapeError) with that chunk rolled back. A job's SQL may not
// change the session the runner's pooled connections keep: functions
// such as set_config are refused, and a chunk that changes the
// search_path or role anyway fails and is rolled back
// (*SessionChangedError).
//
// Errors are classified (Classify): transient ones (serialization failure,
// deadlock, lock timeout, lost connection) are retried with exponential
// backoff and jitter; data errors (constraint violations, bad values, an
// *ItemError) follow the job's policy, Halt (the run stops naming the chunk
// and key, nothing of that chunk is written) or Skip (the failing keys go to
// a quarantine with their errors, the rest of the chunk commits;
// RetryFailed processes only them); fatal errors stop the run with the
// chunk named.
//
// Runner.Verify re-reads a run's committed chunks, read-only, and reports
// discrepancies with the ledger by chunk and key: checkpoints altered
// since, rows written since the chunk committed, output checksums that no
// longer match, rows of finished ranges the job's where still selects; a
// sample gives a rate with a confidence interval. A job's Validate
// assertions run read-only (Runner.Validate), and a canary
// (ApplyOptions.Canary) applies a run's first rows, runs them, and pauses
// the run until Runner.Promote unless they pass.
//
// Every step is recorded in the audit ledger of package audit: run planned,
// started, chunk committed, retried, skipped, failed, resumed, finished,
// with who, host, binary version, command line, job hash and masked
// parameters.
//
// See docs/backfill.md for the design decisions.
package backfill
