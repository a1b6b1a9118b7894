package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/config"
)

// Live control of a run from any terminal: pause, set, disable/enable (and
// resume and cancel, in backfill.go), through the run's control record.

func (a *app) backfillPauseCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut, noWait bool
	var reason string
	cmd := &cobra.Command{
		Use:   "pause RUN",
		Short: "Pause a run that any process executes, at its workers' next chunk boundary",
		Long: `Ask RUN's workers, in every process, to stop at their next chunk boundary (a chunk in
flight commits or rolls back, never half) and wait there, holding the run. The run is
'pausing' until every live worker is at a boundary, then 'paused'; this command waits
for that (a worker that does not get there within the lease timeout, 1 minute, no longer
holds the pause up: its commits are fenced off). 'rewind backfill resume RUN' continues it.`,
		Args: exactArgs(1, "RUN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pg.command = a.recordedCommand(cmd, fileSecret(nil))
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			wait := 75 * time.Second
			if noWait {
				wait = 0
			}
			run, err := r.Pause(cmd.Context(), args[0], backfill.ControlOptions{Reason: reason, Wait: wait})
			if err != nil {
				return err
			}
			return a.printControlled(run, jsonOut, "resume with: rewind backfill resume "+run.ID)
		},
	}
	pg.add(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the ledger and the progress line of the processes applying the run")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return at once, while the run is still pausing")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// printControlled prints a run after a control request: its state, who
// asked, since when, and what to do next.
func (a *app) printControlled(run *backfill.Run, jsonOut bool, next string) error {
	if jsonOut {
		return a.printJSON(map[string]any{"run": run})
	}
	a.printf("run %s is %s%s\n", run.ID, run.State, controlLine(run.Control))
	if next != "" {
		a.printf("%s\n", next)
	}
	return nil
}

// controlLine describes a control request: " (paused by alice at …: why)".
func controlLine(c *backfill.Control) string {
	if c == nil || c.Requested == "run" {
		return ""
	}
	s := fmt.Sprintf(" (%s asked by %s at %s", printable(c.Requested), printable(c.Actor), c.Since.UTC().Format(time.RFC3339))
	if c.Reason.Kind != "" {
		s += ", " + printable(string(c.Reason.Kind))
	}
	if c.Reason.Detail != "" {
		s += ": " + printable(c.Reason.Detail)
	}
	return s + ")"
}

// printable is s as status prints it: as it is when it is one line of
// plain text (what pause, disable and --actor accept), else quoted with Go
// escapes (audit.Quote), so that a value stored otherwise (by an earlier
// version, or by hand) can neither forge a line, hide a character nor send
// the terminal escape sequences.
func printable(s string) string {
	if !audit.PlainText(s) {
		return audit.Quote(s)
	}
	return s
}

// word is s as one word of a line that separates its fields with spaces
// and its attributes as name=value (audit log): as it is when it is plain
// text with nothing a reader could take for a separator, else quoted with
// Go escapes (audit.Quote). A value with a space, '=' or a quote (and any
// space character, a no-break space too) is quoted, so that it cannot
// read as attributes of its own (dest="/x written=999999") or as another
// field; the empty string stays empty.
func word(s string) string {
	if audit.PlainText(s) && strings.IndexFunc(s, func(r rune) bool {
		return r == '=' || r == '"' || unicode.IsSpace(r) || !strconv.IsPrint(r)
	}) < 0 {
		return s
	}
	return audit.Quote(s)
}

