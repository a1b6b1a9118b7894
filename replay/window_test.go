package replay_test

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay"
)

func TestWindowBounds(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	last := b.events[len(b.events)-1].Position // 61: the delete of orders-2
	at := func(p rewind.Position) time.Time { return b.events[p-1].RecordedAt }
	cases := []struct {
		name     string
		w        replay.Window
		keep     func(*rewind.RecordedEvent) bool
		from, to rewind.Position // Result's resolved window
	}{
		{"whole log", replay.Window{}, func(*rewind.RecordedEvent) bool { return true }, 1, last},
		{"positions inclusive", replay.Window{From: replay.AtPosition(3), To: replay.AtPosition(7)},
			func(e *rewind.RecordedEvent) bool { return e.Position >= 3 && e.Position <= 7 }, 3, 7},
		{"one position", replay.Window{From: replay.AtPosition(5), To: replay.AtPosition(5)},
			func(e *rewind.RecordedEvent) bool { return e.Position == 5 }, 5, 5},
		{"to beyond the end is cut", replay.Window{From: replay.AtPosition(58), To: replay.AtPosition(1000)},
			func(e *rewind.RecordedEvent) bool { return e.Position >= 58 }, 58, last},
		{"from beyond the end is empty", replay.Window{From: replay.AtPosition(100)},
			func(*rewind.RecordedEvent) bool { return false }, 100, last},
		// From position 31 three events share each second: 34-36 and 40-42.
		{"times inclusive", replay.Window{From: replay.AtTime(at(34)), To: replay.AtTime(at(40))},
			func(e *rewind.RecordedEvent) bool { return !e.RecordedAt.Before(at(34)) && !e.RecordedAt.After(at(40)) }, 34, 42},
		{"a time between events", replay.Window{From: replay.AtTime(at(10).Add(time.Millisecond)), To: replay.AtTime(at(20).Add(-time.Nanosecond))},
			func(e *rewind.RecordedEvent) bool { return e.Position >= 11 && e.Position <= 19 }, 11, 19},
		{"time to before the first event is empty", replay.Window{To: replay.AtTime(at(1).Add(-time.Second))},
			func(*rewind.RecordedEvent) bool { return false }, 1, 0},
		{"time from after the last event is empty", replay.Window{From: replay.AtTime(at(last).Add(time.Hour))},
			func(*rewind.RecordedEvent) bool { return false }, last + 1, last},
		{"position from, time to", replay.Window{From: replay.AtPosition(12), To: replay.AtTime(at(15))},
			func(e *rewind.RecordedEvent) bool { return e.Position >= 12 && e.Position <= 15 }, 12, 15},
		{"streams exactly", replay.Window{Streams: []string{"orders-1", "users-1"}},
			func(e *rewind.RecordedEvent) bool { return e.Stream == "orders-1" || e.Stream == "users-1" }, 1, last},
		{"prefix", replay.Window{StreamPrefix: "orders-1"},
			func(e *rewind.RecordedEvent) bool { return strings.HasPrefix(e.Stream, "orders-1") }, 1, last},
		{"types in a window", replay.Window{From: replay.AtPosition(10), To: replay.AtPosition(30), Types: []string{"Paid"}},
			func(e *rewind.RecordedEvent) bool { return e.Position >= 10 && e.Position <= 30 && e.Type == "Paid" }, 10, 30},
		{"deletes are events", replay.Window{Types: []string{rewind.TypeStreamDeleted}},
			func(e *rewind.RecordedEvent) bool { return e.Type == rewind.TypeStreamDeleted }, 1, last},
	}
	for _, tc := range cases {
		want := model(b.events, tc.keep)
		for _, path := range []struct {
			name string
			s    rewind.Store
		}{{"batch", s}, {"generic", generic(s)}} {
			for _, size := range []int{1, 7, 0} {
				t.Run(tc.name+"/"+path.name, func(t *testing.T) {
					got, res := collect(t, path.s, tc.w, replay.Options{BatchSize: size})
					if !slices.Equal(positions(got), want) {
						t.Fatalf("delivered %v, want %v", positions(got), want)
					}
					if res.From != tc.from || res.To != tc.to {
						t.Fatalf("resolved to %d..%d, want %d..%d", res.From, res.To, tc.from, tc.to)
					}
					if res.Events != int64(len(want)) {
						t.Fatalf("result counts %d events, delivered %d", res.Events, len(want))
					}
					if len(want) > 0 && (res.FirstPosition != want[0] || res.LastPosition != want[len(want)-1]) {
						t.Fatalf("result says %d..%d, delivered %d..%d", res.FirstPosition, res.LastPosition, want[0], want[len(want)-1])
					}
				})
			}
		}
	}
}

