package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

func (a *app) verifyCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every record's checksum and the log's structure",
		Long: `Read every segment of the data directory and check each record's CRC-32C,
the continuity of positions, batch boundaries and segment headers; that no
segment is missing that retention did not remove; and that the log still
reaches the position its index snapshot was taken at. It changes nothing and
needs the directory not to be open elsewhere.

It exits 0 when all is well and 5 when anything is damaged, naming the segment,
the byte offset and the position. Damage after the last complete batch of the
last segment is a torn tail: the next open of the store cuts it (and says so).
Damage to records known to have been acknowledged (up to the position the
log's state file records as on disk: at each open, clean close and index
snapshot) is corruption too, never a torn tail. Damage that intact records
follow is corruption: those records are refused on read, the others kept.
Missing segments and a log shorter than what was acknowledged are data loss.

Data losses that earlier opens found are recorded in log-state.json and
printed as RECORDED LOSS lines (recorded_losses in --json). They are history
(the bytes may no longer show them): they do not change the exit status.

verify is local-only: it reads the files of --data-dir on this machine and has
no --server form. To check a server's store, run it on the server's machine,
against its data directory, while the server is stopped.`,
		Example: `  rewind verify --data-dir /var/lib/rewind
  rewind verify --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.server != "" {
				return usageError(cmd, errors.New("verify is local-only: it reads the files of a data directory on "+
					"this machine; run it where the server's data lives, with --data-dir DIR while the server is stopped "+
					"(--server, or REWIND_SERVER without --data-dir, chose a server)"))
			}
			if a.storeURL != "" {
				return usageError(cmd, errors.New("verify reads the files of a data directory; a PostgreSQL store "+
					"(--store, or REWIND_STORE) has none: PostgreSQL checks its own pages (data checksums, pg_amcheck)"))
			}
			if err := a.checkDataDir(); err != nil {
				return err
			}
			bar := a.newProgress("verify", "bytes", 0)
			rep, err := store.Verify(cmd.Context(), a.dataDir, func(done, total int64) {
				bar.setTotal(total)
				bar.set(done)
			})
			bar.done(err == nil)
			if err != nil {
				return err
			}
			if jsonOut {
				if err := a.printJSON(map[string]any{"ok": rep.OK(), "report": rep}); err != nil {
					return err
				}
			} else {
				a.printf("verified %d segments, %d records, %d bytes, positions %d-%d\n",
					rep.Segments, rep.Records, rep.Bytes, rep.FirstPosition, rep.LastPosition)
				for _, p := range rep.Problems {
					a.printf("DAMAGED %s\n", p)
				}
				for _, ls := range rep.Recorded {
					a.printf("RECORDED LOSS %s\n", ls)
				}
				if rep.OK() && len(rep.Recorded) > 0 {
					a.printf("ok: every checksum matches, but earlier opens recorded the data loss above\n")
				} else if rep.OK() {
					a.printf("ok: every checksum matches\n")
				}
			}
			if !rep.OK() {
				p := rep.Problems[0]
				return &cliError{code: rewind.CodeCorruption, status: 5,
					msg: fmt.Sprintf("%d problem(s) found; the first: %s", len(rep.Problems), p), quiet: jsonOut}
			}
			return nil
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
