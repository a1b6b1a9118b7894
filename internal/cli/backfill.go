package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/jobfile"
	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/config"
)

// pgFlags are the database flags of the backfill and audit commands.
type pgFlags struct {
	dsn, ledgerDSN, actor string
	connectTimeout        time.Duration
	lockTimeout           time.Duration
	// command is the command line to record, masked (see recordedCommand).
	command []string
	// target are settings the target's connections start with, over the
	// DSN's: a recorded run's TimeZone and search_path (see runSettings).
	target map[string]string
	// conns, when more than the pool's default, is how many connections
	// to the target the command may open (its workers need two each).
	conns int
}

// runSettings sets pg to connect to the target with the settings run id
// recorded at its start (TimeZone, search_path): a run resumed under
// another TimeZone would read a timestamp without an offset as another
// instant, and under another search_path its table as another schema's.
// Errors are left to the command itself, which reads the run again.
func (f *pgFlags) runSettings(ctx context.Context, id string) {
	r, closeAll, err := f.runner(ctx, nil)
	if err != nil {
		return
	}
	defer closeAll()
	run, err := r.Status(ctx, id)
	if err != nil {
		return
	}
	for k, param := range map[string]string{"time_zone": "TimeZone", "search_path": "search_path"} {
		if v, ok := run.Session[k]; ok {
			if f.target == nil {
				f.target = map[string]string{}
			}
			f.target[param] = v
		}
	}
}

func (f *pgFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.dsn, "dsn", "", "PostgreSQL connection string of the target database")
	fs.StringVar(&f.ledgerDSN, "ledger-dsn", "",
		"database for run records and the audit ledger, if not the target's rewind schema")
	fs.StringVar(&f.actor, "actor", "", "who runs this, for the audit ledger; defaults to the OS user")
	bindEnv(fs, "dsn", "REWIND_DSN") // from the environment after parsing: --help never shows a password
	bindEnv(fs, "ledger-dsn", "REWIND_LEDGER_DSN")
	bindEnv(fs, "actor", "REWIND_ACTOR")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second,
		"give up connecting to a database after this long, unless its connection string sets connect_timeout")
	fs.DurationVar(&f.lockTimeout, "lock-timeout", 5*time.Second,
		"give up waiting for a lock another session holds (a locked table, a row, the ledger) after this long; "+
			"a chunk that waits this long is retried")
}

// pools opens the target and ledger pools.
func (f *pgFlags) pools(ctx context.Context) (work, ledger *pgxpool.Pool, closeAll func(), err error) {
	if f.dsn == "" {
		return nil, nil, nil, invalidFlag("dsn", "", "is required (or set REWIND_DSN): the PostgreSQL database to work on")
	}
	if f.connectTimeout <= 0 {
		return nil, nil, nil, invalidFlag("connect-timeout", f.connectTimeout.String(), "must be positive, such as 10s")
	}
	if f.lockTimeout < time.Millisecond {
		return nil, nil, nil, invalidFlag("lock-timeout", f.lockTimeout.String(), "must be at least 1ms, such as 5s")
	}
	if work, err = f.pool(ctx, "dsn", f.dsn); err != nil {
		return nil, nil, nil, err
	}
	closeAll = work.Close
	if f.ledgerDSN != "" {
		if ledger, err = f.pool(ctx, "ledger-dsn", f.ledgerDSN); err != nil {
			work.Close()
			return nil, nil, nil, err
		}
		closeAll = func() { ledger.Close(); work.Close() }
	}
	return work, ledger, closeAll, nil
}

