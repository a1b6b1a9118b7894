package backfill_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// Issue 11 (F9): set_config(…, false) in a job's SQL outlived its chunk:
// after chunk 1 the session's search_path named another schema, and the
// later chunks updated that schema's table of the same name. Functions
// whose effect outlives the transaction or reaches beyond it are refused
// where the SQL calls them; a function the job calls that changes the
// session's settings fails the chunk, whose rollback undoes the change.
func TestJobSQLCannotChangeTheSession(t *testing.T) {
	t.Parallel()
	refused := []struct {
		name, field string
		job         func(*backfill.Job)
		want        string
	}{
		{"set_config in set", "set.n", func(j *backfill.Job) {
			j.Set = map[string]string{"n": "n + length(set_config('search_path', 'other', false))"}
		}, "set_config"},
		{"qualified set_config in where", "where", func(j *backfill.Job) {
			j.Source.(*backfill.Table).Where = "pg_catalog.set_config('work_mem', '1MB', false) IS NOT NULL"
		}, "set_config"},
		{"advisory lock in where", "where", func(j *backfill.Job) { j.Source.(*backfill.Table).Where = "pg_advisory_lock(id)::text <> ''" }, "pg_advisory_lock"},
		{"set_config in a statement", "statement", func(j *backfill.Job) {
			j.Set, j.Statement = nil, "UPDATE items SET n = length(set_config('search_path', 'other', false)) WHERE id BETWEEN @lo AND @hi"
		}, "set_config"},
		{"dblink in set", "set.n", func(j *backfill.Job) { j.Set = map[string]string{"n": "(SELECT 1 FROM dblink('x', 'y') AS t(a int))"} }, "dblink"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 20)
			job := &backfill.Job{Name: "session", Version: "1", ChunkSize: 5,
				Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "n + 1"}}
			tt.job(job)
			sum := b.db.Checksum(t, "items", "id")
			_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
			var ve *rewind.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || !strings.Contains(ve.Reason, tt.want+"()") {
				t.Fatalf("apply = %v, want a validation error on %q whose reason names %s()", err, tt.field, tt.want)
			}
			b.wroteNothing(t, sum)
		})
	}

	// Functions the parser cannot see into.
	sneaky := func(t *testing.T) (*bundle, func()) {
		b := setup(t, 20)
		// One connection for the chunks, so that a changed session would
		// be used again.
		cfg, err := pgxpool.ParseConfig(b.db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = 1
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		b.cfg.DB = pool
		if b.runner, err = backfill.New(b.cfg); err != nil {
			t.Fatal(err)
		}
		b.db.Exec(t, `CREATE SCHEMA other; CREATE TABLE other.items (LIKE items INCLUDING ALL); INSERT INTO other.items SELECT * FROM items;
			CREATE FUNCTION sneaky() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('search_path', 'other, public', false); RETURN 1; END $$`)
		sum, otherSum := b.db.Checksum(t, "items", "id"), b.db.Checksum(t, "other.items", "id")
		return b, func() {
			t.Helper()
			var path string
			if err := b.cfg.DB.QueryRow(context.Background(), "SHOW search_path").Scan(&path); err != nil || strings.Contains(path, "other") {
				t.Fatalf("the runner's connection has search_path = %q (%v)", path, err)
			}
			if b.db.Checksum(t, "items", "id") != sum || b.db.Checksum(t, "other.items", "id") != otherSum {
				t.Fatal("a chunk that changed the session was committed")
			}
		}
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name, field string
		job         *backfill.Job
	}{
		{"set", "set.n", &backfill.Job{Name: "sneaky", Version: "1", ChunkSize: 5,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "n + sneaky()"}}},
		{"where", "where", &backfill.Job{Name: "sneaky", Version: "1", ChunkSize: 5,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "sneaky() = 1"}, Set: map[string]string{"n": "n + 1"}}},
		{"statement", "statement", &backfill.Job{Name: "sneaky", Version: "1", ChunkSize: 5,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Statement: "UPDATE items SET n = n + 1 WHERE id BETWEEN @lo AND @hi AND sneaky() = 1"}},
	} {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			t.Parallel()
			b, check := sneaky(t)
			// Evaluated on the first chunk, read-only: refused, by the dry
			// run too, and the session is as it was.
			for _, run := range []func() error{
				func() error { _, err := b.runner.Plan(ctx, tt.job, backfill.PlanOptions{}); return err },
				func() error { _, err := b.runner.Apply(ctx, tt.job, backfill.ApplyOptions{}); return err },
			} {
				var ve *rewind.ValidationError
				if err := run(); !errors.As(err, &ve) || ve.Field != tt.field || !strings.Contains(ve.Reason, "search_path") {
					t.Fatalf("= %v, want a validation error on %s saying the search_path changes", err, tt.field)
				}
				check()
			}
			b.wroteNothing(t, b.db.Checksum(t, "items", "id"))
		})
	}

	// Not evaluated before the run (the skip policy evaluates nothing on
	// the first chunk): the chunk that changes the session fails and is
	// rolled back.
	t.Run("in a chunk", func(t *testing.T) {
		t.Parallel()
		b, check := sneaky(t)
		job := &backfill.Job{Name: "sneaky", Version: "1", ChunkSize: 5, OnDataError: backfill.Skip,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "n + sneaky()"}}
		_, err := b.runner.Apply(ctx, job, backfill.ApplyOptions{})
		var se *backfill.SessionChangedError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "search_path") {
			t.Fatalf("apply = %v, want the run stopped because the session's search_path changed", err)
		}
		check()
	})

	// Changed outside a chunk, by the where counting or finding the
	// chunks: the run stops and the connection is closed.
	t.Run("outside a chunk", func(t *testing.T) {
		t.Parallel()
		b, check := sneaky(t)
		job := &backfill.Job{Name: "sneaky", Version: "1", ChunkSize: 5, OnDataError: backfill.Skip,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "id <= 5 OR sneaky() = 1"}, Set: map[string]string{"n": "n + 1"}}
		_, err := b.runner.Apply(ctx, job, backfill.ApplyOptions{})
		var se *backfill.SessionChangedError
		if !errors.As(err, &se) || se.When == "" || !strings.Contains(err.Error(), "search_path") {
			t.Fatalf("apply = %v, want the run stopped because the session changed outside a chunk", err)
		}
		check()
	})
}

