package projection_test

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rewindhq/rewind"

	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/projection"
)

// gather returns the value of each metric of reg by name and labels.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// The collector exports each version's checkpoint, lag, events and
// parked count as the control tables hold them, and a scrape error when
// they cannot be read.
func TestCollector(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendOrders(t, 0, 10)
	if _, err := b.store.Append(ctx, "order-99", 0, rewindEvent("Paid", `"fail"`)); err != nil {
		t.Fatal(err)
	}
	if err := newRunner(t, orders("orders", 1), b.config()).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(projection.Collector(b.db.Pool, slog.New(slog.DiscardHandler)))
	got := gather(t, reg)
	l := " name=orders state=serving version=1"
	end := float64(b.lastPosition(t))
	if got["rewind_projection_position"+l] != end || got["rewind_projection_lag"+l] != 0 ||
		got["rewind_projection_parked"+l] != 1 || got["rewind_projection_events_total"+l] != 20 ||
		got["rewind_projection_scrape_error"] != 0 {
		t.Fatalf("metrics: %v (end %v)", got, end)
	}
	// A database that cannot be read: the error is a metric, not a panic.
	db := pgtest.New(t)
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(projection.Collector(db.Pool, slog.New(slog.DiscardHandler)))
	db.Pool.Close()
	if got := gather(t, reg2); got["rewind_projection_scrape_error"] != 1 || len(got) != 1 {
		t.Fatalf("a closed pool: %v", got)
	}
}

func rewindEvent(typ, data string) rewind.Event { return rewind.Event{Type: typ, Data: []byte(data)} }
