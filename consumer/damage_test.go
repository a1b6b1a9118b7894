package consumer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/damagetest"
)

// consumeUntilError runs one member of group until Consume returns, and
// returns the positions it handled (each acked) and Consume's error.
func consumeUntilError(t *testing.T, b *bundle, group string, limit int) ([]rewind.Position, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	m := b.join(group, 0)
	defer m.Leave()
	var mu sync.Mutex
	var got []rewind.Position
	err := Consume(ctx, m, func(_ context.Context, msg *Message) error {
		mu.Lock()
		got = append(got, msg.Event.Position)
		mu.Unlock()
		return nil
	}, ConsumeOptions{Concurrency: 4, Limit: limit})
	if ctx.Err() != nil {
		t.Fatalf("group %s: consume did not end (it got %d events)", group, len(got))
	}
	slices.Sort(got)
	return got, err
}

func positionsIn(from, to rewind.Position) []rewind.Position {
	var out []rewind.Position
	for p := from; p <= to; p++ {
		out = append(out, p)
	}
	return out
}

// B2: a group over a log with a damaged record failed ("failed", the exit
// status of a failed disk) as soon as its reader met the damage, and
// delivered nothing, not even the events before it. Now it delivers every
// event before the damage — whatever its kind: unordered, ordered, with a
// priority lane, bounded — and once they are done its members' fetches
// fail with ErrLogDamaged, an error of code corruption naming the damaged
// position; the group's status is "damaged", and says how to go on: a
// reset past the damage delivers the rest. A restart meets the damage
// again, delivering nothing twice.
func TestGroupDeliversUpToDamage(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
	for i := range 30 {
		b.appendN([]string{"orders-1", "orders-2", "orders-3"}[i%3], "T", 10) // positions 1..300
	}
	const damaged = 150
	groups := []GroupConfig{
		{Name: "plain"},
		{Name: "ordered", OrderBy: "stream"},
		{Name: "lane", Priority: []string{"T"}},
		{Name: "bounded", End: End{Position: 250}},
	}
	for _, cfg := range groups {
		b.create(cfg)
	}
	if err := b.engine.Close(bg); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Close(); err != nil {
		t.Fatal(err)
	}
	damagetest.FlipPayloadByte(t, b.dir, damaged)
	b.openStore()
	b.openEngine()

	checkDamaged := func(name string, err error) {
		t.Helper()
		var ce *Error
		if !errors.Is(err, ErrLogDamaged) || !errors.Is(err, rewind.ErrCorruption) || rewind.CodeOf(err) != rewind.CodeCorruption ||
			!errors.As(err, &ce) || !strings.Contains(err.Error(), "position 150") {
			t.Fatalf("group %s: consume ended with %v; want ErrLogDamaged (code corruption) naming position 150", name, err)
		}
		in, ierr := b.engine.Info(name)
		if ierr != nil || in.Status != StatusDamaged || !strings.Contains(in.StatusReason, "position 150") ||
			!strings.Contains(in.StatusReason, "reset") || in.AckFloor != damaged-1 {
			t.Fatalf("group %s: info %+v %v; want status damaged, saying how to go on, ack floor %d", name, in, ierr, damaged-1)
		}
	}
	for _, cfg := range groups {
		got, err := consumeUntilError(t, b, cfg.Name, 0)
		if !slices.Equal(got, positionsIn(1, damaged-1)) {
			t.Fatalf("group %s delivered %d events (%v…); want each of 1..%d once", cfg.Name, len(got),
				got[:min(len(got), 5)], damaged-1)
		}
		checkDamaged(cfg.Name, err)
	}

	// A reset past the damage goes on after it; the plan says what it
	// could not count.
	plan, err := b.engine.Reset(bg, "plain", ResetOptions{ToPositionSet: true, ToPosition: damaged, Execute: true})
	if err != nil || !plan.Executed || plan.Skip != 0 || !strings.Contains(plan.Note, "position 150 is damaged and not counted: the group skips") {
		t.Fatalf("reset past the damage: %+v %v", plan, err)
	}
	got, err := consumeUntilError(t, b, "plain", 300-damaged)
	if err != nil || !slices.Equal(got, positionsIn(damaged+1, 300)) {
		t.Fatalf("after the reset: %d events, %v; want %d..300", len(got), err, damaged+1)
	}
	if in, _ := b.engine.Info("plain"); in.Status == StatusDamaged || in.Status == StatusFailed {
		t.Fatalf("after the reset the group is still %s: %s", in.Status, in.StatusReason)
	}

	// A reset back across the damage delivers again up to it, and stops
	// there again.
	plan, err = b.engine.Reset(bg, "plain", ResetOptions{ToPositionSet: true, ToPosition: 100, Execute: true})
	if err != nil || !plan.Executed || !strings.Contains(plan.Note, "position 150 is damaged and not counted: the group "+
		"delivers again up to it, and stops there again") {
		t.Fatalf("reset back across the damage: %+v %v", plan, err)
	}
	got, err = consumeUntilError(t, b, "plain", 0)
	if !slices.Equal(got, positionsIn(101, damaged-1)) {
		t.Fatalf("after a reset back: %d events; want 101..%d", len(got), damaged-1)
	}
	checkDamaged("plain", err)

	// A restart meets the damage again: nothing before it comes twice.
	b.restart(false)
	got, err = consumeUntilError(t, b, "ordered", 0)
	if len(got) != 0 {
		t.Fatalf("after a restart the group delivered %v again", got)
	}
	checkDamaged("ordered", err)
}

// A reset plan's note names the damaged positions it could not count (at
// most ten, then how many more) and what the reset does with them.
func TestDamagedNote(t *testing.T) {
	t.Parallel()
	many := positionsIn(101, 112)
	for _, c := range []struct {
		damaged []rewind.Position
		back    bool
		want    string
	}{
		{[]rewind.Position{150}, false, "position 150 is damaged and not counted: the group skips it, with its event if it is the group's"},
		{[]rewind.Position{150}, true, "position 150 is damaged and not counted: the group delivers again up to it, and stops there again (status damaged)"},
		{[]rewind.Position{150, 151}, false, "positions 150, 151 are damaged and not counted: the group skips them, with any event of its own they held"},
		{many, true, "positions 101, 102, 103, 104, 105, 106, 107, 108, 109, 110 and 2 more are damaged and not counted: " +
			"the group delivers again up to the first, and stops there again (status damaged)"},
	} {
		if got := damagedNote(c.damaged, c.back); got != c.want {
			t.Errorf("damagedNote(%v, back=%v) = %q, want %q", c.damaged, c.back, got, c.want)
		}
	}
}
