package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/pgtest"
)

// cli runs the command line and returns stdout, stderr and the exit status.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &errb)
	status := a.run(context.Background(), args)
	return out.String(), errb.String(), status
}

const jobYAML = `name: normalize-emails
version: 1
table: users
key: [id]
where: email <> lower(email) AND id <= @max_id
set:
  email: lower(email)
params:
  max_id: {type: bigint, required: true}
chunk: 100
`

type cliBundle struct {
	db  *pgtest.DB
	job string
}

func setupCLI(t *testing.T, job string) cliBundle {
	t.Helper()
	db := pgtest.New(t)
	db.Exec(t, "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)")
	db.Exec(t, "INSERT INTO users SELECT g, 'User' || g || '@Example.COM' FROM generate_series(1, 1000) g")
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	return cliBundle{db: db, job: path}
}

func TestBackfillCommands(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	before := b.db.Checksum(t, "users", "id")
	out, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600")
	if st != 0 || !strings.Contains(out, "DRY RUN") || !strings.Contains(out, "600 (exact)") ||
		!strings.Contains(out, "User1@Example.COM → user1@example.com") {
		t.Fatalf("dry run: status %d\n%s\n%s", st, out, stderr)
	}
	if b.db.Checksum(t, "users", "id") != before {
		t.Fatal("the dry run changed the table")
	}
	out, _, _ = cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--json")
	var plan struct {
		PlanHash string `json:"plan_hash"`
		Rows     int64  `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || plan.Rows != 600 {
		t.Fatalf("dry run --json: %v\n%s", err, out)
	}
	out, stderr, st = cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--execute", "--plan-hash", plan.PlanHash, "--json")
	var res struct {
		RowsChanged int64 `json:"rows_changed"`
		Run         struct {
			ID string `json:"id"`
		} `json:"run"`
	}
	if err := json.Unmarshal([]byte(out), &res); st != 0 || err != nil || res.RowsChanged != 600 {
		t.Fatalf("execute: status %d, %v\n%s\n%s", st, err, out, stderr)
	}
	// Applied once: again is refused, naming the run to pass to --new-run.
	out, stderr, st = cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--execute", "--json")
	if st != 4 || !strings.Contains(out, `"wrong_expected_version"`) || !strings.Contains(stderr, "--new-run "+res.Run.ID) {
		t.Fatalf("re-run: status %d\n%s\n%s", st, out, stderr)
	}
	out, _, st = cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=600", "--execute", "--new-run", res.Run.ID[:8])
	if st != 0 || !strings.Contains(out, "0 rows changed") {
		t.Fatalf("re-run in a new run: status %d\n%s", st, out)
	}
	out, _, st = cli(t, "backfill", "status", res.Run.ID[:8], dsn)
	if st != 0 || !strings.Contains(out, "finished") || !strings.Contains(out, "600 / 600 rows") {
		t.Fatalf("status: %d\n%s", st, out)
	}
	out, _, st = cli(t, "backfill", "list", dsn, "--json")
	var runs []map[string]any
	if err := json.Unmarshal([]byte(out), &runs); st != 0 || err != nil || len(runs) != 2 {
		t.Fatalf("list: %d %v\n%s", st, err, out)
	}
	out, _, st = cli(t, "audit", "verify", dsn)
	if st != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %d\n%s", st, out)
	}
	out, _, st = cli(t, "audit", "log", dsn, "--run", res.Run.ID[:8], "--json")
	if n := strings.Count(out, "\n"); st != 0 || n != 8 { // started, 6 chunks, finished
		t.Fatalf("audit log: status %d, %d entries\n%s", st, n, out)
	}
	if !strings.Contains(out, `"param.max_id":"600"`) || !strings.Contains(out, `"actor":`) {
		t.Fatalf("audit entries lack parameters or actor:\n%s", out)
	}
	// Tampering is found, with the corruption exit status.
	b.db.Exec(t, "ALTER TABLE rewind.audit_log DISABLE TRIGGER USER")
	b.db.Exec(t, "UPDATE rewind.audit_log SET body = replace(body, '600', '601') WHERE seq = 3")
	_, stderr, st = cli(t, "audit", "verify", dsn)
	if st != 5 || !strings.Contains(stderr, "entry 3 altered") {
		t.Fatalf("verify after tampering: status %d\n%s", st, stderr)
	}
}

func TestBackfillBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		job    string
		args   []string
		status int
		want   string
	}{
		{"unknown field", strings.Replace(jobYAML, "set:", "sett:", 1), []string{"-p", "max_id=1"}, 2, `line 6: unknown field "sett"`},
		{"missing key", strings.Replace(jobYAML, "key: [id]\n", "", 1), []string{"-p", "max_id=1"}, 2, "key"},
		{"wrong parameter type", jobYAML, []string{"-p", "max_id=ten"}, 2, "--param max_id"},
		{"missing parameter", jobYAML, nil, 2, "--param max_id=VALUE"},
		{"unknown table", strings.Replace(jobYAML, "table: users", "table: userz", 1), []string{"-p", "max_id=1"}, 2, "line 3"},
		{"unknown column", strings.Replace(jobYAML, "  email: lower", "  emial: lower", 1), []string{"-p", "max_id=1"}, 2, "line 7"},
		{"bad sql", strings.Replace(jobYAML, "AND id <=", "AND AND id <=", 1), []string{"-p", "max_id=1"}, 2, "line 5"},
		{"unreachable database", jobYAML, []string{"-p", "max_id=1", "--dsn", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"}, 9, "connect to the target database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupCLI(t, tt.job)
			args := append([]string{"backfill", "run", b.job, "--execute"}, tt.args...)
			if !slices.Contains(tt.args, "--dsn") { // a flag is given once
				args = append(args, "--dsn", b.db.DSN)
			}
			_, stderr, st := cli(t, args...)
			if st != tt.status || !strings.Contains(stderr, tt.want) {
				t.Fatalf("status %d, want %d; stderr:\n%s\nwant it to mention %q", st, tt.status, stderr, tt.want)
			}
			var schemas, changed int64
			b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'").Scan(&schemas)
			b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE email = lower(email)").Scan(&changed)
			if schemas != 0 || changed != 0 {
				t.Fatal("bad input wrote to the database")
			}
		})
	}
}

func TestBenchBackfillReportsAllFigures(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	out, stderr, st := cli(t, "bench", "backfill", "--dsn", db.DSN, "--rows", "3000", "--chunk", "500", "--sample", "200", "--rounds", "2", "--json")
	var r benchBackfillResult
	if err := json.Unmarshal([]byte(out), &r); st != 0 || err != nil {
		t.Fatalf("status %d, %v\n%s\n%s", st, err, out, stderr)
	}
	if r.Rows != 3000 || r.RawKeysetRPS <= 0 || r.RowsPerSec <= 0 || r.RowByRowRPS <= 0 || r.RatioVsRaw <= 0 || len(r.RawKeysetRuns) != 3 ||
		len(r.RowsPerSecRuns) != 2 || len(r.RowsPerSecNoImagesRuns) != 2 || len(r.RollbackRuns) != 2 || r.BeforeImagesRatio <= 0 ||
		r.RollbackRatio <= 0 || r.RowsPerSecNoImages <= 0 || len(r.TwoWorkersRuns) != 2 || r.WorkersRatio <= 0 || !r.Checkpoints {
		t.Fatalf("result %+v", r)
	}
	var n int64
	db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename = 'rewind_bench_backfill'").Scan(&n)
	if n != 0 {
		t.Fatal("the benchmark table was left behind")
	}
}

// Bad flags are refused before anything is built or measured (exit 2),
// each naming its flag.
func TestBenchBackfillRefusesBadFlags(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for _, c := range []struct {
		flag string
		args []string
	}{
		{"--sample", []string{"--sample", "0"}},
		{"--sample", []string{"--sample", "-1"}},
		{"--pgbench-time", []string{"--load", "pgbench", "--pgbench-time", "1.5s"}},
		{"--pgbench-time", []string{"--pgbench-time", "0s"}},
		{"--pgbench-scale", []string{"--pgbench-scale", "0"}},
		{"--pgbench-clients", []string{"--pgbench-clients", "0"}},
		{"--pgbench", []string{"--load", "pgbench", "--pgbench", "/nonexistent/pgbench"}},
		{"--pgbench", []string{"--load", "pgbench", "--pgbench", "/bin/true"}},
		{"--pgbench", []string{"--pgbench", "/nonexistent/pgbench"}},
		{"--pgbench-scale", []string{"--load", "pgbench", "--pgbench-scale", "2147483648"}},
		{"--pgbench-clients", []string{"--load", "pgbench", "--pgbench-clients", "9223372036854775807"}},
	} {
		args := append([]string{"bench", "backfill", "--dsn", db.DSN, "--rows", "1000", "--json"}, c.args...)
		out, stderr, st := cli(t, args...)
		if st != 2 || !strings.Contains(out+stderr, c.flag+" ") && !strings.Contains(out+stderr, c.flag+"\"") {
			t.Errorf("%v: status %d, want 2 naming %s\n%s%s", c.args, st, c.flag, out, stderr)
		}
	}
	var n int64
	db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_tables WHERE tablename = 'rewind_bench_backfill') +
		(SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind')`).Scan(&n)
	if n != 0 {
		t.Fatal("a refused bench wrote to the database")
	}
}

