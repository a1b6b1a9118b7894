package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// `run --execute --workers N` applies the run's shards in parallel;
// status shows them (and --json has them); `work` on a finished run is a
// conflict.
func TestBackfillParallelCommands(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	out, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=1000", "--execute", "--workers", "3", "--shards", "6", "--json")
	var res struct {
		RowsChanged int64 `json:"rows_changed"`
		Run         struct {
			ID string `json:"id"`
		} `json:"run"`
	}
	if st != 0 || json.Unmarshal([]byte(out), &res) != nil || res.RowsChanged != 1000 {
		t.Fatalf("run --workers 3: status %d\n%s\n%s", st, out, stderr)
	}
	var left int64
	b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE email <> lower(email)").Scan(&left)
	if left != 0 {
		t.Fatalf("%d rows left unchanged", left)
	}
	out, _, st = cli(t, "backfill", "status", res.Run.ID, dsn, "--json")
	var status struct {
		Run struct {
			Workers int `json:"workers"`
			Shards  []struct {
				State  string `json:"state"`
				Chunks int64  `json:"chunks"`
			} `json:"shards"`
		} `json:"run"`
	}
	if st != 0 || json.Unmarshal([]byte(out), &status) != nil || status.Run.Workers != 3 || len(status.Run.Shards) != 6 {
		t.Fatalf("status --json: %d\n%s", st, out)
	}
	for _, s := range status.Run.Shards {
		if s.State != "done" || s.Chunks == 0 {
			t.Errorf("status --json shows a shard %+v", s)
		}
	}
	out, _, st = cli(t, "backfill", "status", res.Run.ID[:8], dsn)
	if st != 0 || !strings.Contains(out, "shards (6; 3 workers): 6 done") {
		t.Fatalf("status: %d\n%s", st, out)
	}
	_, stderr, st = cli(t, "backfill", "work", res.Run.ID[:8], dsn)
	if st != 4 || !strings.Contains(stderr, "is finished") {
		t.Fatalf("work on a finished run: status %d\n%s", st, stderr)
	}
}

// Bad worker and shard counts are usage errors that write nothing; work
// on an unknown run is not found, on a cancelled one a conflict, and
// writes nothing either.
func TestBackfillParallelBadInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "0"}, "--workers"},
		{[]string{"--workers", "-3"}, "--workers"},
		{[]string{"--workers", "1001"}, "--workers"},
		{[]string{"--shards", "-1"}, "--shards"},
		{[]string{"--shards", "0"}, "--shards"},
		{[]string{"--shards", "10001"}, "--shards"},
		{[]string{"--local-workers", "0"}, "--local-workers"},
		{[]string{"--workers", "2", "--local-workers", "3"}, "--local-workers"},
		{[]string{"--local-workers", "3", "--workers", "2"}, "--local-workers"},
		{[]string{"--max-db-workers", "-1"}, "--max-db-workers"},
		{[]string{"--shards", "two"}, "--shards"},
	} {
		for _, mode := range []string{"--execute", "--estimate"} {
			t.Run(strings.Join(tt.args, " ")+" "+mode, func(t *testing.T) {
				t.Parallel()
				b := setupCLI(t, jobYAML)
				before := b.db.Checksum(t, "users", "id")
				args := append([]string{"backfill", "run", b.job, mode, "--dsn", b.db.DSN, "-p", "max_id=100"}, tt.args...)
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
	t.Run("work", func(t *testing.T) {
		t.Parallel()
		b := setupCLI(t, jobYAML)
		dsn := "--dsn=" + b.db.DSN
		if _, stderr, st := cli(t, "backfill", "work", "0000aaaa", dsn, "--workers", "0"); st != 2 || !strings.Contains(stderr, "--workers") {
			t.Fatalf("work --workers 0: status %d\n%s", st, stderr)
		}
		if _, stderr, st := cli(t, "backfill", "work", "0000aaaa", dsn); st != 3 || !strings.Contains(stderr, "no backfill has run") {
			t.Fatalf("work without a ledger: status %d\n%s", st, stderr)
		}
		// A run interrupted, then cancelled.
		out, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=1000", "--execute", "--workers", "2", "--json")
		var res struct {
			Run struct {
				ID string `json:"id"`
			} `json:"run"`
		}
		if st != 0 || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("run: %d\n%s\n%s", st, out, stderr)
		}
		if _, stderr, st := cli(t, "backfill", "work", "0000aaaa", dsn); st != 3 || !strings.Contains(stderr, "no run id starts with") {
			t.Fatalf("work on an unknown run: status %d\n%s", st, stderr)
		}
		b.db.Exec(t, "UPDATE rewind.backfill_runs SET state = 'cancelled'") // as cancel leaves it
		var entries, chunks int64
		count := func() {
			b.db.Pool.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM rewind.audit_log), (SELECT count(*) FROM rewind.backfill_chunks)").
				Scan(&entries, &chunks)
		}
		count()
		e0, c0 := entries, chunks
		if _, stderr, st := cli(t, "backfill", "work", res.Run.ID, dsn, "--json"); st != 4 || !strings.Contains(stderr, "is cancelled") {
			t.Fatalf("work on a cancelled run: status %d\n%s", st, stderr)
		}
		count()
		if entries != e0 || chunks != c0 {
			t.Fatalf("work on a cancelled run wrote %d audit entries, %d chunks", entries-e0, chunks-c0)
		}
	})
}
