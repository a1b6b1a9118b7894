package server_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/server"
)

// BenchmarkAppendThroughServer measures durable appends of events of 128
// bytes through the API (b.N events): 16 writers appending 100 events at
// a time, and 64 writers appending one event at a time.
func BenchmarkAppendThroughServer(b *testing.B) {
	b.Run("writers=16/batch=100", func(b *testing.B) { benchAppend(b, 16, 100) })
	b.Run("writers=64/batch=1", func(b *testing.B) { benchAppend(b, 64, 1) })
}

func benchAppend(b *testing.B, writers, batch int) {
	_, c, _ := setupB(b, server.Config{})
	data := make([]byte, 128)
	for i := range data {
		data[i] = 'a'
	}
	batches := max(b.N/batch, writers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	b.SetBytes(int64(128 * batch))
	b.ResetTimer()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := make([]rewind.Event, batch)
			for i := range evs {
				evs[i] = rewind.Event{Type: "Bench", Data: data}
			}
			for {
				mu.Lock()
				n := next
				next++
				mu.Unlock()
				if n >= batches {
					return
				}
				if _, err := c.Append(ctx, fmt.Sprintf("s-%d", w), rewind.Any, evs...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(batches*batch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSubscribeThroughServer measures subscription delivery from the
// start of a log of b.N events of 128 bytes.
func BenchmarkSubscribeThroughServer(b *testing.B) {
	_, c, _ := setupB(b, server.Config{})
	data := make([]byte, 128)
	evs := make([]rewind.Event, 1000)
	for i := range evs {
		evs[i] = rewind.Event{Type: "Bench", Data: data}
	}
	for n := 0; n < b.N; n += len(evs) {
		if _, err := c.Append(ctx, fmt.Sprintf("s-%d", n%64), rewind.Any, evs[:min(len(evs), b.N-n)]...); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(128)
	b.ResetTimer()
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	for range b.N {
		if _, err := sub.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
