package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/pgstore"
)

// A schema at another version than the binary's is a failed precondition
// (exit status 14), not an internal error: newer, every command (migrate
// too) says to run a newer rewind; older, it says to run rewind migrate.
func TestPostgresSchemaVersionMismatch(t *testing.T) {
	t.Parallel()
	db, pg := migratedPG(t)
	dir := t.TempDir()
	db.Exec(t, "INSERT INTO rewind.schema_version (version, name) VALUES ($1, 'from the future')", pgstore.SchemaVersion()+1)
	for _, args := range [][]string{{"read", "s"}, {"migrate"}, {"stat", "--json"}} {
		code, out, errOut := run(t, dir, "", append(pg, args...)...)
		if code != 14 || !strings.Contains(errOut, "run a newer rewind") {
			t.Errorf("%v on a newer schema: %d %s; want exit status 14 saying to run a newer rewind", args, code, errOut)
		}
		if args[0] == "stat" && !strings.Contains(out, `"failed_precondition"`) {
			t.Errorf("stat --json on a newer schema: %s; want code failed_precondition", out)
		}
	}
	db.Exec(t, fmt.Sprintf("DELETE FROM rewind.schema_version WHERE version >= %d", pgstore.SchemaVersion()))
	if code, _, errOut := run(t, dir, "", append(pg, "read", "s")...); code != 14 || !strings.Contains(errOut, "rewind migrate") {
		t.Errorf("read on an older schema: %d %s; want exit status 14 saying to run rewind migrate", code, errOut)
	}
}
