package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/pgstore"
)

// TestPostgresStore: a PostgreSQL store refuses to open before `rewind
// migrate`, then the data commands work on it with --store, as they do on
// a data directory, and migrating again does nothing.
func TestPostgresStore(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	dir := t.TempDir() // must stay untouched: the commands use PostgreSQL
	pg := func(stdin string, args ...string) (int, string, string) {
		return run(t, dir, stdin, append([]string{"--store", db.DSN, "--store-schema", "cli"}, args...)...)
	}
	if code, _, errOut := pg("", "read", "orders-1"); code == 0 || !strings.Contains(errOut, "rewind migrate") {
		t.Fatalf("read before migrating: %d %s; want an error saying to run rewind migrate", code, errOut)
	}
	code, out, errOut := pg("", "migrate", "--json")
	var res pgstore.MigrateResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.To != pgstore.SchemaVersion() || len(res.Applied) == 0 {
		t.Fatalf("migrate: %d %q %s", code, out, errOut)
	}
	if code, out, _ := pg("", "migrate"); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second migrate: %d %q", code, out)
	}
	if code, _, errOut := pg("", "append", "orders-1", "--type", "Placed", "--data", `{"total":12}`,
		"--expected-version", "no-stream"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := pg("", "append", "orders-1", "--type", "Placed", "--expected-version", "no-stream"); code != 4 ||
		!strings.Contains(errOut, "actual version 1") {
		t.Fatalf("append with a wrong expected version: %d %s", code, errOut)
	}
	if code, out, errOut := pg("", "read", "orders-1", "--json"); code != 0 || !strings.Contains(out, `"data":{"total":12}`) {
		t.Fatalf("read: %d %q %s", code, out, errOut)
	}
	code, out, _ = pg("", "stat", "--json")
	var st storeStat
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.LastPosition != 1 || !strings.Contains(st.Target, "schema cli") ||
		st.Horizon == nil || st.Horizon.Safe != 1 || st.Horizon.Holder != nil {
		t.Fatalf("stat: %d %q", code, out)
	}
	if code, _, errOut := run(t, dir, "", "--store", db.DSN, "--server", "http://127.0.0.1:1", "read"); code != 2 ||
		!strings.Contains(errOut, "not both") {
		t.Fatalf("--store with --server: %d %s", code, errOut)
	}
	if code, _, errOut := pg("", "verify"); code != 2 || !strings.Contains(errOut, "PostgreSQL") {
		t.Fatalf("verify of a PostgreSQL store: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", "--store", "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=5", "read", "x"); code != 9 {
		t.Fatalf("a store that cannot be reached: %d %s; want 9 (unavailable)", code, errOut)
	}
}

// TestServePostgresStore: `rewind serve --store` serves the PostgreSQL
// store (tokens in --data-dir), and a client of the server reads what a
// --store command appended.
func TestServePostgresStore(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if _, err := pgstore.Migrate(context.Background(), db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if code, _, errOut := run(t, dir, "", "--store", db.DSN, "append", "s-1", "--type", "T", "--data", `{"a":1}`); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	a := newApp(strings.NewReader(""), pw, io.Discard)
	done := make(chan int, 1)
	go func() {
		done <- a.run(ctx, []string{"--data-dir", dir, "serve", "--store", db.DSN, "--addr", "127.0.0.1:0", "--no-auth", "--json"})
		pw.Close()
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d", code)
			}
		case <-time.After(time.Minute):
			t.Error("serve did not stop")
		}
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr)
	var started map[string]string
	if err != nil || json.Unmarshal([]byte(line), &started) != nil || started["url"] == "" || !strings.Contains(started["store"], "schema rewind") {
		t.Fatalf("serve's start line: %q, %v", line, err)
	}
	code, out, errOut := run(t, dir, "", "--server", started["url"], "read", "s-1", "--json")
	if code != 0 || !strings.Contains(out, `"data":{"a":1}`) {
		t.Fatalf("read through the server: %d %q %s", code, out, errOut)
	}
}
