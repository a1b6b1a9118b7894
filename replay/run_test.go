package replay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay"
)

// projection is a deterministic read model: totals per stream and type and
// the ordered list of the events it saw, serialised as JSON.
type projection struct {
	Totals map[string]int `json:"totals"`
	Seen   []string       `json:"seen"`
}

func (p *projection) handle(_ context.Context, ev *rewind.RecordedEvent) error {
	if p.Totals == nil {
		p.Totals = map[string]int{}
	}
	p.Totals[ev.Stream+"/"+ev.Type]++
	p.Seen = append(p.Seen, fmt.Sprintf("%d %s %s v%d %s %s", ev.Position, ev.ID, ev.Stream, ev.Version, ev.Type, ev.Data))
	return nil
}

func project(t *testing.T, s rewind.Store, w replay.Window) ([]byte, replay.Result) {
	t.Helper()
	var p projection
	res, err := replay.Run(ctx, s, w, p.handle, replay.Options{Digest: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(&p) // map keys sorted: same state, same bytes
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

func TestDeterministicWhileAppendsContinue(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	w := replay.Window{From: replay.AtPosition(5), To: replay.AtPosition(50), StreamPrefix: "orders-"}
	first, res1 := project(t, s, w)
	if res1.Events == 0 || len(res1.Digest) != 64 {
		t.Fatalf("the first replay delivered %d events, digest %q", res1.Events, res1.Digest)
	}
	// The fallback path over ReadAll delivers the same bytes.
	if out, res := project(t, generic(s), w); string(out) != string(first) || res.Digest != res1.Digest {
		t.Fatalf("the generic path differs:\n%s\n%s", out, first)
	}

	// Appends continue, to the same streams, while the window and a
	// window open at the end are replayed again and again.
	stop, started := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			select {
			case <-started:
			default:
				close(started)
			}
		}()
		// Bounded: a replay of the open window reads to the head, and
		// an appender unbounded outruns a slow (race-detector) replay.
		for i := range 3000 {
			select {
			case <-stop:
				return
			default:
			}
			b.clock.advance(time.Millisecond)
			if _, err := s.Append(ctx, "orders-1", rewind.Any, rewind.Event{Type: "Placed", Data: fmt.Appendf(nil, `{"late":%d}`, i)}); err != nil {
				t.Error(err)
				return
			}
			if i == 0 {
				close(started)
			}
		}
	}()
	// The replays begin once the appends have: on a busy machine the 20
	// rounds could end before the appender's first append.
	<-started
	for range 20 {
		out, res := project(t, s, w)
		if string(out) != string(first) || res != res1 {
			t.Fatalf("a replay during appends differs: %+v against %+v", res, res1)
		}
		// A window without To stops where the log stood when it started;
		// replaying its resolved positions again gives the same digest.
		open := replay.Window{From: replay.AtPosition(40), StreamPrefix: "orders-"}
		_, r1 := project(t, s, open)
		_, r2 := project(t, s, replay.Window{From: replay.AtPosition(r1.From), To: replay.AtPosition(r1.To), StreamPrefix: "orders-"})
		if r1.Digest != r2.Digest || r1.Events != r2.Events || r1.LastPosition > r1.To {
			t.Fatalf("an open window %+v replayed by position %+v", r1, r2)
		}
	}
	close(stop)
	wg.Wait()
	if p, _ := s.LastPosition(ctx); p <= 61 {
		t.Fatalf("no append ran during the replays (last position %d)", p)
	}
	// A different window has a different digest.
	if _, res := project(t, s, replay.Window{From: replay.AtPosition(5), To: replay.AtPosition(49), StreamPrefix: "orders-"}); res.Digest == res1.Digest {
		t.Fatal("two different windows have the same digest")
	}
}

// A handler's error or ErrStop ends the replay at its event, wherever the
// event falls in a batch, and the result counts the events taken before
// it (and the stopping one), with or without the digest.
func TestHandlerErrorAndStop(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	boom := errors.New("boom")
	for _, opts := range []replay.Options{{}, {BatchSize: 1}, {BatchSize: 5}, {Digest: true}, {Digest: true, BatchSize: 5}} {
		t.Run(fmt.Sprintf("digest=%v/batch=%d", opts.Digest, opts.BatchSize), func(t *testing.T) {
			n := 0
			res, err := replay.Run(ctx, s, replay.Window{}, func(_ context.Context, ev *rewind.RecordedEvent) error {
				if n++; ev.Position == 7 {
					return boom
				}
				return nil
			}, opts)
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), "position 7") {
				t.Fatalf("handler error: %v", err)
			}
			if res.Events != 6 || res.FirstPosition != 1 || res.LastPosition != 6 || n != 7 {
				t.Fatalf("after a failure at 7: %+v, %d calls", res, n)
			}
			res, err = replay.Run(ctx, s, replay.Window{}, func(_ context.Context, ev *rewind.RecordedEvent) error {
				return boom
			}, opts)
			if !errors.Is(err, boom) || res.Events != 0 || res.FirstPosition != 0 || res.LastPosition != 0 {
				t.Fatalf("a failure at the first event: %+v, %v", res, err)
			}
			res, err = replay.Run(ctx, s, replay.Window{}, func(_ context.Context, ev *rewind.RecordedEvent) error {
				if ev.Position == 4 {
					return replay.ErrStop
				}
				return nil
			}, opts)
			if err != nil || !res.Stopped || res.Events != 4 || res.FirstPosition != 1 || res.LastPosition != 4 {
				t.Fatalf("stop at 4: %+v, %v", res, err)
			}
			if opts.Digest {
				// The digest of a replay stopped at 4 is that of the window 1..4.
				whole, err := replay.Run(ctx, s, replay.Window{To: replay.AtPosition(4)}, func(context.Context, *rewind.RecordedEvent) error { return nil }, replay.Options{Digest: true})
				if err != nil || whole.Digest != res.Digest || res.Digest == "" {
					t.Fatalf("digest stopped at 4 %q, of 1..4 %q (%v)", res.Digest, whole.Digest, err)
				}
			}
		})
	}
}

