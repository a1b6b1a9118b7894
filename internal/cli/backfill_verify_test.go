package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The validations hold for rows the job changed, whatever the table's
// progress: so they pass after a canary as after the whole run.
const validatedJobYAML = jobYAML + `validate:
  - name: lower_and_well_formed
    sql: SELECT count(*) FROM users WHERE email = lower(email) AND email !~ '^user[0-9]+@example\.com$'
    expect: 0
  - name: within_max_id
    sql: SELECT id FROM users WHERE email = lower(email) AND id > @max_id
    expect: {rows: 0}
`

func TestBackfillCanaryPromoteValidateVerify(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, validatedJobYAML)
	dsn := "--dsn=" + b.db.DSN
	out, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--execute", "--canary", "10%", "--canary-wait", "--json")
	var res struct {
		Run struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"run"`
		Message string `json:"message"`
		Canary  struct {
			Rows  int64  `json:"rows"`
			State string `json:"state"`
		} `json:"canary"`
	}
	if err := json.Unmarshal([]byte(out), &res); st != 0 || err != nil || res.Run.State != "paused" || res.Canary.Rows != 60 ||
		res.Canary.State != "waiting" || !strings.Contains(res.Message, "rewind backfill promote "+res.Run.ID) {
		t.Fatalf("run --canary 10%% --canary-wait: status %d, %v\n%s\n%s", st, err, out, stderr)
	}
	id := res.Run.ID
	var changed int64
	b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE email = lower(email)").Scan(&changed)
	if changed != 60 {
		t.Fatalf("the canary changed %d rows, want 60", changed)
	}
	out, _, st = cli(t, "backfill", "status", id[:8], dsn)
	if st != 0 || !strings.Contains(out, "paused") || !strings.Contains(out, "canary") || !strings.Contains(out, "rewind backfill promote "+id) {
		t.Fatalf("status of a paused run: %d\n%s", st, out)
	}
	_, stderr, st = cli(t, "backfill", "resume", id[:8], dsn)
	if st != 4 || !strings.Contains(stderr, "promote") {
		t.Fatalf("resume of a paused run: %d\n%s", st, stderr)
	}
	out, _, st = cli(t, "backfill", "validate", id[:8], dsn)
	if st != 0 || !strings.Contains(out, "PASS  lower_and_well_formed") || !strings.Contains(out, "2 passed, 0 failed") {
		t.Fatalf("validate RUN: %d\n%s", st, out)
	}
	out, stderr, st = cli(t, "backfill", "promote", id[:8], dsn, "--actor", "reviewer")
	if st != 0 || !strings.Contains(out, "finished: 540 rows changed") {
		t.Fatalf("promote: %d\n%s\n%s", st, out, stderr)
	}
	out, _, _ = cli(t, "audit", "log", dsn, "--run", id[:8], "--json")
	if !strings.Contains(out, `"kind":"backfill.run.promoted"`) || !strings.Contains(out, `"actor":"reviewer"`) {
		t.Fatalf("the promotion is not in the audit log:\n%s", out)
	}

	out, _, st = cli(t, "backfill", "verify", id[:8], dsn)
	if st != 0 || !strings.Contains(out, "7 of 7 chunks checked") || !strings.Contains(out, "no discrepancy found") {
		t.Fatalf("verify after a clean run: %d\n%s", st, out)
	}
	b.db.Exec(t, "UPDATE users SET email = 'User150@Example.COM' WHERE id = 150")
	out, stderr, st = cli(t, "backfill", "verify", id[:8], dsn)
	if st != 5 || !strings.Contains(out, "chunk 2 (keys 61 … 160):") || !strings.Contains(out, "keys 150") ||
		!strings.Contains(out, "still_matches") || !strings.Contains(out, "not necessarily by a wrong backfill") ||
		!strings.Contains(stderr, "1 of 7 chunks checked") {
		t.Fatalf("verify after a change: %d\n%s\n%s", st, out, stderr)
	}
	out, _, st = cli(t, "backfill", "verify", id[:8], dsn, "--json")
	var rep struct {
		Findings []struct {
			Chunk int64      `json:"chunk"`
			Kind  string     `json:"kind"`
			Keys  [][]string `json:"keys"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &rep); st != 5 || err != nil || len(rep.Findings) != 3 ||
		rep.Findings[0].Chunk != 2 || strings.Count(out, "\n") != 1 {
		t.Fatalf("verify --json: %d, %v\n%s", st, err, out)
	}
	out, _, st = cli(t, "backfill", "verify", id[:8], dsn, "--sample", "50%", "--seed", "3")
	if st != 0 && st != 5 || !strings.Contains(out, "4 of 7 chunks checked, a random 50% sample (seed 3)") {
		t.Fatalf("verify --sample: %d\n%s", st, out)
	}
	if st == 5 && !strings.Contains(out, "Wilson score interval") {
		t.Fatalf("verify --sample found something without an interval:\n%s", out)
	}
}

