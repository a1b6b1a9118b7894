package cli

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/config"
)

func (a *app) consumeCmd() *cobra.Command {
	var (
		count, maxAckPending int
		idle                 time.Duration
		name                 string
		jsonOut              bool
	)
	cmd := &cobra.Command{
		Use:   "consume GROUP",
		Short: "Join a consumer group as one member: print each event and ack it",
		Long: `Join GROUP as one member, print each event delivered to it (one line of text,
or one JSON object per line with --json, with the delivery's id and attempt)
and ack it once it is printed. It runs until interrupted, until --count events
were printed, or until no event came for --idle.

Members compete: with several consumers of one group each event goes to one of
them. With --count N the member takes no more events than it will still print.
Events delivered to this member and not yet printed when it is interrupted go
back to the group at once (their delivery counts towards max deliveries) —
except in an at-most-once group, where an event is done once delivered: the
member takes one only as it prints it, so an interrupt loses at most the one
being printed, and --count loses none.
With --server the member is a client of the server; without, it runs the
group on the embedded store in --data-dir (no server may hold it).`,
		Example: `  rewind consume billing --server http://127.0.0.1:7070
  rewind consume billing --count 10 --json
  rewind consume billing --idle 2s`,
		Args: exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			group := args[0]
			if err := consumer.ValidateGroupName(group); err != nil {
				return err
			}
			switch {
			case count < 0:
				return invalidFlag("count", fmt.Sprint(count), "must not be negative (0, the default, prints events "+
					"until interrupted)")
			case idle < 0:
				return invalidFlag("idle", idle.String(), "must not be negative (0, the default, never stops for "+
					"want of events)")
			case maxAckPending < 0:
				return invalidFlag("max-ack-pending", fmt.Sprint(maxAckPending), "must not be negative (0, the "+
					"default, takes the group's member max ack pending)")
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var (
				mu       sync.Mutex // one event printed at a time
				errMu    sync.Mutex // guards printErr (mu may be held by an abandoned write)
				printed  atomic.Int64
				printErr error
				last     = make(chan struct{}, 1)
			)
			h := func(hctx context.Context, m *consumer.Message) error {
				if count > 0 && printed.Load() >= int64(count) {
					<-hctx.Done() // beyond --count: it goes back to the group
					return hctx.Err()
				}
				// The write runs apart, so that a stop (a signal) is not
				// held up by an output nobody reads: the event then goes
				// back to the group, unacked, and the write is abandoned.
				wrote := make(chan error, 1)
				go func() {
					mu.Lock()
					defer mu.Unlock()
					if hctx.Err() != nil {
						wrote <- hctx.Err()
						return
					}
					if jsonOut {
						wrote <- a.printJSON(map[string]any{"group": m.Group, "delivery_id": m.ID, "attempt": m.Attempt,
							"replay": m.Replay, "event": toJSON(m.Event)})
					} else {
						wrote <- a.printEvent(m.Event, false)
					}
				}()
				var err error
				select {
				case err = <-wrote:
				case <-hctx.Done():
					return hctx.Err()
				}
				if err != nil {
					errMu.Lock()
					defer errMu.Unlock()
					printErr = err
					cancel()
					return err
				}
				if n := printed.Add(1); count > 0 && n >= int64(count) {
					cancel()
				}
				select {
				case last <- struct{}{}:
				default:
				}
				return nil
			}
			if idle > 0 {
				go func() {
					t := time.NewTimer(idle)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-last:
							t.Reset(idle)
						case <-t.C:
							cancel()
							return
						}
					}
				}()
			}
			var err error
			if a.server != "" {
				c, cerr := a.newClient()
				if cerr != nil {
					return cerr
				}
				defer c.Close()
				err = c.Consume(ctx, group, h, client.ConsumeOptions{MaxAckPending: maxAckPending, Name: name,
					Limit: count})
			} else {
				err = a.consumeLocal(ctx, group, h, consumer.MemberOptions{Name: name, MaxAckPending: maxAckPending},
					count)
			}
			errMu.Lock()
			perr := printErr
			errMu.Unlock()
			if perr != nil {
				return perr
			}
			if err == nil && cmd.Context().Err() != nil {
				return cmd.Context().Err() // interrupted: exit status 130
			}
			return err
		},
	}
	f := cmd.Flags()
	config.IntVar(f, &count, "count", 0, "stop after printing this many events, taking no more from the group (0: no limit)")
	f.DurationVar(&idle, "idle", 0, "stop once no event came for this long (0: never)")
	f.StringVar(&name, "name", "cli", "the member's name in the group's description")
	config.IntVar(f, &maxAckPending, "max-ack-pending", 0, "cap on this member's un-acked delivered events (0: the group's member max ack pending)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// consumeLocal runs one member of a group of the embedded store.
func (a *app) consumeLocal(ctx context.Context, group string, h consumer.Handler, opts consumer.MemberOptions,
	count int) error {
	g, err := a.openGroups(ctx)
	if err != nil {
		return err
	}
	defer g.Close()
	l := g.(*localGroups)
	m, err := l.e.Join(ctx, group, opts)
	if err != nil {
		return err
	}
	defer m.Leave()
	// The limit keeps the member from taking events it will not print: in
	// at-most-once mode they would be lost.
	return consumer.Consume(ctx, m, h, consumer.ConsumeOptions{Limit: count})
}