// pool opens a pool on dsn. A database that cannot be reached fails
// after --connect-timeout (or the DSN's connect_timeout) rather than
// hanging on a connection that never answers.
func (f *pgFlags) pool(ctx context.Context, flag, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, invalidFlag(flag, "", "is not a valid connection string (not shown: it may hold a password): "+
			audit.DSNProblem(err)+"; write it as postgres://user@host:port/dbname?option=value or host=… port=… dbname=… "+
			"(libpq's forms)")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = f.connectTimeout
	}
	// Every statement's wait for a lock is bounded (a table locked by
	// another session would otherwise hang the command), unless the DSN
	// sets its own lock_timeout.
	if _, ok := cfg.ConnConfig.RuntimeParams["lock_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["lock_timeout"] = fmt.Sprint(f.lockTimeout.Milliseconds())
	}
	// SQL is lexed as the parser that checks a job's SQL lexes it,
	// whatever the database's or role's defaults (the runner refuses a
	// session that does not).
	backfill.ConfigurePool(cfg)
	if flag == "dsn" {
		maps.Copy(cfg.ConnConfig.RuntimeParams, f.target)
		cfg.MaxConns = max(cfg.MaxConns, int32(f.conns))
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// runner opens a backfill runner; tune, when not nil, adjusts its config.
func (f *pgFlags) runner(ctx context.Context, tune func(*backfill.Config)) (*backfill.Runner, func(), error) {
	if err := checkRecorded(f.command); err != nil { // before connecting: backfill.New would refuse it
		return nil, nil, err
	}
	work, ledger, closeAll, err := f.pools(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg := backfill.Config{DB: work, Ledger: ledger, Actor: f.actor, Command: f.command, LockTimeout: f.lockTimeout}
	if tune != nil {
		tune(&cfg)
	}
	r, err := backfill.New(cfg)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return r, closeAll, nil
}

// checkRecorded refuses a command line to record (recordedCommand's, whose
// secrets are masked, so that the argument can be shown) with an argument
// that is not one line of plain text, as backfill.New and replay's Execute
// do (audit.CheckCommand), but showing the argument: every entry records
// the command line.
func checkRecorded(command []string) error {
	for _, arg := range command {
		if err := audit.CheckText("command-line argument", arg); err != nil {
			var ve *rewind.ValidationError
			if errors.As(err, &ve) {
				ve.Reason += " (the command line is recorded in the audit ledger)"
			}
			return err
		}
	}
	return nil
}

// recordedCommand is the command line the ledger records. It parses the
// command line again with the command's own flag set (cobra's Find, then
// pflag), so it knows each flag's value whatever the order: "--execute -p
// token=…" is --execute then --param token=…, whatever a guess would make of
// it. Each flag is written --name=value, in the order given, then the
// arguments; values of secret parameters (secret(name)) and of flags named
// like secrets are "***", DSN passwords are masked.
func (a *app) recordedCommand(cmd *cobra.Command, secret func(param string) bool) []string {
	out := strings.Fields(cmd.CommandPath())
	_, rest, err := cmd.Root().Find(a.args)
	if err != nil {
		return append(out, "(arguments not recorded: "+err.Error()+")")
	}
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	fs.AddFlagSet(cmd.Flags())
	fs.AddFlagSet(cmd.InheritedFlags())
	err = fs.ParseAll(rest, func(fl *pflag.Flag, value string) error {
		switch {
		case fl.Value.Type() == "bool" && value == "true":
			out = append(out, "--"+fl.Name)
			return nil
		case fl.Name == "param":
			k, v, ok := strings.Cut(value, "=")
			switch {
			case !ok || k == "": // malformed: it may be a secret value alone
				value = "***"
			case secret(k) || audit.IsSecret(k, nil):
				value = k + "=***"
			default:
				value = k + "=" + audit.MaskDSN(v)
			}
		case audit.IsSecret(fl.Name, nil):
			value = "***"
		default:
			value = audit.MaskDSN(value)
		}
		out = append(out, "--"+fl.Name+"="+value)
		return nil
	})
	if err != nil {
		return append(out, "(arguments not recorded: "+err.Error()+")")
	}
	for _, arg := range fs.Args() {
		out = append(out, audit.MaskDSN(arg))
	}
	return out
}

// redacted is an error whose message has secret values masked; errors.Is
// and errors.As see the original.
type redacted struct {
	err error
	msg string
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// redact masks the values of job's secret parameters in err's message,
// in every form they may be printed (backfill.Params.Redact).
func redact(err error, job *backfill.Job) error {
	if err == nil || job == nil {
		return err
	}
	msg := job.Params.Redact(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redacted{err: err, msg: msg}
}

func (a *app) backfillCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Plan and apply backfills and data corrections in checkpointed, audited chunks",
		Long: `A backfill job (a YAML job file) names a table, its key, a WHERE that selects the
rows still needing the change, and the change: set (column: SQL expression) or an SQL
statement run per chunk with @lo and @hi bound to the chunk's key bounds.

'rewind backfill run JOB' only plans (a dry run): it counts the rows to change, shows
the first before → after diffs, EXPLAINs the chunk statement and prints a plan hash,
writing nothing to the target. With --execute it applies the job in key order, one
transaction per chunk together with the chunk's checkpoint, so that a crash at any
instant loses or repeats nothing: run the same command again (or 'resume RUN') to
continue. Every step is recorded in a hash-chained audit ledger ('rewind audit').
Each chunk also saves the before-images of what it changed, so that 'rollback RUN'
can put a run back (planned first, like a run).

The database comes from --dsn or $REWIND_DSN. See docs/backfill.md.`,
	}
	cmd.AddCommand(a.backfillRunCmd(), a.backfillResumeCmd(), a.backfillStatusCmd(), a.backfillListCmd(),
		a.backfillRetryFailedCmd(), a.backfillCancelCmd(), a.backfillVerifyCmd(), a.backfillValidateCmd(), a.backfillPromoteCmd(),
		a.backfillRollbackCmd(), a.backfillPurgeImagesCmd(),
		a.backfillWorkCmd(), a.backfillPauseCmd(), a.backfillSetCmd(), a.backfillToggleCmd(true), a.backfillToggleCmd(false))
	return cmd
}

// jobArgs loads a job file with its --param values.
type jobArgs struct {
	params []string
}

func (j *jobArgs) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&j.params, "param", "p", nil, "job parameter name=value (repeatable); typed by the job file")
}

