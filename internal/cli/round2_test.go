package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Issue 11, outside test round 2 (4b, 5): a keyword/value password with
// libpq's escaped space left its tail in the recorded command line, and a
// URL with a bad %-escape printed a message the masking had eaten.
func TestDSNPasswordMaskedAsTheDriverReadsIt(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	cfg, err := pgconn.ParseConfig(b.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf(`host=%s port=%d user=%s dbname=%s sslmode=disable password=Pw\ TAILSECRET`, cfg.Host, cfg.Port, cfg.User, cfg.Database)
	out, stderr, st := cli(t, "backfill", "run", b.job, "--dsn", dsn, "-p", "max_id=3")
	if st != 0 || strings.Contains(out+stderr, "TAILSECRET") {
		t.Fatalf("status %d:\n%s\n%s", st, out, stderr)
	}
	if text := ledgerText(t, b); strings.Contains(text, "TAILSECRET") || !strings.Contains(text, "password=***") {
		i := strings.Index(text, "password")
		t.Fatalf("the ledger's command line: …%s…", text[max(0, i-100):min(len(text), i+100)])
	}

	out, stderr, st = cli(t, "backfill", "run", b.job, "--dsn", "postgres://postgres:PwX7%zz@127.0.0.1:5432/db", "-p", "max_id=3")
	if st != 2 || strings.Contains(out+stderr, "PwX7") || !strings.Contains(stderr, "percent-encoded") ||
		!strings.Contains(stderr, "%25") {
		t.Fatalf("status %d, want 2 saying the %%-escape is bad, without the password:\n%s\n%s", st, out, stderr)
	}
}

// Issue 11, outside test round 2 (4c): the secret 7 was masked inside the
// plan hash of a --plan-hash refusal.
func TestShortSecretLeavesThePlanHashAlone(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, `name: short
version: 1
table: users
key: [id]
where: id <= 10
set:
  email: "email || @num::text"
params:
  num: {type: bigint, secret: true}
chunk: 100
`)
	out, stderr, st := cli(t, "backfill", "run", b.job, "--dsn", b.db.DSN, "-p", "num=7", "--json")
	if st != 0 {
		t.Fatalf("plan: status %d\n%s\n%s", st, out, stderr)
	}
	i := strings.Index(out, `"plan_hash":"`)
	if i < 0 {
		t.Fatalf("no plan hash:\n%s", out)
	}
	hash := out[i+len(`"plan_hash":"`):]
	hash = hash[:strings.IndexByte(hash, '"')]
	if strings.Contains(hash, "*") {
		t.Fatalf("the printed plan hash is masked: %s", hash)
	}
	_, stderr, st = cli(t, "backfill", "run", b.job, "--dsn", b.db.DSN, "-p", "num=7", "--execute", "--plan-hash", "0")
	if st != 4 || !strings.Contains(stderr, hash) {
		t.Fatalf("status %d, want 4 naming the plan hash %s whole:\n%s", st, hash, stderr)
	}
}

// Issue 11, outside test round 2 (5): list on a database without a ledger
// said nothing, resuming a finished run exited 0 while the docs say 4,
// and a failed run did not say what to do next.
func TestBackfillListResumeAndFailureMessages(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, `name: fails
version: 1
table: users
key: [id]
where: id <= 250
set:
  email: "CASE WHEN id = 150 THEN NULL ELSE lower(email) END"
chunk: 100
`)
	dsn := "--dsn=" + b.db.DSN
	out, stderr, st := cli(t, "backfill", "list", dsn)
	if st != 0 || !strings.Contains(stderr, "no backfill ledger") || strings.Count(out, "\n") != 1 {
		t.Fatalf("list without a ledger: status %d, want 0, the header and a note:\n%s\n%s", st, out, stderr)
	}
	_, stderr, st = cli(t, "backfill", "run", b.job, dsn, "--execute")
	if st != 1 || !strings.Contains(stderr, "rewind backfill resume ") || !strings.Contains(stderr, "on_data_error: skip") {
		t.Fatalf("failed run: status %d, want 1 saying how to go on:\n%s", st, stderr)
	}
	b.db.Exec(t, "UPDATE users SET email = 'x' || email WHERE id = 150")
	b.db.Exec(t, "ALTER TABLE users ALTER email DROP NOT NULL")
	var id string
	if err := b.db.Pool.QueryRow(t.Context(), "SELECT id::text FROM rewind.backfill_runs").Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, stderr, st = cli(t, "backfill", "resume", id, b.job, dsn); st != 0 {
		t.Fatalf("resume: status %d\n%s", st, stderr)
	}
	_, stderr, st = cli(t, "backfill", "resume", id, b.job, dsn)
	if st != 4 || !strings.Contains(stderr, "already finished") || !strings.Contains(stderr, "--new-run") {
		t.Fatalf("resume of a finished run: status %d, want 4:\n%s", st, stderr)
	}
}
