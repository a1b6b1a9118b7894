package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/internal/pgtest"
)

// auditDB returns a database with an audit ledger of n entries.
func auditDB(t *testing.T, n int) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	l, _ := auditpg.New(db.Pool, auditpg.Config{})
	ctx := context.Background()
	if err := l.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(ctx, audit.Entry{Kind: "test.step", Subject: "s", Origin: audit.Origin{Actor: "alice"},
			Counts: map[string]int64{"i": int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// tamper runs sql with the ledger's guard triggers disabled, as its owner
// or a superuser could.
func tamper(t *testing.T, db *pgtest.DB, sql string) {
	t.Helper()
	db.Exec(t, "ALTER TABLE rewind.audit_log DISABLE TRIGGER USER")
	db.Exec(t, sql)
	db.Exec(t, "ALTER TABLE rewind.audit_log ENABLE TRIGGER USER")
}

func TestAuditHeadAndExpectHead(t *testing.T) {
	t.Parallel()
	db := auditDB(t, 6)
	dsn := "--dsn=" + db.DSN
	out, stderr, st := cli(t, "audit", "head", dsn)
	head := strings.TrimSpace(out)
	if st != 0 || !strings.HasPrefix(head, "6:") || len(head) != 2+64 {
		t.Fatalf("audit head: status %d, %q\n%s", st, out, stderr)
	}
	out, _, st = cli(t, "audit", "head", dsn, "--json")
	var h struct {
		Head string `json:"head"`
		Seq  int64  `json:"seq"`
	}
	if err := json.Unmarshal([]byte(out), &h); st != 0 || err != nil || h.Head != head || h.Seq != 6 {
		t.Fatalf("audit head --json: status %d, %v\n%s", st, err, out)
	}
	out, _, st = cli(t, "audit", "verify", dsn, "--expect-head", head, "--json")
	if st != 0 || !strings.Contains(out, `"anchors_checked":1`) {
		t.Fatalf("verify against its own head: status %d\n%s", st, out)
	}
	out, stderr, st = cli(t, "audit", "verify", dsn, "--expect-head", "6:nothex", "--json")
	if st != 2 || !strings.Contains(out, `"invalid_argument"`) || !strings.Contains(stderr, "--expect-head") {
		t.Fatalf("verify with a malformed head: status %d\n%s\n%s", st, out, stderr)
	}
	// Entries 4…6 rewritten with their hashes and the head: undetectable
	// on its own, caught against the recorded head.
	for seq := 4; seq <= 6; seq++ {
		tamper(t, db, fmt.Sprintf(`
			UPDATE rewind.audit_log SET prev_hash = (SELECT hash FROM rewind.audit_log WHERE seq = %[1]d - 1),
				body = replace(body, '"alice"', '"mallory"'), actor = 'mallory' WHERE seq = %[1]d;
			UPDATE rewind.audit_log SET hash = encode(sha256(decode(prev_hash, 'hex') || convert_to(body, 'UTF8')), 'hex') WHERE seq = %[1]d;
			UPDATE rewind.audit_log_head SET hash = (SELECT hash FROM rewind.audit_log WHERE seq = %[1]d)`, seq))
	}
	if _, _, st = cli(t, "audit", "verify", dsn); st != 0 {
		t.Fatalf("a consistent rewrite is not detectable without an anchor, yet verify exited %d", st)
	}
	out, stderr, st = cli(t, "audit", "verify", dsn, "--expect-head", head, "--json")
	if st != 5 || !strings.Contains(out, `"corruption"`) || !strings.Contains(stderr, "entry 6 altered") {
		t.Fatalf("verify of a rewritten tail against the recorded head: status %d\n%s\n%s", st, out, stderr)
	}
	if out, _, st = cli(t, "audit", "head", dsn); st != 0 || strings.TrimSpace(out) == head {
		t.Fatalf("audit head after the rewrite: %d %q", st, out)
	}
	// Bytes that decode to the same entry are still a change.
	tamper(t, db, `UPDATE rewind.audit_log SET body = replace(body, '"kind":', '"kind": ') WHERE seq = 2`)
	out, stderr, st = cli(t, "audit", "head", dsn)
	if st != 5 || out != "" || !strings.Contains(stderr, "entry 2 altered") {
		t.Fatalf("audit head of a tampered ledger: status %d, %q\n%s", st, out, stderr)
	}
	out, _, st = cli(t, "audit", "head", "--help")
	if st != 0 || !strings.Contains(out, "--expect-head") || !strings.Contains(out, "--json") {
		t.Fatalf("audit head --help: %d\n%s", st, out)
	}
}
