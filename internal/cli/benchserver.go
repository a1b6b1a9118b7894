package cli

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/internal/bench"
)

// The --server mode of `rewind bench append` and `rewind bench read`: the
// same measurements through a server's API.

// clientPool spreads appends over several clients, hence connections.
type clientPool struct {
	cs   []*client.Client
	next atomic.Uint64
}

func (a *app) newClientPool(n int, streamAppends bool) (*clientPool, error) {
	p := &clientPool{}
	for range max(n, 1) {
		c, err := a.newClientWith(client.Config{StreamAppends: streamAppends})
		if err != nil {
			p.Close()
			return nil, err
		}
		p.cs = append(p.cs, c)
	}
	return p, nil
}

func (p *clientPool) Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error) {
	c := p.cs[p.next.Add(1)%uint64(len(p.cs))]
	return c.Append(ctx, stream, expected, events...)
}

func (p *clientPool) Close() {
	for _, c := range p.cs {
		c.Close()
	}
}

// serverMetrics reads the server's group-commit and fsync counters from
// /metrics, which needs no token.
type serverMetrics struct{ groupSum, groupCount, fsyncSum, fsyncCount float64 }

func scrapeMetrics(ctx context.Context, base string) (serverMetrics, error) {
	var m serverMetrics
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(base, "/")+"/metrics", nil)
	if err != nil {
		return m, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "rewind_group_commit_events_sum":
			m.groupSum = v
		case "rewind_group_commit_events_count":
			m.groupCount = v
		case "rewind_fsync_duration_seconds_sum":
			m.fsyncSum = v
		case "rewind_fsync_duration_seconds_count":
			m.fsyncCount = v
		}
	}
	return m, sc.Err()
}

// serverAppendResult is what `rewind bench append --server` prints: the
// local benchmark's fields, from the server's point of view.
type serverAppendResult struct {
	bench.AppendResult
	Durability    string  `json:"durability"`
	GroupSize     float64 `json:"mean_group_commit_events"`
	FsyncMicros   float64 `json:"mean_fsync_us"`
	Server        string  `json:"server"`
	Connections   int     `json:"connections"`
	StreamAppends bool    `json:"stream_appends"`
}

func (a *app) benchAppendServer(ctx context.Context, cfg bench.AppendConfig, conns int, streamAppends bool) (serverAppendResult, error) {
	pool, err := a.newClientPool(conns, streamAppends)
	if err != nil {
		return serverAppendResult{}, err
	}
	defer pool.Close()
	info, err := pool.cs[0].ServerInfo(ctx)
	if err != nil {
		return serverAppendResult{}, err
	}
	before, _ := scrapeMetrics(ctx, a.server)
	res, err := bench.Append(ctx, pool, cfg)
	if err != nil {
		return serverAppendResult{}, err
	}
	after, _ := scrapeMetrics(ctx, a.server)
	out := serverAppendResult{AppendResult: res, Durability: info.Durability, Server: a.server, Connections: len(pool.cs),
		StreamAppends: streamAppends}
	if n := after.groupCount - before.groupCount; n > 0 {
		out.GroupSize = float64(int64((after.groupSum-before.groupSum)/n*10+0.5)) / 10
	}
	if n := after.fsyncCount - before.fsyncCount; n > 0 {
		out.FsyncMicros = float64(int64((after.fsyncSum-before.fsyncSum)/n*1e7+0.5)) / 10
	}
	return out, nil
}

// serverReadResult is what `rewind bench read --server` prints.
type serverReadResult struct {
	bench.ReplayResult
	FillSeconds float64 `json:"fill_seconds"`
	Server      string  `json:"server"`
}

// benchReadServer fills the server up to events events if it holds fewer,
// then times a subscription from the start delivering events events.
func (a *app) benchReadServer(ctx context.Context, events, streams int, progress func(int64)) (serverReadResult, error) {
	c, err := a.newClient()
	if err != nil {
		return serverReadResult{}, err
	}
	defer c.Close()
	info, err := c.ServerInfo(ctx)
	if err != nil {
		return serverReadResult{}, err
	}
	out := serverReadResult{Server: a.server}
	if have := int(info.LastPosition) - int(info.FirstPosition) + 1; have < events {
		pool, err := a.newClientPool(4, true)
		if err != nil {
			return out, err
		}
		start := time.Now()
		batch := max(1, min(1000, (events-have)/streams))
		_, err = bench.Append(ctx, pool, bench.AppendConfig{Writers: 8, Batch: batch, Events: events - have, Streams: streams})
		pool.Close()
		if err != nil {
			return out, err
		}
		out.FillSeconds = float64(time.Since(start).Milliseconds()) / 1e3
	}
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		return out, err
	}
	defer sub.Close()
	seq := func(yield func(*rewind.RecordedEvent, error) bool) {
		for n := 0; n < events; n++ {
			ev, err := sub.Next(ctx)
			if !yield(ev, err) || err != nil {
				return
			}
			if progress != nil && n%100_000 == 0 {
				progress(int64(n))
			}
		}
	}
	if out.ReplayResult, err = bench.Replay(seq); err != nil {
		return out, fmt.Errorf("subscription: %w", err)
	}
	return out, nil
}

func (a *app) runBenchAppendServer(cmd *cobra.Command, cfg bench.AppendConfig, conns int, streamAppends, jsonOut bool) error {
	bar := a.newProgress("append", "events", int64(cfg.Events))
	cfg.Progress = bar.set
	res, err := a.benchAppendServer(cmd.Context(), cfg, conns, streamAppends)
	bar.done(err == nil)
	if err != nil {
		return err
	}
	if jsonOut {
		return a.printJSON(res)
	}
	a.printf("%d events through %s in %.2fs: %.0f events/s, %.1f MB/s; append latency p50 %.0fµs p99 %.0fµs (%s, %d writers, batch %d, %d bytes)\n",
		res.Events, res.Server, res.Seconds, res.EventsPerSec, res.MBPerSec, res.P50Micros, res.P99Micros, res.Durability,
		res.Writers, res.Batch, res.Size)
	return nil
}

func (a *app) runBenchReadServer(cmd *cobra.Command, events, streams int, jsonOut bool) error {
	bar := a.newProgress("subscribe", "events", int64(events))
	res, err := a.benchReadServer(cmd.Context(), events, streams, bar.set)
	bar.done(err == nil)
	if err != nil {
		return err
	}
	if jsonOut {
		return a.printJSON(res)
	}
	a.printf("a subscription delivered %d events from %s in %.2fs: %.0f events/s, %.1f MB/s\n",
		res.Events, res.Server, res.Seconds, res.EventsPerSec, res.MBPerSec)
	return nil
}
