package projection_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/projection"
)

// The checkpoint reaches the end of the log although most positions hold
// events the projection does not handle, in windows smaller than the
// filtered-out range.
func TestCheckpointAdvancesAcrossFilteredRanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 10)
	for i := 0; i < 20; i++ { // 1000 events of no interest, five windows of 200
		evs := make([]rewind.Event, 50)
		for j := range evs {
			evs[j] = rewind.Event{Type: "Noise", Data: []byte(`{}`)}
		}
		if _, err := b.store.Append(ctx, "noise", rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	r := newRunner(t, orders("orders", 1), b.config())
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	st := b.status(t, "orders", 1)
	if st.Position != b.lastPosition(t) || st.Lag != 0 || st.State != "serving" {
		t.Fatalf("status %+v, want the checkpoint at the log end %d", st, b.lastPosition(t))
	}
	if n := b.count(t, `SELECT count(*) FROM proj_orders_v1.orders WHERE paid`); n != 10 {
		t.Fatalf("%d paid orders, want 10", n)
	}
	if n := b.count(t, `SELECT count(*) FROM proj_orders_v1.applied`); n != 20 || st.Events != 20 {
		t.Fatalf("%d applied rows, %d events in the status, want 20", n, st.Events)
	}
	// The events were in the log before the first version started: history,
	// so no effect was recorded.
	if n := b.count(t, `SELECT count(*) FROM rewind_proj.outbox`); n != 0 {
		t.Fatalf("%d effects recorded for history, want none", n)
	}
	// New events are live: one effect each.
	b.appendOrders(t, 10, 5)
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.dispatchCounting(t, "orders"); n != 5 {
		t.Fatalf("%d effects dispatched, want 5", n)
	}
	if n := b.dispatchCounting(t, "orders"); n != 0 {
		t.Fatalf("%d effects dispatched again, want 0", n)
	}
}

// An undecodable event and a failing handler are parked with their
// position, type and error, the projection goes on, and the rest of the
// failing event's batch is applied.
func TestFailuresAreParked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 5)
	bad, err := b.store.Append(ctx, "order-bad", rewind.Any,
		rewind.Event{Type: "Placed", Data: []byte(`{not json`)},
		rewind.Event{Type: "Paid", Data: []byte(`"fail"`)})
	if err != nil {
		t.Fatal(err)
	}
	b.appendOrders(t, 5, 5)
	r := newRunner(t, orders("orders", 1), b.config())
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	st := b.status(t, "orders", 1)
	if st.Parked != 2 || st.Position != b.lastPosition(t) {
		t.Fatalf("status %+v, want 2 parked and the checkpoint at %d", st, b.lastPosition(t))
	}
	rows, err := b.db.Pool.Query(ctx, `SELECT position, type, kind, error FROM rewind_proj.parked ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := []struct {
		pos       rewind.Position
		typ, kind string
	}{{bad.FirstPosition, "Placed", "undecodable"}, {bad.FirstPosition + 1, "Paid", "handler"}}
	i := 0
	for rows.Next() {
		var pos int64
		var typ, kind, msg string
		if err := rows.Scan(&pos, &typ, &kind, &msg); err != nil {
			t.Fatal(err)
		}
		if i >= len(want) || rewind.Position(pos) != want[i].pos || typ != want[i].typ || kind != want[i].kind || msg == "" {
			t.Fatalf("parked %d %s %s %q, want %+v", pos, typ, kind, msg, want)
		}
		i++
	}
	if n := b.count(t, `SELECT count(*) FROM proj_orders_v1.applied`); n != 20 {
		t.Fatalf("%d applied rows, want 20 (each good event once)", n)
	}
}

// Bad input fails with a typed error and changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 3)
	if _, err := projection.New(orders("Bad-Name", 1), b.config()); !errors.Is(err, projection.ErrBadDefinition) || !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := projection.New(orders("orders", 0), b.config()); !errors.Is(err, projection.ErrBadDefinition) {
		t.Fatalf("version 0: %v", err)
	}
	if err := newRunner(t, orders("orders", 2), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		return b.db.Checksum(t, "rewind_proj.versions", "name, version") + b.db.Checksum(t, "rewind_proj.control", "name") +
			b.count2(t, `SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'proj_%'`)
	}
	before := snapshot()
	cases := []struct {
		name string
		err  error
		call func() error
	}{
		{"status of an unknown projection", projection.ErrNotFound, func() error { _, err := projection.List(ctx, b.db.Pool, "nope"); return err }},
		{"swap of an unknown projection", projection.ErrNotFound, func() error {
			_, err := projection.Swap(ctx, b.db.Pool, "nope", 2, projection.SwapOptions{})
			return err
		}},
		{"swap to an unknown version", projection.ErrNotFound, func() error {
			_, err := projection.Swap(ctx, b.db.Pool, "orders", 7, projection.SwapOptions{})
			return err
		}},
		{"swap to the serving version", projection.ErrStaleVersion, func() error {
			_, err := projection.Swap(ctx, b.db.Pool, "orders", 2, projection.SwapOptions{})
			return err
		}},
		{"drop of the serving version", projection.ErrServing, func() error { return projection.Drop(ctx, b.db.Pool, "orders", 2) }},
		{"drop of an unknown version", projection.ErrNotFound, func() error { return projection.Drop(ctx, b.db.Pool, "orders", 3) }},
		{"drop of an unknown projection", projection.ErrNotFound, func() error { return projection.Drop(ctx, b.db.Pool, "nope", 1) }},
		{"run of a version below the serving one", projection.ErrStaleVersion, func() error { return newRunner(t, orders("orders", 1), b.config()).CatchUp(ctx) }},
	}
	for _, c := range cases {
		err := c.call()
		if !errors.Is(err, c.err) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.err)
		}
		var e *projection.Error
		if !errors.As(err, &e) || e.Reason == "" {
			t.Errorf("%s: %v is not an *Error saying what to do", c.name, err)
		}
		if after := snapshot(); after != before {
			t.Fatalf("%s changed the control tables or schemas", c.name)
		}
	}
}

// A projection writing only with CopyRow streams its COPY while handling;
// an event failing in the middle of a streamed batch is parked and the
// rest applied once.
func TestStreamedCopyWithAFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 300 {
		data := []byte(`{}`)
		if i == 150 {
			data = []byte(`"fail"`)
		}
		if _, err := b.store.Append(ctx, "s", rewind.Any, rewind.Event{Type: "Row", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	p := projection.Projection{Name: "rows", Version: 1,
		Setup: func(schema string) string {
			return "CREATE TABLE " + schema + ".r (position bigint PRIMARY KEY, data bytea)"
		},
		Handlers: map[string]projection.Handler{"Row": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
			if string(ev.Data) == `"fail"` {
				return errors.New("no")
			}
			tx.CopyRow("r", []string{"position", "data"}, int64(ev.Position), ev.Data)
			return nil
		}}}
	cfg := b.config()
	cfg.BatchSize = 1000
	if err := newRunner(t, p, cfg).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, `SELECT count(*) FROM proj_rows_v1.r WHERE data = '{}'`); n != 299 {
		t.Fatalf("%d rows, want 299", n)
	}
	if st := b.status(t, "rows", 1); st.Parked != 1 || st.Position != 300 {
		t.Fatalf("status %+v", st)
	}
}
