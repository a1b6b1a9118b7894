package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/internal/natsbench"
)

// groupsBenchReport is what `rewind bench groups` prints.
type groupsBenchReport struct {
	LoadAvg      string            `json:"load_avg_before"`
	Server       string            `json:"server"`
	Members      int               `json:"members"`
	Events       int               `json:"events"`
	Ordered      bool              `json:"ordered"`
	Keys         int               `json:"keys"`
	Size         int               `json:"size"`
	Rounds       int               `json:"rounds"`
	Seconds      float64           `json:"seconds"`
	EventsPerSec float64           `json:"events_per_sec"`
	Redelivered  uint64            `json:"redeliveries"`
	NATS         *natsbench.Result `json:"nats_pull_consumer,omitempty"`
	NATSURL      string            `json:"nats_url,omitempty"`
	Ratio        float64           `json:"ratio_vs_nats,omitempty"`
	// EachRound holds every round's figures; the ones above are the
	// rounds' medians (by rate).
	EachRound []groupsBenchRound `json:"each_round"`
}

// groupsBenchRound is one round: rewind, then NATS.
type groupsBenchRound struct {
	EventsPerSec float64 `json:"events_per_sec"`
	NATSPerSec   float64 `json:"nats_messages_per_sec,omitempty"`
	LoadAvg      string  `json:"load_avg_before"`
}

