package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/store"
)

// applyCLI applies b's job with max_id and returns the run id.
func applyCLI(t *testing.T, b cliBundle, maxID string) string {
	t.Helper()
	return executeCLI(t, "backfill", "run", b.job, "--dsn="+b.db.DSN, "-p", "max_id="+maxID, "--execute", "--json")
}

// executeCLI runs a command that prints a run as JSON (--json) and
// returns the run's id, failing the test unless it succeeded.
func executeCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, st := cli(t, args...)
	var res struct {
		Run struct {
			ID string `json:"id"`
		} `json:"run"`
	}
	if err := json.Unmarshal([]byte(out), &res); st != 0 || err != nil {
		t.Fatalf("execute: status %d, %v\n%s\n%s", st, err, out, stderr)
	}
	return res.Run.ID
}

func (b cliBundle) count(t *testing.T, q string) int64 {
	t.Helper()
	var n int64
	if err := b.db.Pool.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// rollback plans (dry run, the default), applies with --execute, shows
// the rollback in status and list, and refuses to roll back twice.
func TestBackfillRollbackCommand(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	before := b.db.Checksum(t, "users", "id")
	run := applyCLI(t, b, "600")
	applied := b.db.Checksum(t, "users", "id")
	out, stderr, st := cli(t, "backfill", "rollback", run[:8], dsn)
	if st != 0 || !strings.Contains(out, "DRY RUN") || !strings.Contains(out, "600 imaged: 600 to restore") ||
		!strings.Contains(out, "email: user1@example.com → User1@Example.COM") || !strings.Contains(out, "rewind backfill rollback "+run+" --execute") {
		t.Fatalf("dry run: status %d\n%s\n%s", st, out, stderr)
	}
	if b.db.Checksum(t, "users", "id") != applied {
		t.Fatal("the dry run changed the table")
	}
	// Someone edits a row after the run: a conflict, reported with both values.
	b.db.Exec(t, "UPDATE users SET email = 'edited@example.com' WHERE id = 5")
	out, stderr, st = cli(t, "backfill", "rollback", run, dsn, "--execute", "--actor", "alice")
	if st != 0 || !strings.Contains(out, "599 rows restored in 6 chunks") || !strings.Contains(out, "1 rows were left as they are") ||
		!strings.Contains(out, "key 5  conflict  email: now edited@example.com, run wrote user5@example.com, before User5@Example.COM") {
		t.Fatalf("execute: status %d\n%s\n%s", st, out, stderr)
	}
	out, _, st = cli(t, "backfill", "status", run, dsn)
	if st != 0 || !strings.Contains(out, "images     600 rows in 6 chunks; 6 chunks undone") || !strings.Contains(out, "rolled back by") ||
		!strings.Contains(out, "599 rows restored, 1 rows left as they are) by alice") {
		t.Fatalf("status of the run: %d\n%s", st, out)
	}
	var rb string
	b.db.Pool.QueryRow(context.Background(), "SELECT id FROM rewind.backfill_runs WHERE undoes = $1", run).Scan(&rb)
	out, _, st = cli(t, "backfill", "status", rb, dsn)
	if st != 0 || !strings.Contains(out, "rollback   of run "+run+", chunks 1-6") || !strings.Contains(out, "left as they are (1 rows") ||
		!strings.Contains(out, "key 5") {
		t.Fatalf("status of the rollback: %d\n%s", st, out)
	}
	out, _, st = cli(t, "backfill", "list", dsn)
	if st != 0 || !strings.Contains(out, "finished (rolled back)") || !strings.Contains(out, "rollback:normalize-emails") {
		t.Fatalf("list: %d\n%s", st, out)
	}
	// Twice: exit 4, saying how to go on.
	out, stderr, st = cli(t, "backfill", "rollback", run, dsn, "--execute", "--json")
	if st != 4 || !strings.Contains(out, `"wrong_expected_version"`) || !strings.Contains(stderr, "rolled back already, by "+rb) ||
		!strings.Contains(stderr, "--force") {
		t.Fatalf("second rollback: %d\n%s\n%s", st, out, stderr)
	}
	out, stderr, st = cli(t, "backfill", "rollback", run, dsn, "--execute", "--force", "--json")
	var res backfill.RollbackResult
	if err := json.Unmarshal([]byte(out), &res); st != 0 || err != nil || res.Restored != 1 {
		t.Fatalf("forced rollback: %d %v\n%s\n%s", st, err, out, stderr)
	}
	if got := b.db.Checksum(t, "users", "id"); got != before {
		t.Fatal("the table differs from before the run")
	}
	out, _, st = cli(t, "audit", "log", dsn, "--run", rb, "--json")
	if st != 0 || !strings.Contains(out, `"backfill.rollback.started"`) || !strings.Contains(out, `"actor":"alice"`) ||
		!strings.Contains(out, `"undoes":"`+run+`"`) || !strings.Contains(out, "rewind backfill rollback") {
		t.Fatalf("audit log of the rollback: %d\n%s", st, out)
	}
	if out, _, st = cli(t, "audit", "verify", dsn); st != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %d\n%s", st, out)
	}
	// Resuming a finished rollback is refused (exit 4, as any ended run),
	// pointing at rollback for what is left.
	if _, stderr, st = cli(t, "backfill", "resume", rb, dsn); st != 4 || !strings.Contains(stderr, "rewind backfill rollback "+run) {
		t.Fatalf("resume of a rollback: %d\n%s", st, stderr)
	}
}

