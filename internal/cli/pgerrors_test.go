package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// A lock wait that ran out in a statement nothing wrapped (the driver's
// message alone) reads as a sentence, and the query it suggests lists the
// row locks too: an outside tester got "while trying to canceling
// statement due to lock timeout" and a query filtered on
// AccessExclusiveLock that found no holder of a row lock.
func TestLockTimeoutMessageWithoutContext(t *testing.T) {
	err := &pgconn.PgError{Severity: "ERROR", Code: "55P03", Message: "canceling statement due to lock timeout"}
	code, msg, ok := pgError(err, "--dsn")
	if !ok || code != rewind.CodeLocked {
		t.Fatalf("pgError: %v %v", code, ok)
	}
	if strings.Contains(msg, "trying to canceling") || strings.Contains(msg, "AccessExclusiveLock") ||
		!strings.Contains(msg, "(canceling statement due to lock timeout)") || !strings.Contains(msg, "l.relation IS NOT NULL") {
		t.Fatalf("message: %s", msg)
	}
	wrapped := fmt.Errorf("check the job's where against table public.users: %w", err)
	if _, msg, _ := pgError(wrapped, "--dsn"); !strings.Contains(msg, "while trying to check the job's where against table public.users;") ||
		!strings.Contains(msg, "'public.users'::regclass") {
		t.Fatalf("wrapped message: %s", msg)
	}
}
