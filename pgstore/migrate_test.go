package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// TestMigrationFiles: the embedded migrations run from 1 without gaps.
func TestMigrationFiles(t *testing.T) {
	ms, err := migrations()
	if err != nil || len(ms) == 0 || SchemaVersion() != len(ms) {
		t.Fatalf("migrations: %d, %v; schema version %d", len(ms), err, SchemaVersion())
	}
}

// TestOpenRefusesUnmigrated: Open writes nothing and says to migrate.
func TestOpenRefusesUnmigrated(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	schema := db.schema(t, false)
	_, err := Open(ctx, db.DSN, Config{Schema: schema})
	var se *SchemaError
	if !errors.As(err, &se) || !errors.Is(err, ErrMigrationNeeded) || se.Database != 0 || se.Binary != SchemaVersion() {
		t.Fatalf("open of an unmigrated schema: %v, want a *SchemaError matching ErrMigrationNeeded", err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("open created the schema (%d, %v): it must write nothing", n, err)
	}
	// A schema at an older version.
	res, err := Migrate(ctx, db.DSN, Config{Schema: schema})
	if err != nil || res.From != 0 || res.To != SchemaVersion() || len(res.Applied) != SchemaVersion() {
		t.Fatalf("migrate: %+v, %v", res, err)
	}
	db.Exec(t, "DELETE FROM "+schema+".schema_version WHERE version = $1", SchemaVersion())
	if _, err := Open(ctx, db.DSN, Config{Schema: schema}); !errors.Is(err, ErrMigrationNeeded) {
		t.Fatalf("open of a schema one version behind: %v, want ErrMigrationNeeded", err)
	}
}

// TestOpenRefusesNewerSchema: a binary older than the schema neither opens
// nor migrates it.
func TestOpenRefusesNewerSchema(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	schema := db.schema(t, true)
	db.Exec(t, "INSERT INTO "+schema+".schema_version (version, name) VALUES ($1, 'from the future')", SchemaVersion()+1)
	_, err := Open(ctx, db.DSN, Config{Schema: schema})
	var se *SchemaError
	if !errors.As(err, &se) || !errors.Is(err, ErrSchemaTooNew) || se.Database != SchemaVersion()+1 ||
		rewind.CodeOf(err) != rewind.CodeFailedPrecondition {
		t.Fatalf("open of a newer schema: %v, want ErrSchemaTooNew, code failed_precondition", err)
	}
	if want := "this binary is older than the database schema"; !contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if _, err := Migrate(ctx, db.DSN, Config{Schema: schema}); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("migrate of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// TestMigrateConcurrently: migrations racing each other apply once; the
// later ones find nothing to do; a second run is a no-op.
func TestMigrateConcurrently(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	schema := db.schema(t, false)
	var wg sync.WaitGroup
	results := make([]MigrateResult, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = Migrate(ctx, db.DSN, Config{Schema: schema}) })
	}
	wg.Wait()
	applied := 0
	for i := range results {
		if errs[i] != nil || results[i].To != SchemaVersion() {
			t.Fatalf("migrate %d: %+v, %v", i, results[i], errs[i])
		}
		applied += len(results[i].Applied)
	}
	if applied != SchemaVersion() {
		t.Fatalf("%d migrations applied by 4 racing runs, want %d", applied, SchemaVersion())
	}
	res, err := Migrate(ctx, db.DSN, Config{Schema: schema})
	if err != nil || len(res.Applied) != 0 || res.From != SchemaVersion() {
		t.Fatalf("second migrate: %+v, %v", res, err)
	}
	s := db.open(t, Config{Schema: schema})
	if _, err := s.Append(ctx, "x", rewind.NoStream, rewind.Event{Type: "T"}); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaNames: a schema name that is not a plain identifier is refused
// before anything is sent to PostgreSQL; two schemas in one database are two stores.
func TestSchemaNames(t *testing.T) {
	for _, bad := range []string{"Rewind", "a-b", `x"; DROP TABLE y; --`, "1abc", "a b", string(make([]byte, 51))} {
		if _, err := Migrate(context.Background(), "postgres://nowhere.invalid/x", Config{Schema: bad}); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("schema %q: %v, want invalid argument", bad, err)
		}
	}
	db := newTestDB(t)
	ctx := context.Background()
	if res, err := Migrate(ctx, db.DSN, Config{}); err != nil || res.Schema != DefaultSchema {
		t.Fatalf("migrate the default schema: %+v, %v", res, err)
	}
	a, err := Open(ctx, db.DSN, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := db.open(t, Config{Schema: "other"})
	if _, err := a.Append(ctx, "x", rewind.Any, rewind.Event{Type: "T"}); err != nil {
		t.Fatal(err)
	}
	if last, err := b.LastPosition(ctx); err != nil || last != 0 {
		t.Fatalf("the other schema's store sees position %d, %v", last, err)
	}
	if a.cfg.Schema != DefaultSchema {
		t.Fatalf("default schema %q", a.cfg.Schema)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestMigrateWithoutCreate: a role that may not create (no CREATE on the
// database) migrates a schema already at this binary's version as a no-op,
// with no DDL; where a migration is pending, or it may not even read the
// version, PostgreSQL's refusal is a *PermissionError saying what to grant.
func TestMigrateWithoutCreate(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	schema := db.schema(t, true)
	role := fmt.Sprintf("migrate_role_%d", time.Now().UnixNano())
	db.Exec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		db.Exec(t, "DROP OWNED BY "+role)
		db.Exec(t, "DROP ROLE "+role)
	})
	as := strings.Replace(db.DSN, "postgres@", role+"@", 1)
	wantPermission := func(what string, err error, hint string) {
		t.Helper()
		var pe *PermissionError
		if !errors.As(err, &pe) || rewind.CodeOf(err) != rewind.CodePermissionDenied || !strings.Contains(err.Error(), hint) {
			t.Fatalf("%s: %v (code %s), want a *PermissionError saying %q", what, err, rewind.CodeOf(err), hint)
		}
	}
	_, err := Migrate(ctx, as, Config{Schema: schema})
	wantPermission("migrate without USAGE on the schema", err, "USAGE on schema "+schema)
	db.Exec(t, "GRANT USAGE ON SCHEMA "+schema+" TO "+role)
	db.Exec(t, "GRANT SELECT ON "+schema+".schema_version TO "+role)
	res, err := Migrate(ctx, as, Config{Schema: schema})
	if err != nil || res.From != SchemaVersion() || res.To != SchemaVersion() || len(res.Applied) != 0 {
		t.Fatalf("migrate of a current schema by a role that may not create: %+v, %v; want nothing to do", res, err)
	}
	_, err = Migrate(ctx, as, Config{Schema: db.schema(t, false)})
	wantPermission("migrate of a new schema by a role that may not create", err, "CREATE on database")
}
