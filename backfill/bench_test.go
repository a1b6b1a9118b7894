package backfill_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/internal/pgtest"
)

// BenchmarkApply applies a set job to a 100,000-row table per iteration and
// reports rows/s; compare with BenchmarkRawKeyset, measured in the same run.
func BenchmarkApply(b *testing.B) {
	db, rows := benchTable(b)
	r, err := backfill.New(backfill.Config{DB: db.Pool, Actor: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	lastRun := "" // each iteration is a new run of the job, asked for by name
	for i := 0; b.Loop(); i++ {
		job := countJob(1000)
		job.Version = fmt.Sprint(i)
		res, err := r.Apply(context.Background(), job, backfill.ApplyOptions{NewRun: lastRun})
		if err != nil {
			b.Fatal(err)
		}
		lastRun = res.Run.ID
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkApplyNoImages is BenchmarkApply with rollback: false, for what
// before-images cost.
func BenchmarkApplyNoImages(b *testing.B) {
	db, rows := benchTable(b)
	r, err := backfill.New(backfill.Config{DB: db.Pool, Actor: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	lastRun := ""
	for i := 0; b.Loop(); i++ {
		job := countJob(1000)
		job.Version, job.NoRollback = fmt.Sprint(i), true
		res, err := r.Apply(context.Background(), job, backfill.ApplyOptions{NewRun: lastRun})
		if err != nil {
			b.Fatal(err)
		}
		lastRun = res.Run.ID
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkRollback rolls back a run of a set job that changed every row
// of a 100,000-row table (the apply is not timed) and reports rows
// restored per second.
func BenchmarkRollback(b *testing.B) {
	db, rows := benchTable(b)
	ctx := context.Background()
	r, err := backfill.New(backfill.Config{DB: db.Pool, Actor: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	lastRun := ""
	var elapsed float64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		job := countJob(1000)
		job.Version = fmt.Sprint(i)
		res, err := r.Apply(ctx, job, backfill.ApplyOptions{NewRun: lastRun})
		if err != nil {
			b.Fatal(err)
		}
		lastRun = res.Run.ID
		b.StartTimer()
		start := time.Now()
		rb, err := r.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{})
		if err != nil || rb.Restored != int64(rows) {
			b.Fatalf("rollback: %+v, %v", rb, err)
		}
		elapsed += time.Since(start).Seconds()
	}
	b.ReportMetric(float64(rows)*float64(b.N)/elapsed, "rows/s")
}

// BenchmarkRawKeyset is the reference: a keyset loop of 1000-row UPDATEs,
// one transaction each, without ledger.
func BenchmarkRawKeyset(b *testing.B) {
	db, rows := benchTable(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		var last int64
		for {
			var hi *int64
			if err := db.Pool.QueryRow(ctx, "SELECT max(id) FROM (SELECT id FROM items WHERE id > $1 ORDER BY id LIMIT 1000) c", last).Scan(&hi); err != nil {
				b.Fatal(err)
			}
			if hi == nil {
				break
			}
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "UPDATE items SET n = n + 1 WHERE id > $1 AND id <= $2", last, *hi); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			last = *hi
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func benchTable(b *testing.B) (*pgtest.DB, int) {
	const rows = 100_000
	db := pgtest.New(b)
	db.Exec(b, `CREATE TABLE items (id bigint PRIMARY KEY, val int NOT NULL, n int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`)
	db.Exec(b, `INSERT INTO items (id, val) SELECT g, g % 97 FROM generate_series(1, $1::int) g`, rows)
	db.Exec(b, "VACUUM ANALYZE items")
	return db, rows
}
