package projection_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/projection"
)

// buggy is version 2 of orders with planted discrepancies: order-7 is
// placed with one more than its amount (diverges at its Placed), order-13
// doubles its amount when paid (diverges at its Paid), and order-20 is
// placed wrong and repaired when paid (diverges, then heals: no
// difference at the end).
func buggy() projection.Projection {
	p := orders("orders", 2)
	placed, paid := p.Handlers["Placed"], p.Handlers["Paid"]
	p.Handlers = map[string]projection.Handler{
		"Placed": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
			if ev.Stream == "order-7" || ev.Stream == "order-20" {
				o, err := projection.Decode[struct{ Amount int64 }](ev)
				if err != nil {
					return err
				}
				tx.Queue("INSERT INTO "+tx.Table("orders")+" (id, amount) VALUES ($1, $2)", ev.Stream, o.Amount+1)
				tx.CopyRow("applied", []string{"position", "type"}, int64(ev.Position), ev.Type)
				return nil
			}
			return placed(ctx, tx, ev)
		},
		"Paid": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
			switch ev.Stream {
			case "order-13":
				tx.Queue("UPDATE "+tx.Table("orders")+" SET amount = amount * 2 WHERE id = $1", ev.Stream)
			case "order-20":
				tx.Queue("UPDATE "+tx.Table("orders")+" SET amount = amount - 1 WHERE id = $1", ev.Stream)
			}
			return paid(ctx, tx, ev)
		},
	}
	return p
}

// positionOf is the position of the event of type typ in stream.
func (b *bundle) positionOf(t *testing.T, stream, typ string) rewind.Position {
	t.Helper()
	evs, err := b.store.ReadStream(ctx, stream, rewind.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == typ {
			return ev.Position
		}
	}
	t.Fatalf("no %s in %s", typ, stream)
	return 0
}

// A planted discrepancy is found by the diff, which names the first event
// after which each differing key differed; a divergence that heals is not
// reported; whatever the batch size, the answer is the same.
func TestDiffNamesTheFirstDivergingEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 40)
	for _, batch := range []int{0, 1, 7, 1000} {
		res, err := projection.Diff(ctx, b.config(), orders("orders", 1), buggy(), projection.DiffOptions{Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		if res.Same() || len(res.Keys) != 2 || res.More || len(res.Parked) != 0 || res.Position != b.lastPosition(t) {
			t.Fatalf("batch %d: %+v", batch, res)
		}
		want := map[string]struct {
			pos rewind.Position
			typ string
		}{
			`{"id": "order-7"}`:  {b.positionOf(t, "order-7", "Placed"), "Placed"},
			`{"id": "order-13"}`: {b.positionOf(t, "order-13", "Paid"), "Paid"},
		}
		for _, k := range res.Keys {
			w, ok := want[string(k.Key)]
			if !ok || k.Table != "orders" || k.FirstPosition != w.pos || k.FirstType != w.typ {
				t.Errorf("batch %d: key %s in %s first at %d (%s), want %+v", batch, k.Key, k.Table, k.FirstPosition, k.FirstType, w)
			}
			var a, bb struct{ Amount int64 }
			if json.Unmarshal(k.A, &a) != nil || json.Unmarshal(k.B, &bb) != nil || a.Amount == bb.Amount {
				t.Errorf("batch %d: rows %s and %s", batch, k.A, k.B)
			}
		}
		if fmt.Sprint(res.Tables) != "[applied orders]" {
			t.Errorf("tables %v", res.Tables)
		}
	}
	// Nothing is left behind, and no effect was recorded.
	if n := b.count(t, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rewind_diff_%'`); n != 0 {
		t.Errorf("%d temporary schemas left", n)
	}
	if err := projection.EnsureControl(ctx, b.db.Pool); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, `SELECT count(*) FROM rewind_proj.outbox`); n != 0 {
		t.Errorf("%d effects recorded by a diff", n)
	}
}

