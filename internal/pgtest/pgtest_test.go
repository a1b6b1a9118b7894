package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// childFile names the file where the child test writes its database's
// name: set, the child runs.
const childFile = "PGTEST_CHILD_FILE"

// A test's database is dropped after the test, not while it waits: the
// test's cleanups finish with the database still there (its drop held back
// here), and the binary waits for the drop before it exits. The test runs
// itself in a child process, which does the first part.
func TestDatabasesAreDroppedInTheBackgroundBeforeTheBinaryExits(t *testing.T) {
	if file := os.Getenv(childFile); file != "" {
		drops.one.Lock() // no drop starts until the check below is done
		var db *DB
		t.Cleanup(func() { // runs after the database's own cleanup
			defer drops.one.Unlock()
			if n := count(t, AdminDSN(), "SELECT count(*) FROM pg_database WHERE datname = '"+db.Name+"'"); n != 1 {
				t.Errorf("database %s was dropped while the test waited", db.Name)
			}
		})
		db = New(t)
		if err := os.WriteFile(file, []byte(db.Name), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	file := filepath.Join(t.TempDir(), "name")
	cmd := exec.Command(os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count", "1")
	cmd.Env = append(os.Environ(), childFile+"="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	name, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(name), "rewind_test_") {
		t.Fatalf("child wrote %q (%v), want its database's name", name, err)
	}
	if n := count(t, AdminDSN(), "SELECT count(*) FROM pg_database WHERE datname = '"+string(name)+"'"); n != 0 {
		t.Fatalf("database %s still exists after the child exited", name)
	}
}
