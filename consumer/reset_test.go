package consumer

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

func ackAll(t *testing.T, m *Member, n int) []rewind.Position {
	t.Helper()
	ds := fetchNow(t, m, n)
	for _, d := range ds {
		if err := m.Ack(bg, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	return positions(ds)
}

func TestResetPlanAndExecute(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("orders-1", "T", 4) // 1..4
	b.appendN("users-1", "T", 2)  // 5..6, not the group's
	b.appendN("orders-2", "T", 4) // 7..10
	g := b.create(GroupConfig{Name: "g", Filter: rewind.Filter{StreamPrefix: "orders-"}})
	waitRead(t, g, 10)
	m := b.join("g", 0)
	if got := ackAll(t, m, 6); !slices.Equal(got, []rewind.Position{1, 2, 3, 4, 7, 8}) {
		t.Fatalf("acked %v", got)
	}
	held := fetchNow(t, m, 10) // 9, 10 in flight

	// A plan changes nothing.
	plan, err := b.engine.Reset(bg, "g", ResetOptions{ToPositionSet: true, ToPosition: 2})
	if err != nil || plan.Executed || plan.From != 8 || plan.To != 2 || plan.Redeliver != 6 || plan.InFlight != 2 {
		t.Fatalf("plan %+v %v", plan, err)
	}
	if err := m.Ack(bg, held[0].ID); err != nil {
		t.Fatalf("ack after a plan: %v", err)
	}
	// Shift back by 3 of the group's events from the floor (9): 7, 8, 9
	// come again (and 10, in flight).
	plan, err = b.engine.Reset(bg, "g", ResetOptions{ShiftBy: -3})
	if err != nil || plan.From != 9 || plan.To != 6 || plan.Redeliver != 4 {
		t.Fatalf("shift plan %+v %v", plan, err)
	}
	// The smallest int64 has no positive: it panicked (an outside test);
	// it goes as far back as the log goes. A time before every event is
	// the beginning, one after every event the end (they wrapped around).
	for _, o := range []ResetOptions{{ShiftBy: math.MinInt64}, {ToTime: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}} {
		if plan, err := b.engine.Reset(bg, "g", o); err != nil || plan.To != 0 {
			t.Fatalf("%+v: plan %+v %v", o, plan, err)
		}
	}
	if plan, err := b.engine.Reset(bg, "g", ResetOptions{ToTime: time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil || plan.Redeliver != 0 {
		t.Fatalf("a time after every event: plan %+v %v", plan, err)
	}
	// Shift forward by 1: skips 10.
	plan, err = b.engine.Reset(bg, "g", ResetOptions{ShiftBy: 1})
	if err != nil || plan.To != 10 || plan.Skip != 1 {
		t.Fatalf("shift forward plan %+v %v", plan, err)
	}

	plan, err = b.engine.Reset(bg, "g", ResetOptions{ShiftBy: -3, Execute: true})
	if err != nil || !plan.Executed {
		t.Fatalf("execute %+v %v", plan, err)
	}
	if err := m.Ack(bg, held[1].ID); !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("ack of a delivery from before the reset: %v", err)
	}
	waitRead(t, b.group("g"), 10)
	if got := ackAll(t, m, 10); !slices.Equal(got, []rewind.Position{7, 8, 9, 10}) {
		t.Fatalf("after reset delivered %v", got)
	}
	// The reset is durable.
	b.restart(false)
	if in, _ := b.engine.Info("g"); in.AckFloor < 10 {
		t.Fatalf("after restart %+v", in)
	}
}

func TestResetToTime(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 3)
	time.Sleep(5 * time.Millisecond)
	mark := time.Now()
	time.Sleep(5 * time.Millisecond)
	b.appendN("s", "T", 2) // 4, 5
	g := b.create(GroupConfig{Name: "g", Start: Start{Kind: StartEnd}})
	waitRead(t, g, 5)
	m := b.join("g", 0)
	if got := fetchNow(t, m, 10); len(got) != 0 {
		t.Fatalf("a group starting at the end delivered %v", positions(got))
	}
	if _, err := b.engine.Reset(bg, "g", ResetOptions{ToTime: mark, Execute: true}); err != nil {
		t.Fatal(err)
	}
	waitRead(t, b.group("g"), 5)
	if got := ackAll(t, m, 10); !slices.Equal(got, []rewind.Position{4, 5}) {
		t.Fatalf("after reset to time delivered %v", got)
	}
}

// TestResetPlanLeavesParkedOut: a reset back over parked events keeps
// them parked, so its plan counts as delivered again only the others (the
// parked ones apart), and executing it delivers exactly that many.
func TestResetPlanLeavesParkedOut(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("orders-1", "T", 6) // 1..6
	g := b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 6)
	m := b.join("g", 0)
	for _, d := range fetchNow(t, m, 6) {
		var err error
		if d.Event.Position == 2 || d.Event.Position == 4 {
			err = m.Term(bg, d.ID, "bad", "")
		} else {
			err = m.Ack(bg, d.ID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	plan, err := b.engine.Reset(bg, "g", ResetOptions{ToPositionSet: true, ToPosition: 0})
	if err != nil || plan.Redeliver != 4 || plan.Parked != 2 {
		t.Fatalf("plan %+v %v, want 4 delivered again and 2 parked", plan, err)
	}
	if plan, err = b.engine.Reset(bg, "g", ResetOptions{ToPositionSet: true, ToPosition: 0, Execute: true}); err != nil ||
		plan.Redeliver != 4 {
		t.Fatalf("execute %+v %v", plan, err)
	}
	waitRead(t, b.group("g"), 6)
	if got := ackAll(t, m, 10); !slices.Equal(got, []rewind.Position{1, 3, 5, 6}) {
		t.Fatalf("after the reset delivered %v, want the 4 not parked", got)
	}
}

// TestResetPlanCountsOnlyWhatWasDelivered: a plan back counts as
// delivered again only events handed to a member (done, or in flight),
// not those the group read ahead of its members; a plan forward counts
// as skipped only events not done. An outside test found a server's group
// planned 6003 to redeliver when nothing was ever delivered, and 6001
// after 3 acks and a shift back by 1: the plan counted up to the read
// position, and a server's engine reads ahead up to MaxPending.
func TestResetPlanCountsOnlyWhatWasDelivered(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	types := []string{"A", "B", "C"}
	for i := range 60 { // 1..60: A, B, C, A, …
		if _, err := b.store.Append(bg, "ord-1", rewind.Any, rewind.Event{Type: types[i%3]}); err != nil {
			t.Fatal(err)
		}
	}
	// The group's events: 12, 13, 15, 16, 18, … 46, 48; 11 is not one, so
	// once read the floor is 11, after the start (10).
	g := b.create(GroupConfig{Name: "bg3", Filter: rewind.Filter{StreamPrefix: "ord-1", Types: []string{"A", "C"}},
		Start: Start{Kind: StartPosition, Position: 10}, End: End{Position: 48}})
	waitRead(t, g, 48)
	plan := func(o ResetOptions) ResetPlan {
		t.Helper()
		p, err := b.engine.Reset(bg, "bg3", o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 10}); p.From != 11 || p.Redeliver != 0 || p.InFlight != 0 {
		t.Fatalf("nothing delivered yet: plan %+v, want from 11 and 0 to redeliver", p)
	}
	m := b.join("bg3", 0)
	if got := ackAll(t, m, 3); !slices.Equal(got, []rewind.Position{12, 13, 15}) {
		t.Fatalf("acked %v", got)
	}
	if p := plan(ResetOptions{ShiftBy: -1}); p.From != 15 || p.To != 14 || p.Redeliver != 1 {
		t.Fatalf("back by 1 after 3 acks: plan %+v, want from 15 to 14, 1 to redeliver", p)
	}
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 10}); p.Redeliver != 3 {
		t.Fatalf("back to the start after 3 acks: plan %+v, want 3 to redeliver", p)
	}
	// 16 and 18 in flight, 18 acked out of order: 16 in flight and 18
	// done count as delivered again, the ones read ahead (19, …) not.
	held := fetchNow(t, m, 2)
	if err := m.Ack(bg, held[1].ID); err != nil {
		t.Fatal(err)
	}
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 10}); p.From != 15 || p.Redeliver != 5 || p.InFlight != 1 {
		t.Fatalf("back to the start with 1 in flight and 1 acked above the floor: plan %+v, want 5 to redeliver", p)
	}
	// Forward to 21: 16 (in flight), 19 and 21 (never delivered) are
	// skipped; 18 is done already.
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 21}); p.Skip != 3 {
		t.Fatalf("forward to 21: plan %+v, want 3 skipped", p)
	}
	// After a restart the records say what was done above the floor and
	// what was delivered, whether the reader has read that far again or not.
	m.Leave()
	b.restart(false)
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 10}); p.From != 15 || p.Redeliver != 5 {
		t.Fatalf("after a restart: plan %+v, want from 15 and 5 to redeliver", p)
	}
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 10, Execute: true}); !p.Executed || p.Redeliver != 5 {
		t.Fatalf("execute: %+v", p)
	}
	// Right after it nothing of the window was delivered again yet.
	waitRead(t, b.group("bg3"), 48)
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 10}); p.From != 11 || p.Redeliver != 0 {
		t.Fatalf("right after the reset: plan %+v, want from 11 and 0 to redeliver", p)
	}
}