// Two equal definitions are the same; a window (To) limits the replay; a
// failing handler on one side is reported as parked, and the key it
// left behind differs.
func TestDiffSameWindowAndParked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 10)
	res, err := projection.Diff(ctx, b.config(), orders("orders", 1), orders("orders", 2), projection.DiffOptions{})
	if err != nil || !res.Same() || res.Events != 20 { // the Noise events are not read
		t.Fatalf("equal definitions: %+v, %v", res, err)
	}
	to := b.positionOf(t, "order-4", "Paid")
	if _, err := b.store.Append(ctx, "order-11", rewind.Any, rewind.Event{Type: "Placed", Data: []byte(`{"Amount":5}`)},
		rewind.Event{Type: "Paid", Data: []byte(`"fail"`)}); err != nil {
		t.Fatal(err)
	}
	res, err = projection.Diff(ctx, b.config(), orders("orders", 1), buggy(), projection.DiffOptions{To: to})
	if err != nil || len(res.Keys) != 0 || res.Position != to {
		t.Fatalf("up to %d (before order-7): %+v, %v", to, res, err)
	}
	fixed := orders("orders", 2)
	fixed.Handlers["Paid"] = func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
		tx.Queue("UPDATE "+tx.Table("orders")+" SET paid = true WHERE id = $1", ev.Stream)
		tx.CopyRow("applied", []string{"position", "type"}, int64(ev.Position), ev.Type)
		return nil
	}
	res, err = projection.Diff(ctx, b.config(), orders("orders", 1), fixed, projection.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failed := b.positionOf(t, "order-11", "Paid")
	if len(res.Parked) != 1 || res.Parked[0].Side != "a" || res.Parked[0].Position != failed {
		t.Fatalf("parked: %+v", res.Parked)
	}
	// order-11 is paid on side b only; its applied row exists on b only.
	var keyed, keyless int
	for _, k := range res.Keys {
		switch {
		case k.Table == "orders" && string(k.Key) == `{"id": "order-11"}` && k.FirstPosition == failed:
			keyed++
		case k.Table == "applied" && string(k.A) == "0" && string(k.B) == "1":
			keyless++
		default:
			t.Errorf("unexpected difference %+v", k)
		}
	}
	if keyed != 1 || keyless != 1 {
		t.Errorf("differences %+v", res.Keys)
	}
}

