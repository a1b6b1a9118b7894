package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/jobfile"
	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/config"
)

// parallelFlags are the worker and shard flags of `backfill run` and
// `backfill resume`.
type parallelFlags struct {
	cmd                                  *cobra.Command
	workers, local, shards, maxDBWorkers int
	newRun                               bool // the command may start a run: --shards applies
}

func (f *parallelFlags) add(cmd *cobra.Command, newRun bool) {
	f.cmd, f.newRun = cmd, newRun
	fs := cmd.Flags()
	config.IntVar(fs, &f.workers, "workers", 1, "the run's workers: at most this many of its shards are applied at once, "+
		"by this process and any 'rewind backfill work RUN' process together (a continued run keeps its own unless given)")
	config.IntVar(fs, &f.local, "local-workers", 0, "how many of the workers this process runs (default: --workers)")
	if newRun {
		config.IntVar(fs, &f.shards, "shards", 0, "split a new run's keys into this many shards (default: 1 for one "+
			"worker, else 4 per worker); a continued run keeps its shards")
	}
	config.IntVar(fs, &f.maxDBWorkers, "max-db-workers", 0, "cap the shards applied at once in the target database by "+
		"the workers of every run that has such a cap (default: no cap; a continued run keeps its own unless given)")
}

// options checks the flags given and returns them as ApplyOptions: a
// flag left out is 0, the runner's default (a continued run's own).
func (f *parallelFlags) options() (backfill.ApplyOptions, error) {
	var o backfill.ApplyOptions
	for _, c := range []struct {
		name string
		v    int
		max  int
		to   *int
	}{{"workers", f.workers, backfill.MaxWorkers, &o.Workers}, {"local-workers", f.local, backfill.MaxWorkers, &o.LocalWorkers},
		{"shards", f.shards, backfill.MaxShards, &o.Shards}, {"max-db-workers", f.maxDBWorkers, backfill.MaxWorkers, &o.MaxDBWorkers}} {
		fl := f.cmd.Flags().Lookup(c.name)
		if fl == nil || !fl.Changed {
			continue
		}
		if c.v < 1 || c.v > c.max {
			return o, invalidFlag(c.name, fmt.Sprint(c.v), fmt.Sprintf("must be a whole number from 1 to %d", c.max))
		}
		*c.to = c.v
	}
	if o.Workers > 0 && o.LocalWorkers > o.Workers {
		return o, invalidFlag("local-workers", fmt.Sprint(o.LocalWorkers), fmt.Sprintf("more than --workers %d: at most "+
			"--workers shards are applied at once, by every process together; raise --workers or lower --local-workers", o.Workers))
	}
	return o, nil
}

// connections is how many connections to the target the workers of
// this process need: one to hold each worker's shard lease, one for each
// worker's chunk, and a few for the rest.
func (f *parallelFlags) connections() int {
	n := f.workers
	if f.local > 0 {
		n = f.local
	}
	return 2*n + 4
}

func (a *app) backfillWorkCmd() *cobra.Command {
	var pg pgFlags
	var ja jobArgs
	var workers int
	var jsonOut bool
	var tf throttleFlags
	cmd := &cobra.Command{
		Use:   "work RUN [JOB.yaml]",
		Short: "Join a running run as more workers, from any machine, until none of its shards is left",
		Long: `Join RUN (an id or a unique prefix) as --workers workers. Each worker leases one of the
run's pending shards at a time and applies its chunks, each in one transaction with the
shard's checkpoint, exactly as the process that started the run does; the run's own
--workers setting caps the shards applied at once by all its processes together, so
workers beyond it wait for a free one. A worker that dies is replaced: its shard is
leased again as soon as its database connection is gone (or, if its process is frozen,
once its connection has been idle for the lease timeout), and a worker whose shard was
taken over stops before its next commit.

The command exits 0 once no shard is left, and records the run finished if no other
process holds it. The job comes from the run's record unless a job file is given
(needed when the job has secret parameters); it must be the run's job and this binary
the run's. A finished or cancelled run is refused (exit 4), and so is a failed one:
resume it first. See docs/backfill.md.`,
		Args: rangeArgs(1, 2, "RUN [JOB.yaml]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if workers < 1 || workers > backfill.MaxWorkers {
				return invalidFlag("workers", fmt.Sprint(workers), fmt.Sprintf("must be a whole number from 1 to %d", backfill.MaxWorkers))
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
			spec, err := tf.spec(f)
			if err != nil {
				return err
			}
			pg.command = a.recordedCommand(cmd, fileSecret(f))
			pg.conns = 2*workers + 4
			pg.runSettings(cmd.Context(), args[0])
			res, err := a.applyWithProgress(cmd.Context(), pg, &spec, func(ctx context.Context, r *backfill.Runner, thr *throttle.Throttler) (*backfill.Result, error) {
				if job == nil { // rebuilt from the run's record
					run, err := r.Status(ctx, args[0])
					if err != nil {
						return nil, err
					}
					if job, err = jobfile.FromRun(run.Job); err != nil {
						return nil, err
					}
				}
				return r.Work(ctx, args[0], job, backfill.WorkOptions{Workers: workers, Throttle: thr})
			})
			if err != nil {
				if f != nil {
					err = f.Annotate(err)
				}
				return redact(err, job)
			}
			return a.printResult(res, jsonOut)
		},
	}
	pg.add(cmd)
	ja.add(cmd)
	config.IntVar(cmd.Flags(), &workers, "workers", 1, "how many workers this process runs")
	tf.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// printShards shows a run's shards: how many are in each state, then the
// ones a worker holds or that failed, one line each.
func (a *app) printShards(r *backfill.Run) {
	if len(r.Shards) == 0 {
		return
	}
	count := map[string]int{}
	for _, s := range r.Shards {
		count[s.State]++
	}
	var parts []string
	for _, st := range []string{"done", "leased", "pending", "failed", "cancelled"} {
		if count[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[st], st))
		}
	}
	workers := fmt.Sprintf("%d workers", r.Workers)
	if r.MaxDBWorkers > 0 {
		workers += fmt.Sprintf(", at most %d in the database", r.MaxDBWorkers)
	}
	a.printf("\nshards (%d; %s): %s\n", len(r.Shards), workers, strings.Join(parts, ", "))
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, s := range r.Shards {
		if s.State != "leased" && s.State != "failed" {
			continue
		}
		hb := ""
		if s.Heartbeat != nil {
			hb = fmt.Sprintf("heartbeat %s ago", time.Since(*s.Heartbeat).Round(time.Second))
		}
		detail := fmt.Sprintf("%s\t%s", s.Owner, hb)
		if s.State == "failed" {
			detail = s.Error
		}
		fmt.Fprintf(w, "  shard %d\t%s\t%d chunks, %d rows, last key %s\t%s\n", s.Shard, s.State, s.Chunks, s.RowsSeen, s.LastKey, detail)
	}
	w.Flush()
}
