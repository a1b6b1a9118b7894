package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/jobfile"
	"github.com/rewindhq/rewind/internal/config"
)

// codeCheckFailed is a check that found something: backfill verify found
// discrepancies, a job's validations (backfill validate, a canary) failed.
// Exit status 5, with the corruption that verify and audit verify find.
const codeCheckFailed rewind.Code = "check_failed"

func checkFailed(msg string, quiet bool) error {
	return &cliError{code: codeCheckFailed, status: exitStatus(codeCheckFailed), msg: msg, quiet: quiet}
}

// percentRE is a percentage as the flags take it: a decimal number, with
// or without a % sign (no exponent, no sign, no base).
var percentRE = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?|\.[0-9]+)%?$`)

func parsePercent(s string) (float64, bool) {
	if !percentRE.MatchString(s) {
		return 0, false
	}
	p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	return p, err == nil && p > 0 && p <= 100
}

// percentValue is --sample: a percentage above 0 and at most 100.
type percentValue struct{ p *float64 }

func (v percentValue) Set(s string) error {
	p, ok := parsePercent(s)
	if !ok {
		return fmt.Errorf("must be a percentage above 0 and at most 100, such as 10 or 2.5%%")
	}
	*v.p = p
	return nil
}
func (v percentValue) String() string {
	if *v.p == 0 {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'f', -1, 64)
}
func (v percentValue) Type() string { return "percent" }

// canaryValue is --canary: a number of rows, or a percentage with a %.
type canaryValue struct{ c **backfill.Canary }

func (v canaryValue) Set(s string) error {
	if strings.HasSuffix(s, "%") {
		p, ok := parsePercent(s)
		if !ok {
			return fmt.Errorf("a percentage must be above 0%% and at most 100%%, such as 5%%")
		}
		*v.c = &backfill.Canary{Percent: p}
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return fmt.Errorf("must be a whole number of rows (1 or more, such as 500) or a percentage of the run's rows (such as 5%%)")
	}
	*v.c = &backfill.Canary{Rows: n}
	return nil
}
func (v canaryValue) String() string {
	if *v.c == nil {
		return ""
	}
	return (*v.c).String()
}
func (v canaryValue) Type() string { return "N|PCT%" }

// canaryFlags are run's --canary and --canary-wait.
type canaryFlags struct {
	canary *backfill.Canary
	wait   bool
}

func (c *canaryFlags) add(cmd *cobra.Command) {
	cmd.Flags().Var(canaryValue{&c.canary}, "canary", "with --execute: apply a first sample of N rows (or PCT% of the run's "+
		"rows, such as 5%) in key order, run the job's validations, and go on only if they pass; else the run pauses "+
		"until 'rewind backfill promote RUN'")
	config.BoolVar(cmd.Flags(), &c.wait, "canary-wait", false, "with --canary: pause after the canary even when its validations pass, until promoted")
}

// options checks the flags against --execute and returns the canary.
func (c *canaryFlags) options(execute bool) (*backfill.Canary, error) {
	switch {
	case c.canary != nil && !execute:
		return nil, invalidFlag("canary", c.canary.String(), "needs --execute: the dry run writes nothing, so it has no "+
			"canary to apply (its diffs show the first rows' changes)")
	case c.wait && c.canary == nil:
		return nil, invalidFlag("canary-wait", "true", "needs --canary N or --canary PCT%")
	case c.canary != nil:
		c.canary.Wait = c.wait
	}
	return c.canary, nil
}

// canaryFailed turns a run's failed canary into exit status 5, after the
// result was printed as JSON (when asked for).
func (a *app) canaryFailed(res *backfill.Result, err error, jsonOut bool) error {
	var ce *backfill.CanaryError
	if !errors.As(err, &ce) {
		return err
	}
	if jsonOut && res != nil {
		if perr := a.printJSON(map[string]any{"result": res,
			"error": map[string]any{"code": codeCheckFailed, "message": trimPrefix(err.Error())}}); perr != nil {
			return perr
		}
	} else if res != nil && res.Canary != nil {
		a.printValidations(res.Canary.Validations)
	}
	return checkFailed(err.Error(), jsonOut)
}

// runJob is a job from a job file, or rebuilt from run id's record.
func (a *app) runJob(ctx context.Context, r *backfill.Runner, job *backfill.Job, id string) (*backfill.Job, error) {
	if job != nil {
		return job, nil
	}
	run, err := r.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if run.Kind == "rollback" {
		return nil, &rewind.ValidationError{Field: "run id", Value: run.ID, Reason: fmt.Sprintf("run %s is a rollback "+
			"of run %s, not a run of a job; its status lists what it did and the rows it left", run.ID, run.Undoes)}
	}
	return jobfile.FromRun(run.Job)
}

func (a *app) backfillVerifyCmd() *cobra.Command {
	var pg pgFlags
	var ja jobArgs
	var o backfill.VerifyOptions
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "verify RUN [JOB.yaml]",
		Short: "Re-read a run's committed chunks and report discrepancies with the ledger, by chunk and key",
		Long: `Re-read every committed chunk of RUN (or a random --sample PCT of them) and compare