func (a *app) benchGroupsCmd() *cobra.Command {
	var (
		members, events, keys, concurrency, batch, rounds int
		ordered, jsonOut                                  bool
		natsURL                                           string
		payload                                           = config.Size(128)
	)
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Measure a consumer group through a server: members consuming with explicit acks",
		Long: `Append --events events of --size bytes to --keys streams through the server, create
a consumer group over them (ordered by stream with --ordered) and time --members
members, each a client of its own connection consuming through the Consume
stream, until every event is acked (explicit acks, settled over the stream).
It prints events_per_sec.

With --nats URL it also times a NATS JetStream durable pull consumer with
explicit acks on the same machine: the same number of members, each on its own
connection fetching batches of --fetch-batch and acking each message
asynchronously, over a file-storage stream of the same events (created, then
deleted). The ratio is rewind over NATS. --rounds rounds alternate the two, so
that both see the same machine, and the medians are reported (each round's
figures too).

The rewind server is --server, or 'rewind serve' started from this binary on a
free loopback port with a fresh data directory under --data-dir.`,
		Example: `  rewind bench groups --server http://127.0.0.1:7070 --members 4 --events 200000 --nats nats://127.0.0.1:4222 --json
  rewind bench groups --members 4 --events 200000 --ordered --keys 10000 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := checkBenchSize(payload); err != nil {
				return err
			}
			if keys > events {
				return invalidFlag("keys", fmt.Sprint(keys), fmt.Sprintf("must be at most --events (%d)", events))
			}
			if a.server == "" {
				if err := os.MkdirAll(a.dataDir, 0o755); err != nil {
					return err
				}
				stop, err := a.startRewindServer(ctx)
				if err != nil {
					return err
				}
				defer stop()
			}
			say := func(format string, args ...any) {
				if !jsonOut {
					fmt.Fprintf(a.stderr, format+"\n", args...)
				}
			}
			load, _ := os.ReadFile("/proc/loadavg")
			r := groupsBenchReport{LoadAvg: strings.TrimSpace(string(load)), Server: a.server, Members: members,
				Events: events, Ordered: ordered, Keys: keys, Size: int(payload), Rounds: rounds}
			// Rounds alternate rewind and NATS, so that both see the same
			// machine (other load comes and goes); medians are reported.
			var ours []groupsBenchReport
			var theirs []natsbench.Result
			for i := range rounds {
				round := r
				load, _ := os.ReadFile("/proc/loadavg")
				say("round %d: rewind, %d events over %d streams, %d members", i+1, events, keys, members)
				if err := a.benchGroups(ctx, &round, concurrency); err != nil {
					return err
				}
				ours = append(ours, round)
				rr := groupsBenchRound{EventsPerSec: round.EventsPerSec, LoadAvg: strings.TrimSpace(string(load))}
				if natsURL != "" {
					say("round %d: nats, %d members of a durable pull consumer, %d messages", i+1, members, events)
					res, err := natsbench.GroupConsume(ctx, natsURL, members, events, int(payload), batch)
					if err != nil {
						return fmt.Errorf("nats at %s: %w", natsURL, err)
					}
					theirs = append(theirs, res)
					rr.NATSPerSec = res.MessagesPerS
				}
				r.EachRound = append(r.EachRound, rr)
			}
			slices.SortFunc(ours, func(x, y groupsBenchReport) int { return cmp.Compare(x.EventsPerSec, y.EventsPerSec) })
			med := ours[len(ours)/2]
			r.Seconds, r.EventsPerSec, r.Redelivered = med.Seconds, med.EventsPerSec, med.Redelivered
			if len(theirs) > 0 {
				slices.SortFunc(theirs, func(x, y natsbench.Result) int { return cmp.Compare(x.MessagesPerS, y.MessagesPerS) })
				res := theirs[len(theirs)/2]
				r.NATS, r.NATSURL, r.Ratio = &res, natsURL, ratio2(r.EventsPerSec, res.MessagesPerS)
			}
			if jsonOut {
				return a.printJSON(r)
			}
			order := "unordered"
			if ordered {
				order = fmt.Sprintf("ordered by stream, %d keys", keys)
			}
			a.printf("rewind group, %d members, %s: %d events in %.2fs, %.0f events/s (%d redeliveries; median of %d rounds)\n",
				members, order, events, r.Seconds, r.EventsPerSec, r.Redelivered, rounds)
			if r.NATS != nil {
				a.printf("NATS pull consumer, %d members: %.0f messages/s; ratio %.2f\n", members, r.NATS.MessagesPerS, r.Ratio)
			}
			return nil
		},
	}
	f := cmd.Flags()
	config.IntVar(f, &members, "members", 4, "members consuming the group, each with its own connection (connections)")
	config.IntVar(f, &events, "events", 200_000, "events appended and consumed")
	config.IntVar(f, &keys, "keys", 10_000, "streams the events are spread over (the ordering keys with --ordered)")
	config.IntVar(f, &concurrency, "concurrency", 1, "handlers each member runs at once (workers per member)")
	config.IntVar(f, &rounds, "rounds", 3, "rounds of rewind then NATS; the medians are reported (runs)")
	config.IntVar(f, &batch, "fetch-batch", 500, "messages (events) per fetch of each NATS member")
	config.BoolVar(f, &ordered, "ordered", false, "order the group by stream: each key's events in order, one at a time")
	f.StringVar(&natsURL, "nats", "", "URL of a NATS server with JetStream to compare with, such as nats://127.0.0.1:4222")
	f.Var(&payload, "size", "payload per event, in bytes or with a unit (1KiB)")
	atLeast(f, 1, "members", "events", "keys", "concurrency", "fetch-batch", "rounds")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// benchGroups appends the events, creates the group and times the members.
func (a *app) benchGroups(ctx context.Context, r *groupsBenchReport, concurrency int) error {
	c, err := a.newClientWith(client.Config{StreamAppends: true})
	if err != nil {
		return err
	}
	defer c.Close()
	run := fmt.Sprintf("bench-groups-%d", time.Now().UnixNano())
	data := make([]byte, r.Size)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	// Each stream's events in batches of up to 100, 16 appends at once.
	jobs := make(chan int)
	var wg sync.WaitGroup
	var appendErr atomic.Pointer[error]
	for range 16 {
		wg.Go(func() {
			for k := range jobs {
				n := r.Events / r.Keys
				if k < r.Events%r.Keys {
					n++
				}
				for n > 0 {
					b := min(n, 100)
					evs := make([]rewind.Event, b)
					for i := range evs {
						evs[i] = rewind.Event{Type: "BenchEvent", Data: data}
					}
					if _, err := c.Append(ctx, fmt.Sprintf("%s-%d", run, k), rewind.Any, evs...); err != nil {
						appendErr.CompareAndSwap(nil, &err)
						return
					}
					n -= b
				}
			}
		})
	}
	for k := range r.Keys {
		if appendErr.Load() != nil {
			break
		}
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	if p := appendErr.Load(); p != nil {
		return *p
	}
	cfg := consumer.GroupConfig{Name: run, Filter: rewind.Filter{StreamPrefix: run + "-"}}
	if r.Ordered {
		cfg.OrderBy = "stream"
	}
	if _, err := c.CreateGroup(ctx, cfg); err != nil {
		return err
	}
	defer c.DeleteGroup(context.WithoutCancel(ctx), run)

	var handled atomic.Int64
	all := make(chan struct{})
	h := func(context.Context, *consumer.Message) error {
		if handled.Add(1) == int64(r.Events) {
			close(all)
		}
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, r.Members)
	// Each member on a connection of its own, connected before the clock
	// starts, as the NATS members are: what is timed is the consuming.
	members := make([]*client.Client, r.Members)
	for m := range members {
		mc, err := a.newClient()
		if err != nil {
			return err
		}
		defer mc.Close()
		if err := mc.Ping(ctx); err != nil {
			return err
		}
		members[m] = mc
	}
	start := time.Now()
	for m, mc := range members {
		go func() {
			errs <- mc.Consume(cctx, run, h, client.ConsumeOptions{Concurrency: concurrency, Name: fmt.Sprint("bench-", m)})
		}()
	}
	select {
	case <-all:
	case err := <-errs:
		if err == nil {
			err = errors.New("a member stopped before the end")
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	var in consumer.GroupInfo
	for { // the last acks are on their way
		if in, err = c.GroupInfo(ctx, run); err != nil {
			return err
		}
		if in.Acked >= uint64(r.Events) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	r.Seconds = float64(elapsed.Milliseconds()) / 1e3
	r.EventsPerSec = float64(int64(float64(r.Events) / elapsed.Seconds()))
	r.Redelivered = in.Redeliveries
	return nil
}
