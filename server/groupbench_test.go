package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/server"
)

// BenchmarkGroupConsume delivers b.N events of 1,000 streams to 4 members
// of a group through the server (each its own client and connection),
// acking each explicitly over the Consume stream, and reports
// events_per_sec. `rewind bench groups` measures the same from the
// command line, with NATS beside it.
func BenchmarkGroupConsume(b *testing.B) {
	for _, ordered := range []bool{false, true} {
		b.Run(fmt.Sprintf("ordered=%t", ordered), func(b *testing.B) { benchGroupConsume(b, ordered) })
	}
}

func benchGroupConsume(b *testing.B, ordered bool) {
	_, c, bb := setupB(b, server.Config{})
	data := make([]byte, 128)
	evs := make([]rewind.Event, 100)
	for i := range evs {
		evs[i] = rewind.Event{Type: "Bench", Data: data}
	}
	n := max(b.N, 1000) / 100 * 100
	for i := 0; i < n; i += 100 {
		if _, err := c.Append(ctx, fmt.Sprint("s-", i/100%1000), rewind.Any, evs...); err != nil {
			b.Fatal(err)
		}
	}
	cfg := consumer.GroupConfig{Name: "g"}
	if ordered {
		cfg.OrderBy = "stream"
	}
	if _, err := c.CreateGroup(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	all := make(chan struct{})
	h := func(context.Context, *consumer.Message) error {
		if handled.Add(1) == int64(n) {
			close(all)
		}
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	for range 4 {
		mc, err := client.New(bb.url, client.Config{Token: bb.admin})
		if err != nil {
			b.Fatal(err)
		}
		defer mc.Close()
		go mc.Consume(cctx, "g", h, client.ConsumeOptions{})
	}
	<-all
	for {
		in, err := c.GroupInfo(ctx, "g")
		if err != nil {
			b.Fatal(err)
		}
		if in.Acked >= uint64(n) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events_per_sec")
}
