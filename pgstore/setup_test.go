package pgstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rewindhq/rewind/internal/pgtest"
)

// testDB is one test's database; stores are made in schemas of their own
// inside it (a database per store would cost a CREATE DATABASE each).
type testDB struct {
	*pgtest.DB
	schemas atomic.Int64
}

func newTestDB(t *testing.T) *testDB {
	t.Helper()
	return &testDB{DB: pgtest.New(t)}
}

// schema returns a new schema name, migrated when migrate is set.
func (d *testDB) schema(t *testing.T, migrate bool) string {
	t.Helper()
	name := fmt.Sprintf("s%d", d.schemas.Add(1))
	if migrate {
		if _, err := Migrate(context.Background(), d.DSN, Config{Schema: name}); err != nil {
			t.Fatalf("migrate %s: %v", name, err)
		}
	}
	return name
}

// open opens a store in a new migrated schema, closed when the test ends.
func (d *testDB) open(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Schema == "" {
		cfg.Schema = d.schema(t, false)
	}
	if _, err := Migrate(context.Background(), d.DSN, cfg); err != nil {
		t.Fatalf("migrate %s: %v", cfg.Schema, err)
	}
	s, err := Open(context.Background(), d.DSN, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newBenchDB is pgtest.New for benchmarks.
func newBenchDB(b *testing.B) *pgtest.DB { return pgtest.New(b) }