func TestBadWindowIsRefusedAndNothingHappens(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	dst := open(t, nil)
	t0 := b.events[0].RecordedAt
	cases := []struct {
		name string
		w    replay.Window
		opts replay.Options
		kind error
	}{
		{"from after to", replay.Window{From: replay.AtPosition(9), To: replay.AtPosition(8)}, replay.Options{}, replay.ErrFromAfterTo},
		{"time from after time to", replay.Window{From: replay.AtTime(t0.Add(time.Second)), To: replay.AtTime(t0)}, replay.Options{}, replay.ErrFromAfterTo},
		{"a bound with both", replay.Window{From: replay.Bound{Position: 3, Time: t0}}, replay.Options{}, replay.ErrBadBound},
		{"streams and prefix", replay.Window{Streams: []string{"orders-1"}, StreamPrefix: "orders-"}, replay.Options{}, replay.ErrBadFilter},
		{"empty stream", replay.Window{Streams: []string{""}}, replay.Options{}, replay.ErrBadFilter},
		{"empty type", replay.Window{Types: []string{"Paid", ""}}, replay.Options{}, replay.ErrBadFilter},
		{"negative speed", replay.Window{}, replay.Options{Pacing: replay.Pacing{Speed: -1}}, replay.ErrBadPacing},
		{"speed and rate", replay.Window{}, replay.Options{Pacing: replay.Pacing{Speed: 2, Rate: 10}}, replay.ErrBadPacing},
		// Tiny values were taken, and their waits overflowed into none.
		{"speed below the minimum", replay.Window{}, replay.Options{Pacing: replay.Pacing{Speed: 1e-11}}, replay.ErrBadPacing},
		{"speed subnormal", replay.Window{}, replay.Options{Pacing: replay.Pacing{Speed: 1e-320}}, replay.ErrBadPacing},
		{"speed above the maximum", replay.Window{}, replay.Options{Pacing: replay.Pacing{Speed: 1e13}}, replay.ErrBadPacing},
		{"speed infinite", replay.Window{}, replay.Options{Pacing: replay.Pacing{Speed: math.Inf(1)}}, replay.ErrBadPacing},
		{"rate below the minimum", replay.Window{}, replay.Options{Pacing: replay.Pacing{Rate: 1e-320}}, replay.ErrBadPacing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, st := range []rewind.Store{s, generic(s)} {
				_, err := replay.Run(ctx, st, tc.w, replay.IntoStore(dst), tc.opts)
				var re *replay.Error
				if !errors.As(err, &re) || !errors.Is(err, tc.kind) || rewind.CodeOf(err) != rewind.CodeInvalidArgument {
					t.Fatalf("got %v (code %s), want a *replay.Error matching %v", err, rewind.CodeOf(err), tc.kind)
				}
			}
			if p, _ := dst.LastPosition(ctx); p != 0 {
				t.Fatalf("a refused replay wrote %d events", p)
			}
		})
	}
}

func TestParseBound(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]replay.Bound{
		"":                               {},
		"1000":                           replay.AtPosition(1000),
		"2026-11-23T10:00:00Z":           replay.AtTime(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)),
		"2026-11-23T11:00:00.5+01:00":    replay.AtTime(time.Date(2026, 11, 23, 10, 0, 0, 5e8, time.UTC)),
		"2026-11-23T10:00:00.000000001Z": replay.AtTime(time.Date(2026, 11, 23, 10, 0, 0, 1, time.UTC)),
	} {
		got, err := replay.ParseBound("from", in)
		if err != nil || got.Position != want.Position || !got.Time.Equal(want.Time) {
			t.Errorf("ParseBound(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "yesterday", "2026-11-23", "10:00", "1e3", "2026-11-23 10:00:00"} {
		_, err := replay.ParseBound("to", in)
		if !errors.Is(err, replay.ErrBadBound) || !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("ParseBound(%q): %v, want ErrBadBound saying what a bound is", in, err)
		}
	}
	// The zero Bound means "no bound": text that would parse to it (the
	// zero time, in any offset, or position 0) is refused rather than
	// silently turned into the end (or start) of the log.
	for in, want := range map[string]string{
		"0001-01-01T00:00:00Z":      "zero time",
		"0001-01-01T01:00:00+01:00": "zero time",
		"0001-01-01T00:00:00.0Z":    "zero time",
		"0":                         "positions start at 1",
	} {
		for _, field := range []string{"from", "to"} {
			b, err := replay.ParseBound(field, in)
			if !errors.Is(err, replay.ErrBadBound) || rewind.CodeOf(err) != rewind.CodeInvalidArgument ||
				!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), field) {
				t.Errorf("ParseBound(%q, %q) = %v, %v; want ErrBadBound (invalid_argument) saying %q", field, in, b, err, want)
			}
		}
	}
	// Just after the zero time is an instant like any other.
	if b, err := replay.ParseBound("to", "0001-01-01T00:00:00.000000001Z"); err != nil || b.IsZero() {
		t.Errorf("ParseBound(one nanosecond after the zero time) = %v, %v; want that instant", b, err)
	}
}