// TestResetPlanCountsOnlyDeliveredAfterSkips: positions the group moved
// its floor over without handing them to a member — an executed reset
// forward (to a position, by shift-by, to a time), its start — are not
// counted as delivered again by a later plan back, durably, until a reset
// back over them delivers them. An outside test consumed 5 events, reset
// to position 50 with --execute, and a plan back to 0 said 50 events
// would be delivered again, not 5.
func TestResetPlanCountsOnlyDeliveredAfterSkips(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 60) // 1..60
	g := b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 60)
	m := b.join("g", 0)
	plan := func(o ResetOptions) ResetPlan {
		t.Helper()
		p, err := b.engine.Reset(bg, "g", o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	to := func(p rewind.Position) ResetOptions { return ResetOptions{ToPositionSet: true, ToPosition: p} }
	if got := ackAll(t, m, 5); !slices.Equal(got, []rewind.Position{1, 2, 3, 4, 5}) {
		t.Fatalf("acked %v", got)
	}
	// 6 and 7 in flight, 8 read ahead: the reset forward skips all three,
	// and only the two in flight were delivered.
	fetchNow(t, m, 2)
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 50, Execute: true}); !p.Executed || p.Skip != 45 {
		t.Fatalf("reset forward to 50: %+v, want 45 skipped", p)
	}
	if p := plan(to(0)); p.From != 50 || p.Redeliver != 7 {
		t.Fatalf("back to 0 after a reset forward to 50: plan %+v, want 7 to redeliver (1..7)", p)
	}
	if p := plan(to(10)); p.Redeliver != 0 {
		t.Fatalf("back to 10, over skipped events only: plan %+v, want 0 to redeliver", p)
	}
	// Shift-by forward and a time target skip too.
	waitRead(t, b.group("g"), 60)
	if got := ackAll(t, m, 2); !slices.Equal(got, []rewind.Position{51, 52}) {
		t.Fatalf("acked %v", got)
	}
	if p := plan(ResetOptions{ShiftBy: 3, Execute: true}); p.To != 55 || p.Skip != 3 {
		t.Fatalf("shift forward by 3: %+v", p)
	}
	// (The log's end is after 60: the group's own state stream is in it.)
	if p := plan(ResetOptions{ToTime: time.Now().Add(time.Hour), Execute: true}); p.To < 60 || p.Skip != 5 {
		t.Fatalf("forward to a time after every event: %+v", p)
	}
	if p := plan(to(0)); p.From < 60 || p.Redeliver != 9 {
		t.Fatalf("back to 0 after three resets forward: plan %+v, want 9 to redeliver (1..7, 51, 52)", p)
	}
	// The records keep it.
	m.Leave()
	b.restart(false)
	if p := plan(to(0)); p.From < 60 || p.Redeliver != 9 {
		t.Fatalf("after a restart: plan %+v, want 9 to redeliver", p)
	}
	// A reset back over skipped events delivers them: once acked they
	// count.
	if p := plan(ResetOptions{ToPositionSet: true, ToPosition: 3, Execute: true}); p.Redeliver != 6 {
		t.Fatalf("back to 3: %+v, want 6 to redeliver (4..7, 51, 52)", p)
	}
	if p := plan(to(0)); p.From != 3 || p.Redeliver != 3 {
		t.Fatalf("right after the reset back to 3: plan %+v, want 3 to redeliver", p)
	}
	waitRead(t, b.group("g"), 60)
	m = b.join("g", 0)
	if got := ackAll(t, m, 100); len(got) != 57 {
		t.Fatalf("after the reset back delivered %d events, want 57", len(got))
	}
	if p := plan(to(0)); p.From < 60 || p.Redeliver != 60 {
		t.Fatalf("everything delivered: plan %+v, want 60 to redeliver", p)
	}
}