func TestBackfillCanaryThatFails(t *testing.T) {
	t.Parallel()
	job := validatedJobYAML + "  - name: few\n    sql: SELECT count(*) FROM users WHERE email = lower(email)\n    expect: {max: 5}\n"
	b := setupCLI(t, job)
	dsn := "--dsn=" + b.db.DSN
	out, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--execute", "--canary", "50")
	if st != 5 || !strings.Contains(out, "FAIL  few") || !strings.Contains(stderr, "stopped after its canary (50 rows") ||
		!strings.Contains(stderr, "few (expected at most 5, got 50") || !strings.Contains(stderr, "Nothing beyond the canary was written") {
		t.Fatalf("a failing canary: %d\n%s\n%s", st, out, stderr)
	}
	var changed int64
	b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE email = lower(email)").Scan(&changed)
	if changed != 50 {
		t.Fatalf("the canary changed %d rows, want 50", changed)
	}
	out, _, st = cli(t, "backfill", "list", dsn, "--json")
	if st != 0 || !strings.Contains(out, `"state":"paused"`) || !strings.Contains(out, `"state":"failed"`) {
		t.Fatalf("list: %d\n%s", st, out)
	}
	// With --json, the result and the error on one line, exit 5.
	b2 := setupCLI(t, job)
	out, _, st = cli(t, "backfill", "run", b2.job, "--dsn="+b2.db.DSN, "-p", "max_id=600", "--execute", "--canary", "50", "--json")
	var r struct {
		Result struct {
			Canary struct {
				State string `json:"state"`
			} `json:"canary"`
		} `json:"result"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); st != 5 || err != nil || r.Error.Code != "check_failed" || r.Result.Canary.State != "failed" ||
		strings.Count(out, "\n") != 1 {
		t.Fatalf("a failing canary --json: %d, %v\n%s", st, err, out)
	}
}

func TestBackfillVerifyCanaryBadInput(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, validatedJobYAML)
	dsn := "--dsn=" + b.db.DSN
	for _, tt := range []struct {
		name   string
		args   []string
		status int
		want   string
	}{
		{"canary without execute", []string{"run", b.job, "-p", "max_id=600", "--canary", "10"}, 2, "--canary \"10\": needs --execute"},
		{"canary zero", []string{"run", b.job, "-p", "max_id=600", "--execute", "--canary", "0"}, 2, "whole number of rows (1 or more"},
		{"canary fraction", []string{"run", b.job, "-p", "max_id=600", "--execute", "--canary", "1.5"}, 2, "whole number of rows"},
		{"canary over 100%", []string{"run", b.job, "-p", "max_id=600", "--execute", "--canary", "150%"}, 2, "at most 100%"},
		{"canary 0%", []string{"run", b.job, "-p", "max_id=600", "--execute", "--canary", "0%"}, 2, "above 0%"},
		{"canary word", []string{"run", b.job, "-p", "max_id=600", "--execute", "--canary", "some"}, 2, "--canary"},
		{"canary empty", []string{"run", b.job, "-p", "max_id=600", "--execute", "--canary", ""}, 2, "--canary"},
		{"wait without canary", []string{"run", b.job, "-p", "max_id=600", "--execute", "--canary-wait"}, 2, "needs --canary"},
		{"verify unknown run", []string{"verify", "ffffffff"}, 3, "no backfill has run"},
		{"verify sample 0", []string{"verify", "ffffffff", "--sample", "0"}, 2, "above 0 and at most 100"},
		{"verify sample over 100", []string{"verify", "ffffffff", "--sample", "101"}, 2, "above 0 and at most 100"},
		{"verify sample word", []string{"verify", "ffffffff", "--sample", "ten"}, 2, "--sample"},
		{"verify sample exponent", []string{"verify", "ffffffff", "--sample", "1e1"}, 2, "--sample"},
		{"promote unknown run", []string{"promote", "ffffffff"}, 3, "no backfill has run"},
		{"validate a missing file", []string{"validate", "nope.yaml"}, 3, "nope.yaml does not exist"},
		{"validate a job without validations", []string{"validate", writeJob(t, jobYAML), "-p", "max_id=600"}, 2, "no validations"},
		{"malformed validate block", []string{"validate", writeJob(t, jobYAML+"validate:\n  - name: a\n    sql: SELECT 1\n    expect: [1]\n"), "-p", "max_id=600"},
			2, "validate.a.expect (job file"},
		{"validation that writes", []string{"run", writeJob(t, jobYAML+"validate:\n  - name: a\n    sql: DELETE FROM users\n    expect: 0\n"), "-p", "max_id=600", "--execute", "--canary", "5"},
			2, "validate.a.sql (job file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"backfill"}, tt.args...), dsn)
			_, stderr, st := cli(t, args...)
			if st != tt.status || !strings.Contains(stderr, tt.want) {
				t.Fatalf("status %d, want %d; stderr:\n%s\nwant it to mention %q", st, tt.status, stderr, tt.want)
			}
		})
	}
	var schemas, changed int64
	b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'").Scan(&schemas)
	b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE email = lower(email)").Scan(&changed)
	if schemas != 0 || changed != 0 {
		t.Fatalf("bad input wrote to the database: %d schemas, %d rows", schemas, changed)
	}
	// Promoting a run that is not paused is a conflict.
	out, _, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--execute", "--json")
	var res struct {
		Run struct{ ID string } `json:"run"`
	}
	json.Unmarshal([]byte(out), &res)
	if _, stderr, st2 := cli(t, "backfill", "promote", res.Run.ID, dsn); st != 0 || st2 != 4 || !strings.Contains(stderr, "finished") {
		t.Fatalf("promote of a finished run: %d, %d\n%s", st, st2, stderr)
	}
}

func writeJob(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The rate line counts a chunk whose checkpoint is gone, and names the
// findings about the whole run (a broken audit chain), which no chunk
// carries.
func TestBackfillVerifyCountsEveryFinding(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	id := executeCLI(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--execute", "--json")
	b.db.Exec(t, "DELETE FROM rewind.backfill_chunks WHERE run_id = $1 AND seq = 3", id)
	out, stderr, st := cli(t, "backfill", "verify", id[:8], dsn)
	if st != 5 || !strings.Contains(out, "checkpoint_missing") || !strings.Contains(out, "discrepancies in 1 of 6 chunks checked (16.7%)\n") ||
		!strings.Contains(stderr, "in 1 of 6 chunks checked, and 0 about the whole run") {
		t.Fatalf("verify after a checkpoint is deleted: %d\n%s\n%s", st, out, stderr)
	}
	b.db.Exec(t, "ALTER TABLE rewind.audit_log DISABLE TRIGGER USER")
	b.db.Exec(t, `UPDATE rewind.audit_log SET body = replace(body, '"600"', '"601"')
		WHERE kind = 'backfill.run.started' AND subject = $1`, id)
	out, stderr, st = cli(t, "backfill", "verify", id[:8], dsn)
	if st != 5 || !strings.Contains(out, "audit_ledger") ||
		!strings.Contains(out, "discrepancies in 1 of 6 chunks checked (16.7%); and 1 finding(s) about the whole run\n") ||
		!strings.Contains(stderr, "2 finding(s): in 1 of 6 chunks checked, and 1 about the whole run") {
		t.Fatalf("verify after the audit ledger is altered: %d\n%s\n%s", st, out, stderr)
	}
}
