package consumer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// BenchmarkAtLeastOnce4Members delivers b.N events, appended beforehand,
// to 4 in-process members that fetch in batches and ack each event, with
// the group committing in the background (the default 100 ms). The
// reference, measured in the same run, is one plain subscription reading
// the same events: events_per_sec and the ratio to it are reported.
//
//	go test -run '^$' -bench AtLeastOnce -benchtime 200000x ./consumer/
func BenchmarkAtLeastOnce4Members(b *testing.B) {
	for _, orderBy := range []string{"", "stream"} {
		b.Run("order="+orderBy, func(b *testing.B) { benchDeliver(b, orderBy, false) })
	}
	b.Run("order=/acks=batched", func(b *testing.B) { benchDeliver(b, "", true) })
}

func benchDeliver(b *testing.B, orderBy string, batchAcks bool) {
	bu := setup(b, Config{Now: time.Now})
	// 10,000 streams (the keys, when ordered), each written in one append.
	const keys = 10_000
	batch := max(1, b.N/keys)
	for i := 0; i < b.N; i += batch {
		evs := make([]rewind.Event, min(batch, b.N-i))
		for j := range evs {
			evs[j] = rewind.Event{Type: "T", Data: []byte(`{"amount":42}`)}
		}
		if _, err := bu.store.Append(bg, fmt.Sprintf("acct-%d", (i/batch)%keys), rewind.Any, evs...); err != nil {
			b.Fatal(err)
		}
	}
	ref := time.Now()
	sub, err := bu.store.Subscribe(bg, rewind.SubscribeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		if _, err := sub.Next(bg); err != nil {
			b.Fatal(err)
		}
	}
	sub.Close()
	refRate := float64(b.N) / time.Since(ref).Seconds()

	b.ResetTimer()
	start := time.Now()
	if _, err := bu.engine.CreateGroup(bg, GroupConfig{Name: "bench", OrderBy: orderBy}); err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		m, err := bu.engine.Join(bg, "bench", MemberOptions{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				ds, err := m.Fetch(ctx, 256)
				if err != nil {
					return
				}
				if batchAcks {
					ids := make([]DeliveryID, len(ds))
					for i, d := range ds {
						ids[i] = d.ID
					}
					if err := m.AckAll(ctx, ids); err != nil {
						b.Error(err)
						return
					}
				}
				for _, d := range ds {
					if batchAcks {
						break
					}
					if err := m.Ack(ctx, d.ID); err != nil {
						b.Error(err)
						return
					}
				}
				if done.Add(int64(len(ds))) >= int64(b.N) {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	if err := bu.engine.Flush(bg); err != nil {
		b.Fatal(err)
	}
	rate := float64(b.N) / time.Since(start).Seconds()
	b.StopTimer()
	b.ReportMetric(rate, "events_per_sec")
	b.ReportMetric(rate/refRate, "ratio_to_subscription")
}
