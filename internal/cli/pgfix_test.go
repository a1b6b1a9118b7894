package cli

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/pgstore"
)

// migratedPG returns a new database with the store's schema migrated, and
// the flags that name it.
func migratedPG(t *testing.T) (*pgtest.DB, []string) {
	t.Helper()
	db := pgtest.New(t)
	if _, err := pgstore.Migrate(context.Background(), db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	return db, []string{"--store", db.DSN}
}

// tail on a PostgreSQL store prints the log's epoch (1) with every event
// and in its resume hint, as on a data directory, and refuses a resume in
// an epoch this log never had with epoch_changed (12).
func TestTailEpochPostgres(t *testing.T) {
	t.Parallel()
	_, pg := migratedPG(t)
	for range 3 {
		if code, _, errOut := run(t, t.TempDir(), "", append(pg, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	c := startChild(t, cleanEnv(), append(pg, "tail", "--after", "2", "--epoch", "1", "--json")...)
	if pos, epoch := tailLine(t, c.line(t)); pos != 3 || epoch != 1 {
		t.Fatalf("tail printed position %d epoch %d, want 3 and 1", pos, epoch)
	}
	c.cmd.Process.Signal(os.Interrupt)
	if st := c.wait(t, time.Minute); st != 130 || !strings.Contains(c.errOut(), "--after 3 --epoch 1") {
		t.Fatalf("tail interrupted: exit status %d, stderr %q; want 130 and --after 3 --epoch 1", st, c.errOut())
	}
	code, _, errOut := run(t, t.TempDir(), "", append(pg, "tail", "--after", "1", "--epoch", "5")...)
	if code != 12 || !strings.Contains(errOut, "epoch") {
		t.Fatalf("tail --after 1 --epoch 5 on a PostgreSQL log: %d %s, want exit status 12", code, errOut)
	}
}
