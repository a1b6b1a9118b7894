package store

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// BenchmarkReadAll measures whole-log replay, warm: checksums and
// envelope decoding included. Compare with `rewind bench disk`'s read_rps.
func BenchmarkReadAll(b *testing.B) {
	const events = 500_000
	dir := b.TempDir()
	s, err := Open(dir, Config{Log: eventlog.Config{Durability: eventlog.None}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 128)
	batch := make([]rewind.Event, 1000)
	for i := range batch {
		batch[i] = rewind.Event{Type: "BenchEvent", Data: data}
	}
	for i := 0; i < events/len(batch); i++ {
		if _, err := s.Append(context.Background(), fmt.Sprintf("bench-%d", i%100), rewind.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for ev, err := range s.ReadAll(context.Background(), rewind.ReadAllOptions{}) {
			if err != nil {
				b.Fatal(err)
			}
			n += len(ev.Data) & 1
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
