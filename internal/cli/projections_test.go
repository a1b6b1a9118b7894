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
		{[]string{"swap", "counts", "99999999999"}, 2, "from 1 to 2147483647"}, // was exit 1, the driver's int4 error
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

	// Version 2 five positions behind the serving version 1: --max-lag 0
	// and 4 refuse the swap, changing nothing (0 is not the default
	// 10,000), and so does a --timeout that is not positive. --timeout
	// bounds only the wait for version 2 to reach the swap position, which
	// comes after the lag check: a swap refused for its lag is refused
	// however short the timeout (an outside test got exit 9, "timed out",
	// from --timeout 1ms where --max-lag refuses).
	if err := proj(2).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Append(ctx, fmt.Sprint("s-", i%3), rewind.Any, rewind.Event{Type: "Counted", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := proj(1).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	before = snapshot()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-lag", "0"}, "5 positions behind the serving version (more than 0)"},
		{[]string{"--max-lag", "4"}, "5 positions behind the serving version (more than 4)"},
		{[]string{"--max-lag", "4", "--timeout", "1ms"}, "5 positions behind the serving version (more than 4)"},
		{[]string{"--max-lag", "0", "--timeout", "1ns"}, "5 positions behind the serving version (more than 0)"},
		{[]string{"--timeout", "0s"}, "--timeout"},
		{[]string{"--timeout=-1s"}, "--timeout"},
	} {
		code, out, errOut := run(t, dir, "", append([]string{"projections", "swap", "counts", "2", dsn}, c.args...)...)
		if code != 2 || !strings.Contains(out+errOut, c.want) || strings.Contains(out+errOut, "older than") {
			t.Errorf("swap %v: exit %d, %q %q; want exit 2 mentioning %q", c.args, code, out, errOut, c.want)
		}
		if snapshot() != before {
			t.Fatalf("swap %v changed the control tables", c.args)
		}
	}
	// --timeout runs out while nothing runs version 2: exit 9, saying so;
	// version 1 stays stopped at 35 and the swap below finishes it.
	code, out, errOut = run(t, dir, "", "projections", "swap", "counts", "2", dsn, "--max-lag", "5", "--timeout", "300ms")
	if code != 9 || !strings.Contains(errOut, "did not finish within --timeout 300ms") || !strings.Contains(errOut, "run swap again") {
		t.Fatalf("swap with a --timeout that runs out: %d %q %q", code, out, errOut)
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
	if code != 0 || json.Unmarshal([]byte(out), &sw) != nil || sw.Swap.At != 35 || sw.Swap.From != 1 || sw.Swap.To != 2 {
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

// baseline saves a version's tables; diff compares a baseline or version
// with another: exit 0 when the same, 5 with the differing keys, 2 when
// the positions differ or the input is bad, 3 for what does not exist.
func TestProjectionsBaselineAndDiff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s, err := store.Open(t.TempDir(), store.Config{Logger: slog.New(slog.DiscardHandler), Log: eventlog.Config{Durability: eventlog.None}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN := func(n int) {
		for i := range n {
			if _, err := s.Append(ctx, fmt.Sprint("s-", i%3), rewind.Any, rewind.Event{Type: "Counted", Data: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(12)
	catchUp := func() {
		r, err := projection.New(projection.Projection{Name: "counts", Version: 1,
			Setup: func(schema string) string { return "CREATE TABLE " + schema + ".c (stream text PRIMARY KEY, n int)" },
			Handlers: map[string]projection.Handler{"Counted": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
				tx.Queue("INSERT INTO "+tx.Table("c")+" VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = c.n + 1", ev.Stream)
				return nil
			}}}, projection.Config{Pool: db.Pool, Store: s, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	catchUp()
	dsn := "--dsn=" + db.DSN
	dir := t.TempDir()
	if code, out, errOut := run(t, dir, "", "projections", "baseline", "counts", "1", "before", dsn, "--json"); code != 0 ||
		!strings.Contains(out, `"schema":"projb_counts_before"`) {
		t.Fatalf("baseline: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := run(t, dir, "", "projections", "diff", "counts", "@before", "1", dsn); code != 0 || !strings.Contains(out, "same") {
		t.Fatalf("diff of a baseline with its version: %d %s %s", code, out, errOut)
	}
	db.Exec(t, `UPDATE proj_counts_v1.c SET n = 99 WHERE stream = 's-1'`)
	code, out, errOut := run(t, dir, "", "projections", "diff", "counts", "@before", "1", dsn, "--json")
	var d struct {
		Diff projection.DiffResult
		Same bool
	}
	if code != 5 || json.Unmarshal([]byte(out), &d) != nil || d.Same || len(d.Diff.Keys) != 1 ||
		!strings.Contains(string(d.Diff.Keys[0].Key), `"s-1"`) || !strings.Contains(string(d.Diff.Keys[0].B), "99") {
		t.Fatalf("diff after a change by hand: %d %s %s", code, out, errOut)
	}
	appendN(3)
	catchUp()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"diff", "counts", "@before", "1"}, 2, "same position"},
		{[]string{"diff", "counts", "x", "1"}, 2, "@TAG"},
		{[]string{"diff", "counts", "@", "1"}, 2, "@TAG"},
		{[]string{"diff", "counts", "@nope", "1"}, 3, "neither"},
		{[]string{"diff", "counts", "1", "1", "--limit", "0"}, 2, "--limit"},
		{[]string{"baseline", "counts", "1", "before"}, 2, "exists"},
		{[]string{"baseline", "counts", "1", "Bad-Tag"}, 2, "tag"},
		{[]string{"baseline", "counts", "7", "other"}, 3, "not found"},
		{[]string{"baseline", "counts", "1", "nope", "--drop"}, 3, "no baseline"},
	} {
		code, out, errOut := run(t, dir, "", append([]string{"projections"}, append(c.args, dsn)...)...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%v: exit %d, %q %q; want exit %d mentioning %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
	if code, out, errOut := run(t, dir, "", "projections", "baseline", "counts", "1", "before", "--drop", dsn); code != 0 {
		t.Fatalf("drop the baseline: %d %s %s", code, out, errOut)
	}
	var n int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'projb_counts_before'`).Scan(&n)
	if n != 0 {
		t.Fatal("the dropped baseline's schema is still there")
	}
}
