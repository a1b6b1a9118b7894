package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/pgstore"
)

// migratedPG returns a new database with the store's schema migrated, and
// the flags that name it.
func migratedPG(t *testing.T) (*pgtest.DB, []string) {
	t.Helper()
	db := pgtest.New(t)
	if _, err := pgstore.Migrate(context.Background(), db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	return db, []string{"--store", db.DSN}
}

// tail on a PostgreSQL store prints the log's epoch (1) with every event
// and in its resume hint, as on a data directory, and refuses a resume in
// an epoch this log never had with epoch_changed (12).
func TestTailEpochPostgres(t *testing.T) {
	t.Parallel()
	_, pg := migratedPG(t)
	for range 3 {
		if code, _, errOut := run(t, t.TempDir(), "", append(pg, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	c := startChild(t, cleanEnv(), append(pg, "tail", "--after", "2", "--epoch", "1", "--json")...)
	if pos, epoch := tailLine(t, c.line(t)); pos != 3 || epoch != 1 {
		t.Fatalf("tail printed position %d epoch %d, want 3 and 1", pos, epoch)
	}
	c.cmd.Process.Signal(os.Interrupt)
	if st := c.wait(t, time.Minute); st != 130 || !strings.Contains(c.errOut(), "--after 3 --epoch 1") {
		t.Fatalf("tail interrupted: exit status %d, stderr %q; want 130 and --after 3 --epoch 1", st, c.errOut())
	}
	code, _, errOut := run(t, t.TempDir(), "", append(pg, "tail", "--after", "1", "--epoch", "5")...)
	if code != 12 || !strings.Contains(errOut, "epoch") {
		t.Fatalf("tail --after 1 --epoch 5 on a PostgreSQL log: %d %s, want exit status 12", code, errOut)
	}
}

// tail --store on a PostgreSQL cluster that is stopped (fast: sessions
// ended, then connections refused) and started again: tail says it is
// retrying, then goes on with the next event, none lost or printed twice
// (F2: it exited 9 within milliseconds of the stop).
func TestTailSurvivesPostgresRestart(t *testing.T) {
	t.Parallel()
	c := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	if _, err := pgstore.Migrate(context.Background(), c.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	pg := []string{"--store", c.DSN}
	appendOne := func() {
		t.Helper()
		if code, _, errOut := run(t, t.TempDir(), "", append(pg, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	appendOne()
	tail := startChild(t, cleanEnv(), append(pg, "tail", "--from-start", "--json")...)
	if pos, _ := tailLine(t, tail.line(t)); pos != 1 {
		t.Fatalf("tail printed position %d, want 1", pos)
	}
	for round := range 2 {
		c.Stop("fast")
		for strings.Count(tail.errOut(), "retrying") <= round {
			select {
			case <-tail.done:
				t.Fatalf("tail exited %d while PostgreSQL was down: %s", tail.status, tail.errOut())
			case <-time.After(20 * time.Millisecond):
			}
		}
		time.Sleep(time.Second) // a few tries fail while it is down
		c.Start()
		appendOne()
		if pos, _ := tailLine(t, tail.line(t)); pos != uint64(round+2) {
			t.Fatalf("tail after PostgreSQL's restart %d printed position %d, want %d", round+1, pos, round+2)
		}
	}
	appendOne()
	if pos, _ := tailLine(t, tail.line(t)); pos != 4 {
		t.Fatalf("tail printed position %d, want 4", pos)
	}
	if !strings.Contains(tail.errOut(), "available again") {
		t.Fatalf("tail's stderr says nothing of the outage's end: %s", tail.errOut())
	}
}

// tail --server on a server whose PostgreSQL is stopped for a few seconds
// and started again goes on with the next event, as tail --store does.
func TestTailServerSurvivesPostgresOutage(t *testing.T) {
	t.Parallel()
	c := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	if _, err := pgstore.Migrate(context.Background(), c.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	const token = "adminadminadminadminadmin0123456789"
	serveChild(t, token, addr, "--data-dir", t.TempDir(), "--store", c.DSN)
	remote := []string{"--server", "http://" + addr, "--token", token}
	appendOne := func() {
		t.Helper()
		if code, _, errOut := run(t, "", "", append(remote, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	appendOne()
	tail := startChild(t, cleanEnv(), append(remote, "tail", "--from-start", "--json")...)
	if pos, _ := tailLine(t, tail.line(t)); pos != 1 {
		t.Fatalf("tail printed position %d, want 1", pos)
	}
	c.Stop("fast")
	for !strings.Contains(tail.errOut(), "retrying") {
		select {
		case <-tail.done:
			t.Fatalf("tail exited %d while PostgreSQL was down: %s", tail.status, tail.errOut())
		case <-time.After(20 * time.Millisecond):
		}
	}
	time.Sleep(4 * time.Second) // the tester's outage: longer than the client's own retries
	c.Start()
	appendOne()
	if pos, _ := tailLine(t, tail.line(t)); pos != 2 {
		t.Fatalf("tail after the outage printed position %d, want 2; stderr %s", pos, tail.errOut())
	}
}

// A row deleted from a PostgreSQL store's events table: reading the whole
// log stops at the hole with exit status 5 (corruption), not a silent jump.
func TestReadPostgresGapExits5(t *testing.T) {
	t.Parallel()
	db, pg := migratedPG(t)
	for range 3 {
		if code, _, errOut := run(t, t.TempDir(), "", append(pg, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	db.Exec(t, "DELETE FROM rewind.events WHERE position = 2")
	code, out, errOut := run(t, t.TempDir(), "", append(pg, "read", "--json")...)
	if code != 5 || !strings.Contains(errOut, "position 2") || !strings.HasPrefix(out, `{"position":1,`) || strings.Contains(out, `"position":3`) {
		t.Fatalf("read over a deleted position: %d %q %s; want position 1, then exit status 5 naming position 2", code, out, errOut)
	}
}

// Bad --store input and refusals get their own exit statuses and messages
// that name --store: PostgreSQL's own schemas and an empty one are invalid
// (2), a schema never migrated is not found (3), privileges PostgreSQL
// refuses are permission denied (8), an unreachable store names --store.
func TestPostgresStoreRefusals(t *testing.T) {
	t.Parallel()
	db, pg := migratedPG(t)
	dir := t.TempDir()
	for _, schema := range []string{"information_schema", "pg_catalog", "pg_toast", "pg_temp_1", ""} {
		code, _, errOut := run(t, dir, "", append(pg, "--store-schema", schema, "read", "s")...)
		if code != 2 || !strings.Contains(errOut, "schema") {
			t.Errorf("--store-schema %q: %d %s; want exit status 2", schema, code, errOut)
		}
		code, _, errOut = run(t, dir, "", append(pg, "--store-schema", schema, "migrate")...)
		if code != 2 {
			t.Errorf("migrate --store-schema %q: %d %s; want exit status 2", schema, code, errOut)
		}
	}
	if code, _, errOut := run(t, dir, "", append(pg, "--store-schema", "never", "read", "s")...); code != 3 ||
		!strings.Contains(errOut, "rewind migrate") {
		t.Errorf("a schema never migrated: %d %s; want exit status 3 saying to run rewind migrate", code, errOut)
	}
	code, _, errOut := run(t, dir, "", "--store", "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=5", "read", "x")
	if code != 9 || !strings.Contains(errOut, "--store (or $REWIND_STORE)") || strings.Contains(errOut, "--dsn") {
		t.Errorf("an unreachable store: %d %s; want exit status 9 naming --store, not --dsn", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", append(pg, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	role := fmt.Sprintf("pgfix_role_%d", time.Now().UnixNano())
	db.Exec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		db.Exec(t, "DROP OWNED BY "+role)
		db.Exec(t, "DROP ROLE "+role)
	})
	as := []string{"--store", strings.Replace(db.DSN, "postgres@", role+"@", 1)}
	if code, _, errOut := run(t, dir, "", append(as, "read", "s")...); code != 8 || !strings.Contains(errOut, "grant") {
		t.Errorf("read as a role without privileges: %d %s; want exit status 8", code, errOut)
	}
	db.Exec(t, "GRANT USAGE ON SCHEMA rewind TO "+role)
	db.Exec(t, "GRANT SELECT ON ALL TABLES IN SCHEMA rewind TO "+role)
	if code, out, errOut := run(t, dir, "", append(as, "read", "s")...); code != 0 || !strings.Contains(out, "A") {
		t.Errorf("read as a role that may read: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := run(t, dir, "", append(as, "append", "s", "--type", "A", "--data", "1")...); code != 8 ||
		!strings.Contains(errOut, "grant") {
		t.Errorf("append as a role that may only read: %d %s; want exit status 8", code, errOut)
	}
}
