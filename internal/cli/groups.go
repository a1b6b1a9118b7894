package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/replay"
)

// groupAdmin is what `rewind groups` needs: a server's client keeps it,
// and so does localGroups, an engine over the embedded store.
type groupAdmin interface {
	CreateGroup(ctx context.Context, cfg consumer.GroupConfig) (consumer.GroupInfo, error)
	Groups(ctx context.Context) ([]consumer.GroupInfo, error)
	GroupInfo(ctx context.Context, group string) (consumer.GroupInfo, error)
	DeleteGroup(ctx context.Context, group string) error
	ResetGroup(ctx context.Context, group string, opts consumer.ResetOptions) (consumer.ResetPlan, error)
	Parked(ctx context.Context, group string, opts consumer.ParkedOptions) ([]consumer.ParkedEntry, error)
	ReplayParked(ctx context.Context, group string, opts consumer.ReplayOptions) (int, error)
	PurgeParked(ctx context.Context, group string, opts consumer.PurgeOptions) (int, error)
	Close() error
}

// localGroups runs the consumer engine over the embedded store in
// --data-dir (or the PostgreSQL store of --store) for the length of one
// command.
type localGroups struct {
	st      rewind.Store
	e       *consumer.Engine
	release func() // gives up the groups of a shared store
}

func (l *localGroups) CreateGroup(ctx context.Context, cfg consumer.GroupConfig) (consumer.GroupInfo, error) {
	return l.e.CreateGroup(ctx, cfg)
}

func (l *localGroups) Groups(context.Context) ([]consumer.GroupInfo, error) { return l.e.Groups(), nil }

func (l *localGroups) GroupInfo(_ context.Context, group string) (consumer.GroupInfo, error) {
	return l.e.Info(group)
}

func (l *localGroups) DeleteGroup(ctx context.Context, group string) error {
	return l.e.DeleteGroup(ctx, group)
}

func (l *localGroups) ResetGroup(ctx context.Context, group string, opts consumer.ResetOptions) (consumer.ResetPlan, error) {
	return l.e.Reset(ctx, group, opts)
}

func (l *localGroups) Parked(ctx context.Context, group string, opts consumer.ParkedOptions) ([]consumer.ParkedEntry, error) {
	return l.e.Parked(ctx, group, opts)
}

// ReplayParked is refused: a replay hands parked events to the members
// connected to a running engine, and this one ends with the command.
func (l *localGroups) ReplayParked(context.Context, string, consumer.ReplayOptions) (int, error) {
	return 0, &cliError{code: rewind.CodeInvalidArgument, status: 2, msg: "a replay hands parked events back to " +
		"the members of a running server's group; this command's engine ends with it: give --server"}
}

func (l *localGroups) PurgeParked(ctx context.Context, group string, opts consumer.PurgeOptions) (int, error) {
	return l.e.PurgeParked(ctx, group, opts)
}

func (l *localGroups) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := l.e.Close(ctx)
	l.release()
	if cerr := l.st.Close(); err == nil {
		err = cerr
	}
	return err
}

