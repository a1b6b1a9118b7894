package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// permutations returns every order of n items, as index lists.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

const secretJobYAML = `name: set-notes
version: 1
table: users
key: [id]
where: note IS DISTINCT FROM @token AND id <= @max_id
set:
  note: "@token"
params:
  max_id: {type: bigint, required: true}
  token:  {type: text, secret: true}
chunk: 100
`

// Issue 11: a secret parameter reached the append-only ledger and the
// run's command line whenever a flag without a value came before -p
// ("--execute -p token=…"), because the mask guessed which word was a
// flag's value; and the dry run's EXPLAIN printed it. The command line is
// now parsed with the command's own flag set. Every order of the flags,
// each way of writing -p, a dry run and an execution: the secret is in no
// ledger table, nor in stdout or stderr.
func TestSecretInNoLedgerTableNorOutputWhateverTheFlagOrder(t *testing.T) {
	t.Parallel()
	const secret = "Tok-9f8e7d6c5b4a"
	b := setupCLI(t, secretJobYAML)
	b.db.Exec(t, "ALTER TABLE users ADD note text")
	params := [][]string{{"-p", "token=" + secret}, {"-ptoken=" + secret}, {"--param", "token=" + secret}, {"--param=token=" + secret}}
	// The first execution runs alone: it changes the rows and its run is
	// the first recorded. Every other command line runs four at a time.
	var cmds [][]string
	for _, mode := range []string{"--execute", "--estimate"} { // both flags take no value
		for i, perm := range permutations(5) {
			job := b.job
			if mode == "--execute" && i > 0 {
				// A job is applied once: each later execution is a job of
				// its own, so that each creates a run and records its
				// command line.
				job = filepath.Join(filepath.Dir(b.job), fmt.Sprintf("job-%d.yaml", i))
				if err := os.WriteFile(job, []byte(strings.Replace(secretJobYAML, "name: set-notes", fmt.Sprintf("name: set-notes-%d", i), 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			units := [][]string{{mode}, params[i%len(params)], {job}, {"--dsn", b.db.DSN}, {"--actor", "alice", "-p", "max_id=900"}}
			args := []string{"backfill", "run"}
			for _, u := range perm {
				args = append(args, units[u]...)
			}
			cmds = append(cmds, args)
		}
	}
	check := func(args []string) error {
		out, stderr, st := cli(t, args...)
		if st != 0 {
			return fmt.Errorf("%q: status %d\n%s\n%s", args, st, out, stderr)
		}
		if strings.Contains(out+stderr, secret) {
			return fmt.Errorf("%q printed the secret:\n%s\n%s", args, out, stderr)
		}
		return nil
	}
	if err := check(cmds[0]); err != nil {
		t.Fatal(err)
	}
	var g errgroup.Group
	g.SetLimit(4)
	for _, args := range cmds[1:] {
		g.Go(func() error { return check(args) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	runs := len(cmds)
	if n := b.db.Checksum(t, "users", "id"); n == "" {
		t.Fatal("no checksum")
	}
	var changed int64
	b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE note = $1", secret).Scan(&changed)
	if changed != 900 {
		t.Fatalf("%d rows got the secret note, want 900", changed)
	}
	// Every table of the ledger, as text.
	rows, err := b.db.Pool.Query(context.Background(), "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rewind'")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		rows.Scan(&name)
		tables = append(tables, name)
	}
	if len(tables) < 5 {
		t.Fatalf("ledger tables %v", tables)
	}
	for _, table := range tables {
		if table == "backfill_images" || table == "backfill_image_rows" {
			// Before-images are a copy of the table's data (the values a
			// chunk replaced and wrote), kept for rollback and removed by
			// purge-images: a secret the job wrote into the table is data
			// there as in the table itself (docs/backfill.md, Secrets).
			continue
		}
		var n int64
		q := fmt.Sprintf("SELECT count(*) FROM rewind.%s t WHERE t::text LIKE '%%' || $1 || '%%'", table)
		if err := b.db.Pool.QueryRow(context.Background(), q, secret).Scan(&n); err != nil || n != 0 {
			t.Fatalf("rewind.%s: %d rows hold the secret (%v)", table, n, err)
		}
	}
	// The command line is recorded, as parsed: flags and their values.
	var cmdline string
	b.db.Pool.QueryRow(context.Background(), "SELECT command FROM rewind.backfill_runs ORDER BY created_at LIMIT 1").Scan(&cmdline)
	for _, want := range []string{"backfill run", "--param=token=***", "--param=max_id=900", "--execute", "--actor=alice", "job.yaml"} {
		if !strings.Contains(cmdline, want) {
			t.Fatalf("recorded command %q lacks %q", cmdline, want)
		}
	}
	t.Logf("%d command lines checked", runs)
}

// Issue 11: each bad job file or flag is refused with an error naming the
// field, and writes nothing at all: no schema, no table, no run, no row.
func TestBackfillBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		job    string
		args   []string
		status int
		want   string
	}{
		{"fractional chunk", strings.Replace(jobYAML, "chunk: 100", "chunk: 1.5", 1), nil, 2, "chunk (job file"},
		{"zero chunk", strings.Replace(jobYAML, "chunk: 100", "chunk: 0", 1), nil, 2, "chunk (job file"},
		{"empty file", "", nil, 2, "is empty"},
		{"key as a mapping", strings.Replace(jobYAML, "key: [id]", "key: {id: 1}", 1), nil, 2, "key (job file"},
		{"set value as a list", strings.Replace(jobYAML, "email: lower(email)", "email: [lower(email)]", 1), nil, 2, "set.email (job file"},
		{"undeclared parameter", strings.Replace(jobYAML, "lower(email)\n", "lower(@emial)\n", 1), nil, 2, "@emial"},
		{"negative --diffs", jobYAML, []string{"--diffs", "-1"}, 2, "--diffs"},
		{"statement on another table", strings.Replace(jobYAML, "set:\n  email: lower(email)\n",
			"statement: DELETE FROM other WHERE id BETWEEN @lo AND @hi\n", 1), nil, 2, "writes other"},
		{"NULL into NOT NULL", strings.Replace(jobYAML, "lower(email)\n", "NULL\n", 1), nil, 2, "NOT NULL"},
		{"unreachable ledger", jobYAML, []string{"--ledger-dsn", "postgres://postgres@127.0.0.1:1/x"}, 9, "ledger database"},
	}
	for _, tt := range tests {
		for _, mode := range []string{"--execute", "--estimate"} {
			t.Run(tt.name+" "+mode, func(t *testing.T) {
				t.Parallel()
				b := setupCLI(t, tt.job)
				b.db.Exec(t, "CREATE TABLE other (id bigint PRIMARY KEY); INSERT INTO other VALUES (1), (2)")
				before := b.db.Checksum(t, "users", "id")
				args := append([]string{"backfill", "run", b.job, mode, "--dsn", b.db.DSN, "-p", "max_id=100"}, tt.args...)
				_, stderr, st := cli(t, args...)
				if st != tt.status || !strings.Contains(stderr, tt.want) {
					t.Fatalf("status %d, want %d; stderr:\n%s\nwant it to mention %q", st, tt.status, stderr, tt.want)
				}
				var schemas, others int64
				b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'").Scan(&schemas)
				b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM other").Scan(&others)
				if schemas != 0 || others != 2 || b.db.Checksum(t, "users", "id") != before {
					t.Fatalf("bad input wrote to the database: rewind schema %d, other %d rows", schemas, others)
				}
			})
		}
	}
}

// Issue 11: a database that accepts the connection and never answers hung
// the command; connecting now gives up after --connect-timeout (10 s by
// default) with an error that says so.
func TestUnansweringDatabaseTimesOut(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept, then say nothing
		}
	}()
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte(jobYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://postgres@%s/x?sslmode=disable", l.Addr())
	for _, args := range [][]string{
		{"backfill", "run", path, "-p", "max_id=1", "--dsn", dsn},
		{"backfill", "run", path, "-p", "max_id=1", "--dsn", dsn, "--connect-timeout", "1s", "--execute"},
	} {
		type result struct {
			stderr string
			status int
		}
		done := make(chan result, 1)
		go func() {
			_, stderr, st := cli(t, args...)
			done <- result{stderr, st}
		}()
		select {
		case r := <-done:
			if r.status != 9 || !strings.Contains(r.stderr, "cannot reach the database") || !strings.Contains(r.stderr, "no answer within") {
				t.Fatalf("%q: status %d, stderr:\n%s", args, r.status, r.stderr)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("%q still waiting for a database that never answers", args)
		}
	}
}

// --diffs 0 shows no diffs (it showed one); a negative count is refused
// (TestBackfillBadInputWritesNothing).
func TestDiffsZeroShowsNone(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	out, stderr, st := cli(t, "backfill", "run", b.job, "--dsn", b.db.DSN, "-p", "max_id=600", "--diffs", "0", "--json")
	var plan struct {
		Rows  int64            `json:"rows"`
		Diffs []map[string]any `json:"diffs"`
	}
	if err := json.Unmarshal([]byte(out), &plan); st != 0 || err != nil || plan.Rows != 600 || plan.Diffs == nil || len(plan.Diffs) != 0 {
		t.Fatalf("status %d, %v, plan %+v\n%s\n%s", st, err, plan, out, stderr)
	}
	out, _, _ = cli(t, "backfill", "run", b.job, "--dsn", b.db.DSN, "-p", "max_id=600", "--diffs", "3")
	if n := strings.Count(out, "  key "); n != 3 {
		t.Fatalf("--diffs 3 showed %d diffs:\n%s", n, out)
	}
}
