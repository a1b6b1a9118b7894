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
