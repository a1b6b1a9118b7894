package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

func versions(evs []rewind.RecordedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i := range evs {
		out[i] = evs[i].Version
	}
	return out
}

func span(lo, hi uint64) []uint64 {
	var out []uint64
	if lo <= hi {
		for v := lo; v <= hi; v++ {
			out = append(out, v)
		}
	} else {
		for v := lo; v >= hi; v-- {
			out = append(out, v)
		}
	}
	return out
}

// testReadStreamOptions: From, Backward and Limit, and a stream longer than
// any page size.
func testReadStreamOptions(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	const n = 2500
	for i := 0; i < n; i += 500 {
		mustAppend(t, s, "long-1", rewind.Any, events(500, "T")...)
		mustAppend(t, s, "other", rewind.Any, event("T", "between"))
	}
	cases := []struct {
		opts rewind.ReadStreamOptions
		want []uint64
	}{
		{rewind.ReadStreamOptions{}, span(1, n)},
		{rewind.ReadStreamOptions{From: 4}, span(4, n)},
		{rewind.ReadStreamOptions{Limit: 3}, span(1, 3)},
		{rewind.ReadStreamOptions{From: 1200, Limit: 1100}, span(1200, 2299)},
		{rewind.ReadStreamOptions{From: n + 1}, nil},
		{rewind.ReadStreamOptions{Backward: true}, span(n, 1)},
		{rewind.ReadStreamOptions{Backward: true, From: 5, Limit: 2}, span(5, 4)},
		{rewind.ReadStreamOptions{Backward: true, From: n + 10, Limit: 1}, span(n, n)},
		{rewind.ReadStreamOptions{Backward: true, Limit: 1500}, span(n, n-1499)},
	}
	for _, c := range cases {
		evs, err := s.ReadStream(ctxBG, "long-1", c.opts)
		if err != nil || !slices.Equal(versions(evs), c.want) {
			got := versions(evs)
			t.Fatalf("read stream %+v: %d events %v…, %v; want %d from %v", c.opts, len(got), got[:min(3, len(got))],
				err, len(c.want), c.want[:min(3, len(c.want))])
		}
		for i := 1; i < len(evs); i++ {
			if (evs[i].Position > evs[i-1].Position) == c.opts.Backward {
				t.Fatalf("read stream %+v: positions out of order at %d", c.opts, i)
			}
		}
	}
}

