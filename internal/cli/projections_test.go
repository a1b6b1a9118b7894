package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/projection"
	"github.com/rewindhq/rewind/store"
)

// The projections commands read and change the control tables a program
// running projections wrote: ls and status report, swap flips the serving
// version while the new version's runner runs, drop refuses the serving
// version and drops a retired one; bad input exits with its status and
// changes nothing.
func TestProjectionsCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s, err := store.Open(t.TempDir(), store.Config{Logger: slog.New(slog.DiscardHandler), Log: eventlog.Config{Durability: eventlog.None}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 30 {
		if _, err := s.Append(ctx, fmt.Sprint("s-", i%3), rewind.Any, rewind.Event{Type: "Counted", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	proj := func(v int) *projection.Runner {
		r, err := projection.New(projection.Projection{Name: "counts", Version: v,
			Setup: func(schema string) string { return "CREATE TABLE " + schema + ".c (position bigint)" },
			Handlers: map[string]projection.Handler{"Counted": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
				tx.CopyRow("c", []string{"position"}, int64(ev.Position))
				return nil
			}}}, projection.Config{Pool: db.Pool, Store: s, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := proj(1).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	dsn := "--dsn=" + db.DSN
	dir := t.TempDir()

	code, out, errOut := run(t, dir, "", "projections", "ls", dsn, "--json")
	var ls struct{ Projections []projection.Status }
	if code != 0 || json.Unmarshal([]byte(out), &ls) != nil || len(ls.Projections) != 1 || ls.Projections[0].Position != 30 ||
		ls.Projections[0].State != "serving" {
		t.Fatalf("ls: %d %s %s", code, out, errOut)
	}
	snapshot := func() string {
		return db.Checksum(t, "rewind_proj.versions", "name, version") + db.Checksum(t, "rewind_proj.control", "name")
	}
	before := snapshot()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "nope"}, 3, "not found"},
		{[]string{"drop", "counts", "1"}, 2, "serving"},
		{[]string{"drop", "counts", "x"}, 2, "VERSION"},
		{[]string{"swap", "counts", "2"}, 3, "start its runner"},
		{[]string{"swap", "counts", "1"}, 2, "swap in a version above it"},
		{[]string{"rebuild", "counts", "2"}, 3, "projection.New"},
	} {
		code, out, errOut := run(t, dir, "", append([]string{"projections"}, append(c.args, dsn)...)...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%v: exit %d, %q %q; want exit %d mentioning %q", c.args, code, out, errOut, c.code, c.want)
		}
		if snapshot() != before {
			t.Fatalf("%v changed the control tables", c.args)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- proj(2).Run(runCtx) }()
	defer func() { stop(); <-done }()
	if code, out, errOut := run(t, dir, "", "projections", "rebuild", "counts", "2", "--wait", "--max-lag", "0", dsn); code != 0 ||
		!strings.Contains(out, "swap with: rewind projections swap counts 2") {
		t.Fatalf("rebuild --wait: %d %s %s", code, out, errOut)
	}
	code, out, errOut = run(t, dir, "", "projections", "swap", "counts", "2", dsn, "--json")
	var sw struct{ Swap projection.SwapResult }
	if code != 0 || json.Unmarshal([]byte(out), &sw) != nil || sw.Swap.At != 30 || sw.Swap.From != 1 || sw.Swap.To != 2 {
		t.Fatalf("swap: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := run(t, dir, "", "projections", "drop", "counts", "1", dsn); code != 0 || !strings.Contains(out, "proj_counts_v1") {
		t.Fatalf("drop: %d %s %s", code, out, errOut)
	}
	code, out, _ = run(t, dir, "", "projections", "status", "counts", dsn)
	if code != 0 || !strings.Contains(out, "serving") || strings.Contains(out, "retired") {
		t.Fatalf("status after the swap and drop: %d %s", code, out)
	}
	var schemas int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'proj_counts_v1'`).Scan(&schemas)
	if schemas != 0 {
		t.Fatal("the dropped version's schema is still there")
	}
}
