package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// Issue 11 (F2): a statement job had to bind @lo and @hi, but nothing kept
// it from writing rows outside [@lo, @hi]: each chunk then changed rows of
// later chunks again. A statement that changes a row outside its chunk
// now fails the run at that chunk, whose transaction is rolled back, with
// an error naming the statement and the key; what cannot be checked is
// refused before a run exists.
func TestStatementCannotChangeRowsOutsideItsChunk(t *testing.T) {
	t.Parallel()
	// An UPDATE or DELETE that leaves its first chunk is refused before a
	// run exists, by the dry run too: the runner selects the rows it would
	// change, read-only.
	leaves := []struct{ name, sql, key string }{
		{"no upper bound", "UPDATE items SET n = n + 1 WHERE id >= @lo AND @hi IS NOT NULL", "101"},
		{"OR instead of AND", "UPDATE items SET n = n + 1 WHERE id >= @lo OR id <= @hi", "101"},
		{"subquery past the chunk", "UPDATE items SET n = n + 1 WHERE id IN (SELECT id FROM items WHERE id BETWEEN @lo AND @hi + 5)", "101"},
		{"read-only WITH past the chunk", `WITH x AS (SELECT id FROM items WHERE id >= @lo ORDER BY id LIMIT 150)
			UPDATE items SET n = n + 1 FROM x WHERE items.id = x.id AND @hi IS NOT NULL`, "101"},
		{"delete past the chunk", "DELETE FROM items WHERE id >= @lo AND id <= @hi + 1", "101"},
		{"delete with USING", "DELETE FROM items AS i USING items AS j WHERE j.id = i.id - 1 AND j.id BETWEEN @lo AND @hi", "101"},
	}
	for _, tt := range leaves {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 300)
			job := &backfill.Job{Name: "stmt", Version: "1", ChunkSize: 100,
				Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Statement: tt.sql}
			_, err := b.runner.Plan(context.Background(), job, backfill.PlanOptions{})
			var ve *rewind.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "outside its chunk") || !strings.Contains(ve.Reason, "key "+tt.key) {
				t.Fatalf("plan = %v; want a validation error naming key %s outside the chunk", err, tt.key)
			}
			b.refused(t, job, "statement", "key "+tt.key)
		})
	}

	// What only running the statement shows fails the run at the chunk
	// that leaves its bounds; that chunk rolls back, so no row is
	// changed twice.
	escapes := []struct {
		name, sql, key string
		chunk          int64
	}{
		{"insert outside the chunk", "INSERT INTO items (id, val) SELECT id + 1000, val FROM items WHERE id BETWEEN @lo AND @hi", "1001", 1},
		{"upsert outside the chunk", `INSERT INTO items AS i (id, val) SELECT id + 200, val FROM items WHERE id BETWEEN @lo AND @hi
			ON CONFLICT (id) DO UPDATE SET n = i.n + 1`, "201", 1},
		{"past the bounds from the second chunk on", `UPDATE items SET n = n + 1
			WHERE id BETWEEN @lo AND @hi + CASE WHEN @lo > 100 THEN 5 ELSE 0 END`, "201", 2},
		{"a function's choice of rows", `UPDATE items SET n = n + 1 WHERE id IN (SELECT unnest(more(@lo, @hi)))`, "101", 1},
	}
	for _, tt := range escapes {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 300)
			// A function with a side effect (nextval) is not evaluated
			// before the run, read-only: only running it shows its rows.
			b.db.Exec(t, `CREATE SEQUENCE s; CREATE FUNCTION more(lo bigint, hi bigint) RETURNS bigint[] LANGUAGE plpgsql VOLATILE AS
				$$ BEGIN PERFORM nextval('s'); RETURN ARRAY(SELECT generate_series(lo, hi + 1)); END $$`)
			job := &backfill.Job{Name: "stmt", Version: "1", ChunkSize: 100,
				Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Statement: tt.sql}
			_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
			var re *backfill.RunError
			var ee *backfill.EscapeError
			if !errors.As(err, &re) || re.Chunk != tt.chunk || !errors.As(err, &ee) || !strings.Contains(err.Error(), "outside its chunk") ||
				!strings.Contains(err.Error(), "key "+tt.key) || !strings.Contains(err.Error(), strings.Fields(tt.sql)[0]) {
				t.Fatalf("apply = %v; want the run to fail at chunk %d naming the statement and key %s", err, tt.chunk, tt.key)
			}
			// The failing chunk rolled back: rows 1..100 changed once by
			// chunk 1 at most, none twice, and no row inserted.
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n > 1"); n != 0 {
				t.Fatalf("%d rows changed twice", n)
			}
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 100*(tt.chunk-1) {
				t.Fatalf("%d rows changed once, want those of the %d chunks before", n, tt.chunk-1)
			}
			if n := b.scalar(t, "SELECT count(*) FROM items"); n != 300 {
				t.Fatalf("%d rows, want 300", n)
			}
			if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs WHERE state = 'failed'"); n != 1 {
				t.Fatalf("%d failed runs, want 1", n)
			}
		})
	}

	refused := []struct{ name, sql, want string }{
		{"data-modifying WITH", `WITH d AS (UPDATE items SET n = n + 1 WHERE id > @hi RETURNING id)
			UPDATE items SET n = n + 1 WHERE id BETWEEN @lo AND @hi`, "data-modifying WITH"},
		{"changes the key", "UPDATE items SET id = id + 1000 WHERE id BETWEEN @lo AND @hi", "key column id"},
		{"upsert that changes the key", `INSERT INTO items (id, val) SELECT id, val FROM items WHERE id BETWEEN @lo AND @hi
			ON CONFLICT (id) DO UPDATE SET id = excluded.id + 1000`, "key column id"},
		{"its own RETURNING", "UPDATE items SET n = n + 1 WHERE id BETWEEN @lo AND @hi RETURNING id", "RETURNING"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 300)
			job := &backfill.Job{Name: "stmt", Version: "1", ChunkSize: 100,
				Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Statement: tt.sql}
			b.refused(t, job, "statement", tt.want)
		})
	}

	// MERGE can be checked only where it has RETURNING (PostgreSQL 17).
	t.Run("merge", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 300)
		job := &backfill.Job{Name: "stmt", Version: "1", ChunkSize: 100, Source: &backfill.Table{Name: "items", Key: []string{"id"}},
			Statement: `MERGE INTO items i USING (SELECT g AS id FROM generate_series(@lo::bigint, @hi::bigint + 1) g) s ON i.id = s.id
				WHEN MATCHED THEN UPDATE SET n = i.n + 1`}
		if b.scalar(t, "SELECT current_setting('server_version_num')::int") < 170000 {
			b.refused(t, job, "statement", "MERGE")
			return
		}
		_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
		if err == nil || !strings.Contains(err.Error(), "outside its chunk") {
			t.Fatalf("apply = %v, want the MERGE past its chunk refused", err)
		}
	})

	// A composite key is compared as a row.
	t.Run("composite key", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 0)
		b.db.Exec(t, `CREATE TABLE pairs (a int NOT NULL, b text NOT NULL, n int NOT NULL DEFAULT 0, PRIMARY KEY (a, b));
			INSERT INTO pairs (a, b) SELECT g / 10, 'k' || (g % 10) FROM generate_series(0, 99) g`)
		sum := b.db.Checksum(t, "pairs", "a, b")
		job := &backfill.Job{Name: "pairs", Version: "1", ChunkSize: 25, Source: &backfill.Table{Name: "pairs", Key: []string{"a", "b"}},
			Statement: "UPDATE pairs SET n = n + 1 WHERE (a, b) >= (@lo_a, @lo_b) AND @hi_a IS NOT NULL AND @hi_b IS NOT NULL"}
		_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
		if err == nil || !strings.Contains(err.Error(), "outside its chunk") || !strings.Contains(err.Error(), "key (2, k5)") {
			t.Fatalf("apply = %v, want the statement refused at key (2, k5)", err)
		}
		if b.db.Checksum(t, "pairs", "a, b") != sum {
			t.Fatal("the statement's changes were kept")
		}
		job = &backfill.Job{Name: "pairs2", Version: "1", ChunkSize: 25, Source: &backfill.Table{Name: "pairs", Key: []string{"a", "b"}},
			Statement: "UPDATE pairs SET n = n + 1 WHERE (a, b) BETWEEN (@lo_a, @lo_b) AND (@hi_a, @hi_b)"}
		b.apply(t, job, backfill.ApplyOptions{})
		if n := b.scalar(t, "SELECT count(*) FROM pairs WHERE n = 1"); n != 100 {
			t.Fatalf("%d rows changed once, want 100", n)
		}
	})

	// Statements that stay in their chunk work, with a trailing
	// semicolon and comment too.
	b := setup(t, 300)
	job := &backfill.Job{Name: "stmt", Version: "1", ChunkSize: 100, Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Statement: "UPDATE items AS x SET n = x.n + 1 FROM (SELECT 1) AS one WHERE x.id BETWEEN @lo AND @hi; -- every row once"}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 300 || res.RowsChanged != 300 {
		t.Fatalf("%d rows changed once (%d reported), want 300", n, res.RowsChanged)
	}
}