// testReadAllOptions: start positions and times, filters by prefix and
// type, limits, and a log longer than any page.
func testReadAllOptions(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	for i := range 5 {
		for _, stream := range []string{"a-1", "a-2", "b-1"} {
			mustAppend(t, s, stream, rewind.Any, event(fmt.Sprintf("T%d", i%2), "x"))
		}
	}
	mustAppend(t, s, "bulk", rewind.Any, events(2500, "Bulk")...)
	all := readAll(t, s, rewind.ReadAllOptions{})
	if len(all) != 2515 {
		t.Fatalf("read all: %d events, want 2515", len(all))
	}
	positions := func(evs []rewind.RecordedEvent) []rewind.Position {
		out := make([]rewind.Position, len(evs))
		for i := range evs {
			out[i] = evs[i].Position
		}
		return out
	}
	check := func(opts rewind.ReadAllOptions, keep func(ev *rewind.RecordedEvent) bool, from rewind.Position) {
		t.Helper()
		var want []rewind.Position
		for i := range all {
			if all[i].Position >= from && keep(&all[i]) && (opts.Limit == 0 || len(want) < opts.Limit) {
				want = append(want, all[i].Position)
			}
		}
		got := positions(readAll(t, s, opts))
		if !slices.Equal(got, want) {
			t.Fatalf("read all %+v: %d events from %v, want %d from %v", opts, len(got), got[:min(3, len(got))],
				len(want), want[:min(3, len(want))])
		}
	}
	yes := func(*rewind.RecordedEvent) bool { return true }
	check(rewind.ReadAllOptions{From: 7}, yes, 7)
	check(rewind.ReadAllOptions{From: 7, Limit: 4}, yes, 7)
	check(rewind.ReadAllOptions{From: 2516}, yes, 2516)
	check(rewind.ReadAllOptions{Filter: rewind.Filter{StreamPrefix: "a-"}}, func(ev *rewind.RecordedEvent) bool {
		return ev.Stream == "a-1" || ev.Stream == "a-2"
	}, 0)
	check(rewind.ReadAllOptions{Filter: rewind.Filter{Types: []string{"T1", "Bulk"}}, Limit: 1200}, func(ev *rewind.RecordedEvent) bool {
		return ev.Type == "T1" || ev.Type == "Bulk"
	}, 0)
	check(rewind.ReadAllOptions{From: 3, Filter: rewind.Filter{StreamPrefix: "b-", Types: []string{"T0"}}}, func(ev *rewind.RecordedEvent) bool {
		return ev.Stream == "b-1" && ev.Type == "T0"
	}, 3)
	check(rewind.ReadAllOptions{Filter: rewind.Filter{StreamPrefix: "zz"}}, func(*rewind.RecordedEvent) bool { return false }, 0)
	// By time: the first event recorded at or after the time.
	for _, i := range []int{0, 9, 14, 2000} {
		at := all[i].RecordedAt
		first := all[i].Position
		for j := i; j >= 0 && all[j].RecordedAt.Equal(at); j-- {
			first = all[j].Position
		}
		check(rewind.ReadAllOptions{FromTime: at, Limit: 5}, yes, first)
	}
	if evs := readAll(t, s, rewind.ReadAllOptions{FromTime: time.Now().Add(time.Hour)}); len(evs) != 0 {
		t.Fatalf("read all from a time after the last event: %d events", len(evs))
	}
	// A read stops at the end it saw when it started.
	n := 0
	for _, err := range s.ReadAll(ctxBG, rewind.ReadAllOptions{From: 2510}) {
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			mustAppend(t, s, "during", rewind.Any, events(3, "T")...)
		}
		n++
	}
	if n != 6 {
		t.Fatalf("a read from 2510 started before an append of 3 events yielded %d events, want 6", n)
	}
	// Over several pages, the end is that of one moment of the read: the
	// appends made during it are all in or all out.
	n = 0
	for _, err := range s.ReadAll(ctxBG, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			mustAppend(t, s, "during", rewind.Any, events(3, "T")...)
		}
		n++
	}
	if n != 2518 && n != 2521 {
		t.Fatalf("a read of 2518 events during an append of 3 yielded %d", n)
	}
}

// testListStreams: prefix, paging with After and Limit, deleted streams,
// and the infos listed.
func testListStreams(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	for _, name := range []string{"p-3", "q-1", "p-1", "p-5", "p-2", "p-4"} {
		mustAppend(t, s, name, rewind.Any, events(2, "T")...)
	}
	if _, err := s.DeleteStream(ctxBG, "p-4", rewind.Any); err != nil {
		t.Fatal(err)
	}
	names := func(opts rewind.ListStreamsOptions) []string {
		t.Helper()
		infos, err := s.ListStreams(ctxBG, opts)
		if err != nil {
			t.Fatalf("list %+v: %v", opts, err)
		}
		var out []string
		for _, i := range infos {
			want, err := s.StreamInfo(ctxBG, i.Stream)
			if err != nil || want != i {
				t.Fatalf("list %+v: %+v, but stream info says %+v (%v)", opts, i, want, err)
			}
			out = append(out, i.Stream)
		}
		return out
	}
	cases := []struct {
		opts rewind.ListStreamsOptions
		want []string
	}{
		{rewind.ListStreamsOptions{}, []string{"p-1", "p-2", "p-3", "p-5", "q-1"}},
		{rewind.ListStreamsOptions{Prefix: "p-"}, []string{"p-1", "p-2", "p-3", "p-5"}},
		{rewind.ListStreamsOptions{Prefix: "p-", After: "p-2"}, []string{"p-3", "p-5"}},
		{rewind.ListStreamsOptions{Limit: 2}, []string{"p-1", "p-2"}},
		{rewind.ListStreamsOptions{After: "p-2", Limit: 2, IncludeDeleted: true}, []string{"p-3", "p-4"}},
		{rewind.ListStreamsOptions{Prefix: "zz"}, nil},
	}
	for _, c := range cases {
		if got := names(c.opts); !slices.Equal(got, c.want) {
			t.Fatalf("list %+v: %v, want %v", c.opts, got, c.want)
		}
	}
}

