package server_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/projection"
	"github.com/rewindhq/rewind/server"
)

// With ProjectionsDSN, /metrics exports the projections' status read from
// their control tables at each scrape; a bad DSN is refused at start.
func TestMetricsExportProjections(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if err := projection.EnsureControl(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `INSERT INTO rewind_proj.versions (name, version, state, position, log_end, events) VALUES ('orders', 1, 'serving', 42, 50, 40)`)
	_, _, b := setup(t, server.Config{ProjectionsDSN: db.DSN})
	_, m := get(t, b.url+"/metrics")
	for _, want := range []string{`rewind_projection_position{name="orders",state="serving",version="1"} 42`,
		`rewind_projection_lag{name="orders",state="serving",version="1"} 8`, "rewind_projection_scrape_error 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if _, err := server.New(server.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", ProjectionsDSN: "postgres://x:bad port/"}); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Errorf("a bad projections DSN: %v", err)
	}
}