// Bad input to rollback and purge-images gets a clear error with the
// right exit status and writes nothing.
func TestBackfillRollbackBadInput(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	run := applyCLI(t, b, "600")
	other := setupCLI(t, jobYAML+"rollback: false\n")
	noImages := applyCLI(t, other, "100")
	state := func(b cliBundle) string {
		return b.db.Checksum(t, "users", "id") + fmt.Sprint(b.count(t, "SELECT count(*) FROM rewind.audit_log"),
			b.count(t, "SELECT count(*) FROM rewind.backfill_runs"))
	}
	before, otherBefore := state(b), state(other)
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		want   string
	}{
		{"unknown run", []string{"backfill", "rollback", "ffffffff", dsn}, 3, "no run id starts with ffffffff"},
		{"no run", []string{"backfill", "rollback", dsn}, 2, "RUN"},
		{"chunk zero", []string{"backfill", "rollback", run, dsn, "--chunks", "0"}, 2, "--chunks"},
		{"malformed chunks", []string{"backfill", "rollback", run, dsn, "--chunks", "2-x", "--execute"}, 2, "--chunks"},
		{"reversed chunks", []string{"backfill", "rollback", run, dsn, "--chunks", "5-2", "--execute"}, 2, "ends (2) before it starts (5)"},
		{"chunks past the end", []string{"backfill", "rollback", run, dsn, "--chunks", "3-99", "--execute"}, 2,
			`--chunks "3-99": is out of range: run ` + run + " has chunks 1 to 6"},
		{"negative diffs", []string{"backfill", "rollback", run, dsn, "--diffs", "-1"}, 2, "--diffs"},
		{"negative max rate", []string{"backfill", "rollback", run, dsn, "--execute", "--max-rate", "-5"}, 2, "--max-rate"},
		{"max rate not a number", []string{"backfill", "rollback", run, dsn, "--execute", "--max-rate", "fast"}, 2, "max-rate"},
		{"negative max lag", []string{"backfill", "rollback", run, dsn, "--execute", "--max-lag", "-1s"}, 2, "--max-lag"},
		{"empty throttle file", []string{"backfill", "rollback", run, dsn, "--execute", "--throttle-file", ""}, 2, "--throttle-file"},
		{"chunk time", []string{"backfill", "rollback", run, dsn, "--execute", "--chunk-time", "1s"}, 2, "their sizes do not adapt"},
		{"purge without a run", []string{"backfill", "purge-images", dsn}, 2, "give a RUN, or --older-than"},
		{"purge with both", []string{"backfill", "purge-images", run, "--older-than", "1h", dsn}, 2, "not both"},
		{"purge negative age", []string{"backfill", "purge-images", "--older-than", "-1h", dsn}, 2, "--older-than"},
		{"purge unknown run", []string{"backfill", "purge-images", "ffffffff", dsn, "--execute"}, 3, "no run id starts with"},
	} {
		_, stderr, st := cli(t, tc.args...)
		if st != tc.status || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: status %d, want %d; stderr:\n%s\nwant it to mention %q", tc.name, st, tc.status, stderr, tc.want)
		}
		if got := state(b); got != before {
			t.Fatalf("%s wrote something", tc.name)
		}
	}
	_, stderr, st := cli(t, "backfill", "rollback", noImages, "--dsn="+other.db.DSN, "--execute")
	if st != 4 || !strings.Contains(stderr, "rollback: false") {
		t.Fatalf("rollback of a run without images: %d\n%s", st, stderr)
	}
	if _, stderr, st = cli(t, "backfill", "purge-images", noImages, "--dsn="+other.db.DSN, "--execute"); st != 4 ||
		!strings.Contains(stderr, "no before-images to purge") {
		t.Fatalf("purge of a run without images: %d\n%s", st, stderr)
	}
	if state(other) != otherBefore {
		t.Fatal("the refused rollback or purge wrote something")
	}
}