// TestResetPlanCountsNothingBeforeTheStart: a group that starts after the
// log's beginning was handed nothing before its start, so a plan back
// past the start counts only what it delivered.
func TestResetPlanCountsNothingBeforeTheStart(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 30) // 1..30
	for _, c := range []struct {
		name  string
		start Start
	}{
		{"position", Start{Kind: StartPosition, Position: 20}},
		{"end", Start{Kind: StartEnd}},
	} {
		g := b.create(GroupConfig{Name: c.name, Start: c.start})
		waitRead(t, g, 30)
		p, err := b.engine.Reset(bg, c.name, ResetOptions{ToPositionSet: true, ToPosition: 0})
		if err != nil || p.Redeliver != 0 {
			t.Fatalf("start %s, nothing delivered: plan %+v %v, want 0 to redeliver", c.name, p, err)
		}
	}
	m := b.join("position", 0)
	if got := ackAll(t, m, 2); !slices.Equal(got, []rewind.Position{21, 22}) {
		t.Fatalf("acked %v", got)
	}
	if p, err := b.engine.Reset(bg, "position", ResetOptions{ToPositionSet: true, ToPosition: 0}); err != nil || p.Redeliver != 2 {
		t.Fatalf("start at 20, 2 acked: plan %+v %v, want 2 to redeliver", p, err)
	}
}

// TestBoundedGroupResetPlanAfterASkip: in a bounded group's window too, a
// plan back after an executed reset forward counts only what was handed
// out, also after a reset forward past the window's end.
func TestBoundedGroupResetPlanAfterASkip(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 60) // 1..60
	g := b.create(GroupConfig{Name: "w", Start: Start{Kind: StartPosition, Position: 10}, End: End{Position: 40}})
	waitRead(t, g, 40)
	m := b.join("w", 0)
	if got := ackAll(t, m, 3); !slices.Equal(got, []rewind.Position{11, 12, 13}) {
		t.Fatalf("acked %v", got)
	}
	for _, target := range []rewind.Position{30, 50} {
		if p, err := b.engine.Reset(bg, "w", ResetOptions{ToPositionSet: true, ToPosition: target, Execute: true}); err != nil || !p.Executed {
			t.Fatalf("reset forward to %d: %+v %v", target, p, err)
		}
		p, err := b.engine.Reset(bg, "w", ResetOptions{ToPositionSet: true, ToPosition: 10})
		if err != nil || p.From != target || p.Redeliver != 3 {
			t.Fatalf("back to the start after a reset forward to %d: plan %+v %v, want 3 to redeliver", target, p, err)
		}
	}
}
