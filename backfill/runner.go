package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/buildinfo"
)

// Config configures a Runner. DB is required; the zero value of every
// other field means its default.
type Config struct {
	// DB is the target database: the source and sink tables, and the
	// chunk checkpoints that commit with each chunk's writes.
	DB *pgxpool.Pool
	// Ledger holds run records and the audit ledger. Defaults to DB.
	Ledger *pgxpool.Pool
	// Actor is who runs the job, for the ledger. Defaults to the operating
	// system user.
	Actor string
	// Command is the command line, for the ledger (secrets are masked).
	// Each argument must be one line of plain text (audit.CheckCommand).
	// Defaults to os.Args.
	Command []string
	// Binary identifies this build; a run refuses to resume under another
	// one. Defaults to buildinfo.Identity().
	Binary string
	// Heartbeat is how often a running run proves it is alive. Defaults to 5s.
	Heartbeat time.Duration
	// LeaseWait is how long taking over a run waits for its previous
	// owner's lease to go (a killed process's connection takes a moment to
	// close). Defaults to 10s.
	LeaseWait time.Duration
	// LeaseTimeout bounds how long a frozen owner (a process stopped with
	// its connections open) blocks a run: once its lease connection has
	// been idle this long, a process taking the run over ends that
	// session. It also bounds how long a chunk's transaction may sit idle
	// (the server then ends it), so a process function must handle a
	// chunk within it. Must exceed twice Heartbeat. Defaults to 1m.
	LeaseTimeout time.Duration
	// MaxAttempts bounds how often a chunk is tried on transient errors.
	// Defaults to 10.
	MaxAttempts int
	// RetryInitial and RetryMax bound the exponential backoff between
	// attempts, which is jittered by ±50%. Default to 100ms and 10s.
	RetryInitial, RetryMax time.Duration
	// LockTimeout bounds how long a chunk waits for row locks before the
	// attempt fails as transient. Defaults to 5s.
	LockTimeout time.Duration
	// ExactCountLimit: inputs the planner estimates at or under this many
	// rows are counted exactly, larger ones are estimated (and labelled
	// so). Defaults to 10,000,000.
	ExactCountLimit int64
	// PreviewRows is how many before → after diffs a plan shows. Defaults to 10.
	PreviewRows int
	// Progress, when set, is called after every chunk.
	Progress func(Progress)
	// Logger receives retries and other notices. Defaults to slog.Default().
	Logger *slog.Logger

	// legacyChecksums starts runs as versions before per-column checksums
	// did (tests: export_test.go).
	legacyChecksums bool
}

// Progress is a run's progress after a chunk.
type Progress struct {
	RunID       string
	Chunks      int64
	RowsSeen    int64 // rows (or events) processed
	RowsChanged int64
	RowsSkipped int64
	Total       int64
	Estimated   bool
	// Paused, when not empty, says the run is pausing or paused, by whom
	// and why ("paused by alice: maintenance window"); the workers of this
	// process wait at a chunk boundary.
	Paused string
}

func (c Config) withDefaults() (Config, error) {
	if c.DB == nil {
		return c, &rewind.ValidationError{Field: "backfill config DB", Reason: "is required"}
	}
	if c.Command == nil {
		c.Command = os.Args
	}
	if c.Actor == "" { // the same name every audit entry's origin carries
		c.Actor = audit.CurrentOrigin("", nil, nil).Actor
	}
	// The actor, host and build, as replay runs check theirs.
	if err := audit.CheckOrigin(audit.CurrentOrigin(c.Actor, nil, nil)); err != nil {
		return c, err
	}
	// Recorded in every entry and in the run: an argument (a job file's
	// path, a --param value) that is not one line of plain text is
	// refused before anything is recorded.
	if err := audit.CheckCommand(c.Command); err != nil {
		return c, err
	}
	if c.Binary == "" {
		c.Binary = buildinfo.Identity()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Heartbeat, 5*time.Second)
	def(&c.LeaseWait, 10*time.Second)
	def(&c.LeaseTimeout, time.Minute)
	def(&c.RetryInitial, 100*time.Millisecond)
	def(&c.RetryMax, 10*time.Second)
	def(&c.LockTimeout, 5*time.Second)
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 10
	}
	if c.ExactCountLimit == 0 {
		c.ExactCountLimit = 10_000_000
	}
	if c.PreviewRows == 0 {
		c.PreviewRows = 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LeaseTimeout <= 2*c.Heartbeat {
		return c, &rewind.ValidationError{Field: "backfill config LeaseTimeout", Value: c.LeaseTimeout.String(),
			Reason: fmt.Sprintf("must exceed twice the heartbeat (%s): a live owner would look frozen", c.Heartbeat)}
	}
	return c, nil
}

// Runner plans and applies backfill jobs. It is safe for concurrent use.
type Runner struct {
	cfg    Config
	ledger *ledger
	bases  sync.Map // *Job → *entryBase
}

// New returns a runner. It does not touch the database.
func New(cfg Config) (*Runner, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l, err := newLedger(c.DB, c.Ledger, c.LeaseTimeout)
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: c, ledger: l}, nil
}

