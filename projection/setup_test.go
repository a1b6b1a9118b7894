package projection_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/projection"
	"github.com/rewindhq/rewind/store"
)

var ctx = context.Background()

type bundle struct {
	store *store.Store
	db    *pgtest.DB
}

func setup(t testing.TB) *bundle {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Config{Logger: slog.New(slog.DiscardHandler), Log: eventlog.Config{Durability: eventlog.None}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &bundle{store: s, db: pgtest.New(t)}
}

func (b *bundle) config() projection.Config {
	return projection.Config{Pool: b.db.Pool, Store: b.store, BatchSize: 50, Window: 200, Logger: slog.New(slog.DiscardHandler)}
}

// orders is the projection of the tests: Placed inserts an order, Paid
// marks it paid and records a "receipt" effect, and every applied event
// is logged in applied (no key: a duplicate application shows as two
// rows).
func orders(name string, version int) projection.Projection {
	return projection.Projection{
		Name:    name,
		Version: version,
		Setup: func(schema string) string {
			return fmt.Sprintf(`CREATE TABLE %[1]s.orders (id text PRIMARY KEY, amount bigint NOT NULL, paid bool NOT NULL DEFAULT false);
				CREATE TABLE %[1]s.applied (position bigint NOT NULL, type text NOT NULL);`, schema)
		},
		Handlers: map[string]projection.Handler{
			"Placed": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
				o, err := projection.Decode[struct{ Amount int64 }](ev)
				if err != nil {
					return err
				}
				tx.Queue("INSERT INTO "+tx.Table("orders")+" (id, amount) VALUES ($1, $2)", ev.Stream, o.Amount)
				tx.CopyRow("applied", []string{"position", "type"}, int64(ev.Position), ev.Type)
				return nil
			},
			"Paid": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
				if string(ev.Data) == `"fail"` {
					return fmt.Errorf("refusing event %d", ev.Position)
				}
				tx.Queue("UPDATE "+tx.Table("orders")+" SET paid = true WHERE id = $1", ev.Stream)
				tx.CopyRow("applied", []string{"position", "type"}, int64(ev.Position), ev.Type)
				tx.Effect("receipt", []byte(ev.Stream))
				return nil
			},
		},
	}
}

// appendOrders appends n orders from order number first on, each a Placed
// then a Paid, with noise events in between.
func (b *bundle) appendOrders(t testing.TB, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		stream := fmt.Sprintf("order-%d", i)
		if _, err := b.store.Append(ctx, stream, rewind.Any,
			rewind.Event{Type: "Placed", Data: fmt.Appendf(nil, `{"Amount":%d}`, i)},
			rewind.Event{Type: "Noise", Data: []byte(`{}`)},
			rewind.Event{Type: "Paid", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *bundle) lastPosition(t testing.TB) rewind.Position {
	t.Helper()
	p, err := b.store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (b *bundle) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := b.db.Pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (b *bundle) status(t testing.TB, name string, version int) projection.Status {
	t.Helper()
	all, err := projection.List(ctx, b.db.Pool, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Version == version {
			return s
		}
	}
	t.Fatalf("no version %d of %s", version, name)
	return projection.Status{}
}

// dispatchCounting dispatches effects into a counter table in the
// dispatch's transaction: fired counts how often each effect fired.
func (b *bundle) dispatchCounting(t testing.TB, name string) int {
	t.Helper()
	b.db.Exec(t, `CREATE TABLE IF NOT EXISTS fired (name text, position bigint, seq int, n int NOT NULL, PRIMARY KEY (name, position, seq))`)
	n, err := projection.Dispatch(ctx, b.db.Pool, name, 1<<30, func(ctx context.Context, tx pgx.Tx, e projection.Effect) error {
		_, err := tx.Exec(ctx, `INSERT INTO fired VALUES ($1, $2, $3, 1) ON CONFLICT (name, position, seq) DO UPDATE SET n = fired.n + 1`,
			e.Name, int64(e.Position), e.Seq)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newRunner(t testing.TB, p projection.Projection, cfg projection.Config) *projection.Runner {
	t.Helper()
	r, err := projection.New(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b *bundle) count2(t testing.TB, sql string) string { return fmt.Sprint(b.count(t, sql)) }

func fmtInt(i int) string { return fmt.Sprint(i) }
