package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/internal/config"
)

func (a *app) backfillRollbackCmd() *cobra.Command {
	var pg pgFlags
	var tf throttleFlags
	var execute, force, jsonOut bool
	var chunks, eventsOut string
	var diffs int
	cmd := &cobra.Command{
		Use:   "rollback RUN",
		Short: "Plan (dry run, the default) or apply with --execute the rollback of a run from its before-images",
		Long: `Put back what RUN (a finished or cancelled run) changed, from the before-images its chunks
saved in their own transactions. Without --execute, plan it: count the rows to restore, those
already as before and the conflicts, and show the first rows (now → restored) and the first
conflicts (now, written by the run, before). Nothing is written to the target.

With --execute, roll back one chunk of RUN per transaction, with the rollback's own checkpoint,
the chunk marked undone and an audit entry: a rollback is a run of its own (kind rollback),
continued where it stopped by running the same command again. A row changed since RUN wrote
it is a conflict: left as it is and listed ('rewind backfill status ROLLBACK'), unless --force,
which overwrites it with its value before RUN (and restores the conflicts earlier rollbacks of
RUN left). A set job's row deleted since cannot be put back (its image holds only the changed
columns). --chunks limits the rollback to some of RUN's chunks: 7, 3-9 or 3- (to the last).

A rollback is paced and controlled as a run is: before each chunk it reads its control
('rewind backfill pause / resume / cancel / set --max-rate ROLLBACK' from any terminal) and
waits on its throttle (the default signals, --max-rate, --max-lag, --throttle-file). A
critical or unreadable signal pauses it (exit 13); running this command again, or 'rewind
backfill resume ROLLBACK', continues it. Its chunks are RUN's chunks: --chunk-time does not
apply.

Events RUN appended to an event store cannot be taken back: the plan says so and
--events-out FILE writes them as JSON lines, the input of a compensating job (see
docs/backfill.md, Rollback).`,
		Args: exactArgs(1, "RUN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if diffs < 0 {
				return invalidFlag("diffs", fmt.Sprint(diffs), "must be 0 (no rows shown) or more")
			}
			var o backfill.RollbackOptions
			o.Force = force
			if cmd.Flags().Changed("chunks") {
				rng, err := backfill.ParseChunkRange(chunks)
				if err != nil {
					return invalidFlag("chunks", chunks, err.(*rewind.ValidationError).Reason)
				}
				o.Chunks = rng
			}
			// The run's throttle flags, checked before anything is read
			// or written; a rollback's chunks are the run's, so no chunk
			// time applies.
			if tf.changed("chunk-time") {
				return invalidFlag("chunk-time", tf.chunkTime.String(), "a rollback undoes the run's chunks as they were: "+
					"their sizes do not adapt; --max-rate paces it")
			}
			spec, err := tf.spec(nil)
			if err != nil {
				return err
			}
			pg.command = a.recordedCommand(cmd, fileSecret(nil))
			// With the run's TimeZone and search_path, as resume: the
			// images are read back and compared in them.
			pg.runSettings(cmd.Context(), args[0])
			if !execute {
				r, closeAll, err := pg.runner(cmd.Context(), func(c *backfill.Config) { c.PreviewRows = max(diffs, 1) })
				if err != nil {
					return err
				}
				defer closeAll()
				plan, err := r.PlanRollback(cmd.Context(), args[0], o)
				if err != nil {
					return chunksFlag(err)
				}
				plan.Diffs = plan.Diffs[:min(diffs, len(plan.Diffs))]
				plan.ConflictRows = plan.ConflictRows[:min(diffs, len(plan.ConflictRows))]
				if eventsOut != "" {
					if err := a.writeEvents(cmd, r, plan.Run, eventsOut); err != nil {
						return err
					}
				}
				if jsonOut {
					return a.printJSON(plan)
				}
				a.printRollbackPlan(plan, o, eventsOut)
				return nil
			}
			var bar *progress
			var cfg backfill.Config
			lastPaused := ""
			r, closeAll, err := pg.runner(cmd.Context(), func(c *backfill.Config) {
				defer func() { cfg = *c }()
				c.PreviewRows = max(diffs, 1)
				c.Progress = func(p backfill.Progress) {
					if bar == nil {
						bar = a.newProgress("rollback", "rows", p.Total)
					}
					bar.set(p.RowsSeen)
					if p.Paused != lastPaused {
						lastPaused = p.Paused
						a.progressNote(bar, p)
					}
				}
			})
			if err != nil {
				return err
			}
			defer closeAll()
			thr, release, err := throttleFor(&spec, &cfg)
			if err != nil {
				return err
			}
			defer release()
			o.Throttle = thr
			res, err := r.Rollback(cmd.Context(), args[0], o)
			if bar != nil {
				bar.done(err == nil)
			}
			if err != nil {
				return chunksFlag(err)
			}
			res.ConflictRows = res.ConflictRows[:min(diffs, len(res.ConflictRows))]
			if jsonOut {
				return a.printJSON(res)
			}
			a.printf("%s\n", res.Message)
			if len(res.ConflictRows) > 0 {
				a.printf("\nleft as they are (first %d):\n", len(res.ConflictRows))
				a.printDiffs(res.ConflictRows)
			}
			return nil
		},
	}
	pg.add(cmd)
	tf.add(cmd)
	_ = cmd.Flags().MarkHidden("chunk-time") // refused: a rollback's chunks are the run's
	config.BoolVar(cmd.Flags(), &execute, "execute", false, "roll back; without it, only plan")
	config.BoolVar(cmd.Flags(), &force, "force", false,
		"overwrite rows changed since the run wrote them with their values before the run")
	cmd.Flags().StringVar(&chunks, "chunks", "", "roll back only these chunks of the run: 7, 3-9 or 3- (to the last)")
	cmd.Flags().StringVar(&eventsOut, "events-out", "", "write the events the run appended (which no rollback takes back) "+
		"to this file, one JSON object a line")
	config.IntVar(cmd.Flags(), &diffs, "diffs", 10, "how many rows and conflicts to show (0 for none)")
	atLeast(cmd.Flags(), 0, "diffs")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// chunksFlag names --chunks in a chunk range the run does not have.