// prepared is a job checked against the database.
type prepared struct {
	job  *Job
	hash string
	args pgx.NamedArgs
	src  Source
	ch   applier
	// session is the target database's session as the job was prepared:
	// every chunk must begin and end with it (see sessionSQL).
	session session
}

// prepare validates job and checks it against the database without
// writing anything.
func (r *Runner) prepare(ctx context.Context, job *Job) (*prepared, error) {
	if err := job.validate(); err != nil {
		return nil, err
	}
	if err := r.cfg.DB.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connect to the target database: %w", err)
	}
	// Nothing may be written (the ledger's schema in the target included)
	// unless both databases can be reached.
	if r.cfg.Ledger != nil && r.cfg.Ledger != r.cfg.DB {
		if err := r.cfg.Ledger.Ping(ctx); err != nil {
			return nil, fmt.Errorf("connect to the ledger database: %w", err)
		}
	}
	p := &prepared{job: job, hash: job.Hash(), args: job.Params.namedArgs(), src: job.Source}
	if err := p.session.scan(r.cfg.DB.QueryRow(ctx, sessionSQL)); err != nil {
		return nil, fmt.Errorf("read the target database's session: %w", err)
	}
	// The session every chunk is compared with must lex SQL as the parser
	// that checked the job's SQL did, and print values as the
	// checkpoints store them (session.check).
	if err := p.session.check("target"); err != nil {
		return nil, err
	}
	if r.cfg.Ledger != nil && r.cfg.Ledger != r.cfg.DB {
		if err := checkSession(ctx, r.cfg.Ledger, "ledger"); err != nil {
			return nil, err
		}
	}
	if err := checkParams(ctx, r.cfg.DB, job.Params, p.args); err != nil {
		return nil, err
	}
	if err := learnRenderings(ctx, r.cfg.DB, job.Params, p.args); err != nil {
		return nil, err
	}
	if err := p.src.prepare(ctx, r.cfg.DB, p.args); err != nil {
		return nil, err
	}
	if t, ok := p.src.(*Table); ok {
		if err := checkRowSecurity(ctx, r.cfg.DB, t, p.session.user); err != nil {
			return nil, err
		}
		learnColumnRenderings(ctx, r.cfg.DB, job.Params, p.args, slices.Collect(maps.Values(t.types)))
	}
	switch {
	case len(job.Set) > 0:
		p.ch = newSetChange(job.Source.(*Table), job.Set)
	case job.Statement != "":
		p.ch = &statementChange{t: job.Source.(*Table), sql: job.Statement}
	default:
		p.ch = &processChange{src: job.Source, fn: job.Process, sink: job.Sink}
	}
	if err := p.ch.prepare(ctx, r.cfg.DB, p.args); err != nil {
		return nil, err
	}
	if err := prepareValidations(ctx, r.cfg.DB, p); err != nil {
		return nil, err
	}
	return p, nil
}

// checkParams has PostgreSQL read each parameter as its declared type, as
// every bind site will: an unknown type or a value the type's input
// function refuses is an error naming the parameter.
func checkParams(ctx context.Context, db querier, params Params, args pgx.NamedArgs) error {
	redact := params.redactor()
	for _, name := range slices.Sorted(maps.Keys(params)) {
		var s *string
		err := db.QueryRow(ctx, "SELECT @"+name+"::text", bindArgs(args)).Scan(&s)
		shown := params[name].Text
		if params[name].secret(name) {
			shown = "***"
		}
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe):
			return &rewind.ValidationError{Field: "params." + name, Value: shown,
				Reason: redact(fmt.Sprintf("is not a valid %s: %s", params[name].Type, pe.Message))}
		case err != nil && Classify(err) == Transient:
			return fmt.Errorf("check parameter %s: %w", name, err)
		case err != nil: // a Go value pgx cannot encode as the type
			return &rewind.ValidationError{Field: "params." + name, Value: shown,
				Reason: redact(fmt.Sprintf("cannot be bound as %s: %v", params[name].Type, err))}
		}
	}
	return nil
}

func (r *Runner) origin(job *Job) audit.Origin {
	return audit.CurrentOrigin(r.cfg.Actor, r.cfg.Command, job.Params.secretNames())
}

// entryBase is what every audit entry about a job repeats, computed once
// per job: the chunk loop writes one entry per chunk.
type entryBase struct {
	origin audit.Origin
	attrs  map[string]string
}

func (r *Runner) base(job *Job) *entryBase {
	if b, ok := r.bases.Load(job); ok {
		return b.(*entryBase)
	}
	a := map[string]string{"job": job.Name, "job_version": job.Version, "binary": r.cfg.Binary}
	if job.Source != nil {
		a["job_hash"] = job.Hash()
	}
	for k, v := range job.Params.masked() {
		a["param."+k] = v
	}
	b := &entryBase{origin: r.origin(job), attrs: a}
	r.bases.Store(job, b)
	return b
}