// A rollback takes run's throttle flags: a flag file that cannot be
// checked pauses it (exit 13, saying how to continue); 'resume ROLLBACK'
// continues it with a readable one, --max-rate 0 (no cap) and --max-lag
// 0 (no lag signal) accepted as on run; the table is as before the run.
func TestBackfillRollbackThrottled(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	before := b.db.Checksum(t, "users", "id")
	run := applyCLI(t, b, "600")
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A path under a regular file cannot be checked (ENOTDIR): fail closed.
	_, stderr, st := cli(t, "backfill", "rollback", run, dsn, "--execute", "--throttle-file", filepath.Join(file, "flag"))
	if st != 13 || !strings.Contains(stderr, "rewind backfill rollback "+run+" --execute") {
		t.Fatalf("rollback with an unreadable flag file: status %d, want 13\n%s", st, stderr)
	}
	var rb string
	b.db.Pool.QueryRow(context.Background(), "SELECT id FROM rewind.backfill_runs WHERE undoes = $1 AND state = 'paused'", run).Scan(&rb)
	if rb == "" || b.db.Checksum(t, "users", "id") == before {
		t.Fatalf("after the throttle pause: rollback %q paused; the table must still be as applied", rb)
	}
	out, stderr, st := cli(t, "backfill", "resume", rb[:8], dsn, "--max-rate", "0", "--max-lag", "0",
		"--throttle-file", filepath.Join(dir, "absent"), "--json")
	if st != 0 || !strings.Contains(out, "rollback "+rb) || !strings.Contains(out, "finished") {
		t.Fatalf("resume of the rollback: status %d\n%s\n%s", st, out, stderr)
	}
	if b.db.Checksum(t, "users", "id") != before {
		t.Fatal("the table after the rollback differs from before the run")
	}
}

// purge-images says what it would delete, deletes with --execute (audited),
// and a purged run says so and can no longer be rolled back; --older-than
// purges the runs that ended long enough ago.
func TestBackfillPurgeImages(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	run := applyCLI(t, b, "300")
	out, _, st := cli(t, "backfill", "purge-images", run, dsn)
	if st != 0 || !strings.Contains(out, "would purge the before-images of 1 run(s): 300 image rows") || !strings.Contains(out, "--execute") {
		t.Fatalf("purge dry run: %d\n%s", st, out)
	}
	if n := b.count(t, "SELECT count(*) FROM rewind.backfill_image_rows"); n != 300 {
		t.Fatalf("the dry run deleted images: %d left", n)
	}
	out, _, st = cli(t, "backfill", "purge-images", run, dsn, "--execute", "--actor", "bob")
	if st != 0 || !strings.Contains(out, "purged the before-images of 1 run(s): 300 image rows") {
		t.Fatalf("purge: %d\n%s", st, out)
	}
	if n := b.count(t, "SELECT count(*) FROM rewind.backfill_images"); n != 0 {
		t.Fatalf("%d image rows left", n)
	}
	out, _, st = cli(t, "backfill", "status", run, dsn)
	if st != 0 || !strings.Contains(out, "images     purged at") || !strings.Contains(out, "by bob") {
		t.Fatalf("status of a purged run: %d\n%s", st, out)
	}
	if _, stderr, st := cli(t, "backfill", "rollback", run, dsn); st != 4 || !strings.Contains(stderr, "were purged at") {
		t.Fatalf("rollback of a purged run: %d\n%s", st, stderr)
	}
	if _, stderr, st := cli(t, "backfill", "purge-images", run, dsn, "--execute"); st != 4 || !strings.Contains(stderr, "were purged at") {
		t.Fatalf("purge again: %d\n%s", st, stderr)
	}
	out, _, _ = cli(t, "audit", "log", dsn, "--run", run, "--json")
	if !strings.Contains(out, `"backfill.images.purged"`) || !strings.Contains(out, `"actor":"bob"`) {
		t.Fatalf("the purge is not audited:\n%s", out)
	}
	// By age: a second run, ended "an hour ago".
	again := applyCLI(t, setupCLIInto(t, b, jobYAML), "600")
	b.db.Exec(t, "UPDATE rewind.backfill_runs SET finished_at = finished_at - interval '1 hour' WHERE id = $1", again)
	if out, _, st = cli(t, "backfill", "purge-images", "--older-than", "2h", dsn, "--execute"); st != 0 || !strings.Contains(out, "of 0 run(s)") {
		t.Fatalf("purge of nothing old enough: %d\n%s", st, out)
	}
	out, _, st = cli(t, "backfill", "purge-images", "--older-than", "30m", dsn, "--execute", "--json")
	var res backfill.PurgeResult
	if err := json.Unmarshal([]byte(out), &res); st != 0 || err != nil || len(res.Runs) != 1 || res.Runs[0].Run != again {
		t.Fatalf("purge by age: %d %v\n%s", st, err, out)
	}
}

