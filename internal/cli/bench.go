package cli

import "github.com/spf13/cobra"

// benchCmd groups the benchmarks. Each reports its figures next to a
// reference measured in the same run, so that the ratios, not the absolute
// numbers, say how rewind does on the machine at hand.
func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure rewind against references measured in the same run",
	}
	cmd.AddCommand(a.benchBackfillCmd())
	return cmd
}