func (j *jobArgs) load(path string) (*jobfile.File, *backfill.Job, error) {
	for i, kv := range j.params {
		// Checked here so that the value is never echoed: "-p s3cret"
		// or "-p =s3cret" may be a secret without its name.
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, nil, &rewind.ValidationError{Field: fmt.Sprintf("--param (the %s one)", ordinal(i+1)),
				Reason: "must be name=value, such as -p cutoff=2026-01-01 (the value given is not shown: it may be a secret)"}
		}
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, notFound("job file %s does not exist; give the path of a job file (see docs/backfill.md)", path)
	}
	f, err := jobfile.Load(path)
	if err != nil {
		return nil, nil, err
	}
	job, err := f.Job(j.params)
	return f, job, err
}

func (a *app) backfillRunCmd() *cobra.Command {
	var pg pgFlags
	var ja jobArgs
	var cf canaryFlags
	var par parallelFlags
	var tf throttleFlags
	var execute, allowChanged, estimate, jsonOut bool
	var planHash, newRun string
	var diffs int
	cmd := &cobra.Command{
		Use:   "run JOB.yaml",
		Short: "Plan a job (dry run, the default) or apply it with --execute",
		Long: `Without --execute, plan the job: count the rows to change (exactly, or estimated
and labelled so with --estimate), show the first before → after diffs, EXPLAIN the chunk
statement and print a plan hash. Nothing is written to the target: what the plan evaluates
runs in a read-only transaction that is rolled back, so no sequence advances either. The
plan is recorded in the audit ledger. Secret parameters are never shown or recorded.

The job is checked before anything is written: its SQL by PostgreSQL's parser (every
@parameter declared; a statement binds @lo and @hi and writes only the job's table), then
against the database, including what PostgreSQL would refuse in the first chunk.

With --execute, apply the job. If the job has an unfinished run (interrupted or failed),
it is continued from its last committed chunk. With --plan-hash, refuse to start if the
job or its input no longer matches that plan.

A job is applied once: once a run of it has finished, starting it again is refused
(exit 4) unless --new-run names the job's last run, which the refusal prints. Several
processes starting the job at once apply it once; several asking for a new run after
the same run start one new run.

With --canary N (rows) or PCT% (of the run's rows), a new run first applies that many of
its leading rows in key order, runs the job's validations (its validate: block), and goes
on only if they all pass. If one fails (exit 5), or with --canary-wait, the run pauses
with nothing beyond the canary written, until 'rewind backfill promote RUN' (from any
terminal) continues it or 'cancel' ends it.

With --workers N, N workers apply the run's shards (its keys split into --shards parts)
in parallel, each shard's chunks in key order; 'rewind backfill work RUN' on other
machines joins the run, within those N.`,
		Args: exactArgs(1, "JOB.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if diffs < 0 {
				return invalidFlag("diffs", fmt.Sprint(diffs), "must be 0 (no diffs) or more")
			}
			canary, err := cf.options(execute)
			if err != nil {
				return err
			}
			o, err := par.options()
			if err != nil {
				return err
			}
			pg.conns = par.connections()
			f, job, err := ja.load(args[0])
			if err != nil {
				return redact(err, job)
			}
			pg.command = a.recordedCommand(cmd, fileSecret(f))
			if !execute {
				r, closeAll, err := pg.runner(cmd.Context(), func(c *backfill.Config) { c.PreviewRows = max(diffs, 1) })
				if err != nil {
					return err
				}
				defer closeAll()
				plan, err := r.Plan(cmd.Context(), job, backfill.PlanOptions{Estimate: estimate})
				if err != nil {
					return redact(f.Annotate(err), job)
				}
				plan.Diffs = plan.Diffs[:min(diffs, len(plan.Diffs))]
				maskPlan(plan, job)
				if jsonOut {
					return a.printJSON(plan)
				}
				a.printPlan(plan, args[0])
				return nil
			}
			spec, err := tf.spec(f)
			if err != nil {
				return err
			}
			res, err := a.applyWithProgress(cmd.Context(), pg, &spec, func(ctx context.Context, r *backfill.Runner, thr *throttle.Throttler) (*backfill.Result, error) {
				o.PlanHash, o.AllowChangedJob, o.Estimate, o.NewRun, o.Canary = planHash, allowChanged, estimate, newRun, canary
				o.Throttle = thr
				return r.Apply(ctx, job, o)
			})
			if err != nil {
				return a.canaryFailed(res, redact(f.Annotate(err), job), jsonOut)
			}
			return a.printResult(res, jsonOut)
		},
	}
	pg.add(cmd)
	ja.add(cmd)
	par.add(cmd, true)
	tf.add(cmd)
	config.BoolVar(cmd.Flags(), &execute, "execute", false, "apply the job; without it, only plan")
	cmd.Flags().StringVar(&planHash, "plan-hash", "", "refuse to apply unless the job and its input still match this plan")
	cmd.Flags().StringVar(&newRun, "new-run", "", "apply a job that already finished again, in a new run after RUN, the job's last run (an id or unique prefix)")
	config.BoolVar(cmd.Flags(), &allowChanged, "allow-changed-job", false, "continue an unfinished run even if the job or the binary changed (recorded)")
	config.BoolVar(cmd.Flags(), &estimate, "estimate", false, "estimate the rows to change with the planner instead of counting them")
	config.IntVar(cmd.Flags(), &diffs, "diffs", 10, "how many before → after diffs the plan shows (0 for none)")
	atLeast(cmd.Flags(), 0, "diffs")
	cf.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// applyWithProgress runs fn with a progress bar on the terminal.
