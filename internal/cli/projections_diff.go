package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/projection"
)

func (a *app) projectionsBaselineCmd() *cobra.Command {
	var f projFlags
	var jsonOut, drop bool
	cmd := &cobra.Command{
		Use:   "baseline NAME VERSION TAG",
		Short: "Save a copy of a version's tables as of its checkpoint, to diff later builds against",
		Long: `Copy the tables of version VERSION of projection NAME into the schema projb_NAME_TAG,
with the version's checkpoint position, in one snapshot (its runner may go on). TAG is 1–15
lower-case letters or digits. A tag saved already is refused (exit 2, nothing written);
--drop removes a baseline (its schema and record) instead, and then VERSION is ignored.
Compare it with 'rewind projections diff NAME @TAG VERSION'.`,
		Example: `  rewind projections baseline orders 1 beforefix --dsn postgres://postgres@127.0.0.1/app`,
		Args:    exactArgs(3, "NAME VERSION TAG"),
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
			if drop {
				if err := projection.DropBaseline(cmd.Context(), pool, args[0], args[2]); err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(map[string]any{"dropped": map[string]any{"name": args[0], "tag": args[2]}})
				}
				a.printf("dropped baseline %s of %s\n", args[2], args[0])
				return nil
			}
			b, err := projection.SaveBaseline(cmd.Context(), pool, args[0], v, args[2])
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"baseline": b})
			}
			a.printf("saved baseline %s of %s version %d at position %d (schema %s)\n", b.Tag, b.Name, b.Version, b.Position, b.Schema)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&drop, "drop", false, "drop the baseline TAG instead of saving it")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// sideArg is a side of a diff: a version number, or @TAG for a baseline.
func sideArg(name, s string) (string, error) {
	if tag, ok := strings.CutPrefix(s, "@"); ok && tag != "" {
		return projection.BaselineSchema(name, tag), nil
	}
	v, err := versionArg(s)
	if err != nil {
		return "", &rewind.ValidationError{Field: "A/B", Value: s, Reason: "must be a version number (1 or more) or @TAG, a saved baseline"}
	}
	return projection.SchemaName(name, v), nil
}

func (a *app) projectionsDiffCmd() *cobra.Command {
	var f projFlags
	var jsonOut bool
	var limit int
	cmd := &cobra.Command{
		Use:   "diff NAME A B",
		Short: "Compare two versions of a projection, or a version with a saved baseline, row by row",
		Long: `Compare the tables of A and B — each a version number of projection NAME or @TAG, a baseline
saved with 'rewind projections baseline' — in one snapshot. Rows are matched by their table's
primary key (a table without one is compared as a multiset of rows); each differing key is
listed with both rows. Both sides must be at the same position (a baseline is at the position
it was saved at): stop or pause the runners there first, else the diff is refused (exit 2).
Exits 0 when they are the same, 5 (check_failed) when they differ.

To find the first event after which each key differed, use projection.Diff from your program,
which has both versions' handlers (docs/projections.md, Diff).`,
		Example: `  rewind projections diff orders @beforefix 2 --dsn postgres://postgres@127.0.0.1/app --json`,
		Args:    exactArgs(3, "NAME A B"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sa, err := sideArg(args[0], args[1])
			if err != nil {
				return err
			}
			sb, err := sideArg(args[0], args[2])
			if err != nil {
				return err
			}
			if limit < 1 {
				return invalidFlag("limit", fmt.Sprint(limit), "must be 1 or more")
			}
			pool, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer pool.Close()
			res, err := projection.Compare(cmd.Context(), pool, sa, sb, projection.DiffOptions{Limit: limit})
			if err != nil {
				return err
			}
			if jsonOut {
				if err := a.printJSON(map[string]any{"diff": res, "same": res.Same()}); err != nil {
					return err
				}
			} else {
				a.printf("%s and %s at position %d: %d tables compared\n", res.A, res.B, res.Position, len(res.Tables))
				for _, t := range res.OnlyA {
					a.printf("table %s: only in %s\n", t, res.A)
				}
				for _, t := range res.OnlyB {
					a.printf("table %s: only in %s\n", t, res.B)
				}
				for _, k := range res.Keys {
					a.printf("%s %s\n  a: %s\n  b: %s\n", k.Table, k.Key, k.A, k.B)
				}
				if res.More {
					a.printf("(more differences: raise --limit)\n")
				}
			}
			if !res.Same() {
				return checkFailed(fmt.Sprintf("%s and %s differ: %d keys, %d tables on one side only", res.A, res.B,
					len(res.Keys), len(res.OnlyA)+len(res.OnlyB)), jsonOut)
			}
			if !jsonOut {
				a.printf("same\n")
			}
			return nil
		},
	}
	f.add(cmd)
	config.IntVar(cmd.Flags(), &limit, "limit", 1000, "list at most this many differing keys (rows)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