func chunksFlag(err error) error {
	var ve *rewind.ValidationError
	if errors.As(err, &ve) && ve.Field == "chunks" {
		return invalidFlag("chunks", ve.Value, ve.Reason)
	}
	return err
}

// writeEvents writes the events run appended to path, one JSON object a
// line (run, chunk, stream, id, type).
func (a *app) writeEvents(cmd *cobra.Command, r *backfill.Runner, run, path string) error {
	evs, err := r.AppendedEvents(cmd.Context(), run)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, e := range evs {
		line, _ := json.Marshal(struct {
			Run string `json:"run"`
			backfill.AppendedEvent
		}{run, e})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write the events to --events-out %s: %w", path, err)
	}
	fmt.Fprintf(a.stderr, "wrote the %d event(s) run %s appended to %s\n", len(evs), run, path)
	return nil
}

func (a *app) printRollbackPlan(p *backfill.RollbackPlan, o backfill.RollbackOptions, eventsOut string) {
	a.printf("DRY RUN: nothing was written to the target.\n\n")
	a.printf("rollback of run %s (job %s version %s), chunks %s\n", p.Run, p.Job, p.Version, p.Chunks)
	for _, t := range p.Tables {
		a.printf("table      %s\n", t)
	}
	a.printf("chunks     %d to undo", p.ChunksToUndo)
	if p.ChunksUndone > 0 {
		a.printf(", %d undone already (by %s)", p.ChunksUndone, strings.Join(p.UndoneBy, ", "))
	}
	a.printf("\nrows       %d imaged: %d to restore, %d as before already, %d conflicts (changed since the run wrote them), "+
		"%d deleted since (cannot be put back)\n", p.Rows, p.Restore, p.Unchanged, p.Conflicts, p.Deleted)
	if p.Pending > 0 {
		a.printf("pending    %d conflicts earlier rollbacks left", p.Pending)
		if o.Force {
			a.printf(": --force restores them")
		}
		a.printf("\n")
	}
	if p.Events > 0 {
		a.printf("events     %d appended to %s: cannot be taken back\n", p.Events, strings.Join(p.Streams, ", "))
	}
	if len(p.Diffs) > 0 {
		a.printf("\nfirst %d rows (now → restored):\n", len(p.Diffs))
		a.printDiffs(p.Diffs)
	}
	if len(p.ConflictRows) > 0 {
		a.printf("\nfirst %d conflicts (now, as the run wrote it, before it), left as they are unless --force:\n", len(p.ConflictRows))
		a.printDiffs(p.ConflictRows)
	}
	for _, n := range p.Notes {
		a.printf("\nnote: %s\n", n)
	}
	if p.Rows > 0 || p.Pending > 0 {
		flags := ""
		if o.Chunks.From != 0 {
			flags += " --chunks " + o.Chunks.String()
		}
		if o.Force {
			flags += " --force"
		}
		a.printf("\nto apply:  rewind backfill rollback %s%s --execute\n", p.Run, flags)
	} else if p.Events > 0 && eventsOut == "" {
		a.printf("\nto list the events: rewind backfill rollback %s --events-out FILE\n", p.Run)
	}
}

