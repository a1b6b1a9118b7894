package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
)

// filterFlags are the whole-log filters shared by read and tail.
type filterFlags struct {
	category string
	types    []string
	fromTime string
}

func (f *filterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.category, "category", "", "only streams whose name starts with this prefix, such as orders-")
	cmd.Flags().StringArrayVar(&f.types, "type", nil, "only events of this type (repeatable, at most 1000)")
	cmd.Flags().StringVar(&f.fromTime, "from-time", "", "start at the first event recorded at or after this time (RFC 3339, or a duration ago such as 15m)")
	emptyReason(cmd.Flags(), "from-time", "must not be empty; leave --from-time out to start at the beginning")
}

func (f *filterFlags) filter() rewind.Filter {
	return rewind.Filter{StreamPrefix: f.category, Types: f.types}
}

func (f *filterFlags) time(now time.Time) (time.Time, error) {
	if f.fromTime == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, f.fromTime); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(f.fromTime); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if config.DurationOutOfRange(f.fromTime) {
		return time.Time{}, invalidFlag("from-time", f.fromTime, config.DurationRangeReason(f.fromTime))
	}
	return time.Time{}, invalidFlag("from-time", f.fromTime, "must be an RFC 3339 time (2026-11-23T10:00:00Z) or a positive duration (15m)")
}

