package replay_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/bench"
	"github.com/rewindhq/rewind/replay"
)

const benchEvents = 500_000

// BenchmarkRun measures replay.Run of the whole log into a counting
// handler, warm; BenchmarkRawRead the raw read+CRC loop of `rewind bench
// disk` over as many 128-byte frames. Compare their events/s, or, on a
// machine other processes share, their cpu-ns/event (the process's CPU
// time per event, which their load does not inflate as much).
func BenchmarkRun(b *testing.B) {
	s := open(b, nil)
	data := make([]byte, 128)
	batch := make([]rewind.Event, 1000)
	for i := range batch {
		batch[i] = rewind.Event{Type: "BenchEvent", Data: data}
	}
	for i := range benchEvents / len(batch) {
		if _, err := s.Append(ctx, fmt.Sprintf("bench-%d", i%1000), rewind.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		digest bool
		size   int
	}{{false, 16}, {false, 64}, {false, 256}, {true, 0}} {
		digest := c.digest
		b.Run(fmt.Sprintf("digest=%v/batch=%d", digest, c.size), func(b *testing.B) {
			n := 0
			cpu := processCPU()
			for b.Loop() {
				if _, err := replay.Run(ctx, s, replay.Window{}, func(_ context.Context, ev *rewind.RecordedEvent) error {
					n += len(ev.Data) & 1
					n++
					return nil
				}, replay.Options{Digest: digest, BatchSize: c.size}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(processCPU()-cpu)/float64(n), "cpu-ns/event")
		})
	}
}

func BenchmarkRawRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "frames")
	if err := bench.WriteFrames(path, benchEvents, 128); err != nil {
		b.Fatal(err)
	}
	cpu := processCPU()
	for b.Loop() {
		if _, err := bench.ReadFramesRPS(path, benchEvents); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*benchEvents/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(processCPU()-cpu)/(float64(b.N)*benchEvents), "cpu-ns/event")
}