// testNULInNames: no stream name can hold a NUL character, yet a prefix or
// an after can (they are not names): a prefix with NUL matches nothing, and
// an after with NUL orders byte-wise, as any other string (between "p-" and
// every longer name starting with it). Neither is an error.
func testNULInNames(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	for _, name := range []string{"p", "p-", "p-1", "p-2", "p-20", "q"} {
		mustAppend(t, s, name, rewind.Any, event("T", name))
	}
	cases := []struct {
		opts rewind.ListStreamsOptions
		want []string
	}{
		{rewind.ListStreamsOptions{Prefix: "p\x00"}, nil},
		{rewind.ListStreamsOptions{Prefix: "\x00"}, nil},
		{rewind.ListStreamsOptions{Prefix: "p-\x00", After: "p"}, nil},
		{rewind.ListStreamsOptions{After: "p\x00"}, []string{"p-", "p-1", "p-2", "p-20", "q"}},
		{rewind.ListStreamsOptions{After: "p-2\x00"}, []string{"p-20", "q"}},
		{rewind.ListStreamsOptions{After: "p-2\x00\x01"}, []string{"p-20", "q"}},
		{rewind.ListStreamsOptions{After: "\x00"}, []string{"p", "p-", "p-1", "p-2", "p-20", "q"}},
		{rewind.ListStreamsOptions{Prefix: "p-", After: "p-\x00"}, []string{"p-1", "p-2", "p-20"}},
		{rewind.ListStreamsOptions{After: "p-20\x00x"}, []string{"q"}},
	}
	for _, c := range cases {
		infos, err := s.ListStreams(ctxBG, c.opts)
		if err != nil {
			t.Fatalf("list prefix %q after %q: %v", c.opts.Prefix, c.opts.After, err)
		}
		var got []string
		for _, i := range infos {
			got = append(got, i.Stream)
		}
		if !slices.Equal(got, c.want) {
			t.Fatalf("list prefix %q after %q: %q, want %q", c.opts.Prefix, c.opts.After, got, c.want)
		}
	}
	for _, prefix := range []string{"p\x00", "\x00", "p-1\x00"} {
		if evs := readAll(t, s, rewind.ReadAllOptions{Filter: rewind.Filter{StreamPrefix: prefix}}); len(evs) != 0 {
			t.Fatalf("read all with prefix %q: %d events, want none", prefix, len(evs))
		}
		sub := subscribe(t, s, rewind.SubscribeOptions{Filter: rewind.Filter{StreamPrefix: prefix}})
		ctx, cancel := context.WithTimeout(ctxBG, 200*time.Millisecond)
		ev, err := sub.Next(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("subscription with prefix %q: %v, %v; want nothing until its context ends", prefix, ev, err)
		}
	}
}