// A role that may not CHECKPOINT still gets its figures, and is told
// that its passes did not begin at a checkpoint.
func TestBenchBackfillWithoutTheRightToCheckpoint(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	role := fmt.Sprintf("bench_role_%d", time.Now().UnixNano())
	db.Exec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		db.Exec(t, "DROP OWNED BY "+role)
		db.Exec(t, "DROP ROLE "+role)
	})
	db.Exec(t, "GRANT CREATE ON DATABASE "+db.Name+" TO "+role)
	db.Exec(t, "GRANT CREATE ON SCHEMA public TO "+role)
	dsn := strings.Replace(db.DSN, "postgres@", role+"@", 1)
	out, stderr, st := cli(t, "bench", "backfill", "--dsn", dsn, "--rows", "1000", "--chunk", "500", "--sample", "100", "--rounds", "1", "--json")
	var r benchBackfillResult
	if err := json.Unmarshal([]byte(out), &r); st != 0 || err != nil {
		t.Fatalf("status %d, %v\n%s\n%s", st, err, out, stderr)
	}
	if r.Checkpoints || r.RatioVsRaw <= 0 || len(r.RawKeysetRuns) != 2 {
		t.Fatalf("result %+v: want checkpoint_each_pass false and the figures", r)
	}
}

// TestBackfillRefusesACommandLineThatCouldForgeALedgerLine: the command
// line is recorded in every ledger entry of a run (and in the run's
// record), so an argument that is not one line of plain text, here the
// job file's path, is refused (exit 2) before anything is recorded or
// changed, dry run or not.
func TestBackfillRefusesACommandLineThatCouldForgeALedgerLine(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	before := b.db.Checksum(t, "users", "id")
	forged := "\n   999  2026-12-01T06:11:43Z  backfill.run.finished  forged"
	for _, name := range []string{"job" + forged + ".yaml", "job\u3164.yaml", "job\x7f.yaml"} {
		path := filepath.Join(filepath.Dir(b.job), name)
		if err := os.WriteFile(path, []byte(jobYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, extra := range [][]string{nil, {"--execute"}} {
			args := append([]string{"backfill", "run", path, dsn, "-p", "max_id=600"}, extra...)
			out, stderr, st := cli(t, args...)
			if st != 2 || !strings.Contains(stderr, "command-line argument") || strings.Contains(out+stderr, "forged") {
				t.Errorf("%q %v: status %d, want 2 naming the argument\n%s\n%s", name, extra, st, out, stderr)
			}
		}
	}
	if n, bodies := ledgerRows(t, b.db); n != 0 {
		t.Errorf("refused runs recorded %d ledger entries: %s", n, bodies)
	}
	if b.db.Checksum(t, "users", "id") != before {
		t.Error("a refused run changed the table")
	}
}
