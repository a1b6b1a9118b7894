package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The backfill and audit commands end with the README's exit statuses,
// and their messages say what to do rather than quoting the driver alone.
func TestBackfillAndAuditExitStatuses(t *testing.T) {
	t.Parallel()
	b := setupCLI(t, jobYAML)
	dsn := "--dsn=" + b.db.DSN
	out, stderr, st := cli(t, "backfill", "run", b.job, dsn, "-p", "max_id=100", "--execute", "--json")
	if st != 0 {
		t.Fatalf("execute: %d %s", st, stderr)
	}
	runID := out[strings.Index(out, `"id":"`)+6:][:36]
	head, _, _ := cli(t, "audit", "head", dsn)
	head = strings.TrimSpace(head)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(jobYAML, "chunk: 100", "chunk: many", 1)), 0o600)
	for _, tt := range []struct {
		name   string
		args   []string
		setup  string
		status int
		want   string
	}{
		{"invalid job file", []string{"backfill", "run", bad, dsn, "-p", "max_id=1"}, "", 2, "chunk (job file"},
		{"bad connection string", []string{"backfill", "list", "--dsn", b.db.DSN + "&connect_timeout=abc"}, "", 2, "invalid connect_timeout; write it as"},
		{"missing job file", []string{"backfill", "run", "no-such-job.yaml", dsn}, "", 3, "does not exist"},
		{"run not found", []string{"backfill", "status", "abcd1234", dsn}, "", 3, "'rewind backfill list'"},
		{"resume a run not found", []string{"backfill", "resume", "abcd1234", dsn}, "", 3, "'rewind backfill list'"},
		{"applied already", []string{"backfill", "run", b.job, dsn, "-p", "max_id=100", "--execute"}, "", 4, "--new-run " + runID},
		{"cancel a finished run", []string{"backfill", "cancel", runID[:8], dsn}, "", 4, "nothing to cancel"},
		{"tampered ledger", []string{"audit", "verify", dsn}, `ALTER TABLE rewind.audit_log DISABLE TRIGGER USER;
			UPDATE rewind.audit_log SET body = replace(body, '"kind"', '"Kind"') WHERE seq = 2`, 5, "entry 2 altered"},
		{"tampered ledger, as JSON", []string{"audit", "verify", dsn, "--json"}, "", 5, "entry 2 altered"},
		{"dropped ledger against its head", []string{"audit", "verify", dsn, "--expect-head", head}, "DROP SCHEMA rewind CASCADE", 5, "was dropped"},
		{"no ledger", []string{"audit", "verify", dsn}, "", 3, "--expect-head"},
	} {
		if tt.setup != "" {
			b.db.Exec(t, tt.setup)
		}
		out, stderr, st := cli(t, tt.args...)
		if strings.HasSuffix(tt.name, "as JSON") && (!strings.Contains(out, `"problem":"altered"`) || !strings.Contains(out, `"seq":2`)) {
			t.Errorf("%s: %s", tt.name, out)
		}
		if st != tt.status || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, "strconv") {
			t.Errorf("%s: %q: status %d, want %d with %q:\n%s", tt.name, tt.args[:3], st, tt.status, tt.want, stderr)
		}
	}
	// Interrupted while connecting: 130, not "unavailable".
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o, e bytes.Buffer
	if st := newApp(strings.NewReader(""), &o, &e).run(ctx, []string{"backfill", "list", dsn}); st != 130 {
		t.Errorf("interrupted: status %d: %s", st, e.String())
	}
}