// testFilterTypesLimit: a filter lists at most rewind.MaxFilterTypes types;
// more is an invalid argument for a read and a subscription alike, and a
// type listed twice selects what it selects once.
func testFilterTypesLimit(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	for i := range 30 {
		mustAppend(t, s, "f-1", rewind.Any, event(fmt.Sprintf("T%d", i%3), "x"))
	}
	many := func(n int, distinct bool) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "T1"
			if distinct && i > 0 {
				out[i] = fmt.Sprintf("U%d", i)
			}
		}
		return out
	}
	for _, distinct := range []bool{false, true} {
		filter := rewind.Filter{Types: many(rewind.MaxFilterTypes+1, distinct)}
		var err error
		for _, e := range s.ReadAll(ctxBG, rewind.ReadAllOptions{Filter: filter}) {
			if err = e; err != nil {
				break
			}
		}
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != "filter types" {
			t.Fatalf("read all with %d types (distinct %v): %v, want a validation error of filter types",
				len(filter.Types), distinct, err)
		}
		if _, err := s.Subscribe(ctxBG, rewind.SubscribeOptions{Filter: filter}); !errors.As(err, &ve) {
			t.Fatalf("subscribe with %d types: %v, want a validation error", len(filter.Types), err)
		}
		filter.Types = filter.Types[:rewind.MaxFilterTypes]
		if evs := readAll(t, s, rewind.ReadAllOptions{Filter: filter}); len(evs) != 10 {
			t.Fatalf("read all with %d types (distinct %v): %d events, want 10", len(filter.Types), distinct, len(evs))
		}
	}
	evs := readAll(t, s, rewind.ReadAllOptions{Filter: rewind.Filter{Types: []string{"T2", "T0", "T2", "T0"}}})
	if len(evs) != 20 {
		t.Fatalf("read all of types listed twice: %d events, want 20", len(evs))
	}
}

// next waits for a subscription's next event, for at most a minute.
func next(t *testing.T, sub rewind.Subscription) rewind.RecordedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxBG, time.Minute)
	defer cancel()
	ev, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("next after position %d: %v", sub.Position(), err)
	}
	return ev.Clone()
}

