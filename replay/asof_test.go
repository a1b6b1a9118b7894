package replay_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay"
)

func TestAsOf(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	// orders-1 holds positions 1, 5, 9, …, 57: versions 1 to 15.
	var stream []rewind.RecordedEvent
	for _, ev := range b.events {
		if ev.Stream == "orders-1" {
			stream = append(stream, ev)
		}
	}
	upTo := func(keep func(*rewind.RecordedEvent) bool) []uint64 {
		var v []uint64
		for i := range stream {
			if keep(&stream[i]) {
				v = append(v, stream[i].Version)
			}
		}
		return v
	}
	tAt := stream[9].RecordedAt // version 10, at position 37: 37-39 share a second
	cases := []struct {
		name string
		at   replay.Point
		want []uint64
	}{
		{"version", replay.Point{Version: 6}, upTo(func(e *rewind.RecordedEvent) bool { return e.Version <= 6 })},
		{"last version", replay.Point{Version: 15}, upTo(func(*rewind.RecordedEvent) bool { return true })},
		{"position of an event", replay.Point{Position: 21}, upTo(func(e *rewind.RecordedEvent) bool { return e.Position <= 21 })},
		{"position between", replay.Point{Position: 24}, upTo(func(e *rewind.RecordedEvent) bool { return e.Position <= 24 })},
		{"position beyond the end", replay.Point{Position: 10_000}, upTo(func(*rewind.RecordedEvent) bool { return true })},
		{"time of an event", replay.Point{Time: tAt}, upTo(func(e *rewind.RecordedEvent) bool { return !e.RecordedAt.After(tAt) })},
		{"time just before", replay.Point{Time: tAt.Add(-time.Nanosecond)}, upTo(func(e *rewind.RecordedEvent) bool { return e.RecordedAt.Before(tAt) })},
		{"time before the stream", replay.Point{Time: stream[0].RecordedAt.Add(-time.Hour)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, res, err := replay.AsOf(ctx, s, "orders-1", tc.at)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, ev := range evs {
				got = append(got, ev.Version)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("versions %v, want %v", got, tc.want)
			}
			if res.Events != len(tc.want) || len(tc.want) > 0 && (res.FirstVersion != 1 || res.LastVersion != tc.want[len(tc.want)-1]) {
				t.Fatalf("result %+v for versions %v", res, tc.want)
			}
		})
	}
	// A fold: the state of the aggregate at version 4.
	sum, _, err := replay.Fold(ctx, s, "orders-1", replay.Point{Version: 4}, "",
		func(st string, ev *rewind.RecordedEvent) (string, error) { return st + string(ev.Data), nil })
	if err != nil || sum != `{"n":0}{"n":4}{"n":8}{"n":12}` {
		t.Fatalf("fold: %q, %v", sum, err)
	}
	boom := errors.New("boom")
	if _, _, err := replay.Fold(ctx, s, "orders-1", replay.Point{Version: 4}, 0,
		func(int, *rewind.RecordedEvent) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("a failing fold: %v", err)
	}
}

func TestAsOfBadInput(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	for name, at := range map[string]replay.Point{
		"nothing":                 {},
		"two":                     {Version: 3, Position: 4},
		"version beyond the last": {Version: 16},
	} {
		_, _, err := replay.AsOf(ctx, s, "orders-1", at)
		if !errors.Is(err, replay.ErrBadBound) || rewind.CodeOf(err) != rewind.CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := replay.AsOf(ctx, s, "nobody-1", replay.Point{Version: 1}); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Errorf("unknown stream: %v", err)
	}
	if _, _, err := replay.AsOf(ctx, s, "orders-2", replay.Point{Version: 1}); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Errorf("deleted stream: %v", err)
	}
	_, _, err := replay.AsOf(ctx, s, "orders-1", replay.Point{Version: 99})
	if err == nil || !errors.Is(err, replay.ErrBadBound) || !strings.Contains(err.Error(), "15") {
		t.Errorf("the error does not name the last version: %v", err)
	}
}
