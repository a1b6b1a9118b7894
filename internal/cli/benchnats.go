package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/internal/bench"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/internal/natsbench"
)

// natsReport is what `rewind bench nats` prints.
type natsReport struct {
	LoadAvg             string             `json:"load_avg_before"`
	RewindAppend100     serverAppendResult `json:"rewind_append_batch100"`
	NATSPublishDefault  natsbench.Result   `json:"nats_async_publish_default"`
	RewindAppend1       serverAppendResult `json:"rewind_append_batch1"`
	RewindAppend1Stream serverAppendResult `json:"rewind_append_batch1_stream"`
	NATSPublishSync     *natsbench.Result  `json:"nats_async_publish_sync_always"`
	NATSSyncUnsupported string             `json:"nats_sync_always_error,omitempty"`
	RewindSubscribe     serverReadResult   `json:"rewind_subscribe"`
	NATSPullConsume     natsbench.Result   `json:"nats_pull_consume"`
	Ratios              map[string]float64 `json:"ratios"`
	Targets             map[string]bool    `json:"targets_met"`
	NATSServer          string             `json:"nats_server"`
	Config              map[string]any     `json:"config"`
}

func (a *app) benchNATSCmd() *cobra.Command {
	var (
		natsBin                        string
		events, syncEvents, writers, n int
		syncWriters                    int
		payload                        = config.Size(128)
		jsonOut                        bool
	)
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "Compare rewind's server with NATS JetStream on this machine, side by side",
		Long: `Run, one after the other on this machine: durable appends through a rewind
server (--writers writers, batch 100) against NATS JetStream async publishing
with its default settings (no fsync before the ack); single-event durable
appends (batch 1, --sync-writers writers, once with one RPC per append and once
over AppendStream) against NATS async publishing with sync_interval: always
(fsync every message); and a rewind subscription's delivery rate against a NATS
pull consumer with explicit acks. Payloads are --size bytes.

The rewind server is 'rewind serve' started from this binary on a free loopback
port with a fresh data directory under --data-dir (default durability: sync), or
--server if given. NATS runs from --nats-server with a file-storage stream on a
free loopback port. sync_interval needs NATS 2.10 or later; an older binary is
reported and that comparison skipped. Ratios are rewind over NATS.`,
		Example: `  rewind bench nats --data-dir /tmp/cmp --nats-server /usr/sbin/nats-server --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := checkBenchSize(payload); err != nil {
				return err
			}
			size := int(payload)
			if err := os.MkdirAll(a.dataDir, 0o755); err != nil {
				return err
			}
			if a.server == "" {
				stop, err := a.startRewindServer(ctx)
				if err != nil {
					return err
				}
				defer stop()
			}
			load, _ := os.ReadFile("/proc/loadavg")
			r := natsReport{LoadAvg: strings.TrimSpace(string(load)), NATSServer: natsBin,
				Config: map[string]any{"writers": writers, "sync_writers": syncWriters, "events": events,
					"sync_events": syncEvents, "size": size,
					"connections": n}}
			var err error
			say := func(format string, args ...any) {
				if !jsonOut {
					fmt.Fprintf(a.stderr, format+"\n", args...)
				}
			}
			say("rewind: durable appends, %d writers, batch 100, %d events", writers, events)
			if r.RewindAppend100, err = a.benchAppendServer(ctx, bench.AppendConfig{Writers: writers, Batch: 100,
				Events: events, Size: size}, n, false); err != nil {
				return err
			}
			say("nats: async publish, default sync, %d messages", events)
			if r.NATSPublishDefault, r.NATSPullConsume, err = a.natsDefault(ctx, natsBin, writers, events, size, say); err != nil {
				return err
			}
			say("rewind: durable appends, %d writers, batch 1, %d events, one RPC each", syncWriters, syncEvents)
			batch1 := bench.AppendConfig{Writers: syncWriters, Batch: 1, Events: syncEvents, Size: size}
			if r.RewindAppend1, err = a.benchAppendServer(ctx, batch1, n, false); err != nil {
				return err
			}
			say("rewind: durable appends, %d writers, batch 1, %d events, over AppendStream", syncWriters, syncEvents)
			if r.RewindAppend1Stream, err = a.benchAppendServer(ctx, batch1, n, true); err != nil {
				return err
			}
			say("nats: async publish, sync_interval always, %d messages", syncEvents)
			if res, err := a.natsSync(ctx, natsBin, writers, syncEvents, size); errors.Is(err, natsbench.ErrSyncUnsupported) {
				r.NATSSyncUnsupported = err.Error()
			} else if err != nil {
				return err
			} else {
				r.NATSPublishSync = &res
			}
			say("rewind: subscription delivery of %d events", events)
			if r.RewindSubscribe, err = a.benchReadServer(ctx, events, 1000, nil); err != nil {
				return err
			}
			r.ratios()
			if jsonOut {
				return a.printJSON(r)
			}
			a.printReport(r)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&natsBin, "nats-server", "nats-server", "nats-server binary")
	bindEnv(f, "nats-server", "REWIND_NATS_SERVER")
	config.IntVar(f, &events, "events", 1_000_000, "events for the batch-100 appends and the subscription")
	config.IntVar(f, &syncEvents, "sync-events", 30_000, "events for the batch-1 appends and NATS with sync_interval: always")
	config.IntVar(f, &writers, "writers", 16, "concurrent writers (rewind, batch 100) and publishers (NATS)")
	config.IntVar(f, &syncWriters, "sync-writers", 128, "concurrent writers of the batch-1 appends (each waits for its append)")
	config.IntVar(f, &n, "connections", 4, "client connections the rewind writers share")
	atLeast(f, 1, "events", "sync-events", "writers", "sync-writers", "connections")
	f.Var(&payload, "size", "payload per event, in bytes or with a unit (1KiB)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func ratio2(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return float64(int64(a/b*100+0.5)) / 100
}

func (r *natsReport) ratios() {
	r.Ratios = map[string]float64{
		"append_batch100_vs_nats_default_publish": ratio2(r.RewindAppend100.EventsPerSec, r.NATSPublishDefault.MessagesPerS),
		"subscribe_vs_nats_pull_consume":          ratio2(r.RewindSubscribe.EventsPerSec, r.NATSPullConsume.MessagesPerS),
	}
	r.Targets = map[string]bool{
		"append_batch100_at_least_200k_per_sec":   r.RewindAppend100.EventsPerSec >= 200_000,
		"append_batch100_at_least_1.5x_nats":      r.Ratios["append_batch100_vs_nats_default_publish"] >= 1.5,
		"subscribe_at_least_500k_per_sec":         r.RewindSubscribe.EventsPerSec >= 500_000,
		"subscribe_at_least_3x_nats_pull_consume": r.Ratios["subscribe_vs_nats_pull_consume"] >= 3,
	}
	if r.NATSPublishSync != nil {
		r.Ratios["append_batch1_vs_nats_sync_always_publish"] = ratio2(r.RewindAppend1.EventsPerSec, r.NATSPublishSync.MessagesPerS)
		r.Ratios["append_batch1_stream_vs_nats_sync_always_publish"] = ratio2(r.RewindAppend1Stream.EventsPerSec,
			r.NATSPublishSync.MessagesPerS)
		r.Targets["append_batch1_stream_at_least_10x_nats_sync_always"] =
			r.Ratios["append_batch1_stream_vs_nats_sync_always_publish"] >= 10
	}
}

func (a *app) printReport(r natsReport) {
	a.printf("%-52s %14s %14s %8s\n", "measurement (128-byte events)", "rewind /s", "NATS /s", "ratio")
	a.printf("%-52s %14.0f %14.0f %8.2f\n", "durable append, batch 100 vs async publish (default)",
		r.RewindAppend100.EventsPerSec, r.NATSPublishDefault.MessagesPerS, r.Ratios["append_batch100_vs_nats_default_publish"])
	if r.NATSPublishSync != nil {
		a.printf("%-52s %14.0f %14.0f %8.2f\n", "durable append, batch 1 vs async publish (sync always)",
			r.RewindAppend1.EventsPerSec, r.NATSPublishSync.MessagesPerS, r.Ratios["append_batch1_vs_nats_sync_always_publish"])
		a.printf("%-52s %14.0f %14.0f %8.2f\n", "  same, appends over AppendStream",
			r.RewindAppend1Stream.EventsPerSec, r.NATSPublishSync.MessagesPerS,
			r.Ratios["append_batch1_stream_vs_nats_sync_always_publish"])
	} else {
		a.printf("%-52s %14.0f %14s %8s  (%s)\n", "durable append, batch 1 vs async publish (sync always)",
			r.RewindAppend1.EventsPerSec, "-", "-", r.NATSSyncUnsupported)
	}
	a.printf("%-52s %14.0f %14.0f %8.2f\n", "subscription vs pull consumer with explicit acks",
		r.RewindSubscribe.EventsPerSec, r.NATSPullConsume.MessagesPerS, r.Ratios["subscribe_vs_nats_pull_consume"])
	a.printf("load average before the run: %s\n", r.LoadAvg)
}

// natsDefault measures async publishing and then pull consumption against
// a NATS server with default sync settings.
func (a *app) natsDefault(ctx context.Context, bin string, writers, events, size int, say func(string, ...any)) (natsbench.Result, natsbench.Result, error) {
	ns, err := natsbench.Start(ctx, bin, a.dataDir, false)
	if err != nil {
		return natsbench.Result{}, natsbench.Result{}, err
	}
	defer ns.Stop()
	if err := natsbench.CreateStream(ctx, ns.URL); err != nil {
		return natsbench.Result{}, natsbench.Result{}, err
	}
	pub, err := natsbench.PublishAsync(ctx, ns.URL, writers, events, size)
	if err != nil {
		return pub, natsbench.Result{}, err
	}
	say("nats: pull consumer with explicit acks, %d messages", events)
	con, err := natsbench.PullConsume(ctx, ns.URL, events)
	return pub, con, err
}

func (a *app) natsSync(ctx context.Context, bin string, writers, events, size int) (natsbench.Result, error) {
	ns, err := natsbench.Start(ctx, bin, a.dataDir, true)
	if err != nil {
		return natsbench.Result{}, err
	}
	defer ns.Stop()
	if err := natsbench.CreateStream(ctx, ns.URL); err != nil {
		return natsbench.Result{}, err
	}
	return natsbench.PublishAsync(ctx, ns.URL, writers, events, size)
}

// startRewindServer runs `rewind serve` from this binary on a free
// loopback port with a fresh data directory under --data-dir, without
// auth, and points a.server at it.
func (a *app) startRewindServer(ctx context.Context) (func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(a.dataDir, "rewind-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(exe, "serve", "--no-auth", "--addr", addr, "--data-dir", dir, "--log-level", "warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// A pipe, not the null device: a first start refuses to show its
	// admin secret to nobody.
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	url := "http://" + addr
	for i := 0; ; i++ {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("rewind serve exited: %w: %s", err, stderr.String())
		case <-time.After(25 * time.Millisecond):
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		}
		if i == 400 {
			stop()
			return nil, fmt.Errorf("rewind serve did not become ready on %s: %s", addr, stderr.String())
		}
	}
	a.server = url
	return stop, nil
}
