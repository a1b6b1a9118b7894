package consumer

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

// consumeAll runs Consume on a new member of group until the group is
// complete, acking every event except that each event of the positions in
// nakOnce is nak'ed on its first delivery. It returns the positions acked,
// in the order they were acked.
func consumeAll(t *testing.T, b *bundle, group string, nakOnce map[rewind.Position]bool) []rewind.Position {
	t.Helper()
	m := b.join(group, 0)
	defer m.Leave()
	var mu sync.Mutex
	var acked []rewind.Position
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	err := Consume(ctx, m, func(ctx context.Context, msg *Message) error {
		if nakOnce[msg.Event.Position] && msg.Attempt == 1 {
			return RetryAfter(0, errors.New("first try fails"))
		}
		mu.Lock()
		acked = append(acked, msg.Event.Position)
		mu.Unlock()
		return nil
	}, ConsumeOptions{Concurrency: 4})
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("consume did not end with the group complete: %+v", mustInfo(t, b, group))
	}
	return acked
}

func mustInfo(t *testing.T, b *bundle, group string) GroupInfo {
	t.Helper()
	in, err := b.engine.Info(group)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// matching returns the positions of the events of the log in [from, to]
// that f selects, from the store itself.
func matching(t *testing.T, b *bundle, from, to rewind.Position, f rewind.Filter) []rewind.Position {
	t.Helper()
	var out []rewind.Position
	for ev, err := range b.store.ReadAll(bg, rewind.ReadAllOptions{From: from, Filter: f}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Position > to {
			break
		}
		if !isSystem(ev.Stream) {
			out = append(out, ev.Position)
		}
	}
	return out
}

func sameSet(t *testing.T, what string, got, want []rewind.Position) {
	t.Helper()
	seen := map[rewind.Position]int{}
	for _, p := range got {
		seen[p]++
	}
	for _, p := range want {
		if seen[p] != 1 {
			t.Errorf("%s: position %d acked %d times, want once", what, p, seen[p])
		}
		delete(seen, p)
	}
	for p, n := range seen {
		t.Errorf("%s: position %d acked %d times, want never (outside the window or the filter)", what, p, n)
	}
}

// TestBoundedGroupDeliversExactlyItsWindow: a group bounded by position,
// with a filter, created while writers append, delivers each event of its
// window that the filter selects exactly once (acked, a nak'ed one
// redelivered), none after its end nor before its start, and says it is
// complete.
func TestBoundedGroupDeliversExactlyItsWindow(t *testing.T) {
	b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
	for i := range 20 {
		b.appendN(fmt.Sprintf("orders-%d", i%3), "OrderPlaced", 10)
		b.appendN(fmt.Sprintf("users-%d", i%3), "UserSeen", 5)
	}
	last, _ := b.store.LastPosition(bg)
	// Writers go on appending matching events while the group works.
	ctx, stop := context.WithCancel(bg)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := b.store.Append(bg, fmt.Sprintf("orders-%d", w), rewind.Any,
					rewind.Event{Type: "OrderPlaced", Data: []byte(`{}`)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	from, to := rewind.Position(17), last-23
	f := rewind.Filter{StreamPrefix: "orders-"}
	b.create(GroupConfig{Name: "window", Filter: f, Start: Start{Kind: StartPosition, Position: from - 1},
		End: End{Position: to}, Backoff: []time.Duration{0}, Priority: []string{"OrderPlaced"}})
	want := matching(t, b, from, to, f)
	nak := map[rewind.Position]bool{want[0]: true, want[len(want)/2]: true, want[len(want)-1]: true}
	got := consumeAll(t, b, "window", nak)
	stop()
	wg.Wait()
	sameSet(t, "bounded window", got, want)
	in := mustInfo(t, b, "window")
	if in.Status != StatusComplete || !in.Complete || !in.Bounded || in.End != to || in.AckFloor < to {
		t.Fatalf("info after the window: status %s complete %v bounded %v end %d floor %d, want complete through %d",
			in.Status, in.Complete, in.Bounded, in.End, in.AckFloor, to)
	}
	if in.Redeliveries != 3 {
		t.Fatalf("redeliveries %d, want 3 (three naks)", in.Redeliveries)
	}
	// Events appended after completion are not delivered.
	b.appendN("orders-9", "OrderPlaced", 5)
	m := b.join("window", 0)
	defer m.Leave()
	time.Sleep(20 * time.Millisecond) // give a wrong reader a chance; the assertion does not depend on it
	if ds := fetchNow(t, m, 10); len(ds) != 0 {
		t.Fatalf("a complete group delivered %d more events (first at %d)", len(ds), ds[0].Event.Position)
	}
}

// TestBoundedGroupByTime: ends given as times deliver the events recorded
// from the start time through the end time, both inclusive.
func TestBoundedGroupByTime(t *testing.T) {
	b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
	var stamps []time.Time
	for range 5 {
		b.appendN("s", "T", 4)
		time.Sleep(3 * time.Millisecond)
		last, _ := b.store.LastPosition(bg)
		ev := readAt(t, b, last)
		stamps = append(stamps, ev.RecordedAt)
	}
	// Events of the 2nd through 4th appends: from just after the 1st
	// append's last event to the 4th append's last event (inclusive).
	start, end := stamps[0].Add(time.Nanosecond), stamps[3]
	b.create(GroupConfig{Name: "by-time", Start: Start{Kind: StartTime, Time: start}, End: End{Time: end}})
	got := consumeAll(t, b, "by-time", nil)
	sameSet(t, "time window", got, []rewind.Position{5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	if in := mustInfo(t, b, "by-time"); in.End != 16 || in.Status != StatusComplete {
		t.Fatalf("end %d status %s, want 16 complete", in.End, in.Status)
	}
	// A time window before every event is empty: complete at once.
	b.create(GroupConfig{Name: "empty", End: End{Time: stamps[0].Add(-time.Hour)}})
	if in := mustInfo(t, b, "empty"); in.Status != StatusComplete {
		t.Fatalf("an empty window: status %s, want complete", in.Status)
	}
}

func readAt(t *testing.T, b *bundle, p rewind.Position) rewind.RecordedEvent {
	t.Helper()
	for ev, err := range b.store.ReadAll(bg, rewind.ReadAllOptions{From: p, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		return ev.Clone()
	}
	t.Fatalf("no event at %d", p)
	return rewind.RecordedEvent{}
}

// TestBoundedGroupSurvivesRestart: a bounded group's end is in its state
// stream. Reopened halfway (cleanly, and after a crash that lost its last
// commit), it goes on to its end and no further; reopened complete, it is
// still complete and delivers nothing.
func TestBoundedGroupSurvivesRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			b := setup(t, Config{})
			b.appendN("s", "T", 100)
			b.create(GroupConfig{Name: "w", Start: Start{Kind: StartPosition, Position: 10}, End: End{Position: 60},
				MaxPending: 20, MaxAckPending: 20})
			m := b.join("w", 0)
			acked := map[rewind.Position]bool{}
			ctx, cancel := context.WithTimeout(bg, 30*time.Second)
			defer cancel()
			for len(acked) < 25 {
				ds, err := m.Fetch(ctx, 5)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range ds {
					if err := m.Ack(bg, d.ID); err != nil {
						t.Fatal(err)
					}
					acked[d.Event.Position] = true
				}
			}
			if !crash {
				if err := b.engine.Flush(bg); err != nil {
					t.Fatal(err)
				}
			}
			b.appendN("s", "T", 50) // after the end: never delivered
			b.restart(crash)
			if in := mustInfo(t, b, "w"); !in.Bounded || in.End != 60 {
				t.Fatalf("reopened: bounded %v end %d, want bounded at 60", in.Bounded, in.End)
			}
			var again []rewind.Position
			for _, p := range consumeAll(t, b, "w", nil) {
				if p <= 10 || p > 60 {
					t.Fatalf("delivered %d, outside (10, 60]", p)
				}
				if acked[p] {
					again = append(again, p)
				}
				acked[p] = true
			}
			if len(acked) != 50 {
				t.Fatalf("%d events acked, want the 50 of (10, 60]", len(acked))
			}
			if !crash && len(again) > 0 {
				t.Fatalf("after a clean restart, %v were delivered again", again)
			}
			b.restart(false)
			in := mustInfo(t, b, "w")
			if in.Status != StatusComplete || in.AckFloor != 60 {
				t.Fatalf("reopened complete: status %s floor %d, want complete at 60", in.Status, in.AckFloor)
			}
			m = b.join("w", 0)
			if ds := fetchNow(t, m, 10); len(ds) != 0 {
				t.Fatalf("a reopened complete group delivered %d events", len(ds))
			}
		})
	}
}

// TestBoundedGroupParks: an event that fails every delivery is parked; the
// group is complete with it parked, and a replay of the parked event
// delivers it again, outside the window's order.
func TestBoundedGroupParks(t *testing.T) {
	b := setup(t, Config{})
	b.appendN("s", "T", 10)
	g := b.create(GroupConfig{Name: "p", End: End{Position: 5}, MaxDeliveries: 1})
	waitRead(t, g, 5)
	m := b.join("p", 0)
	for _, d := range fetchNow(t, m, 10) {
		if d.Event.Position == 3 {
			if err := m.Nak(bg, d.ID, NakOptions{}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := m.Ack(bg, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	in := mustInfo(t, b, "p")
	if in.Status != StatusComplete || in.Parked != 1 || in.Acked != 4 {
		t.Fatalf("status %s parked %d acked %d, want complete with 1 parked and 4 acked", in.Status, in.Parked, in.Acked)
	}
}

// TestBoundedGroupBadInput: bad ends are refused with a typed error and
// create nothing.
func TestBoundedGroupBadInput(t *testing.T) {
	b := setup(t, Config{})
	b.appendN("s", "T", 10)
	now := time.Now()
	cases := []struct {
		name string
		cfg  GroupConfig
		want string
	}{
		{"both", GroupConfig{End: End{Position: 3, Time: now}}, "either a position or a time"},
		{"beyond the log", GroupConfig{End: End{Position: 11}}, "after the end of the log (10)"},
		{"before its start", GroupConfig{Start: Start{Kind: StartPosition, Position: 5}, End: End{Position: 5}},
			"must be after the start position 5"},
		{"time before start", GroupConfig{Start: Start{Kind: StartTime, Time: now}, End: End{Time: now.Add(-time.Second)}},
			"must not be before the start time"},
		{"start at the end", GroupConfig{Start: Start{Kind: StartEnd}, End: End{Position: 4}}, "cannot start at the end"},
	}
	for _, c := range cases {
		c.cfg.Name = "bad"
		_, err := b.engine.CreateGroup(bg, c.cfg)
		var verr *rewind.ValidationError
		if !errors.As(err, &verr) || !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a validation error saying %q", c.name, err, c.want)
		}
	}
	if gs := b.engine.Groups(); len(gs) != 0 {
		t.Fatalf("refused creates left %d groups", len(gs))
	}
	if _, err := b.store.ReadStream(bg, StateStream("bad"), rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Fatalf("a refused create wrote its state stream: %v", err)
	}
}

// TestBoundedGroupReset: a reset back redelivers the window from there
// (not beyond the end) and the group completes again; a plan forward
// past the end counts only the window's events as skipped.
func TestBoundedGroupReset(t *testing.T) {
	b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
	b.appendN("s", "T", 10)
	b.create(GroupConfig{Name: "r", End: End{Position: 5}})
	sameSet(t, "first pass", consumeAll(t, b, "r", nil), []rewind.Position{1, 2, 3, 4, 5})
	plan, err := b.engine.Reset(bg, "r", ResetOptions{ToPosition: 2, ToPositionSet: true, Execute: true})
	if err != nil || plan.Redeliver != 3 {
		t.Fatalf("reset back: %+v %v, want 3 to redeliver", plan, err)
	}
	sameSet(t, "after the reset", consumeAll(t, b, "r", nil), []rewind.Position{3, 4, 5})
	if in := mustInfo(t, b, "r"); in.Status != StatusComplete || in.End != 5 {
		t.Fatalf("after the reset: %s end %d", in.Status, in.End)
	}
	if plan, err = b.engine.Reset(bg, "r", ResetOptions{ToPosition: 9, ToPositionSet: true}); err != nil || plan.Skip != 0 {
		t.Fatalf("a plan forward past the end of a complete group: %+v %v, want nothing skipped", plan, err)
	}
}

// TestBoundedGroupCompleteIsDurable: once Consume returns because the group
// is complete, the acks that completed it are committed: an engine
// abandoned right then (a crash) reopens complete and delivers nothing
// again, however long its commit interval.
func TestBoundedGroupCompleteIsDurable(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{CommitInterval: 10 * time.Second})
	b.appendN("s", "T", 7)
	b.create(GroupConfig{Name: "w", End: End{Position: 7}})
	if got := consumeAll(t, b, "w", nil); len(got) != 7 {
		t.Fatalf("consumed %d events, want 7", len(got))
	}
	b.restart(true)
	if in := mustInfo(t, b, "w"); in.Status != StatusComplete || in.AckFloor != 7 {
		t.Fatalf("after a crash: status %s floor %d, want complete at 7", in.Status, in.AckFloor)
	}
	if ds := fetchNow(t, b.join("w", 0), 10); len(ds) != 0 {
		t.Fatalf("after a crash the complete group delivered %d events again", len(ds))
	}
	// Consuming the complete group again ends at once: nothing is left to
	// commit, and waiting for an empty buffer's commit never ended.
	if got := consumeAll(t, b, "w", nil); len(got) != 0 {
		t.Fatalf("consumed %d events of a complete group, want none", len(got))
	}
}

// TestBoundedGroupResetBackCountsOnlyTheWindow: once a bounded group's
// floor is past its end (a reset forward past it), a plan back counts as
// redelivered only the window's events, which are all the group delivers
// again; it counted every event up to the floor. A shift back counts the
// group's events back from its end, not from beyond it.
func TestBoundedGroupResetBackCountsOnlyTheWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
	b.appendN("s", "T", 10)
	b.create(GroupConfig{Name: "r", End: End{Position: 5}})
	sameSet(t, "first pass", consumeAll(t, b, "r", nil), []rewind.Position{1, 2, 3, 4, 5})
	plan, err := b.engine.Reset(bg, "r", ResetOptions{ToPosition: 9, ToPositionSet: true, Execute: true})
	if err != nil || plan.Skip != 0 || plan.To != 9 {
		t.Fatalf("reset forward past the end: %+v %v", plan, err)
	}
	plan, err = b.engine.Reset(bg, "r", ResetOptions{ToPosition: 2, ToPositionSet: true})
	if err != nil || plan.From != 9 || plan.Redeliver != 3 {
		t.Fatalf("plan back to 2: %+v %v, want 3 to redeliver (3..5, not 3..9)", plan, err)
	}
	plan, err = b.engine.Reset(bg, "r", ResetOptions{ShiftBy: -2})
	if err != nil || plan.To != 3 || plan.Redeliver != 2 {
		t.Fatalf("plan a shift back by 2: %+v %v, want to 3 with 2 to redeliver (4 and 5)", plan, err)
	}
	plan, err = b.engine.Reset(bg, "r", ResetOptions{ToPosition: 2, ToPositionSet: true, Execute: true})
	if err != nil || plan.Redeliver != 3 {
		t.Fatalf("reset back to 2: %+v %v", plan, err)
	}
	sameSet(t, "after the reset", consumeAll(t, b, "r", nil), []rewind.Position{3, 4, 5})
}

// gatedStore holds back the read of one position (the way a parked
// replay reads each event it hands back: From p, Limit 1) until its gate
// opens.
type gatedStore struct {
	*store.Store
	hold atomic.Uint64 // the position held back; 0 holds nothing
	gate chan struct{}
}

func (s *gatedStore) ReadAll(ctx context.Context, opts rewind.ReadAllOptions) iter.Seq2[*rewind.RecordedEvent, error] {
	if p := s.hold.Load(); p != 0 && uint64(opts.From) == p && opts.Limit == 1 {
		select {
		case <-s.gate:
		case <-ctx.Done():
		}
	}
	return s.Store.ReadAll(ctx, opts)
}

// TestBoundedGroupCompleteDuringParkedReplay: a complete bounded group
// whose parked events are replayed in chunks is not complete between two
// chunks, when it holds nothing yet the replay has more to hand back:
// FetchUntilComplete (Consume, rewind consume) keeps waiting instead of
// saying complete, and the status is not complete, until the replay has
// handed back every parked event and they are done. The next chunk is held
// back by the store here, so the moment between chunks lasts. Once it says
// complete, the replay's acks are durable: an engine abandoned then (a
// crash, with a long commit interval) reopens complete with nothing parked.
func TestBoundedGroupCompleteDuringParkedReplay(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{CommitInterval: 10 * time.Second})
	b.appendN("s", "T", 5)
	gated := &gatedStore{Store: b.store, gate: make(chan struct{})}
	if err := b.engine.Close(bg); err != nil {
		t.Fatal(err)
	}
	e, err := Open(bg, gated, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.engine = e
	b.create(GroupConfig{Name: "p", End: End{Position: 5}, MaxDeliveries: 1, ReplayChunk: 1})
	m := b.join("p", 0)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	// Positions 2 and 4 fail their only delivery and are parked; the rest are acked.
	for n := 0; n < 5; {
		ds, err := m.FetchUntilComplete(ctx, 10, 0)
		if err != nil {
			t.Fatalf("first pass after %d: %v", n, err)
		}
		for _, d := range ds {
			n++
			if d.Event.Position == 2 || d.Event.Position == 4 {
				err = m.Nak(bg, d.ID, NakOptions{})
			} else {
				err = m.Ack(bg, d.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if in := mustInfo(t, b, "p"); in.Status != StatusComplete || in.Parked != 2 {
		t.Fatalf("after the first pass: status %s parked %d, want complete with 2 parked", in.Status, in.Parked)
	}
	gated.hold.Store(4) // the replay's second chunk (position 4) waits at the store
	if n, err := b.engine.ReplayParked(bg, "p", ReplayOptions{}); err != nil || n != 2 {
		t.Fatalf("replay parked: %d %v", n, err)
	}
	ds, err := m.FetchUntilComplete(ctx, 10, 0)
	if err != nil || len(ds) != 1 || ds[0].Event.Position != 2 {
		t.Fatalf("the replay's first chunk: %+v %v, want position 2", ds, err)
	}
	if err := m.Ack(bg, ds[0].ID); err != nil {
		t.Fatal(err)
	}
	// Between the chunks: nothing held, position 4 still to come.
	if in := mustInfo(t, b, "p"); in.Status == StatusComplete || in.Complete {
		t.Fatalf("between two chunks of a replay: status %s (%s), want not complete", in.Status, in.StatusReason)
	}
	short, stop := context.WithTimeout(bg, 200*time.Millisecond)
	ds, err = m.FetchUntilComplete(short, 10, 0)
	stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch between two chunks of a replay: %+v %v, want it to wait for the next chunk", ds, err)
	}
	close(gated.gate)
	ds, err = m.FetchUntilComplete(ctx, 10, 0)
	if err != nil || len(ds) != 1 || ds[0].Event.Position != 4 {
		t.Fatalf("the replay's second chunk: %+v %v, want position 4", ds, err)
	}
	if err := m.Ack(bg, ds[0].ID); err != nil {
		t.Fatal(err)
	}
	if ds, err := m.FetchUntilComplete(ctx, 10, 0); !errors.Is(err, ErrGroupComplete) {
		t.Fatalf("after the replay: %+v %v, want ErrGroupComplete", ds, err)
	}
	if in := mustInfo(t, b, "p"); in.Status != StatusComplete || in.Parked != 0 || in.Acked != 5 {
		t.Fatalf("after the replay: status %s parked %d acked %d, want complete with none parked and 5 acked",
			in.Status, in.Parked, in.Acked)
	}
	b.restart(true)
	if in := mustInfo(t, b, "p"); in.Status != StatusComplete || in.Parked != 0 || in.AckFloor != 5 {
		t.Fatalf("after a crash: status %s parked %d floor %d, want complete at 5 with none parked",
			in.Status, in.Parked, in.AckFloor)
	}
}

// TestBoundedGroupResetNeverGoesBelowItsStart: a reset back past a bounded
// group's start (to a position, a time, a duration or a shift) stops at
// the start and says so; the plan counts only the window's events, and
// the group then delivers its window again and nothing before it (an
// outside test: a window of 2 planned 10 to redeliver, then delivered
// 1..10). An unbounded group with a start keeps going back past it (its
// plan counting as delivered again only what it delivered).
func TestBoundedGroupResetNeverGoesBelowItsStart(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
	b.appendN("s", "T", 10)
	b.create(GroupConfig{Name: "win", Start: Start{Kind: StartPosition, Position: 8}, End: End{Position: 10}})
	sameSet(t, "first pass", consumeAll(t, b, "win", nil), []rewind.Position{9, 10})
	for _, o := range []ResetOptions{
		{ToPosition: 0, ToPositionSet: true},
		{ToPosition: 5, ToPositionSet: true},
		{ShiftBy: -100},
		{ShiftBy: math.MinInt64},
		{ByDuration: 10_000 * time.Hour},
		{ToTime: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		plan, err := b.engine.Reset(bg, "win", o)
		if err != nil || plan.To != 8 || plan.Redeliver != 2 || !plan.Clamped || plan.Note == "" {
			t.Fatalf("%+v: plan %+v %v, want to 8 (the start), 2 to redeliver, clamped with a note", o, plan, err)
		}
	}
	// A target inside the window is not clamped.
	if plan, err := b.engine.Reset(bg, "win", ResetOptions{ShiftBy: -1}); err != nil || plan.To != 9 ||
		plan.Redeliver != 1 || plan.Clamped || plan.Note != "" {
		t.Fatalf("shift back by 1: plan %+v %v", plan, err)
	}
	plan, err := b.engine.Reset(bg, "win", ResetOptions{ToPosition: 0, ToPositionSet: true, Execute: true})
	if err != nil || !plan.Executed || plan.To != 8 || !plan.Clamped {
		t.Fatalf("execute: %+v %v", plan, err)
	}
	sameSet(t, "after the reset", consumeAll(t, b, "win", nil), []rewind.Position{9, 10})
	if in := mustInfo(t, b, "win"); in.Status != StatusComplete {
		t.Fatalf("after the reset: %s, want complete", in.Status)
	}

	// Unbounded: the start only says where a new group begins.
	b.create(GroupConfig{Name: "open", Start: Start{Kind: StartPosition, Position: 8}})
	waitRead(t, b.group("open"), 10)
	ackAll(t, b.join("open", 0), 10)
	// Its plan counts as delivered again the two it delivered, not the
	// eight before its start, which it never handed out; executed, the
	// reset delivers all ten.
	plan, err = b.engine.Reset(bg, "open", ResetOptions{ToPosition: 0, ToPositionSet: true})
	if err != nil || plan.To != 0 || plan.Redeliver != 2 || plan.Clamped {
		t.Fatalf("unbounded: plan %+v %v, want to 0 with 2 to redeliver", plan, err)
	}
	if plan, err = b.engine.Reset(bg, "open", ResetOptions{ToPosition: 0, ToPositionSet: true, Execute: true}); err != nil || !plan.Executed {
		t.Fatalf("unbounded: execute %+v %v", plan, err)
	}
	waitRead(t, b.group("open"), 10)
	sameSet(t, "unbounded, after the reset back past its start", ackAll(t, b.join("open", 0), 20),
		[]rewind.Position{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
}