func (a *app) backfillSetCmd() *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	var rate, chunkTime string
	var workers int
	cmd := &cobra.Command{
		Use:   "set RUN [--max-rate R] [--chunk-time D] [--workers N]",
		Short: "Change a running run's max rate, chunk time or workers from any terminal",
		Long: `Store new values for RUN, picked up by its workers at their next chunk boundary:
--max-rate R caps the rate in rows per second (0 or off removes the cap); --chunk-time D
is the time a chunk should take, 50ms to 1m (off removes it) — both applied by the
throttle; --workers N (1 to the run's --max-db-workers, or 1000) is the run's worker cap
in all its processes: workers beyond it let their shard go at a chunk boundary, and the
process that started the run starts workers up to it. Recorded with the actor.`,
		Args: exactArgs(1, "RUN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var o backfill.SetOptions
			if cmd.Flags().Changed("max-rate") {
				v := 0.0
				if rate != "off" {
					var err error
					if v, err = throttle.ParseRate(rate); err != nil {
						return &rewind.ValidationError{Field: "--max-rate", Value: rate, Reason: err.Error() + ", or off"}
					}
				}
				o.MaxRate = &v
			}
			if cmd.Flags().Changed("chunk-time") {
				if chunkTime == "off" {
					o.ClearChunkTime = true
				} else {
					d, err := time.ParseDuration(chunkTime)
					if err != nil {
						return &rewind.ValidationError{Field: "--chunk-time", Value: chunkTime, Reason: "must be a duration such as 500ms or 2s, or off"}
					}
					o.ChunkTime = &d
				}
			}
			if cmd.Flags().Changed("workers") {
				o.Workers = &workers
			}
			pg.command = a.recordedCommand(cmd, fileSecret(nil))
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			run, err := r.Set(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"run": run})
			}
			a.printf("run %s: %s\n", run.ID, overrides(run))
			return nil
		},
	}
	pg.add(cmd)
	cmd.Flags().StringVar(&rate, "max-rate", "", "rows per second at most, or off")
	cmd.Flags().StringVar(&chunkTime, "chunk-time", "", "target time per chunk (50ms to 1m), or off")
	config.IntVar(cmd.Flags(), &workers, "workers", 0, "the run's workers at most, in all its processes (1 to its --max-db-workers, or 1000)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// overrides describes the values set on a run.
func overrides(run *backfill.Run) string {
	c := run.Control
	if c == nil {
		return "no values set"
	}
	var parts []string
	if c.MaxRate != nil {
		parts = append(parts, fmt.Sprintf("max rate %g rows/s", *c.MaxRate))
	}
	if c.ChunkTime != nil {
		parts = append(parts, "chunk time "+c.ChunkTime.String())
	}
	if c.Workers != nil {
		parts = append(parts, fmt.Sprintf("workers %d", *c.Workers))
	}
	if len(parts) == 0 {
		return "no values set"
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" (set by %s)", printable(c.SetBy))
}

func (a *app) backfillToggleCmd(disable bool) *cobra.Command {
	var pg pgFlags
	var jsonOut bool
	var reason string
	verb := map[bool]string{true: "disable", false: "enable"}[disable]
	cmd := &cobra.Command{
		Use: verb + " JOB",
		Short: map[bool]string{true: "Disable a job by name: it starts no run, and its running runs pause",
			false: "Enable a disabled job: runs start again, and the runs its disable paused go on"}[disable],
		Args: exactArgs(1, "JOB"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pg.command = a.recordedCommand(cmd, fileSecret(nil))
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			var tg *backfill.Toggle
			if disable {
				tg, err = r.Disable(cmd.Context(), args[0], reason)
			} else {
				tg, err = r.Enable(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(tg)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "job\t%s %sd by %s\n", tg.Job, verb, printable(tg.Actor))
			fmt.Fprintf(w, "runs %s\t%d %s\n", map[bool]string{true: "paused", false: "resumed"}[disable], len(tg.Runs), strings.Join(tg.Runs, " "))
			return w.Flush()
		},
	}
	pg.add(cmd)
	if disable {
		cmd.Flags().StringVar(&reason, "reason", "", "why, for the ledger and whoever tries to run the job")
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// progressNote prints "paused by ACTOR: reason" (or that the run goes on)
// above the progress bar, or on stderr without one.
func (a *app) progressNote(bar *progress, p backfill.Progress) {
	if a.jsonOut {
		return
	}
	msg := "backfill: " + printable(p.Paused) + "; waiting at a chunk boundary (rewind backfill resume " + p.RunID + " continues it)\n"
	if p.Paused == "" {
		msg = "backfill: resumed\n"
	}
	if bar != nil && bar.p != nil {
		bar.p.Write([]byte(msg))
		return
	}
	fmt.Fprint(a.stderr, msg)
}