// A baseline saved from a version is compared with the version later:
// the same at the same position, a row changed by hand is found,
// different positions are refused.
func TestBaselineAndCompare(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 10)
	cfg := b.config()
	if err := newRunner(t, orders("orders", 1), cfg).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	base, err := projection.SaveBaseline(ctx, b.db.Pool, "orders", 1, "before")
	if err != nil || base.Position != b.lastPosition(t) || base.Schema != "projb_orders_before" {
		t.Fatalf("baseline: %+v, %v", base, err)
	}
	v1 := projection.SchemaName("orders", 1)
	res, err := projection.Compare(ctx, b.db.Pool, base.Schema, v1, projection.DiffOptions{})
	if err != nil || !res.Same() || res.Position != base.Position {
		t.Fatalf("a baseline against its version: %+v, %v", res, err)
	}
	b.db.Exec(t, `UPDATE proj_orders_v1.orders SET amount = 999 WHERE id = 'order-3'`)
	res, err = projection.Compare(ctx, b.db.Pool, base.Schema, v1, projection.DiffOptions{})
	if err != nil || len(res.Keys) != 1 || string(res.Keys[0].Key) != `{"id": "order-3"}` {
		t.Fatalf("a row changed by hand: %+v, %v", res, err)
	}
	b.appendOrders(t, 10, 1)
	if err := newRunner(t, orders("orders", 1), cfg).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := projection.Compare(ctx, b.db.Pool, base.Schema, v1, projection.DiffOptions{}); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("compare at different positions = %v", err)
	}
	// Bad input changes nothing.
	for _, c := range []struct {
		name string
		err  error
		fn   func() error
	}{
		{"tag again", rewind.ErrInvalidArgument, func() error { _, err := projection.SaveBaseline(ctx, b.db.Pool, "orders", 1, "before"); return err }},
		{"bad tag", rewind.ErrInvalidArgument, func() error { _, err := projection.SaveBaseline(ctx, b.db.Pool, "orders", 1, "Before!"); return err }},
		{"tag with _", rewind.ErrInvalidArgument, func() error { _, err := projection.SaveBaseline(ctx, b.db.Pool, "orders", 1, "v_2"); return err }},
		{"long tag", rewind.ErrInvalidArgument, func() error {
			_, err := projection.SaveBaseline(ctx, b.db.Pool, "orders", 1, "abcdefghijklmnop")
			return err
		}},
		{"unknown version", projection.ErrNotFound, func() error { _, err := projection.SaveBaseline(ctx, b.db.Pool, "orders", 9, "x"); return err }},
		{"unknown schema", projection.ErrNotFound, func() error {
			_, err := projection.Compare(ctx, b.db.Pool, "proj_orders_v9", v1, projection.DiffOptions{})
			return err
		}},
		{"drop unknown", projection.ErrNotFound, func() error { return projection.DropBaseline(ctx, b.db.Pool, "orders", "nope") }},
		{"diff without setup", rewind.ErrInvalidArgument, func() error {
			p := orders("orders", 2)
			p.Setup = nil
			_, err := projection.Diff(ctx, cfg, orders("orders", 1), p, projection.DiffOptions{})
			return err
		}},
		{"diff past the end", rewind.ErrInvalidArgument, func() error {
			_, err := projection.Diff(ctx, cfg, orders("orders", 1), orders("orders", 2), projection.DiffOptions{To: 1 << 40})
			return err
		}},
	} {
		if err := c.fn(); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM rewind_proj.baselines`); n != 1 {
		t.Errorf("%d baselines, want 1", n)
	}
	if err := projection.DropBaseline(ctx, b.db.Pool, "orders", "before"); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, `SELECT count(*) FROM pg_namespace WHERE nspname = 'projb_orders_before'`); n != 0 {
		t.Error("the baseline's schema is left")
	}
}

// A projection over many streams built as of a position holds exactly
// what an offline build stopped there holds; bad input changes nothing.
func TestBuildAsOf(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 20)
	at := b.positionOf(t, "order-9", "Placed") // order-9 placed, not paid
	res, err := projection.BuildAsOf(ctx, b.config(), orders("orders", 1), at, "orders_asof")
	if err != nil || res.Position != at || res.Schema != "orders_asof" {
		t.Fatalf("as of %d: %+v, %v", at, res, err)
	}
	if n := b.count(t, `SELECT count(*) FROM orders_asof.orders`); n != 10 {
		t.Errorf("%d orders as of %d, want 10", n, at)
	}
	if n := b.count(t, `SELECT count(*) FROM orders_asof.orders WHERE paid`); n != 9 {
		t.Errorf("%d paid orders as of %d, want 9", n, at)
	}
	if n := b.count(t, `SELECT count(*) FROM orders_asof.applied WHERE position > $1`, int64(at)); n != 0 {
		t.Errorf("%d events after %d applied", n, at)
	}
	b.db.Exec(t, `CREATE TABLE orders_asof.mine (x int)`)
	for _, c := range []struct {
		name   string
		schema string
		at     rewind.Position
	}{
		{"exists", "orders_asof", at},
		{"bad name", "Orders-AsOf", at},
		{"system", "pg_temp_x", at},
		{"control", "rewind_proj", at},
		{"past the end", "later", 1 << 40},
	} {
		if _, err := projection.BuildAsOf(ctx, b.config(), orders("orders", 1), c.at, c.schema); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// The refused build left the existing schema alone.
	if n := b.count(t, `SELECT count(*) FROM orders_asof.mine`); n != 0 {
		t.Error("the existing schema changed")
	}
	if n := b.count(t, `SELECT count(*) FROM pg_namespace WHERE nspname = 'later'`); n != 0 {
		t.Error("a refused build left a schema")
	}
}
