package cli

import (
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
needs the directory not to be open elsewhere (it works on a local --data-dir
only).

It exits 0 when all is well and 5 when anything is damaged, naming the segment,
the byte offset and the position. Damage after the last complete batch of the
last segment is a torn tail: the next open of the store cuts it (and says so).
Damage that intact records follow is corruption: those records are refused on
read, the others kept. Missing segments and a log shorter than its snapshot
are data loss.`,
		Example: `  rewind verify --data-dir /var/lib/rewind
  rewind verify --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
				if rep.OK() {
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