with the ledger, writing nothing to the target (read-only transactions):

  - each checkpoint against its chunk.committed audit entry (a checkpoint altered since,
    its transaction ids included), and the quarantine against the chunk.skipped entries;
  - the rows of the chunk's key range written after the chunk committed, by the audit
    entry's transaction ids (changed since: a later write, not necessarily a wrong
    backfill), named by key;
  - the chunk's output checksum recomputed over its key range as the table is now;
  - the job's where over the chunk's range: a finished range must match no row (for a set
    job, no row the set would still change), naming the keys that do.

Records a run.verified audit entry with the outcome. Exits 0 when nothing is found, 5
(check_failed) when something is. With --sample, reports the rate of chunks with a
discrepancy and its 95% Wilson score interval. The job comes from the run's record unless
a job file is given (needed when the job has secret parameters). See docs/backfill.md.`,
		Example: `  rewind backfill verify 3f2a9c1e
  rewind backfill verify 3f2a9c1e --sample 10 --json`,
		Args: rangeArgs(1, 2, "RUN [JOB.yaml]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var f *jobfile.File
			var job *backfill.Job
			if len(args) == 2 {
				var err error
				if f, job, err = ja.load(args[1]); err != nil {
					return redact(err, job)
				}
			}
			pg.command = a.recordedCommand(cmd, fileSecret(f))
			pg.runSettings(cmd.Context(), args[0])
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			if job, err = a.runJob(cmd.Context(), r, job, args[0]); err != nil {
				return err
			}
			rep, err := r.Verify(cmd.Context(), args[0], job, o)
			if err != nil {
				if f != nil {
					err = f.Annotate(err)
				}
				return redact(err, job)
			}
			if jsonOut {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				a.printVerify(rep)
			}
			if !rep.Clean() {
				return checkFailed(fmt.Sprintf("run %s: %d finding(s): in %d of %d chunks checked, and %d about the whole run; "+
					"see above", rep.RunID, len(rep.Findings), rep.Discrepant, rep.Checked, runFindings(rep)), jsonOut)
			}
			return nil
		},
	}
	pg.add(cmd)
	ja.add(cmd)
	cmd.Flags().Var(percentValue{&o.Sample}, "sample", "check a random sample of this percentage of the run's chunks (0 < PCT ≤ 100) "+
		"and report the discrepancy rate with a 95% confidence interval; all chunks without it")
	config.Uint64Var(cmd.Flags(), &o.Seed, "seed", 0, "seed of --sample's random sequence, to repeat a sample (the report gives the one used; 0 picks one)")
	config.IntVar(cmd.Flags(), &o.MaxKeys, "max-keys", 20, "list the keys of at most this many rows per chunk and kind of discrepancy (the count is always given)")
	atLeast(cmd.Flags(), 1, "max-keys")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) printVerify(rep *backfill.VerifyReport) {
	what := "every chunk"
	if rep.Sample < 100 {
		what = fmt.Sprintf("a random %s%% sample (seed %d)", strconv.FormatFloat(rep.Sample, 'f', -1, 64), rep.Seed)
	}
	a.printf("verify run %s (job %s version %s, %s): %d of %d chunks checked, %s\n",
		rep.RunID, rep.Job, rep.JobVersion, rep.State, rep.Checked, rep.Chunks, what)
	chunk := int64(-1)
	for _, f := range rep.Findings {
		if f.Chunk != chunk {
			chunk = f.Chunk
			switch {
			case f.Chunk == 0:
				a.printf("\nthe run:\n")
			case f.Lo != nil:
				retry := ""
				if f.Retry {
					retry = ", retry-failed"
				}
				a.printf("\nchunk %d (keys %s … %s%s):\n", f.Chunk, f.Lo, f.Hi, retry)
			default:
				a.printf("\nchunk %d:\n", f.Chunk)
			}
		}
		a.printf("  %s: %s\n", f.Kind, f.Message)
		if len(f.Keys) > 0 {
			keys := make([]string, len(f.Keys))
			for i, k := range f.Keys {
				keys[i] = k.String()
			}
			more := ""
			if n := f.Count - int64(len(f.Keys)); n > 0 {
				more = fmt.Sprintf(" and %d more", n)
			}
			a.printf("    keys %s%s\n", strings.Join(keys, ", "), more)
		}
	}
	for _, n := range rep.Notes {
		a.printf("\nnote: %s\n", n)
	}
	if rep.Clean() {
		a.printf("\nno discrepancy found\n")
		return
	}
	a.printf("\ndiscrepancies in %d of %d chunks checked (%.1f%%)", rep.Discrepant, rep.Checked, rep.Rate*100)
	if i := rep.Interval; i != nil {
		a.printf("; for all %d chunks of the run: %.1f%% to %.1f%% (%.0f%% %s)", rep.Chunks, i.Low*100, i.High*100,
			i.Confidence*100, i.Method)
	}
	if n := runFindings(rep); n > 0 {
		a.printf("; and %d finding(s) about the whole run", n)
	}
	a.printf("\n")
}

func (a *app) backfillValidateCmd() *cobra.Command {
	var pg pgFlags
	var ja jobArgs
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "validate RUN [JOB.yaml] | validate JOB.yaml",
		Short: "Run a job's validations (its validate: block) against the database and report each",
		Long: `Run the SQL assertions of a job's validate: block against the target database, each in a