func subscribe(t *testing.T, s rewind.Store, opts rewind.SubscribeOptions) rewind.Subscription {
	t.Helper()
	sub, err := s.Subscribe(ctxBG, opts)
	if err != nil {
		t.Fatalf("subscribe %+v: %v", opts, err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

// testSubscribeCatchUpToLive: a subscription that starts behind and keeps
// going while writers append delivers every event exactly once, in order,
// across the switch from catch-up to live.
func testSubscribeCatchUpToLive(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	for range 30 {
		mustAppend(t, s, "live-0", rewind.Any, events(10, "T")...)
	}
	sub := subscribe(t, s, rewind.SubscribeOptions{})
	const writers, each = 4, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Append(ctxBG, fmt.Sprintf("live-%d", w+1), rewind.Any, event("T", fmt.Sprint(i))); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	versions := map[string]uint64{}
	for want := rewind.Position(1); want <= 300+writers*each; want++ {
		ev := next(t, sub)
		if ev.Position != want {
			t.Fatalf("subscription delivered position %d, want %d: a gap or a repeat", ev.Position, want)
		}
		if ev.Version != versions[ev.Stream]+1 {
			t.Fatalf("subscription delivered %s version %d after version %d", ev.Stream, ev.Version, versions[ev.Stream])
		}
		versions[ev.Stream] = ev.Version
		if sub.Position() != want {
			t.Fatalf("subscription at position %d after delivering %d", sub.Position(), want)
		}
	}
	wg.Wait()
	// Caught up: the next append arrives live.
	res := mustAppend(t, s, "live-9", rewind.Any, event("T", "last"))
	if ev := next(t, sub); ev.Position != res.FirstPosition {
		t.Fatalf("live event at position %d, want %d", ev.Position, res.FirstPosition)
	}
}

// testSubscribeResume: a subscription started after P delivers P+1 first;
// starts by time; bad starts fail at Subscribe.
func testSubscribeResume(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	for range 5 {
		mustAppend(t, s, "resume-1", rewind.Any, events(10, "T")...)
	}
	sub := subscribe(t, s, rewind.SubscribeOptions{After: 20})
	if sub.Position() != 20 {
		t.Fatalf("subscription after 20 says position %d", sub.Position())
	}
	for want := rewind.Position(21); want <= 30; want++ {
		if ev := next(t, sub); ev.Position != want {
			t.Fatalf("subscription after 20: position %d, want %d", ev.Position, want)
		}
	}
	resumed := subscribe(t, s, rewind.SubscribeOptions{After: sub.Position()})
	sub.Close()
	if ev := next(t, resumed); ev.Position != 31 {
		t.Fatalf("resumed after 30: position %d, want 31", ev.Position)
	}
	all := readAll(t, s, rewind.ReadAllOptions{})
	byTime := subscribe(t, s, rewind.SubscribeOptions{FromTime: all[40].RecordedAt})
	first := all[40].Position
	for i := 40; i >= 0 && all[i].RecordedAt.Equal(all[40].RecordedAt); i-- {
		first = all[i].Position
	}
	if ev := next(t, byTime); ev.Position != first {
		t.Fatalf("subscription from the time of position 41: position %d, want %d", ev.Position, first)
	}
	atEnd := subscribe(t, s, rewind.SubscribeOptions{After: 50})
	res := mustAppend(t, s, "resume-2", rewind.Any, event("T", "x"))
	if ev := next(t, atEnd); ev.Position != res.FirstPosition {
		t.Fatalf("subscription after the last position: %d, want %d", ev.Position, res.FirstPosition)
	}
	if _, err := s.Subscribe(ctxBG, rewind.SubscribeOptions{After: 60}); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("subscribe after a position beyond the end: %v, want invalid argument", err)
	}
}

// testSubscribeFilter: a filtered subscription delivers only what its
// filter keeps, in order, and its position moves over what it skipped.
func testSubscribeFilter(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	var want []rewind.Position
	for i := range 200 {
		stream := []string{"x-1", "y-1", "y-2", "x-2"}[i%4]
		res := mustAppend(t, s, stream, rewind.Any, event([]string{"A", "B"}[i%3%2], "x"))
		if stream[0] == 'x' && i%3%2 == 0 {
			want = append(want, res.FirstPosition)
		}
	}
	sub := subscribe(t, s, rewind.SubscribeOptions{Filter: rewind.Filter{StreamPrefix: "x-", Types: []string{"A"}}})
	for _, w := range want[:len(want)/2] {
		if ev := next(t, sub); ev.Position != w || ev.Stream[0] != 'x' || ev.Type != "A" {
			t.Fatalf("filtered subscription: %s %s at %d, want position %d", ev.Stream, ev.Type, ev.Position, w)
		}
	}
	resumed := subscribe(t, s, rewind.SubscribeOptions{After: sub.Position(), Filter: rewind.Filter{StreamPrefix: "x-", Types: []string{"A"}}})
	for _, w := range want[len(want)/2:] {
		if ev := next(t, resumed); ev.Position != w {
			t.Fatalf("resumed filtered subscription: position %d, want %d", ev.Position, w)
		}
	}
	// Only skipped events follow: the position moves on without delivering.
	for range 20 {
		mustAppend(t, s, "y-1", rewind.Any, event("A", "skipped"))
	}
	res := mustAppend(t, s, "x-1", rewind.Any, event("A", "kept"))
	if ev := next(t, resumed); ev.Position != res.FirstPosition {
		t.Fatalf("filtered subscription after skipped events: %d, want %d", ev.Position, res.FirstPosition)
	}
}

// testCancellation: a call whose context is done fails with the context's
// error; a waiting Next returns when its context ends and the subscription
// goes on afterwards without losing an event.
func testCancellation(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	mustAppend(t, s, "cancel-1", rewind.Any, event("T", "x"))
	done, cancel := context.WithCancel(ctxBG)
	cancel()
	if _, err := s.Append(done, "cancel-1", rewind.Any, event("T", "y")); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v", err)
	}
	if _, err := s.ReadStream(done, "cancel-1", rewind.ReadStreamOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("read stream with a cancelled context: %v", err)
	}
	for _, err := range s.ReadAll(done, rewind.ReadAllOptions{}) {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read all with a cancelled context: %v", err)
		}
		break
	}
	if last := lastPosition(t, s); last != 1 {
		t.Fatalf("an append with a cancelled context wrote: the log ends at %d", last)
	}
	sub := subscribe(t, s, rewind.SubscribeOptions{})
	if ev, err := sub.Next(done); !errors.Is(err, context.Canceled) || ev != nil {
		t.Fatalf("next with a cancelled context: %v, %v", ev, err)
	}
	if ev := next(t, sub); ev.Position != 1 {
		t.Fatalf("next after a cancelled next: position %d, want 1", ev.Position)
	}
	// Caught up: Next waits until its context ends.
	ctx, cancel := context.WithTimeout(ctxBG, 20*time.Millisecond)
	defer cancel()
	if ev, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next of a caught-up subscription: %v, %v; want the deadline", ev, err)
	}
	res := mustAppend(t, s, "cancel-1", rewind.Any, event("T", "z"))
	if ev := next(t, sub); ev.Position != res.FirstPosition {
		t.Fatalf("next after a deadline: position %d, want %d", ev.Position, res.FirstPosition)
	}
}