func TestIntoStoreIsIdempotent(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	dst := open(t, nil)
	for range 2 {
		res, err := replay.Run(ctx, s, replay.Window{}, replay.IntoStore(dst), replay.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Events != int64(len(b.events)) {
			t.Fatalf("delivered %d events", res.Events)
		}
		// Everything but the delete is copied, once, in order.
		if p, _ := dst.LastPosition(ctx); p != rewind.Position(len(b.events)-1) {
			t.Fatalf("the target holds %d events, want %d", p, len(b.events)-1)
		}
	}
	var got []string
	for ev, err := range dst.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(ev.ID, ev.Stream, ev.Version, ev.Type, string(ev.Data), ev.Metadata))
	}
	var want []string
	for _, ev := range b.events[:len(b.events)-1] {
		want = append(want, fmt.Sprint(ev.ID, ev.Stream, ev.Version, ev.Type, string(ev.Data), ev.Metadata))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the target holds\n%v\nwant\n%v", got, want)
	}
}

func TestPacingSchedule(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	rec := []time.Time{t0, t0.Add(time.Second), t0.Add(3 * time.Second), t0.Add(3 * time.Second), t0.Add(10 * time.Second)}
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	cases := []struct {
		name   string
		p      replay.Pacing
		handle time.Duration // time the handler takes per event
		want   []time.Duration
	}{
		// Original timing: wait out each gap.
		{"speed 1", replay.Pacing{Speed: 1}, 0, ms(0, 1000, 2000, 0, 7000)},
		{"speed 2", replay.Pacing{Speed: 2}, 0, ms(0, 500, 1000, 0, 3500)},
		{"speed 0.5", replay.Pacing{Speed: 0.5}, 0, ms(0, 2000, 4000, 0, 14000)},
		// A handler taking 1.2 s falls behind: no wait until it is ahead
		// of the schedule again, and no burst beyond it.
		{"slow handler", replay.Pacing{Speed: 1}, 1200 * time.Millisecond, ms(0, 0, 600, 0, 4600)},
		{"rate 10/s", replay.Pacing{Rate: 10}, 0, ms(0, 100, 100, 100, 100)},
		{"rate 10/s, burst 3", replay.Pacing{Rate: 10, Burst: 3}, 0, ms(0, 0, 0, 100, 100)},
		{"rate with a slow handler", replay.Pacing{Rate: 10}, 50 * time.Millisecond, ms(0, 50, 50, 50, 50)},
		// A wait past time.Duration's range is the longest wait, not none:
		// converting it overflowed to a negative duration.
		{"speed whose waits overflow", replay.Pacing{Speed: 1e-11}, 0, []time.Duration{0, math.MaxInt64, 0, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := replay.Schedule(tc.p, rec, tc.handle); !slices.Equal(got, tc.want) {
				t.Fatalf("waits %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPacedRunDeliversTheWindow(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	// Speed so high that the 60 s of the log take microseconds: the
	// pacing path delivers the same events as the fast one.
	for _, p := range []replay.Pacing{{Speed: 1e9}, {Rate: 1e9, Burst: 100}} {
		got, res := collect(t, s, replay.Window{To: replay.AtPosition(40)}, replay.Options{Pacing: p})
		if !slices.Equal(positions(got), positions(b.events[:40])) || res.Events != 40 {
			t.Fatalf("pacing %+v delivered %v", p, positions(got))
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := replay.Run(cctx, s, replay.Window{}, func(context.Context, *rewind.RecordedEvent) error { return nil },
		replay.Options{Pacing: replay.Pacing{Speed: 1}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled paced replay: %v", err)
	}
}
