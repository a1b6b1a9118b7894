package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// cliBounded runs the command line, failing the test if it does not end within
// a minute: no command may wait without bound.
func cliBounded(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	type result struct {
		out, stderr string
		status      int
	}
	done := make(chan result, 1)
	go func() {
		out, stderr, st := cli(t, args...)
		done <- result{out, stderr, st}
	}()
	select {
	case r := <-done:
		return r.out, r.stderr, r.status
	case <-time.After(time.Minute):
		t.Fatalf("%q is still waiting after a minute", args)
		return "", "", 0
	}
}

// A database that cannot be reached — a server that accepts connections
// and never answers, a port nobody listens on — is "unavailable", exit 9,
// with a message naming it and saying what to check. Before, a connect
// timeout ended with exit 130 ("interrupted") and the driver's text, and
// a refused connection with exit 1. A database that does not exist is
// "not found" (3), a refused role "unauthenticated" (7).
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	go func() {
		for {
			c, err := stalled.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept, then say nothing
		}
	}()
	// An HTTP server (or proxy) where PostgreSQL was expected.
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	go func() {
		for {
			c, err := web.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()
	b := setupCLI(t, jobYAML)
	base := strings.TrimSuffix(b.db.DSN[:strings.LastIndex(b.db.DSN, "/")], "/")
	for _, tt := range []struct {
		name, dsn string
		status    int
		want      string
	}{
		{"stalled server", fmt.Sprintf("postgres://postgres@%s/x?sslmode=disable", stalled.Addr()), 9, "no answer within 300ms"},
		{"not PostgreSQL", fmt.Sprintf("postgres://postgres@%s/x?sslmode=disable", web.Addr()), 9, "does not speak PostgreSQL's protocol"},
		{"connection refused", fmt.Sprintf("postgres://postgres@%s/x?sslmode=disable", refused), 9, "connection refused"},
		{"no such database", base + "/rewind_no_such_db?sslmode=disable", 3, "does not exist"},
		{"no such role", strings.Replace(base, "postgres@", "rewind_no_such_role@", 1) + "/postgres?sslmode=disable", 7, "refused user"},
	} {
		for _, args := range [][]string{
			{"backfill", "run", b.job, "-p", "max_id=1"},
			{"backfill", "run", b.job, "-p", "max_id=1", "--execute"},
			{"backfill", "list"},
			{"backfill", "status", "abcd1234"},
			{"audit", "verify"},
			{"audit", "verify", "--expect-head", "1:" + strings.Repeat("0", 64)},
		} {
			args := append(args, "--dsn", tt.dsn, "--connect-timeout", "300ms")
			_, stderr, st := cliBounded(t, args...)
			if st != tt.status || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, "failed to connect to") {
				t.Errorf("%s: %q: status %d, want %d with %q:\n%s", tt.name, args[:3], st, tt.status, tt.want, stderr)
			}
		}
	}
}

// A table (or the ledger) locked by another session makes a command give up
// after --lock-timeout with "locked" (exit 6) and a message saying what to
// do, instead of waiting for as long as the other session holds the lock.
func TestLockedTableDoesNotHangTheCommand(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	if _, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=10"); st != 0 { // creates the ledger
		t.Fatalf("dry run: %d %s", st, stderr)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		table string
		args  []string
	}{
		{"users", []string{"backfill", "run", b.job, "-p", "max_id=10"}},
		{"users", []string{"backfill", "run", b.job, "-p", "max_id=10", "--execute"}},
		{"rewind.audit_log", []string{"audit", "verify"}},
		{"rewind.audit_log", []string{"audit", "log"}},
		{"rewind.backfill_runs", []string{"backfill", "list"}},
	} {
		holder, err := b.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Exec(ctx, "LOCK TABLE "+tt.table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		args := append(tt.args, dsn, "--lock-timeout", "200ms")
		_, stderr, st := cliBounded(t, args...)
		holder.Rollback(ctx)
		if st != 6 || !strings.Contains(stderr, "locked by another database session") || !strings.Contains(stderr, "--lock-timeout") {
			t.Errorf("%q with %s locked: status %d, stderr:\n%s", tt.args[:3], tt.table, st, stderr)
		}
		// Issue 11, outside test round 2: the message named no table
		// ("check where;"); it names the table and how to find the
		// session holding the lock on it.
		if tt.table == "users" && (!strings.Contains(stderr, "'public.users'::regclass") || strings.Contains(stderr, "check where;")) {
			t.Errorf("%q with %s locked: the message does not name the table in its query:\n%s", tt.args[:3], tt.table, stderr)
		}
	}
	var changed int64
	b.db.Pool.QueryRow(ctx, "SELECT count(*) FROM users WHERE email = lower(email)").Scan(&changed)
	if changed != 0 {
		t.Errorf("%d rows changed while the table was locked", changed)
	}
	if _, stderr, st := cli(t, "backfill", "list", dsn, "--lock-timeout", "0s"); st != 2 || !strings.Contains(stderr, "--lock-timeout") {
		t.Errorf("--lock-timeout 0s: status %d\n%s", st, stderr)
	}
}