// openGroups returns the groups of --server, or of the store in
// --data-dir.
func (a *app) openGroups(ctx context.Context) (groupAdmin, error) {
	if a.server != "" {
		return a.newClient()
	}
	st, err := a.openExisting(ctx)
	if err != nil {
		return nil, err
	}
	release, err := ownGroups(ctx, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	e, err := consumer.Open(ctx, st, consumer.Config{})
	if err != nil {
		release()
		st.Close()
		return nil, err
	}
	return &localGroups{st: st, e: e, release: release}, nil
}

// groupsElector is a store shared by several processes (pgstore.Store),
// whose consumer groups one process at a time may run.
type groupsElector interface {
	CampaignGroups(ctx context.Context, url string) (lost <-chan struct{}, release func(), err error)
	GroupsOwner(ctx context.Context) (string, error)
}

// ownGroups takes the consumer groups of a shared store for the length of
// a command, so that its engine is the only one (a server of the same
// database may run them: then it fails, locked, naming the server). A
// store of one process (the embedded one, whose directory lock already
// keeps servers out) needs nothing.
func ownGroups(ctx context.Context, st any) (release func(), err error) {
	el, ok := st.(groupsElector)
	if !ok {
		return func() {}, nil
	}
	owner, err := el.GroupsOwner(ctx)
	if err != nil {
		return nil, err
	}
	if owner == "" {
		// Free, or an owner that died is being replaced: at most the
		// takeover grace.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, release, err := el.CampaignGroups(cctx, fmt.Sprintf("rewind-cli://pid-%d", os.Getpid()))
		cancel()
		if err == nil {
			return release, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if owner, _ = el.GroupsOwner(ctx); owner == "" {
			owner = "another process"
		}
	}
	return nil, &cliError{code: rewind.CodeLocked, status: 6, msg: fmt.Sprintf("the consumer groups of this store "+
		"are run by %s; only one process may run them: give --server %s (any server of this database answers "+
		"for them)", owner, owner)}
}

const groupsLong = `Consumer groups deliver the log's events to competing members, each event
until a member acks it (or it is parked after max deliveries): the event bus on
top of the log. A group has a name, a filter (--prefix, --types) and a start;
its state is kept in the store, in the stream _rewind.group.NAME.

Every command works on a server (--server, the usual case: its members are the
clients connected to it) or on the embedded store in --data-dir while no server
holds it. 'rewind consume GROUP' runs one member. docs/consumer.md explains
acks, redelivery, parking, ordering, backpressure and lag.`

func (a *app) groupsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Create, list, describe, reset and delete consumer groups; list, replay and purge parked events",
		Long:  groupsLong,
		Example: `  rewind groups create billing --prefix orders- --order-by stream
  rewind groups ls --json
  rewind groups info billing
  rewind groups reset billing --by-duration 1h            # the plan only
  rewind groups reset billing --by-duration 1h --execute  # apply it
  rewind groups parked ls billing
  rewind groups rm billing`,
	}
	parked := &cobra.Command{
		Use:   "parked",
		Short: "List, replay or purge a group's parked (dead-lettered) events",
		Long: `Events a group gave up on (max deliveries reached, or terminated by a
member) are parked with their reason, last error and attempts. 'ls' lists them,
'replay' hands them back to the group's members (each gets one more delivery;
one that fails again is parked again), 'purge' removes them.`,
	}
	parked.AddCommand(a.parkedLsCmd(), a.parkedReplayCmd(), a.parkedPurgeCmd())
	cmd.AddCommand(a.groupsCreateCmd(), a.groupsLsCmd(), a.groupsInfoCmd(), a.groupsRmCmd(), a.groupsResetCmd(), parked)
	return cmd
}

// withGroups opens the groups, runs f and closes them.
func (a *app) withGroups(cmd *cobra.Command, f func(g groupAdmin) error) error {
	g, err := a.openGroups(cmd.Context())
	if err != nil {
		return err
	}
	err = f(g)
	if cerr := g.Close(); err == nil {
		err = cerr
	}
	return err
}

