// Package pgtest gives each test its own fresh PostgreSQL database, created
// on the server named by REWIND_TEST_PG (default
// postgres://postgres@127.0.0.1:5432/postgres) and dropped when the test
// ends. Tests that use it fail, never skip, when CI=true and the server is
// unreachable; outside CI they skip with a message saying how to start it.
//
// A package whose TestMain goes through Run or Main drops its tests'
// databases in the background, one at a time, and waits for every drop
// before the test binary exits (a failed drop fails the binary): on
// PostgreSQL 15 each DROP DATABASE forces an immediate checkpoint
// (0.1–1.5 s under a test run's load), which a test would otherwise wait
// for before the next one starts.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultAdminDSN is the server used when REWIND_TEST_PG is not set.
const DefaultAdminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminDSN returns the DSN of the maintenance database tests create their
// databases from.
func AdminDSN() string {
	if v := os.Getenv("REWIND_TEST_PG"); v != "" {
		return v
	}
	return DefaultAdminDSN
}

// DB is one test's database.
type DB struct {
	Name string
	// DSN connects to the database.
	DSN string
	// Pool is a connection pool to it, closed when the test ends.
	Pool *pgxpool.Pool
}

// New creates an empty database for t and drops it when t ends (forcing
// out connections the test left open).
func New(t testing.TB) *DB {
	t.Helper()
	db, err := create()
	if err != nil {
		if errors.Is(err, errUnreachable) {
			unreachable(t, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if drops.background.Load() {
			db.dropLater()
			return
		}
		if err := db.drop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return db
}

// drops are the databases being dropped in the background.
var drops struct {
	background atomic.Bool // set by Run: the binary waits for them
	wg         sync.WaitGroup
	one        sync.Mutex // one drop at a time: each forces a checkpoint
	mu         sync.Mutex
	errs       []error
}

// dropLater closes the database's pool at once (the test's connections
// end with it) and drops it in the background.
func (d *DB) dropLater() {
	d.Pool.Close()
	drops.wg.Go(func() {
		drops.one.Lock()
		defer drops.one.Unlock()
		if err := dropDatabase(d.Name); err != nil {
			drops.mu.Lock()
			drops.errs = append(drops.errs, fmt.Errorf("pgtest: drop database %s: %w", d.Name, err))
			drops.mu.Unlock()
		}
	})
}

// Run runs a package's tests, dropping their databases in the background
// (see the package's comment), and returns the exit status: m.Run's, or 1
// when a database could not be dropped. Call it from TestMain:
// os.Exit(pgtest.Run(m)).
func Run(m *testing.M) int {
	drops.background.Store(true)
	code := m.Run()
	return waitDrops(code)
}

// waitDrops waits for the background drops and returns code, or 1 if one
// failed.
func waitDrops(code int) int {
	drops.wg.Wait()
	drops.mu.Lock()
	defer drops.mu.Unlock()
	for _, err := range drops.errs {
		fmt.Fprintln(os.Stderr, err)
	}
	if len(drops.errs) > 0 && code == 0 {
		code = 1
	}
	return code
}

// Main is Run with one shared database in *shared, for examples and other
// code that has no *testing.T. When PostgreSQL is unreachable it fails
// under CI=true and otherwise skips the whole package with a message. Call
// it from TestMain: os.Exit(pgtest.Main(m, &db)).
func Main(m *testing.M, shared **DB) int {
	db, err := create()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, errUnreachable) && os.Getenv("CI") != "true" {
			fmt.Fprintln(os.Stderr, "pgtest: skipping the package's tests: PostgreSQL is unreachable")
			return 0
		}
		return 1
	}
	*shared = db
	code := Run(m)
	if err := db.drop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

var errUnreachable = errors.New("pgtest: PostgreSQL is unreachable")

func create() (*DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDSN())
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w; start it with "+
			"`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set REWIND_TEST_PG",
			errUnreachable, redact(AdminDSN()), err)
	}
	defer admin.Close(ctx)
	name := "rewind_test_" + randomSuffix()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	db := &DB{Name: name, DSN: WithDatabase(AdminDSN(), name)}
	if db.Pool, err = pgxpool.New(ctx, db.DSN); err != nil {
		db.drop()
		return nil, fmt.Errorf("pgtest: connect to %s: %w", name, err)
	}
	return db, nil
}

func (d *DB) drop() error {
	if d.Pool != nil {
		d.Pool.Close()
	}
	if err := dropDatabase(d.Name); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", d.Name, err)
	}
	return nil
}

// Exec runs SQL statements in the test's database, failing the test on error.
func (d *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := d.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %v", firstLine(sql), err)
	}
}

// Checksum returns an md5 over every row of table in key order, to compare
// a table's content before and after an operation.
func (d *DB) Checksum(t testing.TB, table, orderBy string) string {
	t.Helper()
	var sum *string
	q := fmt.Sprintf("SELECT md5(string_agg(t::text, E'\\n' ORDER BY %s)) FROM %s t", orderBy, table)
	if err := d.Pool.QueryRow(context.Background(), q).Scan(&sum); err != nil {
		t.Fatalf("pgtest: checksum %s: %v", table, err)
	}
	if sum == nil {
		return "empty"
	}
	return *sum
}

func dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDSN())
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	return err
}

func unreachable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// WithDatabase returns dsn with its database replaced by name.
func WithDatabase(dsn, name string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return strings.TrimSpace(dsn) + " dbname=" + name
	}
	u.Path = "/" + name
	return u.String()
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "the configured server"
	}
	return u.Redacted()
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + "…"
	}
	return s
}