read-only transaction that is rolled back, with the job's parameters bound as @name, and
report each one's outcome. Given RUN, the job comes from the run's record (or the job file
given after it) and the outcome is recorded as a run.validated audit entry; given only a
job file, nothing is written. Exits 0 when every validation passes, 5 (check_failed) when
one fails. See docs/backfill.md.`,
		Example: `  rewind backfill validate normalize-emails.yaml -p cutoff=2026-01-01
  rewind backfill validate 3f2a9c1e --json`,
		Args: rangeArgs(1, 2, "RUN [JOB.yaml] or JOB.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var f *jobfile.File
			var job *backfill.Job
			id, path := args[0], ""
			if len(args) == 2 {
				path = args[1]
			} else if isJobFile(args[0]) {
				id, path = "", args[0]
			}
			if path != "" {
				var err error
				if f, job, err = ja.load(path); err != nil {
					return redact(err, job)
				}
			} else if len(ja.params) > 0 {
				return &cliError{code: rewind.CodeInvalidArgument, status: 2, msg: "--param needs the job file: give RUN JOB.yaml or JOB.yaml"}
			}
			pg.command = a.recordedCommand(cmd, fileSecret(f))
			if id != "" {
				pg.runSettings(cmd.Context(), id)
			}
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			if job, err = a.runJob(cmd.Context(), r, job, id); err != nil {
				return err
			}
			rep, err := r.Validate(cmd.Context(), job, id)
			if err != nil {
				if f != nil {
					err = f.Annotate(err)
				}
				return redact(err, job)
			}
			if jsonOut {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				a.printf("validate job %s version %s:\n", rep.Job, rep.Version)
				a.printValidations(rep)
			}
			if !rep.OK() {
				return checkFailed(fmt.Sprintf("%d of %d validations failed", rep.Failed, len(rep.Results)), jsonOut)
			}
			return nil
		},
	}
	pg.add(cmd)
	ja.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// isJobFile says whether an argument names a job file rather than a run:
// a file that exists, or a name ending in .yaml or .yml.
func isJobFile(arg string) bool {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		return true
	}
	return strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")
}

func (a *app) printValidations(rep *backfill.ValidateReport) {
	if rep == nil {
		return
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, v := range rep.Results {
		mark := "PASS"
		if !v.Passed {
			mark = "FAIL"
		}
		line := fmt.Sprintf("  %s\t%s\texpected %s, got %s", mark, v.Name, v.Expect, v.Got)
		if v.Reason != "" {
			line += " (" + v.Reason + ")"
		}
		fmt.Fprintln(w, line)
		for _, row := range v.Rows {
			fmt.Fprintf(w, "  \t\t  %s\n", strings.Join(row, ", "))
		}
		if n := v.RowCount - int64(len(v.Rows)); n > 0 && len(v.Rows) > 0 {
			fmt.Fprintf(w, "  \t\t  … and %d more row(s)\n", n)
		}
	}
	w.Flush()
	a.printf("%d validation(s): %d passed, %d failed\n", len(rep.Results), rep.Passed, rep.Failed)
}

func (a *app) backfillPromoteCmd() *cobra.Command {
	return a.onRunCmd(&cobra.Command{
		Use:   "promote RUN [JOB.yaml]",
		Short: "Continue a run its canary paused (validations failed, or --canary-wait)",
		Long: `Continue RUN, which stopped after its canary (see 'run --canary'): because its validations
failed, or because it was started with --canary-wait. The promotion is recorded in the audit
ledger with its actor (run.promoted), then the run goes on from its last checkpoint, as
'resume' does, in this process. Works from any terminal or machine. Promoting does not run
the validations again: run 'rewind backfill validate RUN' first to see them.`,
	}, "promote even if the job or the binary changed (recorded)", &parallelFlags{}, (*backfill.Runner).Promote)
}

// runFindings counts the findings about the whole run, not one chunk
// (a broken audit ledger chain).
func runFindings(rep *backfill.VerifyReport) int {
	n := 0
	for _, f := range rep.Findings {
		if f.Chunk == 0 {
			n++
		}
	}
	return n
}