func (a *app) groupsCreateCmd() *cobra.Command {
	var (
		cfg               consumer.GroupConfig
		start, end        string
		backoff           string
		ackWait           time.Duration
		jsonOut           bool
		prefix            string
		types, priorities []string
	)
	cmd := &cobra.Command{
		Use:   "create GROUP",
		Short: "Create a durable consumer group",
		Long: `Create a durable consumer group. Its filter (--prefix, --types) cannot change
later: reset the group or create another. Unset limits take their defaults
(docs/consumer.md).`,
		Example: `  rewind groups create billing --prefix orders- --start end
  rewind groups create audit --start time:2026-11-01T00:00:00Z --mode at-most-once
  rewind groups create shipping --prefix orders- --order-by stream --max-deliveries 10 --backoff 1s,10s,1m
  rewind groups create fix-1 --prefix orders- --start position:999 --end position:5000   # exactly 1000..5000`,
		Args: exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Name = args[0]
			if err := checkGroupLimitFlags(cmd, cfg); err != nil {
				return err
			}
			cfg.Filter = rewind.Filter{StreamPrefix: prefix, Types: types}
			cfg.Priority = priorities
			cfg.AckWait = ackWait
			var err error
			if cfg.Start, err = parseStart(start); err != nil {
				return err
			}
			if cfg.End, err = parseEnd(end); err != nil {
				return err
			}
			if backoff != "" {
				for _, s := range strings.Split(backoff, ",") {
					d, err := time.ParseDuration(strings.TrimSpace(s))
					if err != nil {
						return invalidFlag("backoff", backoff, "must be durations separated by commas, such as 1s,5s,30s")
					}
					cfg.Backoff = append(cfg.Backoff, d)
				}
			}
			return a.withGroups(cmd, func(g groupAdmin) error {
				in, err := g.CreateGroup(cmd.Context(), cfg)
				if err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(groupJSON(in))
				}
				a.printf("created group %s (%s, start %s%s)\n", in.Config.Name, in.Config.Mode, describeStart(in.Config.Start),
					describeEnd(in))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "deliver only events of streams starting with this (a category such as orders-)")
	f.StringSliceVar(&types, "types", nil, "deliver only events of these types (comma separated)")
	f.StringVar(&start, "start", "beginning", "where the group starts: beginning, end, position:N (after N) or time:RFC3339")
	f.StringVar(&end, "end", "", "bound the group: deliver through position:N (inclusive, from 1) or time:RFC3339 "+
		"(after 0001-01-01T00:00:00Z), then be complete (default: no end)")
	f.StringVar((*string)(&cfg.Mode), "mode", "", "at-least-once (default), at-most-once or effectively-once")
	f.DurationVar(&ackWait, "ack-wait", 0, "redeliver a delivery not acked within this (default 30s)")
	config.IntVar(f, &cfg.MaxDeliveries, "max-deliveries", 0, "park events after this many deliveries each (default 5; -1 no limit)")
	f.StringVar(&backoff, "backoff", "", "delays before the 1st, 2nd… redelivery, the last repeating (default 1s,5s,30s)")
	config.IntVar(f, &cfg.MaxAckPending, "max-ack-pending", 0, "cap on the group's un-acked delivered events (default 10000)")
	config.IntVar(f, &cfg.MaxPending, "max-pending", 0, "cap on the events the group holds in memory (default 20000)")
	config.IntVar(f, &cfg.MemberMaxAckPending, "member-max-ack-pending", 0, "cap on one member's un-acked delivered events (default 1000)")
	f.StringVar(&cfg.OrderBy, "order-by", "", "deliver each key's events in order: stream, or metadata:NAME")
	f.StringSliceVar(&priorities, "priority", nil, "event types delivered ahead of the others (comma separated)")
	config.IntVar(f, &cfg.MaxParked, "max-parked", 0, "cap on the parked events (default 10000)")
	config.IntVar(f, &cfg.ReplayChunk, "replay-chunk", 0, "parked events a replay hands back at a time (default 100)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// checkGroupLimitFlags refuses a limit given on the command line that the
// group would not take as given: a cap below 1 (leave the flag out for the
// default), max deliveries below 1 other than -1 (no limit). The library
// reads 0 as "the default", which on a command line would only hide a
// mistake.
func checkGroupLimitFlags(cmd *cobra.Command, cfg consumer.GroupConfig) error {
	f := cmd.Flags()
	if f.Changed("max-deliveries") && cfg.MaxDeliveries < 1 && cfg.MaxDeliveries != -1 {
		return invalidFlag("max-deliveries", fmt.Sprint(cfg.MaxDeliveries), "must be between 1 and 1000000, or -1 "+
			"for no limit (leave it out for the default, 5)")
	}
	for _, l := range []struct {
		flag string
		v    int
	}{
		{"max-ack-pending", cfg.MaxAckPending}, {"max-pending", cfg.MaxPending},
		{"member-max-ack-pending", cfg.MemberMaxAckPending}, {"max-parked", cfg.MaxParked},
		{"replay-chunk", cfg.ReplayChunk},
	} {
		if f.Changed(l.flag) && l.v < 1 {
			return invalidFlag(l.flag, fmt.Sprint(l.v), "must be at least 1 (leave it out for the default)")
		}
	}
	if f.Changed("ack-wait") {
		if d, _ := f.GetDuration("ack-wait"); d <= 0 {
			return invalidFlag("ack-wait", d.String(), "must be positive (leave it out for the default, 30s)")
		}
	}
	return nil
}

// parseStart reads --start.
func parseStart(s string) (consumer.Start, error) {
	kind, arg, _ := strings.Cut(s, ":")
	switch kind {
	case "beginning", "end":
		if arg == "" {
			return consumer.Start{Kind: consumer.StartKind(kind)}, nil
		}
	case "position":
		var p uint64
		if _, err := fmt.Sscan(arg, &p); err == nil && fmt.Sprint(p) == arg {
			return consumer.Start{Kind: consumer.StartPosition, Position: rewind.Position(p)}, nil
		}
	case "time":
		if t, err := time.Parse(time.RFC3339Nano, arg); err == nil {
			if t.IsZero() {
				return consumer.Start{}, invalidFlag("start", s, replay.ZeroTimeReason)
			}
			return consumer.Start{Kind: consumer.StartTime, Time: t}, nil
		}
	}
	return consumer.Start{}, invalidFlag("start", s, "must be beginning, end, position:N (a position) or "+
		"time:RFC3339 (such as time:2026-11-01T00:00:00Z)")
}

// parseEnd reads --end ("" is no end).
func parseEnd(s string) (consumer.End, error) {
	if s == "" {
		return consumer.End{}, nil
	}
	kind, arg, _ := strings.Cut(s, ":")
	switch kind {
	case "position":
		var p uint64
		if _, err := fmt.Sscan(arg, &p); err == nil && fmt.Sprint(p) == arg && p > 0 {
			return consumer.End{Position: rewind.Position(p)}, nil
		}
	case "time":
		if t, err := time.Parse(time.RFC3339Nano, arg); err == nil {
			// The zero End is no end: the zero time would make the group
			// unbounded.
			if t.IsZero() {
				return consumer.End{}, invalidFlag("end", s, replay.ZeroTimeReason)
			}
			return consumer.End{Time: t}, nil
		}
	}
	return consumer.End{}, invalidFlag("end", s, "must be position:N (the last position delivered, from 1) or "+
		"time:RFC3339 (such as time:2026-11-01T00:00:00Z)")
}

// describeEnd says where a bounded group ends ("" for an unbounded one).
func describeEnd(in consumer.GroupInfo) string {
	if !in.Bounded {
		return ""
	}
	s := fmt.Sprintf(", end at position %d", in.End)
	if !in.Config.End.Time.IsZero() {
		s += " (the last event recorded by " + in.Config.End.Time.Format(time.RFC3339Nano) + ")"
	}
	return s
}

func describeStart(s consumer.Start) string {
	switch s.Kind {
	case consumer.StartPosition:
		return fmt.Sprintf("after position %d", s.Position)
	case consumer.StartTime:
		return "at " + s.Time.Format(time.RFC3339)
	}
	return string(s.Kind)
}

// groupInfoJSON is a group's description with its durations in seconds.
type groupInfoJSON struct {
	consumer.GroupInfo
	OldestUnackedAgeSeconds float64 `json:"oldest_unacked_age_seconds"`
	Stalled                 bool    `json:"stalled"`
}

func groupJSON(in consumer.GroupInfo) groupInfoJSON {
	return groupInfoJSON{GroupInfo: in, OldestUnackedAgeSeconds: in.OldestUnackedAge.Seconds(), Stalled: stalled(in.Status)}
}

// stalled reports whether a status means the group cannot move.
func stalled(s consumer.Status) bool {
	switch s {
	case consumer.StatusFull, consumer.StatusAckPendingFull, consumer.StatusParkedFull, consumer.StatusNoMembers,
		consumer.StatusDamaged, consumer.StatusFailed:
		return true
	}
	return false
}

func (a *app) groupsLsCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List consumer groups with their lag",
		Long: `List consumer groups with their status and lag: pending (held, not in
flight), in flight (un-acked), the oldest un-acked event's age, redeliveries
and parked events. A group that cannot move says why in its status (full,
ack_pending_full, parked_full, no_members, damaged, failed).`,
		Example: `  rewind groups ls
  rewind groups ls --json --server http://127.0.0.1:7070`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withGroups(cmd, func(g groupAdmin) error {
				list, err := g.Groups(cmd.Context())
				if err != nil {
					return err
				}
				if jsonOut {
					out := make([]groupInfoJSON, len(list))
					for i := range list {
						out[i] = groupJSON(list[i])
					}
					return a.printJSON(map[string]any{"groups": out})
				}
				w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "GROUP\tSTATUS\tMEMBERS\tPENDING\tIN FLIGHT\tOLDEST UNACKED\tREDELIVERIES\tPARKED\tACK FLOOR")
				for _, in := range list {
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\n", in.Config.Name, in.Status, in.Members,
						in.Pending, in.InFlight, in.OldestUnackedAge.Round(time.Millisecond), in.Redeliveries, in.Parked,
						in.AckFloor)
				}
				return w.Flush()
			})
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) groupsInfoCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:     "info GROUP",
		Short:   "Describe a consumer group: configuration, status, lag and members",
		Example: `  rewind groups info billing --json`,
		Args:    exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withGroups(cmd, func(g groupAdmin) error {
				in, err := g.GroupInfo(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(groupJSON(in))
				}
				c := in.Config
				a.printf("group              %s\nstatus             %s\n", c.Name, in.Status)
				if in.StatusReason != "" {
					a.printf("why                %s\n", in.StatusReason)
				}
				if in.Bounded {
					a.printf("end                position %d%s\ncomplete           %v\n", in.End,
						strings.TrimPrefix(describeEnd(in), fmt.Sprintf(", end at position %d", in.End)), in.Complete)
				}
				a.printf("filter             prefix %q, types %v\nmode               %s\norder by           %s\n"+
					"ack wait           %s\nmax deliveries     %d\nbackoff            %v\n"+
					"ack floor          %d\nread position      %d\npending            %d\nin flight          %d\n"+
					"delayed            %d\noldest unacked     %s\nacked              %d\nredeliveries       %d\n"+
					"ack waits expired  %d\nparked             %d (%d since start)\nmembers            %d\n",
					c.Filter.StreamPrefix, c.Filter.Types, c.Mode, cmpOr(c.OrderBy, "(none)"), c.AckWait,
					c.MaxDeliveries, c.Backoff, in.AckFloor, in.ReadPosition, in.Pending, in.InFlight, in.Delayed,
					in.OldestUnackedAge.Round(time.Millisecond), in.Acked, in.Redeliveries, in.Timeouts, in.Parked,
					in.ParkedTotal, in.Members)
				for _, m := range in.MemberList {
					a.printf("  member %d %s: %d in flight of %d\n", m.ID, m.Name, m.InFlight, m.MaxAckPending)
				}
				return nil
			})
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (a *app) groupsRmCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "rm GROUP",
		Short: "Delete a consumer group and its parked events",
		Long: `Delete a consumer group: its members' streams end, its state stream is
deleted, its parked events go with it. The events themselves stay in the log.`,
		Example: `  rewind groups rm billing`,
		Args:    exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withGroups(cmd, func(g groupAdmin) error {
				if err := g.DeleteGroup(cmd.Context(), args[0]); err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(map[string]any{"group": args[0], "deleted": true})
				}
				a.printf("deleted group %s\n", args[0])
				return nil
			})
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) groupsResetCmd() *cobra.Command {
	var (
		toTime   string
		toPos    uint64
		byDur    time.Duration
		shiftBy  int64
		execute  bool
		jsonOut  bool
		resetCmd *cobra.Command
	)
	cmd := &cobra.Command{
		Use:   "reset GROUP (--to-time T | --to-position P | --by-duration D | --shift-by N) [--execute]",
		Short: "Move a group's ack floor: print the plan, apply it with --execute",
		Long: `Move a group's ack floor, so that it delivers again (or skips) the events
after the new floor. Without --execute it only prints the plan — the floor now
and after, how many of the group's events would be delivered again or skipped,
how many deliveries would go stale — and changes nothing. Delivered again
counts only events a member was handed (acked, in flight or waiting for a
redelivery), not those the group read ahead and never handed out, nor those
it skipped (before its start, or by an earlier reset forward with --execute):
a reset back delivers those for the first time; skipped counts only events
not done. With --execute it
applies it: every outstanding delivery is dropped (acks for them fail as
stale), parked events stay parked, and the group reads on from the new floor.

Give exactly one target: --to-time (an RFC 3339 time: the floor moves before
the first event recorded at or after it), --to-position (the group delivers the
events after it), --by-duration (the same, at now minus D), or --shift-by (N of
the group's events: back when negative, forward when positive). A time target
sets the floor at that time: back if the group is ahead of it, forward
(skipping events never delivered) if the group lags further behind; the plan
says which.

A bounded group (created with --end) never moves below its window's start: a
target before it is clamped to the start, the plan says so (a note, and
"clamped": true with --json), and only the window's events are counted and
delivered again. An unbounded group's start only says where it began: a reset
may move it back past it.`,
		Example: `  rewind groups reset billing --by-duration 1h
  rewind groups reset billing --to-time 2026-11-30T08:00:00Z --execute
  rewind groups reset billing --shift-by -100 --execute --json`,
		Args: exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := consumer.ResetOptions{Execute: execute, ByDuration: byDur, ShiftBy: shiftBy}
			f := cmd.Flags()
			given := 0
			for _, name := range []string{"to-time", "to-position", "by-duration", "shift-by"} {
				if f.Changed(name) {
					given++
				}
			}
			if given != 1 {
				return usageError(resetCmd, fmt.Errorf("give exactly one of --to-time, --to-position, --by-duration "+
					"or --shift-by (got %d)", given))
			}
			switch {
			case f.Changed("to-position"):
				opts.ToPosition, opts.ToPositionSet = rewind.Position(toPos), true
			case f.Changed("to-time"):
				t, err := time.Parse(time.RFC3339Nano, toTime)
				if err != nil {
					return invalidFlag("to-time", toTime, "must be an RFC 3339 time, such as 2026-11-30T08:00:00Z")
				}
				if t.IsZero() {
					return invalidFlag("to-time", toTime, "the zero time 0001-01-01T00:00:00Z is no target; "+
						"--to-position 0 moves the group to the beginning of the log")
				}
				opts.ToTime = t
			case f.Changed("by-duration") && byDur <= 0:
				return invalidFlag("by-duration", byDur.String(), "must be positive: how far back from now")
			case f.Changed("shift-by") && shiftBy == 0:
				return invalidFlag("shift-by", "0", "must not be 0: negative moves back, positive forward")
			}
			return a.withGroups(cmd, func(g groupAdmin) error {
				plan, err := g.ResetGroup(cmd.Context(), args[0], opts)
				if err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(plan)
				}
				capped := ""
				if plan.CountCapped {
					capped = " (counted up to 10,000,000)"
				}
				verb := "would move"
				if plan.Executed {
					verb = "moved"
				}
				a.printf("group %s: ack floor %s from %d to %d\n", plan.Group, verb, plan.From, plan.To)
				if plan.Note != "" {
					a.printf("  note: %s\n", plan.Note)
				}
				if plan.To < plan.From {
					a.printf("  %d events delivered again%s\n", plan.Redeliver, capped)
					if plan.Parked > 0 {
						a.printf("  %d parked events in that range stay parked (replay them to deliver them)\n", plan.Parked)
					}
				} else {
					a.printf("  %d events skipped%s\n", plan.Skip, capped)
				}
				a.printf("  %d deliveries in flight made stale\n", plan.InFlight)
				if !plan.Executed {
					a.printf("nothing changed: run again with --execute to apply this plan\n")
				}
				return nil
			})
		},
	}
	resetCmd = cmd
	f := cmd.Flags()
	f.StringVar(&toTime, "to-time", "", "move the floor before the first event recorded at or after this RFC 3339 time")
	config.Uint64Var(f, &toPos, "to-position", 0, "move the floor to this position (0 is the beginning)")
	f.DurationVar(&byDur, "by-duration", 0, "move the floor to the events recorded this long ago (forward if the group lags further behind)")
	config.Int64Var(f, &shiftBy, "shift-by", 0, "move the floor by this many of the group's events (negative: back)")
	config.BoolVar(f, &execute, "execute", false, "apply the plan (without it nothing changes)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) parkedLsCmd() *cobra.Command {
	var (
		opts    consumer.ParkedOptions
		after   uint64
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:     "ls GROUP",
		Short:   "List a group's parked events by position",
		Example: `  rewind groups parked ls billing --limit 20 --after 1041`,
		Args:    exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.After = rewind.Position(after)
			return a.withGroups(cmd, func(g groupAdmin) error {
				list, err := g.Parked(cmd.Context(), args[0], opts)
				if err != nil {
					return err
				}
				if jsonOut {
					if list == nil {
						list = []consumer.ParkedEntry{}
					}
					return a.printJSON(map[string]any{"group": args[0], "parked": list})
				}
				w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "POSITION\tSTREAM\tTYPE\tATTEMPTS\tPARKED AT\tREASON\tLAST ERROR")
				for _, p := range list {
					fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Position, p.Stream, p.Type, p.Attempts,
						p.ParkedAt.Format(time.RFC3339), p.Reason, p.LastError)
				}
				return w.Flush()
			})
		},
	}
	f := cmd.Flags()
	config.Uint64Var(f, &after, "after", 0, "list parked events after this position (paging)")
	config.IntVar(f, &opts.Limit, "limit", 100, "at most this many parked events (up to 10000)")
	atLeast(f, 1, "limit")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) parkedReplayCmd() *cobra.Command {
	var (
		through uint64
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "replay GROUP",
		Short: "Hand a group's parked events back to its members (needs --server)",
		Long: `Hand the events parked now (through --through, if given) back to the group's
members, in chunks of the group's replay chunk. Each gets one more delivery:
acked, it is no longer parked; failing again, it is parked again. Needs
--server: the members are the clients connected to it.`,
		Example: `  rewind groups parked replay billing --server http://127.0.0.1:7070`,
		Args:    exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withGroups(cmd, func(g groupAdmin) error {
				n, err := g.ReplayParked(cmd.Context(), args[0], consumer.ReplayOptions{Through: rewind.Position(through)})
				if err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(map[string]any{"group": args[0], "replaying": n})
				}
				a.printf("replaying %d parked events of group %s\n", n, args[0])
				return nil
			})
		},
	}
	config.Uint64Var(cmd.Flags(), &through, "through", 0, "replay only the events parked at positions up to this")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) parkedPurgeCmd() *cobra.Command {
	var (
		through uint64
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:     "purge GROUP",
		Short:   "Remove a group's parked events",
		Example: `  rewind groups parked purge billing --through 5000`,
		Args:    exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withGroups(cmd, func(g groupAdmin) error {
				n, err := g.PurgeParked(cmd.Context(), args[0], consumer.PurgeOptions{Through: rewind.Position(through)})
				if err != nil {
					return err
				}
				if jsonOut {
					return a.printJSON(map[string]any{"group": args[0], "purged": n})
				}
				a.printf("purged %d parked events of group %s\n", n, args[0])
				return nil
			})
		},
	}
	config.Uint64Var(cmd.Flags(), &through, "through", 0, "purge only the events parked at positions up to this")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