// setupCLIInto writes another job file for b's database: a new run of
// the same job, after its first.
func setupCLIInto(t *testing.T, b cliBundle, job string) cliBundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(job, "name: normalize-emails", "name: normalize-emails-2", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	b.db.Exec(t, "UPDATE users SET email = upper(email)")
	return cliBundle{db: b.db, job: path}
}

// A run that appended events: the plan says they cannot be taken back,
// --events-out lists them, --execute is refused (exit 4).
func TestBackfillRollbackOfEvents(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	ctx := context.Background()
	s, err := store.Open(t.TempDir(), store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := backfill.New(backfill.Config{DB: b.db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Apply(ctx, &backfill.Job{Name: "emit", Version: "1", Source: &backfill.Table{Name: "users", Key: []string{"id"}, Where: "id <= 30"},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			var out []backfill.Change
			for _, it := range items {
				out = append(out, backfill.Change{Key: it.Key, Stream: "user-" + it.Key[0], Event: rewind.Event{Type: "Imported", Data: []byte(`{}`)}})
			}
			return out, nil
		}, Sink: &backfill.StoreSink{Store: s}}, backfill.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "events.jsonl")
	out, stderr, st := cli(t, "backfill", "rollback", res.Run.ID, "--dsn="+b.db.DSN, "--events-out", file)
	if st != 0 || !strings.Contains(out, "events     30 appended to") || !strings.Contains(out, "cannot be taken back") ||
		!strings.Contains(stderr, "wrote the 30 event(s)") {
		t.Fatalf("plan: %d\n%s\n%s", st, out, stderr)
	}
	lines, _ := os.ReadFile(file)
	if n := strings.Count(string(lines), "\n"); n != 30 || !strings.Contains(string(lines), `"type":"Imported"`) {
		t.Fatalf("--events-out wrote %d lines:\n%s", n, lines)
	}
	if _, stderr, st = cli(t, "backfill", "rollback", res.Run.ID, "--dsn="+b.db.DSN, "--execute"); st != 4 ||
		!strings.Contains(stderr, "append-only") {
		t.Fatalf("execute: %d\n%s", st, stderr)
	}
}

// The rollback command connects with the run's TimeZone and search_path,
// as resume does: run from a session with others (here the DSN's
// options), it restores every row instead of being refused.
func TestBackfillRollbackUsesTheRunsSettings(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	db.Exec(t, `CREATE TYPE jt AS (j json, at timestamptz)`)
	db.Exec(t, `CREATE TABLE c (id bigint PRIMARY KEY, v jt, n int NOT NULL DEFAULT 0)`)
	db.Exec(t, `INSERT INTO c SELECT g, ROW(json_build_object('g', g), timestamptz '2024-03-01 13:00:00+00')::jt, 0 FROM generate_series(1, 60) g`)
	job := filepath.Join(t.TempDir(), "tz.yaml")
	if err := os.WriteFile(job, []byte("name: tz\nversion: \"1\"\ntable: c\nkey: [id]\nwhere: n = 0\nchunk: 25\nset:\n  n: \"1\"\n"+
		"  v: \"ROW((v).j, (v).at + interval '1 day')::jt\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := executeCLI(t, "backfill", "run", job, "--dsn="+db.DSN, "--execute", "--json")
	other := "--dsn=" + db.DSN + "&options=-c%20TimeZone%3DAsia/Kathmandu"
	out, stderr, st := cli(t, "backfill", "rollback", id, other, "--execute")
	if st != 0 || !strings.Contains(out, "60 rows restored") {
		t.Fatalf("rollback from another TimeZone: status %d\n%s\n%s", st, out, stderr)
	}
}