// entry builds an audit entry about a run.
func (r *Runner) entry(job *Job, kind, runID string, attrs map[string]string, counts map[string]int64) audit.Entry {
	b := r.base(job)
	a := make(map[string]string, len(b.attrs)+len(attrs))
	for k, v := range b.attrs {
		a[k] = v
	}
	for k, v := range attrs {
		a[k] = v
	}
	return audit.Entry{Kind: "backfill." + kind, Subject: runID, Origin: b.origin, Attrs: a, Counts: counts}
}

// Plan is what a dry run found.
type Plan struct {
	Job        string   `json:"job"`
	Version    string   `json:"version"`
	JobHash    string   `json:"job_hash"`
	PlanHash   string   `json:"plan_hash"`
	Rows       int64    `json:"rows"`
	Estimated  bool     `json:"estimated"`
	ChunkSize  int      `json:"chunk_size"`
	Chunks     int64    `json:"chunks"`
	FirstChunk *Bounds  `json:"first_chunk,omitempty"`
	Diffs      []Diff   `json:"diffs"`
	Explain    string   `json:"explain,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}

// PlanOptions tune a dry run.
type PlanOptions struct {
	// Estimate counts with the planner's estimate instead of exactly.
	Estimate bool
}

// Plan computes a job's plan without writing to the target: the rows to
// change (exact, or estimated and labelled so), the chunks, the first
// before → after diffs, the EXPLAIN of the chunk statement and a plan
// hash. It records a "planned" entry in the audit ledger.
func (r *Runner) Plan(ctx context.Context, job *Job, o PlanOptions) (*Plan, error) {
	p, err := r.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Job: job.Name, Version: job.Version, JobHash: p.hash, ChunkSize: job.chunkSize(), Diffs: []Diff{}}
	// Everything the dry run evaluates runs in a read-only transaction that
	// is rolled back: it changes nothing, and cannot advance a sequence.
	db, err := r.cfg.DB.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("connect to the target database: %w", err)
	}
	defer db.Rollback(context.WithoutCancel(ctx))
	if plan.Rows, plan.Estimated, plan.PlanHash, err = r.inputHash(ctx, db, p, o.Estimate); err != nil {
		return nil, err
	}
	if plan.Estimated {
		plan.Notes = append(plan.Notes, "the row count is the planner's estimate; the plan hash covers the job only, not its input")
	}
	plan.Chunks = (plan.Rows + int64(plan.ChunkSize) - 1) / int64(plan.ChunkSize)
	end, err := p.src.end(ctx, db, p.args)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if end != nil {
		b, ok, err := p.src.next(ctx, db, p.args, nil, end, plan.ChunkSize)
		if err != nil {
			return nil, fmt.Errorf("plan the first chunk: %w", err)
		}
		if ok {
			plan.FirstChunk = &b
			diffs, notes, err := p.ch.preview(ctx, db, p.args, b, r.cfg.PreviewRows)
			if err != nil {
				return nil, fmt.Errorf("preview: %w", err)
			}
			plan.Diffs = append(plan.Diffs, diffs...)
			plan.Notes = append(plan.Notes, notes...)
			if plan.Explain, notes, err = p.ch.explain(ctx, db, p.args, b); err != nil {
				return nil, fmt.Errorf("explain the chunk statement: %w", err)
			}
			plan.Notes = append(plan.Notes, notes...)
		}
	}
	db.Rollback(ctx)
	if plan.Rows == 0 && !plan.Estimated {
		plan.Notes = append(plan.Notes, "nothing to do: no row matches the job's WHERE (already applied?)")
	}
	if err := r.ledger.setup(ctx); err != nil {
		return nil, err
	}
	ln, err := r.ledger.lineage(ctx, job.Name)
	if err != nil {
		return nil, err
	}
	if f := ln.finished; f != nil && (ln.last == nil || !ln.last.open()) {
		plan.Notes = append(plan.Notes, fmt.Sprintf("job %s was already applied by run %s: --execute refuses to apply it again "+
			"unless given --new-run %s", job.Name, f.ID, ln.last.ID))
	}
	e := r.entry(job, "run.planned", "", map[string]string{"plan_hash": plan.PlanHash},
		map[string]int64{"rows": plan.Rows, "chunks": plan.Chunks})
	if err := r.ledger.appendAudit(ctx, e); err != nil {
		return nil, err
	}
	return plan, nil
}

// inputHash counts the input and hashes the job with it into a plan hash.
func (r *Runner) inputHash(ctx context.Context, db querier, p *prepared, estimate bool) (int64, bool, string, error) {
	n, _, err := p.src.count(ctx, db, p.args, false)
	if err != nil {
		return 0, false, "", fmt.Errorf("estimate the rows to change: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "job %s\nchunk %d\n", p.hash, p.job.chunkSize())
	if estimate || n > r.cfg.ExactCountLimit {
		fmt.Fprintf(h, "estimated\n")
		return n, true, hex.EncodeToString(h.Sum(nil))[:32], nil
	}
	fp, err := p.src.fingerprint(ctx, db, p.args)
	if err != nil {
		return 0, false, "", fmt.Errorf("count the rows to change: %w", err)
	}
	fmt.Sscanf(fp, "%d:", &n)
	fmt.Fprintf(h, "input %s\n", fp)
	return n, false, hex.EncodeToString(h.Sum(nil))[:32], nil
}

// ApplyOptions tune Apply and Resume.
type ApplyOptions struct {
	// PlanHash, when set, makes Apply refuse to start unless the job and
	// its input still match that plan.
	PlanHash string
	// AllowChangedJob lets a run resume under a changed job or binary. The
	// change is recorded in the run and the audit ledger.
	AllowChangedJob bool
	// Estimate counts the input with the planner's estimate.
	Estimate bool
	// NewRun lets Apply start a new run of a job that has finished
	// before: it names (by id or a unique prefix) the job's last run, so
	// that several processes asking for a new run at once, or one retrying
	// its request, start one new run, not one each.
	NewRun string
	// Canary, when set, makes a new run apply a first sample of its rows,
	// run the job's validations, and go on only if they pass (see
	// canary.go). Nil applies the whole run at once.
	Canary *Canary
	// Workers is the run's number of workers: at most this many of its
	// shards are leased at once, by all its processes together (this one
	// and those of Work). A new run defaults to 1; a continued run keeps
	// its own unless given. At most MaxWorkers.
	Workers int
	// LocalWorkers is how many workers this process runs. Defaults to
	// Workers (a continued run's, when not given).
	LocalWorkers int
	// Shards is how many shards a new run's keys are split into (fewer
	// when there are fewer keys). Defaults to 1 for one worker, else 4
	// per worker. A continued run keeps its shards. At most MaxShards.
	Shards int
	// MaxDBWorkers, when not 0, caps the shard leases of all runs in the
	// target database: this run's workers lease a shard only while fewer
	// are held. A continued run keeps its own unless given.
	MaxDBWorkers int
	// Throttle paces this process's workers: it waits while a signal is
	// at its max, pauses the run when one is critical or cannot be read,
	// caps the rows per second, and sizes the chunks of a job without a
	// fixed ChunkSize (see package throttle). Nil is the default throttle
	// on Config.DB: replication lag max 1.5s, the load defaults, chunks of
	// 500ms. A Throttler with no signal and no rate only sizes chunks.
	Throttle *throttle.Throttler

	promote bool // Promote: continue a run its canary stopped
}

// validate checks the options' numbers before anything is read or written.
func (o ApplyOptions) validate() error {
	for _, f := range []struct {
		name   string
		v, max int
	}{{"workers", o.Workers, MaxWorkers}, {"local workers", o.LocalWorkers, MaxWorkers}, {"shards", o.Shards, MaxShards},
		{"max db workers", o.MaxDBWorkers, MaxWorkers}} {
		if f.v < 0 || f.v > f.max {
			return &rewind.ValidationError{Field: f.name, Value: fmt.Sprint(f.v), Reason: fmt.Sprintf("must be from 1 to %d", f.max)}
		}
	}
	if o.Workers > 0 && o.LocalWorkers > o.Workers {
		return &rewind.ValidationError{Field: "local workers", Value: fmt.Sprint(o.LocalWorkers), Reason: fmt.Sprintf(
			"more than the run's %d workers: at most --workers shards are applied at once, by every process together; "+
				"raise --workers or lower --local-workers", o.Workers)}
	}
	return nil
}

// shards is the shard count a new run asks for.
func (o ApplyOptions) shards() int {
	switch {
	case o.Shards > 0:
		return o.Shards
	case o.Workers <= 1:
		return 1
	}
	return min(4*o.Workers, MaxShards)
}

// local is how many workers this process runs on a run of workers.
func (o ApplyOptions) local(workers int) int {
	if o.LocalWorkers > 0 {
		return o.LocalWorkers
	}
	return max(workers, 1)
}

// Result is what Apply, Resume and RetryFailed did.
type Result struct {
	Run *Run `json:"run"`
	// Resumed is true when an unfinished run was continued.
	Resumed bool `json:"resumed"`
	// Chunks, RowsSeen, RowsChanged and RowsSkipped count this call's work.
	Chunks      int64 `json:"chunks"`
	RowsSeen    int64 `json:"rows_seen"`
	RowsChanged int64 `json:"rows_changed"`
	RowsSkipped int64 `json:"rows_skipped"`
	// Message says what happened in a sentence.
	Message string `json:"message"`
	// Canary is what the run's canary found, when this call checked it.
	Canary *CanaryReport `json:"canary,omitempty"`
}

// Apply runs job. It continues the job's open run if there is one (same
// job hash, or AllowChangedJob), waiting for its owner's lease; else it
// starts a new run, but only if no run of the job has finished or
// NewRun names the job's last run; else it returns ErrAlreadyApplied.
// The run applies the remaining chunks in key order, each in one
// transaction with its checkpoint. It returns a *RunError when the run
// stops on an error; the run can then be resumed.
//
// So a job is applied at most once per new run asked for, whatever the
// timing of the processes that start it: the runs of a job form one line
// (no two runs follow the same run, see backfill_runs_lineage), at most one
// of them is open, and a run is applied by one process at a time.
func (r *Runner) Apply(ctx context.Context, job *Job, o ApplyOptions) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := o.Canary.check(job); err != nil {
		return nil, err
	}
	p, err := r.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	var planHash string
	if o.PlanHash != "" {
		if _, _, planHash, err = r.inputHash(ctx, r.guard(p), p, o.Estimate); err != nil {
			return nil, err
		}
		if planHash != o.PlanHash {
			return nil, fmt.Errorf("%w: the job or its input changed since plan %s was made (it now plans as %s); "+
				"run the dry run again and review it", ErrPlanMismatch, o.PlanHash, planHash)
		}
	}
	if err := r.ledger.setup(ctx); err != nil {
		return nil, err
	}
	if err := refuseDisabled(ctx, r.ledger.runs, job.Name); err != nil {
		return nil, err
	}
	for {
		ln, err := r.ledger.lineage(ctx, job.Name)
		if err != nil {
			return nil, err
		}
		if prev := ln.last; prev != nil && prev.open() {
			if prev.JobHash != p.hash && !o.AllowChangedJob {
				return nil, fmt.Errorf("%w: run %s of job %s is %s with job hash %.12s, this job hashes to %.12s; "+
					"resume it with `rewind backfill resume %s --allow-changed-job` or cancel it with `rewind backfill cancel %s`",
					ErrUnfinishedRun, prev.ID, job.Name, prev.State, prev.JobHash, p.hash, prev.ID, prev.ID)
			}
			if o.Canary != nil {
				if err := r.canaryOfOpen(ctx, prev); err != nil {
					return nil, err
				}
			}
			res, err := r.resume(ctx, p, prev, o)
			if errors.Is(err, errRunClosed) {
				continue // it ended while we waited for its lease: decide again
			}
			return res, err
		}
		if err := mayStart(job.Name, ln, o.NewRun); err != nil {
			return nil, err
		}
		res, err := r.start(ctx, p, planHash, ln.last, o)
		if !errors.Is(err, errRunStarted) {
			return res, err
		}
		// Another process started a run of the job first: decide again
		// (continue that run, once its owner lets go).
	}
}

// mayStart says whether a new run of job name may start after the job's
// runs ln: when none finished, or when newRun names the last one.
func mayStart(name string, ln lineage, newRun string) error {
	if newRun == "" && ln.finished == nil {
		return nil
	}
	if newRun != "" && ln.last != nil && len(newRun) >= 4 && strings.HasPrefix(ln.last.ID, newRun) {
		return nil
	}
	if ln.finished == nil {
		reason := fmt.Sprintf("job %s has no run yet; leave it out", name)
		if ln.last != nil {
			reason = fmt.Sprintf("is not the last run of job %s (%s is, %s)", name, ln.last.ID, ln.last.State)
		}
		return &rewind.ValidationError{Field: "new run", Value: newRun, Reason: reason}
	}
	f, last := ln.finished, ln.last
	msg := fmt.Sprintf("job %s was applied by run %s (version %s, finished %s, %d rows changed)",
		name, f.ID, f.JobVersion, f.FinishedAt.UTC().Format(time.RFC3339), f.RowsChanged)
	if last.ID != f.ID {
		msg += fmt.Sprintf("; its last run is %s (%s)", last.ID, last.State)
	}
	if newRun != "" {
		msg += fmt.Sprintf("; %s is not its last run: another process may have started a new run since", newRun)
	}
	return fmt.Errorf("%w: %s; to apply it again in a new run, pass --new-run %s (ApplyOptions.NewRun)", ErrAlreadyApplied, msg, last.ID)
}

func (r *Runner) start(ctx context.Context, p *prepared, planHash string, prev *Run, o ApplyOptions) (*Result, error) {
	id, err := uuid.NewRandom() // random, so that a short prefix names a run
	if err != nil {
		return nil, err
	}
	// Count exactly unless asked not to or the planner expects more rows
	// than is worth counting.
	total, estimated, err := p.src.count(ctx, r.guard(p), p.args, false)
	if err == nil && !o.Estimate && total <= r.cfg.ExactCountLimit {
		total, estimated, err = p.src.count(ctx, r.guard(p), p.args, true)
	}
	if err != nil {
		return nil, fmt.Errorf("count the rows to change: %w", err)
	}
	end, err := p.src.end(ctx, r.guard(p), p.args)
	if err != nil {
		return nil, fmt.Errorf("find the last key: %w", err)
	}
	sp, err := r.planShards(ctx, p, end, o.shards())
	if err != nil {
		return nil, err
	}
	origin := r.origin(p.job)
	sess := p.recorded()
	if r.cfg.legacyChecksums {
		delete(sess, "checksum")
	}
	run := &Run{ID: id.String(), JobName: p.job.Name, JobVersion: p.job.Version, JobHash: p.hash, Job: p.job.Describe(),
		Params: p.job.Params.masked(), PlanHash: planHash, Binary: r.cfg.Binary, Actor: origin.Actor, Host: origin.Host,
		Command: origin.Command, State: Running, Policy: p.job.policy(), ChunkSize: p.job.chunkSize(),
		Total: total, TotalEstimated: estimated, End: end, Session: sess, Canary: o.Canary.state(total),
		Workers: max(o.Workers, 1), MaxDBWorkers: o.MaxDBWorkers}
	attrs := map[string]string{"plan_hash": planHash, "policy": string(run.Policy), "workers": fmt.Sprint(run.Workers),
		"shards": fmt.Sprint(sp.count()), "shard_method": sp.method}
	run.Canary.describe(attrs)
	if prev != nil {
		run.PrevRun = prev.ID
		attrs["prev_run"] = prev.ID
	}
	// The lease first, then the run: a run is never visible to other
	// processes without its owner holding it, so none of them can take it
	// over before its story has begun.
	l, err := r.lock(ctx, run)
	if err != nil {
		return nil, err
	}
	defer l.release()
	// The shards are recorded with the run's first fencing token, in one
	// transaction.
	if err := r.fenceWith(ctx, run, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue("UPDATE rewind.backfill_leases SET workers = $2, max_db_workers = $3 WHERE run_id = $1",
			run.ID, run.Workers, run.MaxDBWorkers)
		queueShards(b, run.ID, sp)
		return tx.SendBatch(ctx, b).Close()
	}); err != nil {
		return nil, err
	}
	started := func(run *Run) audit.Entry {
		return r.entry(p.job, "run.started", run.ID, attrs, map[string]int64{"total": total})
	}
	if err := r.ledger.createRun(ctx, run, started); err != nil {
		if errors.Is(err, errRunStarted) || errors.Is(err, ErrJobDisabled) {
			r.cfg.DB.Exec(context.WithoutCancel(ctx), "DELETE FROM rewind.backfill_leases WHERE run_id = $1", run.ID)
			r.cfg.DB.Exec(context.WithoutCancel(ctx), "DELETE FROM rewind.backfill_shards WHERE run_id = $1", run.ID)
		}
		return nil, err
	}
	l.beat(run, r.cfg.Heartbeat)
	if s, ok := p.ch.(*setChange); ok {
		s.pinChecksum(run)
	}
	return r.loop(l.ctx, p, run, &Result{Run: run}, o.local(run.Workers), o.Throttle)
}

// Resume continues run id. job must be the run's job: same hash and
// binary, unless AllowChangedJob. A rollback run is continued as Rollback
// does, with the chunks and force it was started with (job is then
// ignored, and may be nil).
func (r *Runner) Resume(ctx context.Context, id string, job *Job, o ApplyOptions) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if job == nil {
		run, err := r.ledger.loadRun(ctx, id)
		if err != nil {
			return nil, err
		}
		if run.Undoes == "" {
			return nil, &rewind.ValidationError{Field: "job", Reason: fmt.Sprintf("run %s is a run of job %s: give its job", run.ID, run.JobName)}
		}
		return r.resumeRollback(ctx, run, o)
	}
	p, err := r.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if run.Undoes != "" {
		return r.resumeRollback(ctx, run, o)
	}
	if run.JobName != job.Name {
		return nil, &rewind.ValidationError{Field: "job", Value: job.Name,
			Reason: fmt.Sprintf("run %s belongs to job %s", run.ID, run.JobName)}
	}
	if err := r.ledger.setup(ctx); err != nil { // a ledger of an earlier version gets shards
		return nil, err
	}
	if err := refuseDisabled(ctx, r.ledger.runs, run.JobName); err != nil {
		return nil, err
	}
	if res, done, err := r.resumePaused(ctx, run, o.promote); done || err != nil {
		return res, err
	}
	res, err := r.resume(ctx, p, run, o)
	if errors.Is(err, errRunClosed) {
		if run.State == Finished {
			return nil, fmt.Errorf("%w: run %s already finished: nothing to resume; to apply the job again, start a "+
				"new run: rewind backfill run JOB.yaml --execute --new-run %s", ErrRunEnded, run.ID, run.ID)
		}
		return nil, fmt.Errorf("%w: run %s was cancelled: nothing to resume; start a new run", ErrRunEnded, run.ID)
	}
	return res, err
}

// resume continues run, once it holds its lease. It returns errRunClosed
// (run.State says why) when the run was finished or cancelled, before or
// while it waited.
func (r *Runner) resume(ctx context.Context, p *prepared, run *Run, o ApplyOptions) (*Result, error) {
	if !run.open() {
		return nil, errRunClosed
	}
	// A run started by an earlier version continues with this one's
	// tables (before-images).
	if err := r.ledger.setup(ctx); err != nil {
		return nil, err
	}
	if err := checkRecorded(run, p); err != nil {
		return nil, err
	}
	changes, err := r.checkSame(run, p, o.AllowChangedJob)
	if err != nil {
		return nil, err
	}
	if err := r.refusePaused(ctx, run); err != nil {
		return nil, err
	}
	l, err := r.lock(ctx, run)
	if err != nil {
		return nil, err
	}
	defer l.release()
	// A run of an earlier version gets its one shard, failed shards are
	// pending again, and given worker caps replace the run's, with the
	// new fencing token.
	if err := r.fenceWith(ctx, run, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE rewind.backfill_leases SET workers = CASE WHEN $2 > 0 THEN $2 ELSE workers END,
			max_db_workers = CASE WHEN $3 > 0 THEN $3 ELSE max_db_workers END WHERE run_id = $1`,
			run.ID, o.Workers, o.MaxDBWorkers); err != nil {
			return err
		}
		if _, err := ensureShards(ctx, tx, run.ID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT workers, max_db_workers FROM rewind.backfill_leases WHERE run_id = $1", run.ID).
			Scan(&run.Workers, &run.MaxDBWorkers)
	}); err != nil {
		return nil, err
	}
	// A run its canary stopped goes on only when promoted; one paused or
	// being cancelled through its control is resumed or cancelled first.
	if err := r.canaryGate(ctx, p, run, o.promote); err != nil {
		return nil, err
	}
	if err := r.controlGate(ctx, p, run, l); err != nil {
		return nil, err
	}
	// The progress as of now: the previous owner may have committed
	// chunks while we waited.
	if err := r.ledger.progress(ctx, run); err != nil {
		return nil, err
	}
	resumed := func(from State) audit.Entry {
		attrs := map[string]string{"from_state": string(from), "last_key": run.LastKey.String()}
		for k, v := range changes {
			attrs["changed."+k] = v
		}
		if l.ended != "" {
			attrs["ended_frozen_owner"] = l.ended
		}
		if o.Workers > 0 || o.MaxDBWorkers > 0 {
			attrs["workers"], attrs["max_db_workers"] = fmt.Sprint(run.Workers), fmt.Sprint(run.MaxDBWorkers)
		}
		return r.entry(p.job, "run.resumed", run.ID, attrs, map[string]int64{"chunks_done": run.Chunks, "rows_done": run.RowsSeen})
	}
	if err := r.ledger.resumeRun(ctx, run, p.hash, r.cfg.Binary, p.job.Describe(), len(changes),
		r.takenOverEntry(p.job, run, l), resumed); err != nil {
		return nil, err
	}
	run.JobHash = p.hash
	run.Binary = r.cfg.Binary
	l.beat(run, r.cfg.Heartbeat)
	return r.loop(l.ctx, p, run, &Result{Run: run, Resumed: true}, o.local(run.Workers), o.Throttle)
}

