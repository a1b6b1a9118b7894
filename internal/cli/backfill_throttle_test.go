package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A critical flag file pauses the run: exit 13 naming the signal, status
// shows the pause (--json too), and resume with the file gone finishes
// the run. A --throttle-file flag overrides the job file's file.
func TestBackfillThrottleCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pause, slow := filepath.Join(dir, "pause"), filepath.Join(dir, "slow")
	os.WriteFile(pause, nil, 0o600)
	os.WriteFile(slow, nil, 0o600)
	b := setupCLI(t, jobYAML+"throttle:\n  file: {path: "+slow+", critical: "+pause+"}\n")
	dsn := "--dsn=" + b.db.DSN
	out, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=1000", "--execute", "--json")
	if st != 13 || !strings.Contains(stderr, "throttle signal file paused the run") || !strings.Contains(out, `"code":"throttled"`) {
		t.Fatalf("run with a critical flag file: status %d\n%s\n%s", st, out, stderr)
	}
	var id string
	b.db.Pool.QueryRow(context.Background(), "SELECT id FROM rewind.backfill_runs").Scan(&id)
	out, _, st = cli(t, "backfill", "status", id, dsn, "--json")
	var status struct {
		Run struct {
			State    string `json:"state"`
			Throttle struct {
				PausedBy  string `json:"paused_by"`
				ChunkSize int    `json:"chunk_size"`
			} `json:"throttle"`
		} `json:"run"`
	}
	if st != 0 || json.Unmarshal([]byte(out), &status) != nil || status.Run.State != "paused" ||
		status.Run.Throttle.PausedBy != "file" || status.Run.Throttle.ChunkSize != 100 {
		t.Fatalf("status --json of the paused run: %d\n%s", st, out)
	}
	out, _, st = cli(t, "backfill", "status", id[:8], dsn)
	if st != 0 || !strings.Contains(out, "by throttle signal file") || !strings.Contains(out, "rewind backfill resume "+id) {
		t.Fatalf("status: %d\n%s", st, out)
	}
	os.Remove(pause)
	// The job file's flag file still exists: the flag overrides it, or
	// the run would wait for it forever.
	out, stderr, st = cli(t, "backfill", "resume", id, b.job, dsn, "-p", "max_id=1000", "--throttle-file", filepath.Join(dir, "absent"), "--json")
	if st != 0 || !strings.Contains(out, `"rows_changed":1000`) {
		t.Fatalf("resume: status %d\n%s\n%s", st, out, stderr)
	}
}

// Bad throttle input is a usage error (exit 2) naming the flag or the job
// file's line, and writes nothing.
func TestBackfillThrottleBadInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		job   string
		flags []string
		want  string
	}{
		{"negative rate", jobYAML, []string{"--max-rate", "-5"}, "--max-rate"},
		{"rate NaN", jobYAML, []string{"--max-rate", "NaN"}, "--max-rate"},
		{"rate Inf", jobYAML, []string{"--max-rate", "Inf"}, "--max-rate"},
		{"rate with underscores", jobYAML, []string{"--max-rate", "1_000"}, "--max-rate"},
		{"rate in hex", jobYAML, []string{"--max-rate", "0x1p4"}, "--max-rate"},
		{"rate tiny", jobYAML, []string{"--max-rate", "0.000001"}, "--max-rate"},
		{"query sets the session", jobYAML + "throttle:\n  queries:\n    - {name: q, sql: \"SELECT set_config('search_path', 'x', false)::int\", max: 1}\n", nil, "calls set_config()"},
		{"chunk time too short", jobYAML, []string{"--chunk-time", "1ms"}, "--chunk-time"},
		{"negative lag", jobYAML, []string{"--max-lag", "-1s"}, "--max-lag"},
		{"slow-from over 1", jobYAML, []string{"--slow-from", "1.5"}, "--slow-from"},
		{"slow-from negative", jobYAML, []string{"--slow-from", "-0.5"}, "--slow-from"},
		{"lag over the file's critical", jobYAML + "throttle:\n  replication_lag: {max: 1s, critical: 2s}\n", []string{"--max-lag", "5s"}, "--max-lag"},
		{"unknown key", jobYAML + "throttle:\n  max_rows: 5\n", nil, `line 12: unknown key "max_rows"`},
		{"critical under max", jobYAML + "throttle:\n  queries:\n    - {name: q, sql: SELECT 1, max: 10, critical: 5}\n", nil, "throttle.queries[1] (job file"},
		{"bad url", jobYAML + "throttle:\n  http:\n    - {name: ops, url: nowhere}\n", nil, "throttle.http[1].url"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupCLI(t, tt.job)
			before := b.db.Checksum(t, "users", "id")
			args := append([]string{"backfill", "run", b.job, "--execute", "--dsn", b.db.DSN, "-p", "max_id=100"}, tt.flags...)
			_, stderr, st := cli(t, args...)
			if st != 2 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("status %d, want 2; stderr:\n%s\nwant it to mention %q", st, stderr, tt.want)
			}
			var schemas int64
			b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'").Scan(&schemas)
			if schemas != 0 || b.db.Checksum(t, "users", "id") != before {
				t.Fatalf("bad input wrote to the database (rewind schema: %d)", schemas)
			}
		})
	}
}
