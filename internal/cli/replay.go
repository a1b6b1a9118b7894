package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/replay"
)

func (a *app) replayCmd() *cobra.Command {
	var (
		from, to, speed, rate string
		w                     replay.Window
		countOnly, jsonOut    bool
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Replay a bounded window of the log, deterministically",
		Long: `Replay the events of the whole log from --from to --to, both inclusive, in
position order, and print them as 'rewind read' does, or with --count-only print
how many there were and the replay's digest (a SHA-256 over each event's
position, id, stream, type and data): two replays of the same window print the
same digest.

--from and --to are each a position (1000) or an RFC 3339 time
(2026-11-23T10:00:00Z), compared with the time the store recorded each event.
Position 0 and the zero time 0001-01-01T00:00:00Z are refused (exit 2): they
would mean no bound.
Without --from the replay starts at the first event the log holds; without --to
it ends at the last event acknowledged when it starts. A replay never waits for
events to come: a --to beyond the end is cut there, and the result says where.

--speed X replays at the original timing divided by X (1: as recorded, 10: ten
times faster, 0.5: twice as slow), X from 0.000001 to 1000000000000; --rate R
delivers at most R events per second, R in the same range. A value outside it is
refused (exit 2). Without either, events are printed as fast as possible.

The summary (resolved window, count, digest) goes to stdout with --count-only,
to stderr otherwise. See docs/replay.md.`,
		Example: `  rewind replay --from 1000 --to 2000 --prefix orders-
  rewind replay --from 2026-11-23T10:00:00Z --to 2026-11-23T11:00:00Z --count-only --json
  rewind replay --stream orders-1 --type OrderPlaced --speed 10`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var err error
			if w.From, err = replay.ParseBound("--from", from); err != nil {
				return err
			}
			if w.To, err = replay.ParseBound("--to", to); err != nil {
				return err
			}
			var opts replay.Options
			if opts.Pacing.Speed, err = parseRate("speed", speed); err != nil {
				return err
			}
			if opts.Pacing.Rate, err = parseRate("rate", rate); err != nil {
				return err
			}
			if err := w.Validate(); err != nil {
				return err
			}
			if err := opts.Pacing.Validate(); err != nil {
				return err
			}
			opts.Digest = true
			s, err := a.openExisting(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			h := func(_ context.Context, ev *rewind.RecordedEvent) error { return a.printEvent(ev, jsonOut) }
			if countOnly {
				h = func(context.Context, *rewind.RecordedEvent) error { return nil }
			}
			res, err := replay.Run(ctx, s, w, h, opts)
			if err != nil {
				return err
			}
			if countOnly && jsonOut {
				return a.printJSON(res)
			}
			line := fmt.Sprintf("replayed %d events of window %d..%d (first %d, last %d), digest %s\n",
				res.Events, res.From, res.To, res.FirstPosition, res.LastPosition, res.Digest)
			if res.From > res.To {
				line = fmt.Sprintf("replayed 0 events: the window is empty (it resolves to %d..%d), digest %s\n", res.From, res.To, res.Digest)
			}
			if countOnly {
				a.printf("%s", line)
			} else {
				fmt.Fprint(a.stderr, line)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "first position or time of the window, inclusive (default: the start of the log)")
	f.StringVar(&to, "to", "", "last position or time of the window, inclusive (default: the end of the log now)")
	f.StringArrayVar(&w.Streams, "stream", nil, "only this stream (repeatable)")
	f.StringVar(&w.StreamPrefix, "prefix", "", "only streams whose name starts with this prefix, such as orders-")
	f.StringArrayVar(&w.Types, "type", nil, "only events of this type (repeatable)")
	f.StringVar(&speed, "speed", "", "replay at the original timing divided by this factor (1: as recorded)")
	f.StringVar(&rate, "rate", "", "deliver at most this many events per second")
	config.BoolVar(f, &countOnly, "count-only", false, "print the count and digest, not the events")
	config.BoolVar(f, &jsonOut, "json", false, "print events as JSON lines (with --count-only: the result as one JSON object)")
	cmd.PreRun = func(*cobra.Command, []string) { a.jsonOut = jsonOut }
	cmd.AddCommand(a.replayPlanCmd(), a.replayRunCmd())
	return cmd
}

// parseRate reads --speed or --rate: a decimal number in the range
// replay.Pacing allows (replay.MinSpeed…).
func parseRate(flag, s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	lo, hi, reason := replay.MinSpeed, replay.MaxSpeed, replay.SpeedReason
	if flag == "rate" {
		lo, hi, reason = replay.MinRate, replay.MaxRate, replay.RateReason
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != v || v < lo || v > hi {
		return 0, &replay.Error{Field: "--" + flag, Value: s, Err: replay.ErrBadPacing, Reason: reason}
	}
	return v, nil
}