// checkSame compares the run's job hash and binary with this process's,
// and returns what differs ("job_hash" and "binary": "old → new").
func (r *Runner) checkSame(run *Run, p *prepared, allow bool) (map[string]string, error) {
	return r.checkSameAs(run, p, allow, "pass --allow-changed-job to do it anyway (it is recorded)")
}

// checkSameAs is checkSame with the advice on how to go on anyway.
func (r *Runner) checkSameAs(run *Run, p *prepared, allow bool, anyway string) (map[string]string, error) {
	changes := map[string]string{}
	if run.JobHash != p.hash {
		changes["job_hash"] = run.JobHash + " → " + p.hash
	}
	if run.Binary != r.cfg.Binary {
		changes["binary"] = run.Binary + " → " + r.cfg.Binary
	}
	if len(changes) > 0 && !allow {
		var what []string
		if run.JobHash != p.hash {
			what = append(what, jobDiff(run.Job, p.job.Describe())...)
			if len(what) == 0 { // the same description: a parameter's type or NULL-ness
				what = append(what, fmt.Sprintf("the job hash (%.12s… → %.12s…)", run.JobHash, p.hash))
			}
		}
		if run.Binary != r.cfg.Binary {
			what = append(what, fmt.Sprintf("the binary: %s → %s", run.Binary, r.cfg.Binary))
		}
		return nil, fmt.Errorf("%w: run %s was started under another job or binary; what changed: %s. Resuming under "+
			"a changed job or binary could apply two different changes to one table; %s, or cancel it (rewind backfill "+
			"cancel %s) and bump the job's version to start a new run", ErrJobChanged, run.ID, strings.Join(what, "; "), anyway, run.ID)
	}
	return changes, nil
}