// testClose: every call after Close fails with rewind.ErrClosed, and so
// does Next of a subscription opened before.
func testClose(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := newStore(t)
	mustAppend(t, s, "close-1", rewind.Any, event("T", "x"))
	sub, err := s.Subscribe(ctxBG, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	next(t, sub)
	waiting := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctxBG, time.Minute)
		defer cancel()
		_, err := sub.Next(ctx)
		waiting <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-waiting; !errors.Is(err, rewind.ErrClosed) {
		t.Fatalf("a subscription waiting when its store closed: %v, want ErrClosed", err)
	}
	calls := map[string]func() error{
		"append":       func() error { _, err := s.Append(ctxBG, "close-1", rewind.Any, event("T", "y")); return err },
		"read stream":  func() error { _, err := s.ReadStream(ctxBG, "close-1", rewind.ReadStreamOptions{}); return err },
		"stream info":  func() error { _, err := s.StreamInfo(ctxBG, "close-1"); return err },
		"list streams": func() error { _, err := s.ListStreams(ctxBG, rewind.ListStreamsOptions{}); return err },
		"delete":       func() error { _, err := s.DeleteStream(ctxBG, "close-1", rewind.Any); return err },
		"subscribe":    func() error { _, err := s.Subscribe(ctxBG, rewind.SubscribeOptions{}); return err },
		"read all": func() error {
			for _, err := range s.ReadAll(ctxBG, rewind.ReadAllOptions{}) {
				return err
			}
			return nil
		},
	}
	for what, call := range calls {
		if err := call(); !errors.Is(err, rewind.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", what, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// testCapabilities checks the optional capabilities the store offers.
func testCapabilities(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	if lp, ok := s.(rewind.LastPositioner); ok {
		if p, err := lp.LastPosition(ctxBG); err != nil || p != 0 {
			t.Fatalf("last position of an empty store: %d, %v", p, err)
		}
	}
	mustAppend(t, s, "cap-1", rewind.Any, events(3, "T")...)
	mustAppend(t, s, "cap-2", rewind.Any, events(2, "T")...)
	if lp, ok := s.(rewind.LastPositioner); ok {
		if p, err := lp.LastPosition(ctxBG); err != nil || p != 5 {
			t.Fatalf("last position: %d, %v; want 5", p, err)
		}
	}
	if d, ok := s.(rewind.Describer); ok {
		i, err := d.Describe(ctxBG)
		if err != nil || i.FirstPosition != 1 || i.LastPosition != 5 || i.Streams != 2 || i.Durability == "" || i.Location == "" {
			t.Fatalf("describe: %+v, %v", i, err)
		}
	}
	if v, ok := s.(rewind.Verifier); ok {
		if err := v.Verify(ctxBG); err != nil {
			t.Fatalf("verify an intact store: %v", err)
		}
	}
	if r, ok := s.(rewind.Retainer); ok {
		first, err := r.ApplyRetention(ctxBG)
		if err != nil || first < 1 || first > 6 {
			t.Fatalf("apply retention: first position %d, %v", first, err)
		}
	}
	sub := subscribe(t, s, rewind.SubscribeOptions{After: 3})
	if p, ok := sub.(rewind.Poller); ok {
		for want := rewind.Position(4); want <= 5; want++ {
			if ev, err := p.TryNext(); err != nil || ev == nil || ev.Position != want {
				t.Fatalf("try next: %v, %v; want position %d", ev, err, want)
			}
		}
		if ev, err := p.TryNext(); err != nil || ev != nil {
			t.Fatalf("try next at the end: %v, %v; want nothing", ev, err)
		}
	}
}

// testEpochs: a store that tells the log epoch (its Health, its
// subscriptions as rewind.EpochReporter) tells the same one everywhere, and
// checks the epoch a reader resumes with: the current one, and 0
// (unknown), are taken; a newer one is refused with rewind.ErrEpochChanged before
// anything is read (the position was not read in this log). A store that
// tells no epoch at all is not checked.
func testEpochs(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	mustAppend(t, s, "epoch-1", rewind.Any, events(3, "T")...)
	sub := subscribe(t, s, rewind.SubscribeOptions{After: 1})
	er, reports := sub.(rewind.EpochReporter)
	hr, healthy := s.(rewind.HealthReporter)
	if !reports && !healthy {
		t.Log("storetest: the store tells no log epoch; nothing to check")
		return
	}
	if !reports || !healthy {
		t.Fatalf("the store tells a log epoch in its health (%v) or its subscriptions (%v), not both", healthy, reports)
	}
	h, err := hr.Health(ctxBG)
	if err != nil {
		t.Fatal(err)
	}
	epoch := er.Epoch()
	if epoch == 0 || h.Epoch != epoch {
		t.Fatalf("a subscription reads in log epoch %d, the store's health says %d", epoch, h.Epoch)
	}
	if ev := next(t, sub); ev.Position != 2 {
		t.Fatalf("subscription after 1: position %d", ev.Position)
	}
	same := subscribe(t, s, rewind.SubscribeOptions{After: 1, Epoch: epoch})
	if ev := next(t, same); ev.Position != 2 {
		t.Fatalf("subscription after 1 in epoch %d: position %d", epoch, ev.Position)
	}
	if got := readAll(t, s, rewind.ReadAllOptions{From: 2, Epoch: epoch}); len(got) != 2 {
		t.Fatalf("read from 2 in epoch %d: %d events, want 2", epoch, len(got))
	}
	newer := epoch + 4
	check := func(what string, err error) {
		t.Helper()
		// Over an API the error keeps its code (epoch_changed), not
		// always its type.
		var ee *rewind.EpochError
		if !errors.Is(err, rewind.ErrEpochChanged) || errors.As(err, &ee) && (ee.Epoch != newer || ee.Current != epoch) {
			t.Fatalf("%s in epoch %d (the log is at %d): %v, want an epoch change", what, newer, epoch, err)
		}
	}
	_, err = s.Subscribe(ctxBG, rewind.SubscribeOptions{After: 1, Epoch: newer})
	check("subscribe after 1", err)
	err = nil
	for ev, rerr := range s.ReadAll(ctxBG, rewind.ReadAllOptions{From: 2, Epoch: newer}) {
		if rerr == nil {
			t.Fatalf("read from 2 in epoch %d delivered position %d", newer, ev.Position)
		}
		err = rerr
		break
	}
	check("read from 2", err)
}
