package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/projection"
)

// Projections are Go code registered in the program that runs them: this
// command reads and changes their control tables in PostgreSQL (status,
// swap, drop) and watches a rebuild that the program runs; it cannot run
// handlers itself.

func (a *app) projectionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projections",
		Short: "List, inspect, swap and drop the versions of PostgreSQL projections",
		Long: `Projections (package projection) are Go handlers that your program runs: each version
writes into its own schema proj_NAME_vN, with its checkpoint in rewind_proj.versions.
These commands work on those control tables by --dsn, from any terminal:

  ls                      every version of every projection, with lag, rate and parked events
  status NAME             the versions of one projection
  rebuild NAME VERSION    watch a rebuild (the new version's Runner, started by your program)
                          catch up with the serving version
  swap NAME VERSION       make VERSION serve in place of the serving version, at one
                          position, with no effect recorded twice or lost
  drop NAME VERSION       drop a version that does not serve (its schema and rows)
  baseline NAME VERSION TAG  save a copy of a version's tables as of its checkpoint
  diff NAME A B           compare two versions, or a version and a baseline (@TAG), row by row

docs/projections.md explains the swap protocol and what runs where.`,
		Args: noArgs,
	}
	cmd.AddCommand(a.projectionsLsCmd(), a.projectionsStatusCmd(), a.projectionsRebuildCmd(),
		a.projectionsSwapCmd(), a.projectionsDropCmd(), a.projectionsBaselineCmd(), a.projectionsDiffCmd())
	return cmd
}

// projFlags are the database flags of the projections commands.
type projFlags struct{ pg pgFlags }

func (f *projFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.pg.dsn, "dsn", "", "PostgreSQL connection string of the projections' database")
	bindEnv(fs, "dsn", "REWIND_DSN")
	fs.DurationVar(&f.pg.connectTimeout, "connect-timeout", 10*time.Second,
		"give up connecting after this long, unless the connection string sets connect_timeout")
	fs.DurationVar(&f.pg.lockTimeout, "lock-timeout", 5*time.Second,
		"give up waiting for a lock another session holds (a version's row during its batch) after this long")
}

func (f *projFlags) open(ctx context.Context) (*pgxpool.Pool, error) {
	p, _, _, err := f.pg.pools(ctx)
	return p, err
}

func versionArg(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > math.MaxInt32 {
		return 0, &rewind.ValidationError{Field: "VERSION", Value: s, Reason: "must be a version number from 1 to 2147483647"}
	}
	return v, nil
}