// jobDiff lists, field by field ("set.n: \"n + 1\" → \"n + 2\""), how the
// job description was (as the run recorded it) differs from now.
func jobDiff(was, now map[string]any) []string {
	flat := func(d map[string]any) map[string]string {
		out := map[string]string{}
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			if m, ok := v.(map[string]any); ok {
				for k, x := range m {
					walk(strings.TrimPrefix(prefix+"."+k, "."), x)
				}
				return
			}
			b, _ := json.Marshal(v)
			out[prefix] = string(b)
		}
		// Through JSON, so that the recorded description (decoded JSON)
		// and the current one (Go values) compare alike.
		var norm map[string]any
		b, _ := json.Marshal(d)
		_ = json.Unmarshal(b, &norm)
		walk("", norm)
		return out
	}
	a, b := flat(was), flat(now)
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		x, okx := a[k]
		y, oky := b[k]
		switch {
		case !okx:
			out = append(out, fmt.Sprintf("%s: added (%s)", k, y))
		case !oky:
			out = append(out, fmt.Sprintf("%s: removed (was %s)", k, x))
		case x != y:
			out = append(out, fmt.Sprintf("%s: %s → %s", k, x, y))
		}
	}
	return out
}

func owner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// Status returns run id (or the run whose id starts with id), with its
// rollbacks and what is kept of its before-images.
func (r *Runner) Status(ctx context.Context, id string) (*Run, error) {
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if settled, err := r.settleUnheld(ctx, run); err != nil {
		return nil, err
	} else if settled {
		if run, err = r.ledger.loadRun(ctx, run.ID); err != nil {
			return nil, err
		}
	}
	if err := r.ledger.canaries(ctx, run); err != nil {
		return nil, err
	}
	if err := r.ledger.controls(ctx, run); err != nil {
		return nil, err
	}
	if err := r.fillRollback(ctx, run); err != nil {
		return nil, err
	}
	if err := r.ledger.throttleStatus(ctx, run); err != nil {
		return nil, err
	}
	return run, r.ledger.shardStatus(ctx, run)
}

