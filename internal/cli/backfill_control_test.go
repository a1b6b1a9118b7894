package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// slowJobYAML lowers emails taking about 2 ms a row, so that a run lasts
// long enough to be controlled from another process.
const slowJobYAML = `name: slow-emails
version: 1
table: users
key: [id]
where: email <> lower(email) AND id <= @max_id
set:
  email: lower(email) || left(pg_sleep(0.002)::text, 0)
params:
  max_id: {type: bigint, required: true}
chunk: 50
`

// Through the binary: a run executing in one process is paused, set and
// resumed from others (each with its actor), stays alive while paused and
// says who paused it, commits nothing meanwhile, then finishes; bad
// requests are refused with their exit status; a disabled job starts no
// run until enabled.
func TestBackfillLiveControlThroughTheBinary(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, slowJobYAML)
	dsn := "--dsn=" + b.db.DSN
	env := cleanEnv()
	cmd := exec.Command(rewindBinary(t), "backfill", "run", b.job, dsn, "-p", "max_id=1000", "--execute", "--workers", "2",
		"--shards", "4", "--actor", "runner")
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	ctx := context.Background()
	scalar := func(sql string) (n int64) {
		b.db.Pool.QueryRow(ctx, sql).Scan(&n)
		return n
	}
	var id string
	for i := 0; i < 600 && id == ""; i++ {
		b.db.Pool.QueryRow(ctx, `SELECT r.id FROM rewind.backfill_runs r WHERE EXISTS
			(SELECT 1 FROM rewind.backfill_chunks c WHERE c.run_id = r.id)`).Scan(&id)
		time.Sleep(10 * time.Millisecond)
	}
	if id == "" {
		t.Fatalf("no chunk committed: %s", errOut.String())
	}
	st, o, e := exe(t, env, "", "backfill", "pause", id[:8], dsn, "--reason", "maintenance", "--actor", "ops", "--json")
	var paused struct {
		Run struct {
			State   string `json:"state"`
			Control struct {
				Actor string `json:"actor"`
			} `json:"control"`
		} `json:"run"`
	}
	if st != 0 || json.Unmarshal([]byte(o), &paused) != nil || paused.Run.State != "paused" || paused.Run.Control.Actor != "ops" {
		t.Fatalf("pause: %d %s %s", st, o, e)
	}
	chunks := scalar("SELECT count(*) FROM rewind.backfill_chunks")
	for _, bad := range []struct {
		args   []string
		status int
		want   string
	}{
		{[]string{"pause", id[:8]}, 4, "already paused by ops"},
		{[]string{"pause", "abcd1234"}, 3, "backfill list"},
		{[]string{"set", id[:8], "--workers", "0"}, 2, "workers"},
		{[]string{"set", id[:8], "--workers", "1001"}, 2, "workers"},
		{[]string{"set", id[:8], "--max-rate", "-5"}, 2, "--max-rate"},
		{[]string{"set", id[:8], "--max-rate", "fast"}, 2, "--max-rate"},
		{[]string{"set", id[:8], "--max-rate", "1e-300"}, 2, "--max-rate"},
		{[]string{"set", id[:8], "--max-rate", "0x10"}, 2, "--max-rate"},
		{[]string{"set", id[:8], "--chunk-time", "0s"}, 2, "chunk time"},
		{[]string{"set", id[:8]}, 2, "give --max-rate"},
		{[]string{"disable", "no-such-job"}, 3, "no run of job no-such-job"},
		{[]string{"set", id[:8], "--workers", "+2"}, 2, "--workers"},
		{[]string{"disable", ""}, 2, "job name"},
		{[]string{"enable", " "}, 2, "job name"},
	} {
		st, _, e := exe(t, env, "", append(append([]string{"backfill"}, bad.args...), dsn)...)
		if st != bad.status || !strings.Contains(e, bad.want) {
			t.Errorf("%v: status %d, want %d with %q: %s", bad.args, st, bad.status, bad.want, e)
		}
	}
	if st, o, e := exe(t, env, "", "backfill", "set", id[:8], dsn, "--max-rate", "800", "--chunk-time", "500ms", "--actor", "ops"); st != 0 ||
		!strings.Contains(o, "max rate 800 rows/s, chunk time 500ms (set by ops)") {
		t.Fatalf("set: %d %s %s", st, o, e)
	}
	time.Sleep(500 * time.Millisecond)
	if n := scalar("SELECT count(*) FROM rewind.backfill_chunks"); n != chunks {
		t.Fatalf("%d chunks committed while paused", n-chunks)
	}
	select {
	case err := <-exited:
		t.Fatalf("the executing process exited while paused: %v %s", err, errOut.String())
	default:
	}
	if st, o, e := exe(t, env, "", "backfill", "status", id[:8], dsn); st != 0 || !strings.Contains(o, "paused (pause asked by ops") ||
		!strings.Contains(o, "chunk time 500ms") || !strings.Contains(o, "rewind backfill resume "+id) {
		t.Fatalf("status while paused: %d %s %s", st, o, e)
	}
	if st, o, e := exe(t, env, "", "backfill", "resume", id[:8], dsn, "--actor", "ops2"); st != 0 || !strings.Contains(o, "go on with it") {
		t.Fatalf("resume: %d %s %s", st, o, e)
	}
	if err := <-exited; err != nil {
		t.Fatalf("the executing process: %v %s", err, errOut.String())
	}
	if !strings.Contains(errOut.String(), "paused by ops: maintenance") || !strings.Contains(errOut.String(), "resumed") {
		t.Errorf("the executing process's progress notes: %s", errOut.String())
	}
	if n := scalar("SELECT count(*) FROM users WHERE email <> lower(email)"); n != 0 {
		t.Fatalf("%d rows left", n)
	}
	if st, o, _ := exe(t, env, "", "audit", "log", dsn, "--json"); st != 0 || !strings.Contains(o, `"actor":"ops2"`) ||
		!strings.Contains(o, "backfill.run.unpaused") || !strings.Contains(o, "backfill.run.set") {
		t.Errorf("audit log: %d %.300s", st, o)
	}
	if st, o, e := exe(t, env, "", "backfill", "disable", "slow-emails", dsn, "--reason", "bad data", "--actor", "ops"); st != 0 ||
		!strings.Contains(o, "disabled by ops") {
		t.Fatalf("disable: %d %s %s", st, o, e)
	}
	if st, _, e := exe(t, env, "", "backfill", "run", b.job, dsn, "-p", "max_id=1000", "--execute", "--new-run", id[:8]); st != 4 ||
		!strings.Contains(e, "disabled by ops") || !strings.Contains(e, "rewind backfill enable slow-emails") {
		t.Fatalf("run of a disabled job: %d %s", st, e)
	}
	if st, _, e := exe(t, env, "", "backfill", "enable", "slow-emails", dsn); st != 0 {
		t.Fatalf("enable: %d %s", st, e)
	}
}
