package projection_test

import (
	"context"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/projection"
)

var trials = flag.Int("projection.trials", 25, "cancelled runs in TestCancelledRunsResumeWithoutDuplicates")

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkEffectsOnce checks that the effects of every Paid event at or after
// from fired exactly once, and no other.
func (b *bundle) checkEffectsOnce(t *testing.T, name string, from rewind.Position) {
	t.Helper()
	want := map[int64]bool{}
	for ev, err := range b.store.ReadAll(ctx, rewind.ReadAllOptions{From: from, Filter: rewind.Filter{Types: []string{"Paid"}}}) {
		if err != nil {
			t.Fatal(err)
		}
		want[int64(ev.Position)] = true
	}
	rows, err := b.db.Pool.Query(ctx, `SELECT position, seq, n FROM fired WHERE name = $1`, name)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := 0
	for rows.Next() {
		var pos int64
		var seq, n int
		if err := rows.Scan(&pos, &seq, &n); err != nil {
			t.Fatal(err)
		}
		if !want[pos] || seq != 1 || n != 1 {
			t.Errorf("effect %d/%d fired %d times (expected: %v)", pos, seq, n, want[pos])
		}
		got++
	}
	if got != len(want) {
		t.Errorf("%d effects fired, want %d (one per Paid event from %d)", got, len(want), from)
	}
}