// List returns runs, newest first.
func (r *Runner) List(ctx context.Context, o ListOptions) ([]*Run, error) {
	runs, err := r.ledger.list(ctx, o)
	if err != nil {
		return nil, err
	}
	for i, run := range runs { // as Status: a run shown paused is recorded paused
		if settled, err := r.settleUnheld(ctx, run); err != nil {
			return nil, err
		} else if settled {
			if runs[i], err = r.ledger.loadRun(ctx, run.ID); err != nil {
				return nil, err
			}
		}
	}
	if err := r.ledger.canaries(ctx, runs...); err != nil {
		return nil, err
	}
	if err := r.ledger.controls(ctx, runs...); err != nil {
		return nil, err
	}
	return runs, r.fillRollback(ctx, runs...)
}

// LedgerExists reports whether the ledger's tables exist: a database no
// run or plan was recorded in has none, and List returns no runs.
func (r *Runner) LedgerExists(ctx context.Context) (bool, error) {
	return r.ledger.exists(ctx)
}

// Quarantine returns the keys run id quarantined.
func (r *Runner) Quarantine(ctx context.Context, id string) ([]Quarantined, error) {
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.ledger.quarantined(ctx, run.ID, false)
}

// Cancel cancels an unfinished run, so that the job can start afresh.
// The request is recorded first in the run's control (run.cancelling,
// with this runner's actor): the workers applying the run, in any
// process, stop at their next chunk boundary, and the process holding the
// run records it cancelled. Then Cancel takes the run's lease, waiting up
// to LeaseWait: when nobody holds it (no owner, or its owner just ended
// the run) it records the end itself. A run whose owner holds on past
// that (a slow chunk) is left cancelling: its owner ends it at its next
// boundary, or whoever takes the run next (resume, run, cancel) does.
// Status says which.
func (r *Runner) Cancel(ctx context.Context, id string, job *Job) error {
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return err
	}
	if !run.open() {
		return fmt.Errorf("%w: run %s is already %s: nothing to cancel", ErrRunEnded, run.ID, run.State)
	}
	if err := r.ledger.setup(ctx); err != nil { // a ledger of an earlier version gets shards
		return err
	}
	if job == nil {
		job = &Job{Name: run.JobName, Version: run.JobVersion}
	}
	if err := r.requestCancel(ctx, job, run); err != nil {
		return err
	}
	l, err := r.lock(ctx, run)
	if errors.Is(err, ErrRunLocked) {
		return nil // cancelling: its owner ends it at its next chunk boundary
	}
	if err != nil {
		return err
	}
	defer l.release()
	if err := r.fence(ctx, run); err != nil {
		return err
	}
	if err := r.ledger.claim(ctx, run, r.takenOverEntry(job, run, l)); err != nil {
		return err
	}
	if run.State == Cancelled { // its owner ended it at our request
		return nil
	}
	if !run.open() { // it ended while we waited
		return fmt.Errorf("%w: run %s is already %s: nothing to cancel", ErrRunEnded, run.ID, run.State)
	}
	c, err := readControl(ctx, r.cfg.DB, run.ID)
	if err != nil {
		return err
	}
	return r.endCancelled(ctx, job, run, c)
}

// endCancelled records run, which this process holds, cancelled at the
// request c: its pending shards cancelled (workers of other processes
// stop before their next commit) and run.cancelled, with who asked.
func (r *Runner) endCancelled(ctx context.Context, job *Job, run *Run, c *Control) error {
	if err := r.ledger.progress(ctx, run); err != nil {
		return err
	}
	e := r.entry(job, "run.cancelled", run.ID, map[string]string{"job_hash": run.JobHash, "requested_by": c.Actor},
		map[string]int64{"chunks_done": run.Chunks, "rows_done": run.RowsSeen})
	if err := r.owning(ctx, run, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE rewind.backfill_shards SET state = 'cancelled' WHERE run_id = $1
			AND state IN ('pending', 'failed')`, run.ID); err != nil {
			return fmt.Errorf("cancel the shards of run %s: %w", run.ID, err)
		}
		return r.ledger.end(ctx, tx, run, Cancelled, nil, e)
	}); err != nil {
		return err
	}
	run.State = Cancelled
	return nil
}

var errStop = errors.New("stop")
