package bench

import (
	"context"
	"fmt"
	"iter"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

// eventType is the type of every event the append benchmark appends.
const eventType = "BenchEvent"

// MaxSize is the largest AppendConfig.Size that fits the store's default
// maximum event size, which bounds an event's data with its envelope
// (stream name, type, id, time), not its data alone.
func MaxSize() int {
	e := rewind.Event{Type: eventType, Data: make([]byte, store.DefaultMaxEventSize)}
	longest := "bench-" + strconv.FormatInt(math.MaxInt64, 10)
	return store.DefaultMaxEventSize - (store.EncodedSize(longest, &e) - store.DefaultMaxEventSize)
}

// Appender is what the append benchmark drives: the embedded store or a
// server client.
type Appender interface {
	Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error)
}

// AppendConfig shapes an append benchmark.
type AppendConfig struct {
	// Writers is the number of concurrent appenders. Defaults to 1.
	Writers int
	// Batch is the number of events per append; each writer waits for each
	// append before the next. Defaults to 1.
	Batch int
	// Events is the total number of events. Defaults to 1,000,000.
	Events int
	// Size is each event's data size in bytes. Defaults to 128.
	Size int
	// Streams is the number of streams written, round-robin. Defaults to Writers.
	Streams int
	// Progress, if set, is called now and then with the events appended so far.
	Progress func(done int64)
}

func (c *AppendConfig) defaults() error {
	if c.Writers == 0 {
		c.Writers = 1
	}
	if c.Batch == 0 {
		c.Batch = 1
	}
	if c.Events == 0 {
		c.Events = 1_000_000
	}
	if c.Size == 0 {
		c.Size = 128
	}
	if c.Streams == 0 {
		c.Streams = c.Writers
	}
	switch {
	case c.Writers < 0 || c.Batch < 0 || c.Events < 0 || c.Size < 0 || c.Streams < 0:
		return &rewind.ValidationError{Field: "benchmark shape", Reason: "writers, batch, events, size and streams must be positive"}
	case c.Events < c.Writers*c.Batch:
		return &rewind.ValidationError{Field: "--events", Value: fmt.Sprint(c.Events),
			Reason: fmt.Sprintf("must be at least writers × batch = %d", c.Writers*c.Batch)}
	}
	return nil
}

// AppendResult is what the append benchmark measured.
type AppendResult struct {
	Events       int64   `json:"events"`
	Writers      int     `json:"writers"`
	Batch        int     `json:"batch"`
	Size         int     `json:"size"`
	Streams      int     `json:"streams"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"`
	P50Micros    float64 `json:"p50_us"`
	P99Micros    float64 `json:"p99_us"`
	PeakRSSMB    float64 `json:"peak_rss_mb"`
}

// Append runs the append benchmark against app.
func Append(ctx context.Context, app Appender, cfg AppendConfig) (AppendResult, error) {
	if err := cfg.defaults(); err != nil {
		return AppendResult{}, err
	}
	data := make([]byte, cfg.Size)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	if cfg.Size >= 2 { // a JSON string, so the default content type holds
		data[0], data[cfg.Size-1] = '"', '"'
	}
	appends := cfg.Events / cfg.Batch
	var next, done atomic.Int64
	lats := make([]Latencies, cfg.Writers)
	errs := make([]error, cfg.Writers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.Writers {
		wg.Go(func() {
			events := make([]rewind.Event, cfg.Batch)
			for i := range events {
				events[i] = rewind.Event{Type: eventType, Data: data}
			}
			for {
				n := next.Add(1) - 1
				if n >= int64(appends) {
					return
				}
				stream := "bench-" + strconv.FormatInt(n%int64(cfg.Streams), 10)
				t0 := time.Now()
				if _, err := app.Append(ctx, stream, rewind.Any, events...); err != nil {
					errs[w] = fmt.Errorf("append %d: %w", n, err)
					cancel()
					return
				}
				lats[w].Add(time.Since(t0))
				d := done.Add(int64(cfg.Batch))
				if cfg.Progress != nil && d%int64(max(cfg.Batch, 10_000)) < int64(cfg.Batch) {
					cfg.Progress(d)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return AppendResult{}, err
		}
	}
	all := Latencies{Cap: 1 << 20}
	for i := range lats {
		all.Merge(&lats[i])
	}
	n := done.Load()
	peak, _ := PeakRSSMB()
	return AppendResult{
		Events: n, Writers: cfg.Writers, Batch: cfg.Batch, Size: cfg.Size, Streams: cfg.Streams,
		Seconds:      round(elapsed.Seconds(), 3),
		EventsPerSec: round(float64(n)/elapsed.Seconds(), 0),
		MBPerSec:     round(float64(n)*float64(cfg.Size)/1e6/elapsed.Seconds(), 1),
		P50Micros:    round(all.Percentile(50), 1),
		P99Micros:    round(all.Percentile(99), 1),
		PeakRSSMB:    round(peak, 1),
	}, nil
}

// ReplayResult is what a whole-log replay measured.
type ReplayResult struct {
	Events       int64   `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"`
}

// Replay consumes seq, touching every event's data, and times it.
func Replay(seq iter.Seq2[*rewind.RecordedEvent, error]) (ReplayResult, error) {
	var n, bytes int64
	var sink byte
	start := time.Now()
	for ev, err := range seq {
		if err != nil {
			return ReplayResult{}, err
		}
		n++
		bytes += int64(len(ev.Data))
		if len(ev.Data) > 0 {
			sink ^= ev.Data[len(ev.Data)-1]
		}
	}
	elapsed := time.Since(start)
	_ = sink
	return ReplayResult{
		Events: n, Seconds: round(elapsed.Seconds(), 3),
		EventsPerSec: round(float64(n)/elapsed.Seconds(), 0),
		MBPerSec:     round(float64(bytes)/1e6/elapsed.Seconds(), 1),
	}, nil
}