func (a *app) printStatuses(all []projection.Status, jsonOut bool) error {
	if jsonOut {
		if all == nil {
			all = []projection.Status{}
		}
		return a.printJSON(map[string]any{"projections": all})
	}
	if len(all) == 0 {
		a.printf("no projections in this database\n")
		return nil
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tVERSION\tSTATE\tPOSITION\tLAG\tRATE/s\tPARKED\tEFFECTS FROM\tUPDATED")
	for _, s := range all {
		state := s.State
		if s.Stopping {
			state = fmt.Sprintf("serving (stopped at %d for a swap)", s.StopAt)
		}
		from := "-"
		if s.EffectsFrom != 0 {
			from = s.EffectsFrom.String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%.0f\t%d\t%s\t%s\n", s.Name, s.Version, state, s.Position, s.Lag, s.Rate,
			s.Parked, from, s.UpdatedAt.UTC().Format(time.RFC3339))
	}
	return w.Flush()
}

func (a *app) projectionsLsCmd() *cobra.Command {
	var f projFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List every version of every projection with its lag, rate and parked events",
		Long: `List every version of every projection in the database: its state (serving, building,
retired), checkpoint position, lag behind the end of the log its runner last saw, the rate
its checkpoint advanced at recently (positions per second), its parked events and the
position from which it records effects. An empty database lists nothing.`,
		Example: `  rewind projections ls --dsn postgres://postgres@127.0.0.1/app --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			all, err := projection.List(cmd.Context(), pool, "")
			if err != nil {
				return err
			}
			return a.printStatuses(all, jsonOut)
		},
	}
	f.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) projectionsStatusCmd() *cobra.Command {
	var f projFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:     "status NAME",
		Short:   "Show the versions of one projection with lag, rate and parked events",
		Long:    `Show the versions of projection NAME as 'rewind projections ls' does. An unknown NAME exits with status 3.`,
		Example: `  rewind projections status orders --dsn postgres://postgres@127.0.0.1/app`,
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			all, err := projection.List(cmd.Context(), pool, args[0])
			if err != nil {
				return err
			}
			return a.printStatuses(all, jsonOut)
		},
	}
	f.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) projectionsRebuildCmd() *cobra.Command {
	var f projFlags
	var jsonOut, wait bool
	var maxLag uint64
	cmd := &cobra.Command{
		Use:   "rebuild NAME VERSION",
		Short: "Watch a rebuild of a projection catch up with the serving version",
		Long: `A rebuild is version VERSION of projection NAME built into its own schema while the
serving version keeps serving: your program starts it by running the new version's
Runner (projection.New(p, cfg).Run(ctx)), since only it has the handlers. This command
shows how far the rebuild stands behind the serving version; with --wait it waits until
it is at most --max-lag positions behind, then says how to swap. A version that does not
exist yet exits with status 3 and says how to start it; with --wait, it is waited for
(your program may be starting it).`,
		Example: `  rewind projections rebuild orders 2 --wait --dsn postgres://postgres@127.0.0.1/app`,
		Args:    exactArgs(2, "NAME VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			v, err := versionArg(args[1])
			if err != nil {
				return err
			}
			pool, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			announced := false
			for {
				all, err := projection.List(ctx, pool, args[0])
				if err != nil {
					return err
				}
				var shadow, serving *projection.Status
				for i := range all {
					switch {
					case all[i].Version == v:
						shadow = &all[i]
					case all[i].State == "serving":
						serving = &all[i]
					}
				}
				if shadow == nil && wait {
					// Started by the program just now: its runner registers
					// the version when it first runs.
					if !announced {
						fmt.Fprintf(a.stderr, "waiting for version %d of %s to start (projection.New(p, cfg).Run(ctx) in your program)…\n", v, args[0])
						announced = true
					}
				} else if shadow == nil {
					return notFound("projection %q has no version %d: start it in your program (projection.New(p, cfg).Run(ctx) "+
						"with Version %d); it builds schema %s from the start of the log", args[0], v, v, projection.SchemaName(args[0], v))
				}
				if shadow == nil {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(200 * time.Millisecond):
					}
					continue
				}
				behind := uint64(0)
				if serving != nil && serving.Position > shadow.Position {
					behind = uint64(serving.Position - shadow.Position)
				}
				caughtUp := behind <= maxLag && shadow.State == "building"
				if !wait || caughtUp || shadow.State != "building" {
					if jsonOut {
						return a.printJSON(map[string]any{"rebuild": shadow, "behind_serving": behind, "caught_up": caughtUp})
					}
					a.printf("version %d of %s is %s at position %d, %d behind the serving version\n", v, args[0], shadow.State, shadow.Position, behind)
					if caughtUp {
						a.printf("swap with: rewind projections swap %s %d\n", args[0], v)
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the rebuild is at most --max-lag positions behind the serving version")
	config.Uint64Var(cmd.Flags(), &maxLag, "max-lag", 10_000, "positions behind the serving version that count as caught up")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) projectionsSwapCmd() *cobra.Command {
	var f projFlags
	var jsonOut bool
	var maxLag uint64
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "swap NAME VERSION",
		Short: "Make VERSION serve in place of the serving version, at one position",
		Long: `Stop the serving version of NAME at its checkpoint P (waiting for its batch in flight),
let VERSION — whose runner must be running in your program — apply up to P with effects
suppressed and record effects from P+1, then flip the serving version in one transaction.
No effect is recorded twice or lost. Refused, changing nothing, when VERSION is unknown,
not above the serving version, more than --max-lag positions behind it, or another swap
is under way; --max-lag 0 swaps only a VERSION at the serving checkpoint. If the wait
for VERSION to reach P ends — --timeout (exit 9, unavailable: is its runner running?)
or Ctrl-C (exit 130) — the serving version stays stopped at P: run the same swap again
to finish it.`,
		Example: `  rewind projections swap orders 2 --dsn postgres://postgres@127.0.0.1/app`,
		Args:    exactArgs(2, "NAME VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := versionArg(args[1])
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return invalidFlag("timeout", timeout.String(), "must be positive, such as 5m")
			}
			// --timeout bounds the wait for VERSION only (Swap's step 2),
			// never the checks before it: a swap refused for its lag is
			// refused whatever the timeout. Connecting and each statement
			// are bounded by --connect-timeout and --lock-timeout.
			ctx := cmd.Context()
			pool, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			res, err := projection.Swap(ctx, pool, args[0], v,
				projection.SwapOptions{MaxLag: maxLag, NoLag: maxLag == 0, Timeout: timeout})
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				// --timeout ran out, not an interrupt: say so, and what is left.
				return &cliError{code: rewind.CodeClosed, status: exitStatus(rewind.CodeClosed),
					msg: fmt.Sprintf("the swap did not finish within --timeout %s: %v", timeout, err)}
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"swap": res})
			}
			a.printf("%s: version %d serves from position %d (version %d applied everything up to %d and is retired)\n",
				res.Name, res.To, res.At+1, res.From, res.At)
			return nil
		},
	}
	f.add(cmd)
	config.Uint64Var(cmd.Flags(), &maxLag, "max-lag", 10_000, "refuse if VERSION is more than this many positions behind the serving version")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up waiting for VERSION to reach the swap position after this long")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) projectionsDropCmd() *cobra.Command {
	var f projFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "drop NAME VERSION",
		Short: "Drop a version that does not serve: its schema, checkpoint and parked events",
		Long: `Drop version VERSION of projection NAME: its schema proj_NAME_vVERSION with its tables,
its row in rewind_proj.versions and its parked events, in one transaction. Stop its runner
first. The serving version, or the target of a swap under way, cannot be dropped (exit 2,
nothing changed); an unknown one exits with status 3.`,
		Example: `  rewind projections drop orders 1 --dsn postgres://postgres@127.0.0.1/app`,
		Args:    exactArgs(2, "NAME VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := versionArg(args[1])
			if err != nil {
				return err
			}
			pool, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := projection.Drop(cmd.Context(), pool, args[0], v); err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"dropped": map[string]any{"name": args[0], "version": v, "schema": projection.SchemaName(args[0], v)}})
			}
			a.printf("dropped version %d of %s (schema %s)\n", v, args[0], projection.SchemaName(args[0], v))
			return nil
		},
	}
	f.add(cmd)
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