// Issue 11: a dry run must not execute volatile functions or advance
// sequences, for statement and Go jobs as for set jobs
// (TestDryRunChangesNothingAtAll).
func TestDryRunOfStatementAndGoJobsChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	b.db.Exec(t, `CREATE SEQUENCE s; CREATE TABLE side (id bigint PRIMARY KEY, n bigint);
		CREATE FUNCTION noisy(x bigint) RETURNS bigint LANGUAGE sql VOLATILE AS 'INSERT INTO side VALUES (x, 0) RETURNING x'`)
	sum := b.db.Checksum(t, "items", "id")
	ctx := context.Background()
	jobs := []*backfill.Job{
		{Name: "stmt", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
			Statement: "UPDATE items SET n = nextval('s') + noisy(id) WHERE id BETWEEN @lo AND @hi"},
		{Name: "go", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
			Process: func(_ context.Context, items []backfill.Item) ([]backfill.Change, error) {
				var out []backfill.Change
				for _, it := range items {
					out = append(out, backfill.Change{Key: it.Key, Row: map[string]any{"id": it.Row["id"], "n": 1}})
				}
				return out, nil
			},
			Sink: &backfill.TableSink{Table: "side", Key: []string{"id"}, Upsert: true}},
	}
	for _, job := range jobs {
		if _, err := b.runner.Plan(ctx, job, backfill.PlanOptions{}); err != nil {
			t.Fatalf("plan %s: %v", job.Name, err)
		}
		if n := b.scalar(t, "SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM s"); n != 1 {
			t.Errorf("plan %s: the sequence advanced to %d", job.Name, n)
		}
		if n := b.scalar(t, "SELECT count(*) FROM side"); n != 0 {
			t.Errorf("plan %s: %d rows written to side", job.Name, n)
		}
		if b.db.Checksum(t, "items", "id") != sum {
			t.Errorf("plan %s: items changed", job.Name)
		}
	}
}

// A connection that begins a chunk with another session than the job was
// prepared on (here a new connection made with another TimeZone, as a
// database or role setting changed during the run would) fails the chunk:
// its statement goes in one round trip with the session check, and the
// check's failure rolls it back, so the chunk writes nothing.
func TestChunkBegunOnAChangedSessionWritesNothing(t *testing.T) {
	t.Parallel()
	for _, images := range []bool{true, false} {
		t.Run(fmt.Sprintf("images=%v", images), func(t *testing.T) {
			t.Parallel()
			b := setup(t, 20)
			cfg, err := pgxpool.ParseConfig(b.db.DSN)
			if err != nil {
				t.Fatal(err)
			}
			cfg.MaxConns = 1
			var changed atomic.Bool
			cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
				if !changed.Load() {
					return nil
				}
				_, err := c.Exec(ctx, "SET TimeZone = 'Pacific/Chatham'")
				return err
			}
			pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			b.cfg.DB = pool
			b.cfg.Progress = func(p backfill.Progress) {
				if p.Chunks == 1 && !changed.Load() {
					changed.Store(true)
					pool.Reset() // the next chunk gets a new connection
				}
			}
			if b.runner, err = backfill.New(b.cfg); err != nil {
				t.Fatal(err)
			}
			job := &backfill.Job{Name: "tz", Version: "1", ChunkSize: 5, NoRollback: !images,
				Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "n + 1"}}
			_, err = b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
			var se *backfill.SessionChangedError
			if !errors.As(err, &se) || !strings.Contains(se.When, "before the chunk began") || !strings.Contains(err.Error(), "TimeZone") {
				t.Fatalf("apply = %v, want the run stopped because the chunk began with another TimeZone", err)
			}
			var first, rest int64
			if err := b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FILTER (WHERE id <= 5 AND n = 1), "+
				"count(*) FILTER (WHERE id > 5 AND n <> 0) FROM items").Scan(&first, &rest); err != nil {
				t.Fatal(err)
			}
			if first != 5 || rest != 0 {
				t.Fatalf("%d rows of the first chunk changed (want 5) and %d rows after it (want 0)", first, rest)
			}
			var imageRows int64
			if err := b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM rewind.backfill_images WHERE seq > 1").Scan(&imageRows); err != nil {
				t.Fatal(err)
			}
			if imageRows != 0 {
				t.Fatalf("%d image rows of the failed chunk were committed", imageRows)
			}
		})
	}
}