// checkSameAsOffline builds the projection offline from scratch under
// another name and compares the tables row for row with version.
func (b *bundle) checkSameAsOffline(t *testing.T, schema string) {
	t.Helper()
	if err := newRunner(t, orders("offline", 1), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tab := range []struct{ name, order string }{{"orders", "id"}, {"applied", "position, type"}} {
		got := b.db.Checksum(t, schema+"."+tab.name, tab.order)
		want := b.db.Checksum(t, "proj_offline_v1."+tab.name, tab.order)
		if got != want || got == "empty" {
			t.Errorf("%s.%s differs from the offline build (%s, want %s)", schema, tab.name, got, want)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM (SELECT position FROM `+schema+`.applied GROUP BY position HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("%d events applied more than once in %s", n, schema)
	}
}

// A shadow never applies past the serving version's checkpoint: events
// after it would have their effects suppressed by the shadow and never
// recorded by the serving version, which stops at its checkpoint.
func TestShadowStaysBehindServing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 50)
	if err := newRunner(t, orders("orders", 1), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	served := b.lastPosition(t)
	b.appendOrders(t, 50, 50)
	if err := newRunner(t, orders("orders", 2), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if st := b.status(t, "orders", 2); st.Position != served {
		t.Fatalf("the shadow stands at %d, want the serving checkpoint %d", st.Position, served)
	}
	if n := b.count(t, `SELECT count(*) FROM rewind_proj.outbox`); n != 0 {
		t.Fatalf("%d effects recorded, want none (history for version 1, suppressed in the shadow)", n)
	}
}

// SwapOptions.Timeout bounds only the wait for the successor: the lag
// check comes first, so a swap refused for its lag is refused however
// short the timeout, and changes nothing; a negative timeout is refused
// too. A swap the lag allows but whose successor does not run times out
// after step 1 and is finished by the next Swap. An outside test got
// "timed out" (exit 9) from `projections swap … --timeout 1ms` where
// --max-lag refuses the swap (exit 2): the timeout bounded the whole call.
func TestSwapRefusedForLagWhateverTheTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 10)
	if err := newRunner(t, orders("orders", 1), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := newRunner(t, orders("orders", 2), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	b.appendOrders(t, 10, 5) // 15 positions
	if err := newRunner(t, orders("orders", 1), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		return b.db.Checksum(t, "rewind_proj.versions", "name, version") + b.db.Checksum(t, "rewind_proj.control", "name")
	}
	before := snapshot()
	for _, o := range []projection.SwapOptions{
		{MaxLag: 14, Timeout: time.Nanosecond},
		{NoLag: true, Timeout: time.Nanosecond},
		{MaxLag: 14, Timeout: time.Millisecond},
	} {
		_, err := projection.Swap(ctx, b.db.Pool, "orders", 2, o)
		if !errors.Is(err, projection.ErrBehind) || !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("%+v: got %v, want ErrBehind", o, err)
		}
		if snapshot() != before {
			t.Fatalf("%+v changed the control tables", o)
		}
	}
	if _, err := projection.Swap(ctx, b.db.Pool, "orders", 2, projection.SwapOptions{MaxLag: 15, Timeout: -time.Second}); !errors.Is(err, projection.ErrBadDefinition) ||
		snapshot() != before {
		t.Fatalf("a negative timeout: %v", err)
	}
	// Allowed by the lag, nothing runs version 2: the wait times out, the
	// swap stays under way with version 1 stopped at its checkpoint.
	at := b.status(t, "orders", 1).Position
	if _, err := projection.Swap(ctx, b.db.Pool, "orders", 2, projection.SwapOptions{MaxLag: 15, Timeout: time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a swap whose successor does not run: %v, want a timeout", err)
	}
	if st := b.status(t, "orders", 1); !st.Stopping || st.StopAt != at {
		t.Fatalf("after the timeout version 1 is %+v, want stopped at %d", st, at)
	}
	if err := newRunner(t, orders("orders", 2), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := projection.Swap(ctx, b.db.Pool, "orders", 2, projection.SwapOptions{Timeout: time.Minute})
	if err != nil || res.At != at || b.status(t, "orders", 2).State != "serving" {
		t.Fatalf("finishing the swap: %+v %v", res, err)
	}
}

// A successor already at the swap position swaps however short the
// timeout (it bounds the wait, and there is none), and a --max-lag of
// 2^63 or more is no limit, not a negative one. An outside tester got a
// timeout with version 1 left stopped, and every swap refused.
func TestSwapOfACaughtUpVersionIgnoresTheTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 10)
	for v := 1; v <= 3; v++ {
		if err := newRunner(t, orders("orders", v), b.config()).CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	at := b.status(t, "orders", 1).Position
	res, err := projection.Swap(ctx, b.db.Pool, "orders", 2, projection.SwapOptions{Timeout: time.Nanosecond})
	if err != nil || res.At != at || b.status(t, "orders", 2).State != "serving" {
		t.Fatalf("a caught-up version with a 1ns timeout: %+v %v", res, err)
	}
	res, err = projection.Swap(ctx, b.db.Pool, "orders", 3, projection.SwapOptions{MaxLag: math.MaxUint64, Timeout: time.Nanosecond})
	if err != nil || res.At != at || b.status(t, "orders", 3).State != "serving" {
		t.Fatalf("--max-lag 2^64-1: %+v %v", res, err)
	}
}

// A rebuild during live appends: version 2 is built while version 1
// serves and fires effects, the swap happens under appends, and then the
// swapped version equals a build from scratch and each effect fired
// exactly once across the swap.
func TestBlueGreenSwapDuringAppends(t *testing.T) {
	b := setup(t)
	b.appendOrders(t, 0, 300) // history
	cfg := b.config()
	cfg.PollInterval = 2 * time.Millisecond
	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stopRunners := context.WithCancel(ctx)
	defer stopRunners()
	run := func(v int) chan error {
		cfg := cfg
		if v == 1 {
			// The serving runner is the slower one, so that a rebuild
			// that did not keep behind it would run ahead.
			cfg.PollInterval = 25 * time.Millisecond
		}
		r := newRunner(t, orders("orders", v), cfg)
		done := make(chan error, 1)
		wg.Go(func() { done <- r.Run(runCtx) })
		return done
	}
	v1 := run(1)
	waitFor(t, "version 1 to exist", func() bool {
		l, err := projection.List(ctx, b.db.Pool, "orders")
		return err == nil && len(l) == 1
	})
	effectsFrom := b.status(t, "orders", 1).EffectsFrom

	// Live appends and a dispatcher of effects, until told to stop.
	appendCtx, stopAppends := context.WithCancel(ctx)
	appendErr := make(chan error, 1)
	wg.Go(func() {
		for i := 300; appendCtx.Err() == nil; i++ {
			if _, err := b.store.Append(ctx, "order-"+itoa(i), rewind.Any,
				rewind.Event{Type: "Placed", Data: []byte(`{"Amount":` + itoa(i) + `}`)},
				rewind.Event{Type: "Noise", Data: []byte(`{}`)},
				rewind.Event{Type: "Paid", Data: []byte(`{}`)}); err != nil {
				appendErr <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
		appendErr <- nil
	})
	wg.Go(func() {
		for runCtx.Err() == nil {
			b.dispatchCounting(t, "orders")
			time.Sleep(3 * time.Millisecond)
		}
	})
	waitFor(t, "live effects of version 1", func() bool { return b.count(t, `SELECT count(*) FROM rewind_proj.outbox`) > 20 })

	v2 := run(2)
	waitFor(t, "version 2 to catch up", func() bool {
		l, err := projection.List(ctx, b.db.Pool, "orders")
		return err == nil && len(l) == 2 && l[1].Position+100 >= l[0].Position && l[1].Position > 900
	})
	if st := b.status(t, "orders", 2); st.State != "building" || st.EffectsFrom != 0 {
		t.Fatalf("version 2 before the swap: %+v", st)
	}
	res, err := projection.Swap(ctx, b.db.Pool, "orders", 2, projection.SwapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-v1; !errors.Is(err, projection.ErrRetired) {
		t.Fatalf("version 1's runner returned %v, want ErrRetired", err)
	}
	if st := b.status(t, "orders", 1); st.Position != res.At || st.State != "retired" {
		t.Fatalf("version 1 after the swap at %d: %+v", res.At, st)
	}
	waitFor(t, "live effects of version 2", func() bool {
		return b.count(t, `SELECT count(*) FROM rewind_proj.outbox WHERE version = 2`) > 20
	})
	stopAppends()
	if err := <-appendErr; err != nil {
		t.Fatal(err)
	}
	end := b.lastPosition(t)
	waitFor(t, "version 2 to reach the end", func() bool { return b.status(t, "orders", 2).Position == end })
	stopRunners()
	if err := <-v2; !errors.Is(err, context.Canceled) {
		t.Fatalf("version 2's runner returned %v", err)
	}
	wg.Wait()
	b.dispatchCounting(t, "orders")

	if st := b.status(t, "orders", 2); st.State != "serving" || st.EffectsFrom != res.At+1 || st.Parked != 0 {
		t.Fatalf("version 2 after the swap at %d: %+v", res.At, st)
	}
	if n := b.count(t, `SELECT count(*) FROM rewind_proj.outbox WHERE (version = 1 AND position > $1) OR (version = 2 AND position <= $1)`, int64(res.At)); n != 0 {
		t.Fatalf("%d effects recorded by the wrong version around the swap at %d", n, res.At)
	}
	b.checkEffectsOnce(t, "orders", effectsFrom)
	b.checkSameAsOffline(t, "proj_orders_v2")
}

// Runs of the serving version and of a rebuild cancelled at random
// points, under appends, resume from their checkpoints without applying
// an event twice or recording an effect twice; the swap then completes.
func TestCancelledRunsResumeWithoutDuplicates(t *testing.T) {
	b := setup(t)
	b.appendOrders(t, 0, 200)
	cfg := b.config()
	cfg.BatchSize = 7 // many commits, many places to be cancelled at
	cfg.PollInterval = time.Millisecond
	if err := newRunner(t, orders("orders", 1), cfg).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	effectsFrom := b.status(t, "orders", 1).EffectsFrom
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for trial := range *trials {
		b.appendOrders(t, 200+trial*10, 10)
		var wg sync.WaitGroup
		for _, v := range []int{1, 2} {
			r := newRunner(t, orders("orders", v), cfg)
			c, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(30_000))*time.Microsecond)
			wg.Go(func() {
				defer cancel()
				if err := r.Run(c); err != nil && c.Err() == nil {
					t.Errorf("trial %d, version %d: %v", trial, v, err)
				}
			})
		}
		wg.Wait()
		if trial%5 == 0 {
			b.dispatchCounting(t, "orders")
		}
	}
	// Finish: version 1 to the end, version 2 running while the swap waits.
	if err := newRunner(t, orders("orders", 1), cfg).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	r2 := newRunner(t, orders("orders", 2), cfg)
	go func() { done <- r2.Run(runCtx) }()
	// Every earlier run of version 2 may have been cancelled before it
	// registered the version; Swap refuses a version no runner has built.
	waitFor(t, "version 2 to be registered", func() bool {
		return b.count(t, `SELECT count(*) FROM rewind_proj.versions WHERE name = 'orders' AND version = 2`) == 1
	})
	if _, err := projection.Swap(ctx, b.db.Pool, "orders", 2, projection.SwapOptions{MaxLag: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	b.appendOrders(t, 10_000, 20)
	end := b.lastPosition(t)
	waitFor(t, "version 2 to reach the end", func() bool { return b.status(t, "orders", 2).Position == end })
	stop()
	<-done
	b.dispatchCounting(t, "orders")
	for _, v := range []int{1, 2} {
		if st := b.status(t, "orders", v); st.Parked != 0 {
			t.Fatalf("version %d parked %d events", v, st.Parked)
		}
	}
	b.checkEffectsOnce(t, "orders", effectsFrom)
	b.checkSameAsOffline(t, "proj_orders_v2")
}

func itoa(i int) string { return fmtInt(i) }