func (a *app) readCmd() *cobra.Command {
	var (
		from     uint64
		backward bool
		limit    int
		jsonOut  bool
		ff       filterFlags
	)
	cmd := &cobra.Command{
		Use:   "read [STREAM]",
		Short: "Read a stream, or the whole log",
		Long: `Read the events of STREAM in version order, or without STREAM the whole log in
position order, verifying every checksum. A damaged event ends the read: the
events before it (in the order read) are printed, then the damage is reported
with exit status 5; read on past it with --from (the version after it, or
before it with --backward; the position after it for the whole log).

--from is a version when reading a stream and a position when reading the whole
log. --category, --type and --from-time filter the whole log.`,
		Example: `  rewind read orders-1
  rewind read orders-1 --backward --limit 1 --json
  rewind read --from 1000 --category orders- --type OrderPlaced`,
		Args: maxArgs(1, "STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := from
			if limit < 0 {
				return invalidFlag("limit", fmt.Sprint(limit), "must not be negative")
			}
			ctx := cmd.Context()
			if len(args) == 1 {
				if ff.category != "" || len(ff.types) > 0 || ff.fromTime != "" {
					return invalidFlag("category/--type/--from-time", "", "filter the whole log; drop STREAM to use them")
				}
				s, err := a.openExisting(ctx)
				if err != nil {
					return err
				}
				defer s.Close()
				// A damaged event comes with the events before it: they are
				// printed, then the damage is reported (exit status 5).
				events, err := s.ReadStream(ctx, args[0], rewind.ReadStreamOptions{From: start, Backward: backward, Limit: limit})
				for i := range events {
					if err := a.printEvent(&events[i], jsonOut); err != nil {
						return err
					}
				}
				return err
			}
			if backward {
				return invalidFlag("backward", "true", "only applies to a stream; give STREAM")
			}
			t, err := ff.time(time.Now())
			if err != nil {
				return err
			}
			s, err := a.openExisting(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			opts := rewind.ReadAllOptions{From: rewind.Position(start), FromTime: t, Filter: ff.filter(), Limit: limit}
			for ev, err := range s.ReadAll(ctx, opts) {
				if err != nil {
					return err
				}
				if err := a.printEvent(ev, jsonOut); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	config.Uint64Var(f, &from, "from", 0, "first version (stream) or position (whole log) to read; 0 is the start (backward: the end)")
	config.BoolVar(f, &backward, "backward", false, "read the stream from --from towards its first version")
	config.IntVar(f, &limit, "limit", 0, "at most this many events; 0: no limit")
	atLeast(f, 0, "limit")
	ff.add(cmd)
	config.BoolVar(f, &jsonOut, "json", false, "print one JSON object per event (JSON lines)")
	cmd.PreRun = func(*cobra.Command, []string) { a.jsonOut = jsonOut }
	return cmd
}

// tailEventJSON is an event as tail --json prints it: with the log epoch
// it was read in, to resume with --after POSITION --epoch EPOCH.
type tailEventJSON struct {
	eventJSON
	Epoch uint64 `json:"epoch,omitempty"`
}

func (a *app) tailCmd() *cobra.Command {
	var (
		after     uint64
		epoch     uint64
		fromStart bool
		jsonOut   bool
		retryFor  time.Duration
		ff        filterFlags
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the log: print events as they are appended",
		Long: `Follow the whole log and print each event as it becomes visible, until
interrupted (exit status 130). By default it starts at the end; --after resumes
after a position (every later event is printed exactly once, in order),
--from-start starts at the beginning and --from-time at a time.

With --json every event carries the log epoch it was read in. Resume with both,
--after POSITION --epoch EPOCH: if recovery cut the log at or before POSITION
since (a crash took back events that were already seen, and their positions now
hold other events), tail fails with epoch_changed (exit status 12) instead of
following a different history.

When the store or the server becomes unavailable (PostgreSQL restarting or
failing over, the server restarting), tail prints a notice to stderr and keeps
retrying with backoff (up to 5 s between tries) for --retry-for (default 2m; 0:
for ever), then goes on after the last position it printed: no event is lost or
printed twice. When interrupted, or when the outage outlasts --retry-for (exit
status 9), tail says where to resume. A store or server that cannot be reached
when tail starts is an error at once (exit status 9).`,
		Example: `  rewind tail --category orders-
  rewind tail --after 41000 --epoch 1 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p := after
			t, err := ff.time(time.Now())
			if err != nil {
				return err
			}
			starts := 0
			for _, set := range []bool{cmd.Flags().Changed("after"), fromStart, !t.IsZero()} {
				if set {
					starts++
				}
			}
			if starts > 1 {
				return invalidFlag("after/--from-start/--from-time", "", "give at most one starting point")
			}
			if cmd.Flags().Changed("epoch") && !cmd.Flags().Changed("after") {
				return invalidFlag("epoch", fmt.Sprint(epoch), "is the log epoch of the --after position; give --after too")
			}
			// The client's own retries and backoff would come on top of
			// --retry-for (an outage of 3 s once ended tail after 23 s):
			// tail's loop is the only one that retries and waits.
			a.tailClient = true
			s, err := a.openExisting(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			opts := rewind.SubscribeOptions{After: rewind.Position(p), Epoch: epoch, FromTime: t, Filter: ff.filter()}
			if starts == 0 {
				st, err := stat(ctx, s)
				if err != nil {
					return err
				}
				opts.After = st.LastPosition
			}
			if fromStart {
				opts.After = 0
			}
			sub, err := s.Subscribe(ctx, opts)
			if err != nil {
				return err
			}
			defer sub.Close()
			epochOf := func() uint64 {
				if er, ok := sub.(rewind.EpochReporter); ok {
					return er.Epoch()
				}
				return 0
			}
			var outage tailOutage
			for {
				ev, err := sub.Next(ctx)
				if err != nil && ctx.Err() == nil && outage.retry(ctx, a, err, retryFor, sub.Position()) {
					continue
				}
				if err != nil {
					// Interrupted (exit status 130) or the server gone
					// (9): say where to resume.
					if ctx.Err() != nil {
						err = fmt.Errorf("interrupted: %w", ctx.Err())
					}
					if ctx.Err() != nil || errors.Is(err, rewind.ErrClosed) {
						fmt.Fprintf(a.stderr, "tail: stopped after position %d (epoch %d); resume with: rewind tail --after %d --epoch %d\n",
							sub.Position(), epochOf(), sub.Position(), epochOf())
					}
					return err
				}
				outage.over(a)
				if jsonOut {
					if err := a.printJSON(tailEventJSON{toJSON(ev), epochOf()}); err != nil {
						return err
					}
				} else if err := a.printEvent(ev, false); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	config.Uint64Var(f, &after, "after", 0, "print the events after this position (default: the end of the log)")
	config.BoolVar(f, &fromStart, "from-start", false, "start at the first event of the log")
	ff.add(cmd)
	config.BoolVar(f, &jsonOut, "json", false, "print one JSON object per event (JSON lines)")
	f.DurationVar(&retryFor, "retry-for", 2*time.Minute, "how long to keep retrying while the store or server is "+
		"unavailable before exiting with status 9 (0: for ever)")
	cmd.PreRun = func(*cobra.Command, []string) { a.jsonOut = jsonOut }
	// The epoch --json prints with every event.
	config.Uint64Var(f, &epoch, "epoch", 0, "the log epoch the --after position was read in (tail --json prints it); 0: unknown, not checked")
	return cmd
}

// tailOutage is tail's state while the store or server is unavailable:
// when the outage began and the backoff between its tries.
type tailOutage struct {
	since time.Time // zero while the store answers
	bo    *backoff.ExponentialBackOff
}

// retry reports whether tail should call Next again after err: err says
// the store or server is unavailable (rewind.ErrClosed: the subscription
// itself is never closed while tail runs) and the outage has lasted less
// than retryFor (0: no bound). It prints a notice when an outage begins and
// waits before the next try. The subscription keeps its position through
// the errors, so the next Next goes on after the last event printed.
func (o *tailOutage) retry(ctx context.Context, a *app, err error, retryFor time.Duration, pos rewind.Position) bool {
	if !errors.Is(err, rewind.ErrClosed) {
		return false
	}
	if o.since.IsZero() {
		o.since = time.Now()
		o.bo = backoff.NewExponentialBackOff()
		o.bo.InitialInterval, o.bo.MaxInterval = 100*time.Millisecond, 5*time.Second
		bound := "for ever"
		if retryFor > 0 {
			bound = "for up to " + retryFor.String() + " (--retry-for)"
		}
		fmt.Fprintf(a.stderr, "tail: unavailable after position %d: %v; retrying %s\n", pos, err, bound)
	}
	if retryFor > 0 && time.Since(o.since) >= retryFor {
		fmt.Fprintf(a.stderr, "tail: still unavailable after %s; giving up\n", time.Since(o.since).Round(time.Millisecond))
		return false
	}
	// The last try comes when --retry-for runs out, not a backoff later:
	// a server back just before is still found.
	wait := o.bo.NextBackOff()
	if retryFor > 0 {
		wait = min(wait, retryFor-time.Since(o.since))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return true
}

// over ends an outage, if one was under way, with a notice.
func (o *tailOutage) over(a *app) {
	if !o.since.IsZero() {
		fmt.Fprintf(a.stderr, "tail: available again after %s; going on\n", time.Since(o.since).Round(time.Millisecond))
		o.since = time.Time{}
	}
}
