package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// ledgerText is every row of every table of the rewind schema, as text.
func ledgerText(t *testing.T, b cliBundle) string {
	t.Helper()
	ctx := context.Background()
	rows, err := b.db.Pool.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rewind'")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		rows.Scan(&name)
		tables = append(tables, name)
	}
	var all strings.Builder
	for _, table := range tables {
		var s string
		if err := b.db.Pool.QueryRow(ctx, fmt.Sprintf("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM rewind.%s t", table)).Scan(&s); err != nil {
			t.Fatal(err)
		}
		all.WriteString(s)
	}
	return all.String()
}

// Secrets reached the ledger or the terminal through paths the flag-order
// fix did not cover: a keyword/value DSN written with spaces or quotes, a
// malformed -p, a value the type parser normalizes (bigint 007 is quoted
// back as 7, a date as a timestamp) in a database error, and a dry-run
// diff's before-value (a row that already holds the secret). Each is
// masked now; the test looks for the secret in every table of the rewind
// schema and in stdout and stderr.
func TestSecretsMaskedInEveryRendering(t *testing.T) {
	t.Parallel()
	const job = `name: pins
version: 1
table: users
key: [id]
where: id <= @max_id
set:
  pin: "@pin"
  due: "@due"
  note: "@token"
params:
  max_id: {type: bigint, required: true}
  pin:    {type: bigint, secret: true}
  due:    {type: timestamptz, secret: true}
  token:  {type: text, secret: true}
chunk: 100
`
	b := setupCLI(t, job)
	b.db.Exec(t, "ALTER TABLE users ADD pin bigint, ADD due timestamptz, ADD note text")
	const token, pin, pinShown, due, dueShown = "Tok-3c2b1a", "0074123", "74123", "2031-02-03", "2031-02-03 00:00:00"
	// Row 2 already holds the token: a dry run's before-value shows it.
	b.db.Exec(t, "UPDATE users SET note = $1 WHERE id = 2", token)
	cfg, err := pgconn.ParseConfig(b.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	const password = "Pw-8d7c6b"
	kv := func(pw string) string {
		return fmt.Sprintf("host=%s port=%d user=%s %s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, pw, cfg.Database)
	}
	secrets := []string{token, pinShown, "2031-02-03", password, "8d7c6b"}
	check := func(args []string, out, stderr string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out+stderr, s) {
				t.Errorf("%q printed %q:\n%s\n%s", args, s, out, stderr)
			}
		}
	}
	params := []string{"-p", "max_id=3", "-p", "pin=" + pin, "-p", "due=" + due, "-p", "token=" + token}
	for _, tt := range []struct {
		args   []string
		status int
		want   string
	}{
		{append([]string{"--dsn", kv("password = " + password)}, params...), 0, "DRY RUN"},
		{append([]string{"--dsn=" + kv("password='"+password+" x'")}, params...), 0, "DRY RUN"},
		{append([]string{"--dsn", kv("password=" + password), "-p", token}, params...), 2, "name=value"},
		{append([]string{"--dsn", kv("password=" + password), "-p", "=" + token}, params...), 2, "name=value"},
		{append([]string{"--dsn", kv("password="+password) + " port=x"}, params...), 2, "connection string"},
		{append([]string{"--dsn", kv("password =" + password), "--execute"}, params...), 1, "check constraint"},
	} {
		args := append([]string{"backfill", "run", b.job}, tt.args...)
		if tt.status == 1 {
			// Chunk 1 fails on a CHECK constraint whose message quotes
			// the row: 74123 and the timestamp, as PostgreSQL prints them.
			b.db.Exec(t, "ALTER TABLE users ADD CONSTRAINT small_pin CHECK (pin < 1000 OR due < '2030-01-01')")
		}
		out, stderr, st := cli(t, args...)
		if st != tt.status || !strings.Contains(out+stderr, tt.want) {
			t.Errorf("%q: status %d, want %d with %q:\n%s\n%s", args, st, tt.status, tt.want, out, stderr)
		}
		check(args, out, stderr)
		if tt.want == "DRY RUN" && !strings.Contains(out, "note: *** → ***") {
			t.Errorf("the diff of row 2 does not show its before-value masked:\n%s", out)
		}
	}
	status, _, _ := cli(t, "backfill", "list", "--dsn", b.db.DSN)
	if !strings.Contains(status, "failed") {
		t.Fatalf("no failed run:\n%s", status)
	}
	text := ledgerText(t, b)
	for _, s := range append(secrets, dueShown) {
		if strings.Contains(text, s) {
			i := strings.Index(text, s)
			t.Errorf("the rewind schema holds %q: …%s…", s, text[max(0, i-200):min(len(text), i+100)])
		}
	}
	if !strings.Contains(text, "check constraint") {
		t.Errorf("the failure is not recorded")
	}
	// The same holds for the job file's own error path.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(job, "pin: \"@pin\"", "pin: \"@pin / 0\"", 1)), 0o600)
	out, stderr, _ := cli(t, append([]string{"backfill", "run", bad, "--dsn", b.db.DSN}, params...)...)
	check([]string{"bad.yaml"}, out, stderr)
}

