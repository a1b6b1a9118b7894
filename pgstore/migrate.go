package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded schema change, applied in its own transaction.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. Their file
// names start with the version: 0001_init.sql, 0002_…; versions run from 1
// without gaps (TestMigrationFiles checks it).
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("pgstore: migration file %s: name must start with its version, as 0001_init.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("pgstore: migration %s: want version %d (versions run from 1 without gaps)", m.name, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the version of the database schema this binary reads
// and writes: that of its last embedded migration.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Errors of a database schema that does not match the binary.
var (
	// ErrMigrationNeeded: the database's schema is older than the binary's
	// (or absent). Run `rewind migrate --store postgres://…`.
	ErrMigrationNeeded = errors.New("pgstore: database schema needs migrating")
	// ErrSchemaTooNew: the database's schema is newer than the binary's.
	// A binary never writes a schema it does not know; upgrade it.
	ErrSchemaTooNew = errors.New("pgstore: database schema is newer than this binary")
)

// SchemaError says that the database's schema version does not match the
// binary's. It matches ErrMigrationNeeded or ErrSchemaTooNew.
type SchemaError struct {
	Schema   string // the PostgreSQL schema
	Database int    // the version the database is at (0: none)
	Binary   int    // the version this binary reads and writes
}

func (e *SchemaError) Error() string {
	if e.Database < e.Binary {
		if e.Database == 0 {
			return fmt.Sprintf("pgstore: schema %q holds no rewind store (version 0, this binary needs %d): "+
				"run `rewind migrate --store postgres://…` first", e.Schema, e.Binary)
		}
		return fmt.Sprintf("pgstore: schema %q is at version %d, this binary needs %d: "+
			"run `rewind migrate --store postgres://…` to upgrade it", e.Schema, e.Database, e.Binary)
	}
	return fmt.Sprintf("pgstore: schema %q is at version %d, newer than the %d this binary knows: "+
		"this binary is older than the database schema; run a newer rewind", e.Schema, e.Database, e.Binary)
}

// Is makes errors.Is match ErrMigrationNeeded or ErrSchemaTooNew. A
// schema that holds no store at all also matches rewind.ErrStreamNotFound
// (code not_found: exit status 3 in the CLI); one at another version,
// rewind.ErrFailedPrecondition (code failed_precondition: exit status 14).
func (e *SchemaError) Is(target error) bool {
	if e.Database < e.Binary {
		if e.Database == 0 {
			return target == ErrMigrationNeeded || target == rewind.ErrStreamNotFound
		}
		return target == ErrMigrationNeeded || target == rewind.ErrFailedPrecondition
	}
	return target == ErrSchemaTooNew || target == rewind.ErrFailedPrecondition
}

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Schema string `json:"schema"`
	// From and To are the schema versions before and after.
	From int `json:"from"`
	To   int `json:"to"`
	// Applied names the migrations applied, in order.
	Applied []string `json:"applied,omitempty"`
}

// Migrate brings the schema cfg names (created if missing) in the database
// connString names up to this binary's version, applying each embedded
// migration not yet applied in its own transaction. Concurrent calls are
// safe: they take turns on a session advisory lock, and the later one finds
// nothing to do. A schema newer than the binary fails with a *SchemaError
// and is left as it is.
func Migrate(ctx context.Context, connString string, cfg Config) (MigrateResult, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return MigrateResult{}, err
	}
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("pgstore: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return migrateConn(ctx, conn, c.Schema)
}

func migrateConn(ctx context.Context, conn *pgx.Conn, schema string) (MigrateResult, error) {
	res := MigrateResult{Schema: schema}
	ms, err := migrations()
	if err != nil {
		return res, err
	}
	k1, k2 := lockKeys(schema, lockMigrate)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", k1, k2); err != nil {
		return res, fmt.Errorf("pgstore: lock schema %s for migrating: %w", schema, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1, $2)", k1, k2)
	q := quoteIdent(schema)
	// The version first, with no DDL: a schema already current needs
	// nothing, not even the right to create, which the role a server
	// runs as usually lacks.
	if res.From, err = readVersion(ctx, conn, schema); err != nil {
		return res, migratePermission(schema, conn.Config().Database, err)
	}
	res.To = res.From
	latest := ms[len(ms)-1].version
	if res.From > latest {
		return res, &SchemaError{Schema: schema, Database: res.From, Binary: latest}
	}
	if res.From == latest {
		return res, nil
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+q+";"+
		"CREATE TABLE IF NOT EXISTS "+q+".schema_version (version integer PRIMARY KEY, name text NOT NULL, "+
		"applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return res, migratePermission(schema, conn.Config().Database, classify(schema, "create schema "+schema, err))
	}
	for _, m := range ms[res.From:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+q); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+q+".schema_version (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return res, migratePermission(schema, conn.Config().Database, fmt.Errorf("pgstore: migration %s (nothing of it applied): %w", m.name,
				classify(schema, "apply "+m.name, err)))
		}
		res.To = m.version
		res.Applied = append(res.Applied, m.name)
	}
	return res, nil
}

// migratePermission gives a *PermissionError of a migration the hint of
// what a migrating role needs.
func migratePermission(schema, database string, err error) error {
	var pe *PermissionError
	if errors.As(err, &pe) {
		pe.Hint = fmt.Sprintf("migrate as the role that owns schema %s, or grant the migrating role CREATE on "+
			"database %s (a new schema) or ownership of the schema and its tables; a schema already current "+
			"needs only USAGE on schema %s and SELECT on %s.schema_version", schema, database, schema, schema)
	}
	return err
}

// readVersion returns the schema's version: 0 when it has no rewind store.
func readVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, schema string) (int, error) {
	var v *int
	err := q.QueryRow(ctx, "SELECT max(version) FROM "+quoteIdent(schema)+".schema_version").Scan(&v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") { // undefined table, schema
		return 0, nil
	}
	if err != nil {
		return 0, classify(schema, "read the schema version of "+schema, err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}