// spec, when not nil, is the throttle fn's run is paced by.
func (a *app) applyWithProgress(ctx context.Context, pg pgFlags, spec *throttle.Spec,
	fn func(context.Context, *backfill.Runner, *throttle.Throttler) (*backfill.Result, error)) (*backfill.Result, error) {
	var bar *progress
	lastPaused := ""
	var cfg backfill.Config
	r, closeAll, err := pg.runner(ctx, func(c *backfill.Config) {
		defer func() { cfg = *c }()
		c.Progress = func(p backfill.Progress) {
			if bar == nil {
				unit := "rows"
				if p.Estimated {
					unit = "rows (total estimated)"
				}
				bar = a.newProgress("backfill", unit, p.Total)
			}
			bar.set(p.RowsSeen)
			if p.Paused != lastPaused {
				lastPaused = p.Paused
				a.progressNote(bar, p)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll()
	thr, release, err := throttleFor(spec, &cfg)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := fn(ctx, r, thr)
	if bar != nil {
		bar.done(err == nil)
	}
	return res, err
}

func (a *app) printPlan(p *backfill.Plan, path string) {
	count := fmt.Sprintf("%d (exact)", p.Rows)
	if p.Estimated {
		count = fmt.Sprintf("~%d (estimated by the planner)", p.Rows)
	}
	a.printf("DRY RUN: nothing was written to the target.\n\n")
	a.printf("job        %s version %s\njob hash   %s\nrows       %s\nchunks     %d of up to %d rows\n",
		p.Job, p.Version, p.JobHash, count, p.Chunks, p.ChunkSize)
	if p.FirstChunk != nil {
		a.printf("1st chunk  keys %s … %s\n", p.FirstChunk.Lo, p.FirstChunk.Hi)
	}
	if len(p.Diffs) > 0 {
		a.printf("\nfirst %d changes (before → after):\n", len(p.Diffs))
		for _, d := range p.Diffs {
			cols := make([]string, 0, len(d.After)+len(d.Before))
			seen := map[string]bool{}
			for c := range d.After {
				cols, seen[c] = append(cols, c), true
			}
			for c := range d.Before {
				if !seen[c] {
					cols = append(cols, c)
				}
			}
			sort.Strings(cols)
			var parts []string
			for _, c := range cols {
				if after, ok := d.After[c]; ok {
					parts = append(parts, fmt.Sprintf("%s: %s → %s", c, d.Before[c], after))
				} else {
					parts = append(parts, fmt.Sprintf("%s: %s", c, d.Before[c]))
				}
			}
			a.printf("  key %s  %s\n", d.Key, strings.Join(parts, ", "))
		}
	}
	if p.Explain != "" {
		a.printf("\nchunk statement plan:\n")
		for _, l := range strings.Split(p.Explain, "\n") {
			a.printf("  %s\n", l)
		}
	}
	for _, n := range p.Notes {
		a.printf("\nnote: %s\n", n)
	}
	a.printf("\nplan hash  %s\nto apply:  rewind backfill run %s --execute --plan-hash %s\n", p.PlanHash, path, p.PlanHash)
}

func (a *app) printResult(res *backfill.Result, jsonOut bool) error {
	if jsonOut {
		return a.printJSON(res)
	}
	if res.Message != "" {
		a.printf("%s\n", res.Message)
	}
	return nil
}

func (a *app) backfillResumeCmd() *cobra.Command {
	return a.onRunCmd(&cobra.Command{
		Use:   "resume RUN [JOB.yaml]",
		Short: "Continue an interrupted or failed run from its last committed chunk",
		Long: `Continue RUN (an id or a unique prefix of one) from its last committed chunk. The job
comes from the run's record unless a job file is given (needed when the job has secret
parameters). Resuming refuses when the job hash or this binary differ from the run's,
unless --allow-changed-job is given; the change is recorded.

A run paused with 'rewind backfill pause' (or by a disable, or a throttle) is un-paused
first, recorded with the actor: if a process is waiting on it at a chunk boundary, that
process goes on and this command returns; if none is, this process applies it. A run its
canary paused needs 'promote'.`,
	}, "resume even if the job or the binary changed (recorded)", &parallelFlags{}, (*backfill.Runner).Resume)
}

// onRunCmd completes a command that works on a recorded run (resume,
// retry-failed): it rebuilds or reads the job, calls the runner and prints
// the result.
func (a *app) onRunCmd(cmd *cobra.Command, allowHelp string, par *parallelFlags,
	call func(r *backfill.Runner, ctx context.Context, run string, job *backfill.Job, opts backfill.ApplyOptions) (*backfill.Result, error)) *cobra.Command {
	var pg pgFlags
	var ja jobArgs
	var tf throttleFlags
	var allowChanged, jsonOut bool
	cmd.Args = rangeArgs(1, 2, "RUN [JOB.yaml]")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var o backfill.ApplyOptions
		if par != nil {
			var err error
			if o, err = par.options(); err != nil {
				return err
			}
			pg.conns = par.connections()
		}
		var f *jobfile.File
		var job *backfill.Job
		switch {
		case len(args) == 2:
			var err error
			if f, job, err = ja.load(args[1]); err != nil {
				return redact(err, job)
			}
		case len(ja.params) > 0:
			return &cliError{code: "invalid_argument", status: 2, msg: "--param needs the job file: give RUN JOB.yaml"}
		}
		var spec *throttle.Spec
		if par != nil { // resume and promote apply chunks: paced
			s, err := tf.spec(f)
			if err != nil {
				return err
			}
			spec = &s
		}
		pg.command = a.recordedCommand(cmd, fileSecret(f))
		pg.runSettings(cmd.Context(), args[0])
		res, err := a.applyWithProgress(cmd.Context(), pg, spec, func(ctx context.Context, r *backfill.Runner, thr *throttle.Throttler) (*backfill.Result, error) {
			if job == nil { // rebuilt from the run's record
				run, err := r.Status(ctx, args[0])
				if err != nil {
					return nil, err
				}
				if run.Kind == "rollback" && par != nil { // resume continues it as rollback --execute does
					o.Throttle = thr
					return call(r, ctx, run.ID, nil, o)
				}
				if run.Kind == "rollback" {
					return nil, &rewind.ValidationError{Field: "run id", Value: run.ID, Reason: fmt.Sprintf("run %s is a "+
						"rollback of run %s: continue it with 'rewind backfill rollback %s --execute'", run.ID, run.Undoes, run.Undoes)}
				}
				if job, err = jobfile.FromRun(run.Job); err != nil {
					return nil, err
				}
			}
			o.AllowChangedJob, o.Throttle = allowChanged, thr
			return call(r, ctx, args[0], job, o)
		})
		if err != nil {
			if f != nil {
				err = f.Annotate(err)
			}
			return redact(err, job)
		}
		return a.printResult(res, jsonOut)
	}
	pg.add(cmd)
	ja.add(cmd)
	if par != nil {
		par.add(cmd, false)
		tf.add(cmd)
	}
	config.BoolVar(cmd.Flags(), &allowChanged, "allow-changed-job", false, allowHelp)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return fmt.Sprintf("%dth", n)
	case n%10 == 1:
		return fmt.Sprintf("%dst", n)
	case n%10 == 2:
		return fmt.Sprintf("%dnd", n)
	case n%10 == 3:
		return fmt.Sprintf("%drd", n)
	}
	return fmt.Sprintf("%dth", n)
}

// maskPlan masks every rendering of job's secret values in what a plan
// shows: diffs before and after (a row may already hold a secret), keys,
// the EXPLAIN text and the notes.
func maskPlan(p *backfill.Plan, job *backfill.Job) {
	m := job.Params.Redact
	for i := range p.Diffs {
		d := &p.Diffs[i]
		for j := range d.Key {
			d.Key[j] = m(d.Key[j])
		}
		for c, v := range d.Before {
			d.Before[c] = m(v)
		}
		for c, v := range d.After {
			d.After[c] = m(v)
		}
	}
	if p.FirstChunk != nil {
		for j := range p.FirstChunk.Lo {
			p.FirstChunk.Lo[j] = m(p.FirstChunk.Lo[j])
		}
		for j := range p.FirstChunk.Hi {
			p.FirstChunk.Hi[j] = m(p.FirstChunk.Hi[j])
		}
	}
	p.Explain = m(p.Explain)
	for i := range p.Notes {
		p.Notes[i] = m(p.Notes[i])
	}
}

// fileSecret reports whether a job file declares a parameter secret.
func fileSecret(f *jobfile.File) func(string) bool {
	secret := map[string]bool{}
	if f != nil {
		for _, n := range f.SecretParams() {
			secret[n] = true
		}
	}
	return func(name string) bool { return secret[name] }
}

func (a *app) backfillRetryFailedCmd() *cobra.Command {
	return a.onRunCmd(&cobra.Command{
		Use:   "retry-failed RUN [JOB.yaml]",
		Short: "Process only the keys a run quarantined (skip policy)",
		Long: `Apply the job to each key RUN quarantined, one transaction per key. A key that now
succeeds is marked resolved; one that fails again stays in the quarantine with its new error.`,
	}, "retry even if the job or the binary changed (recorded)", nil, (*backfill.Runner).RetryFailed)
}

func (a *app) backfillCancelCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "cancel RUN",
		Short: "Cancel an unfinished run, from any terminal, so that its job can start afresh",
		Long: `Cancel RUN: the workers applying it, in any process, stop at their next chunk boundary
and the process holding the run records it cancelled; a run nobody applies is cancelled
here at once. Until then it shows as 'cancelling'. Recorded with the actor.`,
		Args: exactArgs(1, "RUN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pg.command = a.recordedCommand(cmd, fileSecret(nil))
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			if err := r.Cancel(cmd.Context(), args[0], nil); err != nil {
				return err
			}
			run, err := r.Status(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"cancelled": run.State == backfill.Cancelled, "run": run})
			}
			if run.State == backfill.Cancelled {
				a.printf("run %s cancelled\n", run.ID)
				return nil
			}
			a.printf("run %s is %s: its owner %s ends it at its next chunk boundary; 'rewind backfill status %s' follows it\n",
				run.ID, run.State, run.Owner, run.ID)
			return nil
		},
	}
	pg.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) backfillStatusCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status RUN",
		Short: "Show a run's state, progress, recent rate, ETA, error and quarantine",
		Long: `Show RUN (an id or a unique prefix) from any terminal. A run whose process died shows
as interrupted (its lease went with its database connection) and can be resumed.`,
		Args: exactArgs(1, "RUN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			run, err := r.Status(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			q, err := r.Quarantine(cmd.Context(), run.ID)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"run": run, "quarantine": q})
			}
			a.printRun(run, q)
			a.printShards(run)
			return nil
		},
	}
	pg.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) printRun(r *backfill.Run, q []backfill.Quarantined) {
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	total := fmt.Sprint(r.Total)
	if r.TotalEstimated {
		total = "~" + total + " (estimated)"
	}
	fmt.Fprintf(w, "run\t%s\njob\t%s version %s (hash %.12s)\nstate\t%s%s\n", r.ID, r.JobName, r.JobVersion, r.JobHash, r.State,
		controlLine(r.Control))
	if c := r.Control; c != nil && (c.MaxRate != nil || c.ChunkTime != nil || c.Workers != nil) {
		fmt.Fprintf(w, "set\t%s\n", overrides(r))
	}
	fmt.Fprintf(w, "progress\t%d / %s rows in %d chunks; %d changed, %d skipped\n", r.RowsSeen, total, r.Chunks, r.RowsChanged, r.RowsSkipped)
	if r.RecentRate > 0 {
		eta := ""
		if r.ETASeconds > 0 {
			eta = fmt.Sprintf(", ETA %s", time.Duration(r.ETASeconds*float64(time.Second)).Round(time.Second))
		}
		fmt.Fprintf(w, "recent rate\t%.0f rows/s%s\n", r.RecentRate, eta)
	}
	if r.LastKey != nil && r.Kind == "rollback" {
		fmt.Fprintf(w, "last undone\tchunk %s of run %s\n", r.LastKey, r.Undoes)
	} else if r.LastKey != nil {
		fmt.Fprintf(w, "last key\t%s\n", r.LastKey)
	}
	fmt.Fprintf(w, "started\t%s by %s on %s\nbinary\t%s\ncommand\t%s\n", r.Created.Format(time.RFC3339), printable(r.Actor), r.Host, r.Binary, r.Command)
	if r.Heartbeat != nil && (r.State == backfill.Running || r.State == backfill.Interrupted) {
		fmt.Fprintf(w, "owner\t%s, last heartbeat %s ago\n", r.Owner, time.Since(*r.Heartbeat).Round(time.Second))
	}
	switch {
	case r.Throttle != nil && r.Throttle.PausedBy != "":
		fmt.Fprintf(w, "paused\tby throttle signal %s: %s\n", r.Throttle.PausedBy, r.Error)
	case r.Error != "":
		fmt.Fprintf(w, "error\t%s error at chunk %d, key %s: %s\n", r.ErrorClass, r.ErrorChunk, r.ErrorKey, r.Error)
	}
	if r.ChangesAllowed > 0 {
		fmt.Fprintf(w, "changes\tresumed %d time(s) with --allow-changed-job\n", r.ChangesAllowed)
	}
	if th := r.Throttle; th != nil {
		fmt.Fprintf(w, "chunk size\t%d rows now\n", th.ChunkSize)
		fmt.Fprintf(w, "throttled\t%s in all (%d waits)\n", time.Duration(th.ThrottledSeconds*float64(time.Second)).Round(time.Millisecond), th.Waits)
		if th.Reason != "" && th.PausedBy == "" {
			fmt.Fprintf(w, "throttle\twaiting: %s\n", th.Reason)
		}
	}
	if c := r.Canary; c != nil {
		fmt.Fprintf(w, "canary\t%d rows, %s", c.Rows, c.State)
		if c.Message != "" {
			fmt.Fprintf(w, ": %s", c.Message)
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	a.printRollbackStatus(r)
	if len(q) > 0 {
		if r.Kind == "rollback" {
			a.printf("\nleft as they are (%d rows: changed or deleted since the run wrote them):\n", r.Quarantined)
		} else {
			a.printf("\nquarantine (%d keys still failing):\n", r.Quarantined)
		}
		for _, x := range q {
			state := "failing"
			if x.Resolved != nil {
				state = "resolved"
			}
			a.printf("  key %s  chunk %d  %s  %s: %s\n", x.Key, x.Chunk, state, x.Code, x.Error)
		}
	}
	switch {
	case r.Kind == "rollback" && (r.State == backfill.Interrupted || r.State == backfill.Failed):
		a.printf("\ncontinue with: rewind backfill rollback %s --chunks %v%s --execute\n", r.Undoes, r.Job["chunks"],
			map[bool]string{true: " --force"}[r.Job["force"] == true])
	case r.State == backfill.Interrupted || r.State == backfill.Failed:
		a.printf("\nresume with: rewind backfill resume %s\n", r.ID)
	case r.State == backfill.Paused && r.Throttle != nil && r.Throttle.PausedBy != "":
		a.printf("\npaused by its throttle: once signal %s is below its critical threshold (or readable), continue with "+
			"'rewind backfill resume %s'\n", r.Throttle.PausedBy, r.ID)
	case r.State == backfill.Paused && (r.Control == nil || r.Control.Reason.Kind == backfill.PauseCanary):
		a.printf("\npaused after its canary: continue with 'rewind backfill promote %s', or end with 'rewind backfill cancel %s'\n", r.ID, r.ID)
	case r.State == backfill.Paused || r.State == backfill.Pausing:
		a.printf("\ncontinue with: rewind backfill resume %s\n", r.ID)
	}
}

func (a *app) backfillListCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	var job string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List backfill runs, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			runs, err := r.List(cmd.Context(), backfill.ListOptions{Job: job, Limit: limit})
			if err != nil {
				return err
			}
			// No ledger is no runs, not an error (unlike status of a run,
			// which names one): said on stderr, so that --json stays a list.
			if len(runs) == 0 {
				if ok, err := r.LedgerExists(cmd.Context()); err != nil {
					return err
				} else if !ok {
					fmt.Fprintln(a.stderr, "note: this database has no backfill ledger (the rewind schema): no run or plan was "+
						"ever recorded here, or --ledger-dsn names the database that holds it")
				}
			}
			if jsonOut {
				if runs == nil {
					runs = []*backfill.Run{}
				}
				return a.printJSON(runs)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "RUN\tJOB\tSTATE\tROWS\tCHANGED\tSKIPPED\tSTARTED\tBY")
			for _, r := range runs {
				state := string(r.State)
				for _, rb := range r.Rollbacks {
					if rb.State == backfill.Finished {
						state += " (rolled back)"
						break
					}
				}
				fmt.Fprintf(w, "%s\t%s v%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\n", r.ID, r.JobName, r.JobVersion, state,
					r.RowsSeen, r.Total, r.RowsChanged, r.RowsSkipped, r.Created.Format(time.RFC3339), r.Actor)
			}
			return w.Flush()
		},
	}
	pg.add(cmd)
	cmd.Flags().StringVar(&job, "job", "", "list only runs of this job name")
	config.IntVar(cmd.Flags(), &limit, "limit", 50, "list at most this many runs")
	atLeast(cmd.Flags(), 1, "limit")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