// Issue 11, outside test round 3 (I): in postgres://u:pa@ssWORD9@host/db
// the driver takes "pa" as the password and "ssWORD9@host" as the host,
// and the connection error printed the host: the tail of the password
// the user meant. What lies between the userinfo's first '@' and the
// authority's last '@' may be part of a password, and is masked.
func TestMaskDSNPasswordTailTheDriverTakesAsHost(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, "name: j\nversion: 1\ntable: users\nkey: [id]\nset:\n  name: name\n")
	out, stderr, st := cli(t, "backfill", "run", b.job, "--connect-timeout", "3s",
		"--dsn", "postgres://postgres:pa@ssWORD9@127.0.0.1:5432/db")
	if st == 0 || strings.Contains(out+stderr, "ssWORD9") {
		t.Fatalf("status %d, the password's tail shows:\n%s\n%s", st, out, stderr)
	}
}

// Issue 11, outside test round 3 (F): a resume under another TimeZone
// wrote a second instant for a timestamptz parameter without offset. The
// resume command connects to the target with the run's recorded TimeZone
// and search_path.
func TestResumeUsesTheRunsTimeZone(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, `name: tz
version: 1
table: users
key: [id]
where: id <= 20
set:
  ts: "@p"
params:
  p: {type: timestamptz}
chunk: 5
`)
	b.db.Exec(t, "ALTER TABLE users ADD ts timestamptz, ADD CONSTRAINT c8 CHECK (id <> 8 OR ts IS NULL)")
	if _, stderr, st := cli(t, "backfill", "run", b.job, "--dsn", b.db.DSN, "-p", "p=2031-01-01", "--execute"); st != 1 {
		t.Fatalf("run: status %d, want 1 (chunk 2 fails):\n%s", st, stderr)
	}
	b.db.Exec(t, "ALTER TABLE users DROP CONSTRAINT c8")
	var id string
	if err := b.db.Pool.QueryRow(context.Background(), "SELECT id FROM rewind.backfill_runs").Scan(&id); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(b.db.DSN, "?") {
		sep = "&"
	}
	tokyo := b.db.DSN + sep + "options=-c%20TimeZone%3DAsia/Tokyo"
	if out, stderr, st := cli(t, "backfill", "resume", id, b.job, "--dsn", tokyo, "-p", "p=2031-01-01"); st != 0 {
		t.Fatalf("resume: status %d:\n%s\n%s", st, out, stderr)
	}
	var n int64
	if err := b.db.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM users WHERE ts = '2031-01-01 00:00+00'").Scan(&n); err != nil || n != 20 {
		t.Fatalf("%d of 20 rows hold the run's instant (%v)", n, err)
	}
}

// A --store the driver cannot parse gets the driver's reason, without the
// string (as --dsn): the message quoted it twice, and masking the whole
// message as if it were one URL ate the text between its first "://" and
// its last '@' ("postgres://…@127.0.0.1:***@127.0.0.1:99999/db`: invalid
// port").
func TestBadStoreURLIsNamedOnceMasked(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ url, reason string }{
		{"postgres://u:s3cretpw@127.0.0.1:99999/db", "invalid port"},
		{"postgres://u:s3cretpw@127.0.0.1:5432/db?sslmode=bogus", "sslmode is invalid"},
		{"postgres://u:s3cr%ZZetpw@127.0.0.1/db", "percent-encoded"},
	} {
		out, stderr, st := cli(t, "streams", "--store", c.url)
		msg := out + stderr
		if st == 0 || strings.Contains(msg, "s3cr") || !strings.Contains(msg, c.reason) {
			t.Errorf("--store %s: status %d, want an error with %q and no password:\n%s", c.url, st, c.reason, msg)
		}
		if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "`") || !strings.Contains(msg, "invalid store") {
			t.Errorf("--store %s: want the flag named and the string not quoted:\n%s", c.url, msg)
		}
	}
}
