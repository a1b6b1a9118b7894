package store

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// readBatches collects every event a cursor yields, cloned.
func readBatches(t *testing.T, s *Store, opts rewind.BatchReadOptions, size int) []rewind.RecordedEvent {
	t.Helper()
	c, err := s.ReadBatches(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []rewind.RecordedEvent
	buf := make([]rewind.RecordedEvent, 0, size)
	for {
		batch, err := c.NextBatch(ctx, buf)
		for i := range batch {
			out = append(out, batch[i].Clone())
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			t.Fatal("an empty batch without io.EOF")
		}
	}
}

func TestReadBatchesMatchesReadAll(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	for i := range 50 {
		e := ev([]string{"Placed", "Paid"}[i%2], fmt.Sprintf(`{"n":%d}`, i))
		if i%3 == 0 {
			e.Metadata = map[string]string{"correlation-id": fmt.Sprint(i), "actor": "ann"}
		}
		if _, err := s.Append(ctx, fmt.Sprintf("%s-%d", []string{"orders", "users"}[i%5/4], i%7), rewind.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteStream(ctx, "orders-3", rewind.Any); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts rewind.BatchReadOptions
	}{
		{"all", rewind.BatchReadOptions{}},
		{"from to", rewind.BatchReadOptions{From: 7, To: 33}},
		{"to beyond the end", rewind.BatchReadOptions{From: 40, To: 1000}},
		{"prefix and type", rewind.BatchReadOptions{From: 3, To: 45, Filter: rewind.Filter{StreamPrefix: "users-", Types: []string{"Paid"}}}},
		{"one position", rewind.BatchReadOptions{From: 12, To: 12}},
		{"from beyond the end", rewind.BatchReadOptions{From: 52}},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 3, 256} {
			t.Run(fmt.Sprintf("%s/batch %d", tc.name, size), func(t *testing.T) {
				got := readBatches(t, s, tc.opts, size)
				var want []rewind.RecordedEvent
				last := tc.opts.To
				if last == 0 {
					last = 51
				}
				for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{From: min(tc.opts.From, 52), Filter: tc.opts.Filter}) {
					if err != nil {
						t.Fatal(err)
					}
					if ev.Position <= last {
						want = append(want, ev.Clone())
					}
				}
				if len(got) != len(want) {
					t.Fatalf("got %d events, want %d", len(got), len(want))
				}
				for i := range got {
					g, w := fmt.Sprintf("%+v", got[i]), fmt.Sprintf("%+v", want[i])
					if g != w {
						t.Fatalf("event %d:\n got %s\nwant %s", i, g, w)
					}
				}
			})
		}
	}
}

// A batch read decodes each event as a single read does (ReadStream
// decodes without the batch path's interned strings, reused metadata maps
// and recorded-at time kept across the events of one append): over
// appends of several events, with and without metadata, occurred-at,
// content types, schema versions and names too long for one-byte lengths.
func TestReadBatchesDecodeAsReadStream(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	long := strings.Repeat("n", 140)
	for i := range 40 {
		stream := fmt.Sprintf("orders-%d", i%6)
		if i%9 == 4 {
			stream += "-" + long
		}
		batch := make([]rewind.Event, 1+i%4)
		for j := range batch {
			e := ev([]string{"Placed", "Paid", "Shipped-" + long}[(i+j)%3], fmt.Sprintf(`{"i":%d,"j":%d}`, i, j))
			if (i+j)%4 == 1 {
				e.Metadata = map[string]string{"correlation-id": fmt.Sprint(i), "actor": "ann"}
			}
			if (i+j)%5 == 2 {
				e.OccurredAt = time.Unix(1700000000+int64(i), int64(j))
			}
			if (i+j)%7 == 3 {
				e.ContentType, e.SchemaVersion = "text/plain", 200
			}
			batch[j] = e
		}
		if _, err := s.Append(ctx, stream, rewind.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int{1, 5, 64} {
		got := readBatches(t, s, rewind.BatchReadOptions{}, size)
		if len(got) != int(s.Info().LastPosition) {
			t.Fatalf("batch %d: %d events, want %d", size, len(got), s.Info().LastPosition)
		}
		for _, e := range got {
			one, err := s.ReadStream(ctx, e.Stream, rewind.ReadStreamOptions{From: e.Version, Limit: 1})
			if err != nil || len(one) != 1 {
				t.Fatalf("read %s@%d: %v", e.Stream, e.Version, err)
			}
			if g, w := fmt.Sprintf("%+v", e), fmt.Sprintf("%+v", one[0]); g != w {
				t.Fatalf("batch %d, position %d:\n got %s\nwant %s", size, e.Position, g, w)
			}
		}
	}
}

func TestReadBatchesBadInput(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	if _, err := s.Append(ctx, "a-1", rewind.Any, ev("Placed", `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBatches(ctx, rewind.BatchReadOptions{Filter: rewind.Filter{Types: []string{"bad type\n"}}}); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("bad filter type: %v", err)
	}
	c, err := s.ReadBatches(ctx, rewind.BatchReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.NextBatch(ctx, nil); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("a buffer without capacity: %v", err)
	}
}

// TestReadBatchesDoesNotAllocatePerEvent is the fast path's promise: in the
// steady state a batch of up to 256 events costs no allocation at all.
func TestReadBatchesDoesNotAllocatePerEvent(t *testing.T) {
	s, _ := setup(t, Config{})
	batch := make([]rewind.Event, 100)
	for i := range batch {
		batch[i] = rewind.Event{Type: "BenchEvent", Data: make([]byte, 128)}
	}
	for i := range 200 {
		if _, err := s.Append(ctx, fmt.Sprintf("bench-%d", i%10), rewind.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.ReadBatches(ctx, rewind.BatchReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]rewind.RecordedEvent, 0, 256)
	for range 4 { // warm up: the interner learns the names
		if buf, err = c.NextBatch(ctx, buf); err != nil {
			t.Fatal(err)
		}
	}
	events := 0
	allocs := testing.AllocsPerRun(50, func() {
		if buf, err = c.NextBatch(ctx, buf); err != nil {
			t.Fatal(err)
		}
		events += len(buf)
	})
	if events < 51*200 { // a batch ends early where the read buffer is refilled
		t.Fatalf("read %d events in 51 batches of up to 256", events)
	}
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch of 256 events, want 0", allocs)
	}
}
