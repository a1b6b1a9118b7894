package cli

import (
	"time"

	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
)

func (a *app) streamsCmd() *cobra.Command {
	var (
		opts    rewind.ListStreamsOptions
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List streams",
		Long: `List streams sorted by name with their version, readable event count and
positions. Page with --after NAME.`,
		Example: `  rewind streams --prefix orders- --limit 50
  rewind streams --after orders-0420 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 0 {
				return invalidFlag("limit", fmt.Sprint(opts.Limit), "must not be negative")
			}
			s, err := a.openExisting(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			list, err := s.ListStreams(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if jsonOut {
				out := make([]streamJSON, len(list))
				for i := range list {
					out[i] = toStreamJSON(list[i])
				}
				return a.printJSON(map[string]any{"streams": out})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "STREAM\tVERSION\tEVENTS\tFIRST POSITION\tLAST POSITION\tSTATE")
			for _, st := range list {
				state := "live"
				if st.Deleted {
					state = "deleted"
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\n", st.Stream, st.Version, st.Count, st.FirstPosition, st.LastPosition, state)
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Prefix, "prefix", "", "only streams whose name starts with this")
	f.StringVar(&opts.After, "after", "", "only streams whose name sorts after this (paging)")
	config.IntVar(f, &opts.Limit, "limit", rewind.DefaultListStreamsLimit, "at most this many streams")
	atLeast(f, 1, "limit")
	config.BoolVar(f, &opts.IncludeDeleted, "deleted", false, "include deleted streams")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

type streamJSON struct {
	Stream        string          `json:"stream"`
	Version       uint64          `json:"version"`
	FirstVersion  uint64          `json:"first_version"`
	Count         uint64          `json:"count"`
	FirstPosition rewind.Position `json:"first_position"`
	LastPosition  rewind.Position `json:"last_position"`
	Deleted       bool            `json:"deleted"`
}

func toStreamJSON(i rewind.StreamInfo) streamJSON {
	return streamJSON{Stream: i.Stream, Version: i.Version, FirstVersion: i.FirstVersion, Count: i.Count,
		FirstPosition: i.FirstPosition, LastPosition: i.LastPosition, Deleted: i.Deleted}
}

func (a *app) statCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "stat [STREAM]",
		Short: "Describe the store, or one stream",
		Example: `  rewind stat
  rewind stat orders-1 --json`,
		Args: maxArgs(1, "STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openExisting(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			if len(args) == 1 {
				info, err := s.StreamInfo(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(toStreamJSON(info))
				}
				a.printf("stream          %s\nversion         %d\nfirst version   %d\nevents          %d\n"+
					"first position  %d\nlast position   %d\ndeleted         %t\n",
					info.Stream, info.Version, info.FirstVersion, info.Count, info.FirstPosition, info.LastPosition, info.Deleted)
				return nil
			}
			st, err := stat(cmd.Context(), s)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(st)
			}
			a.printf("store           %s\ndurability      %s\nfirst position  %d\nlast position   %d\nstreams         %d\n",
				st.Target, st.Durability, st.FirstPosition, st.LastPosition, st.Streams)
			if st.Segments > 0 {
				a.printf("segments        %d\nbytes           %d\n", st.Segments, st.Bytes)
			}
			if h := st.Health; h != nil {
				a.printf("epoch           %d\n", h.Epoch)
				if h.Failed != "" {
					a.printf("FAILED          %s\n", h.Failed)
				}
				for _, e := range h.Recovery {
					loss := ""
					if e.DataLoss {
						loss = " (data loss)"
					}
					// A damaged segment header concerns no position.
					where := ""
					if e.FirstPosition != 0 {
						where = ", " + positionRange(e.FirstPosition, e.LastPosition)
					}
					a.printf("recovery        %s%s at %s%s: %s\n", e.Kind, loss, e.At.Format(time.RFC3339), where, e.Reason)
				}
			}
			return nil
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) deleteCmd() *cobra.Command {
	var (
		expected string
		jsonOut  bool
	)
	cmd := &cobra.Command{
		Use:   "delete STREAM",
		Short: "Soft-delete a stream",
		Long: `Soft-delete STREAM: its events disappear from stream reads and listings but stay
in the whole log (until retention), where a $stream-deleted record marks the
delete. Appending to the stream again recreates it; its versions continue.`,
		Example: `  rewind delete orders-1 --expected-version 7`,
		Args:    exactArgs(1, "STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ev, err := parseExpectedVersion(expected)
			if err != nil {
				return err
			}
			s, err := a.openExisting(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			pos, err := s.DeleteStream(cmd.Context(), args[0], ev)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{"stream": args[0], "deleted": true, "position": pos})
			}
			a.printf("deleted %s (delete recorded at position %d)\n", args[0], pos)
			return nil
		},
	}
	cmd.Flags().StringVar(&expected, "expected-version", "any", "delete only if the stream is in this state: any, stream-exists or a version")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// positionRange describes the positions a recovery event concerns: a last
// position of 0 (or before the first) means the end is unknown.
func positionRange(first, last rewind.Position) string {
	switch {
	case last == 0 || last < first:
		return fmt.Sprintf("positions from %d", first)
	case last == first:
		return fmt.Sprintf("position %d", first)
	}
	return fmt.Sprintf("positions %d-%d", first, last)
}