// printDiffs prints rows of a rollback: now → restored for a restore,
// now / written / before for a conflict.
func (a *app) printDiffs(ds []backfill.RollbackDiff) {
	for _, d := range ds {
		var parts []string
		cols := map[string]bool{}
		for _, m := range []map[string]string{d.Now, d.Written, d.Before} {
			for c := range m {
				cols[c] = true
			}
		}
		names := make([]string, 0, len(cols))
		for c := range cols {
			names = append(names, c)
		}
		sort.Strings(names)
		val := func(m map[string]string, c string) string {
			if m == nil {
				return "(no row)"
			}
			if v, ok := m[c]; ok {
				return v
			}
			return "–"
		}
		for _, c := range names {
			switch {
			case d.Action == "conflict" || d.Action == "deleted":
				if val(d.Now, c) != val(d.Written, c) || val(d.Written, c) != val(d.Before, c) {
					parts = append(parts, fmt.Sprintf("%s: now %s, run wrote %s, before %s", c, val(d.Now, c), val(d.Written, c), val(d.Before, c)))
				}
			case val(d.Now, c) != val(d.Before, c):
				parts = append(parts, fmt.Sprintf("%s: %s → %s", c, val(d.Now, c), val(d.Before, c)))
			}
		}
		line := fmt.Sprintf("  chunk %d  key %s  %s", d.Chunk, d.Key, d.Action)
		if len(parts) > 0 {
			line += "  " + strings.Join(parts, "; ")
		} else if len(cols) == 0 && d.Action != "delete" {
			line += "  (values withheld)"
		}
		if d.Reason != "" {
			line += "  (" + d.Reason + ")"
		}
		a.printf("%s\n", line)
	}
}

func (a *app) backfillPurgeImagesCmd() *cobra.Command {
	var pg pgFlags
	var execute, jsonOut bool
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "purge-images [RUN]",
		Short: "Delete the before-images of a run, or of every run ended --older-than ago (dry run unless --execute)",
		Long: `Before-images let a run be rolled back; they take room in the target database. Delete those of
RUN (a finished or cancelled run), or with --older-than DURATION those of every finished or
cancelled run that ended at least that long ago (by the ledger database's clock). Without
--execute, only say what would be deleted. A purged run can no longer be rolled back; its status
says when and by whom its images were purged, and the audit ledger records the purge
(images.purged). A run with an unfinished rollback is refused.`,
		Args: rangeArgs(0, 1, "[RUN]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := backfill.PurgeOptions{OlderThan: olderThan, Execute: execute}
			if len(args) == 1 {
				o.Run = args[0]
			}
			switch {
			case cmd.Flags().Changed("older-than") && olderThan <= 0:
				return invalidFlag("older-than", olderThan.String(), "must be positive, such as 720h (30 days)")
			case o.Run == "" && olderThan == 0:
				return &cliError{code: rewind.CodeInvalidArgument, status: 2,
					msg: "give a RUN, or --older-than DURATION for every run that ended that long ago"}
			case o.Run != "" && olderThan != 0:
				return &cliError{code: rewind.CodeInvalidArgument, status: 2, msg: "give a RUN or --older-than, not both"}
			}
			pg.command = a.recordedCommand(cmd, fileSecret(nil))
			r, closeAll, err := pg.runner(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer closeAll()
			res, err := r.PurgeImages(cmd.Context(), o)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(res)
			}
			for _, p := range res.Runs {
				ended := ""
				if p.Finished != nil {
					ended = ", ended " + p.Finished.UTC().Format(time.RFC3339)
				}
				a.printf("  run %s (%s, %s%s): %d image rows in %d chunks\n", p.Run, p.Job, p.State, ended, p.Images, p.Chunks)
			}
			a.printf("%s\n", res.Message)
			return nil
		},
	}
	pg.add(cmd)
	config.BoolVar(cmd.Flags(), &execute, "execute", false, "delete the images; without it, only say what would be deleted")
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "purge the images of every finished or cancelled run that ended at least this long ago")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// printRollbackStatus prints what status says of rollbacks: for a
// rollback, the run it undoes; for a run, its before-images and its
// rollbacks.
func (a *app) printRollbackStatus(r *backfill.Run) {
	if r.Kind == "rollback" {
		chunks, _ := r.Job["chunks"].(string)
		force, _ := r.Job["force"].(bool)
		a.printf("rollback   of run %s, chunks %s", r.Undoes, chunks)
		if force {
			a.printf(", forced")
		}
		a.printf("\n")
		return
	}
	if im := r.Images; im != nil {
		switch {
		case !im.Kept:
			a.printf("images     none kept (the job sets rollback: false): the run cannot be rolled back\n")
		case im.PurgedAt != nil:
			a.printf("images     purged at %s by %s: the run can no longer be rolled back\n", im.PurgedAt.UTC().Format(time.RFC3339), im.PurgedBy)
		default:
			a.printf("images     %d rows in %d chunks", im.Rows, im.Chunks)
			if im.Events > 0 {
				a.printf(", %d events appended (cannot be rolled back)", im.Events)
			}
			if im.Undone > 0 {
				a.printf("; %d chunks undone", im.Undone)
			}
			a.printf("\n")
		}
	}
	for _, rb := range r.Rollbacks {
		a.printf("rolled back by %s (%s, chunks %s", rb.Run, rb.State, rb.Chunks)
		if rb.Force {
			a.printf(", forced")
		}
		a.printf(", %d chunks undone, %d rows restored", rb.Undone, rb.Restored)
		if rb.Conflicts > 0 {
			a.printf(", %d rows left as they are", rb.Conflicts)
		}
		a.printf(") by %s at %s\n", rb.Actor, rb.Created.UTC().Format(time.RFC3339))
	}
}
