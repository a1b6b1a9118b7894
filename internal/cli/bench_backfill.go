package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/backfill"
)

// benchBackfillResult is what `rewind bench backfill --json` prints.
type benchBackfillResult struct {
	Rows  int64 `json:"rows"`
	Chunk int   `json:"chunk"`
	// RawKeysetRPS is a plain keyset loop (find the next chunk's last key,
	// UPDATE the chunk, one transaction per chunk, no ledger): the mean of
	// a run before and a run after rewind's, to cancel drift.
	RawKeysetRPS    float64   `json:"raw_keyset_rps"`
	RawKeysetRuns   []float64 `json:"raw_keyset_runs"`
	RowsPerSec      float64   `json:"rows_per_sec"` // rewind's apply, ledger and audit included
	RowByRowRPS     float64   `json:"row_by_row_rps"`
	RowByRowSample  int64     `json:"row_by_row_sample"`
	RatioVsRaw      float64   `json:"ratio_vs_raw"`
	RatioVsRowByRow float64   `json:"ratio_vs_row_by_row"`
	ApplySeconds    float64   `json:"apply_seconds"`
}

func (a *app) benchBackfillCmd() *cobra.Command {
	var pg pgFlags
	var rows int64
	var chunk int
	var sample int64
	var jsonOut, keep bool
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Measure backfill apply throughput against a plain keyset loop and a row-by-row loop",
		Long: `Build a table rewind_bench_backfill of --rows rows in the --dsn database, then measure
in the same run, each pass incrementing a counter of every row:

  raw_keyset_rps  a plain keyset loop, --chunk rows per transaction, no ledger
                  (run before and after rewind's pass; the mean is reported)
  rows_per_sec    rewind backfill apply of the same change: chunk checkpoints,
                  audit entries, leases and checksums included
  row_by_row_rps  one UPDATE per row in autocommit, on a --sample of rows

VACUUM runs between passes. The table is dropped at the end unless --keep. The
target of the design: rows_per_sec >= 0.7 x raw_keyset_rps and >= 60 x row_by_row_rps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if rows < 1000 {
				return invalidFlag("rows", fmt.Sprint(rows), "must be at least 1000")
			}
			if chunk < 1 {
				return invalidFlag("chunk", fmt.Sprint(chunk), "must be at least 1")
			}
			res, err := a.benchBackfill(cmd.Context(), pg, rows, chunk, min(sample, rows), keep)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(res)
			}
			a.printf("rows %d, chunk %d\nraw keyset     %10.0f rows/s  (runs %.0f)\nrewind apply   %10.0f rows/s  (%.2f x raw keyset)\n"+
				"row by row     %10.0f rows/s  (rewind is %.0f x faster; sample %d rows)\n",
				res.Rows, res.Chunk, res.RawKeysetRPS, res.RawKeysetRuns, res.RowsPerSec, res.RatioVsRaw,
				res.RowByRowRPS, res.RatioVsRowByRow, res.RowByRowSample)
			return nil
		},
	}
	pg.add(cmd)
	cmd.Flags().Int64Var(&rows, "rows", 1_000_000, "rows in the benchmark table")
	cmd.Flags().IntVar(&chunk, "chunk", 1000, "rows per chunk (transaction)")
	cmd.Flags().Int64Var(&sample, "sample", 20_000, "rows updated by the row-by-row loop")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the benchmark table")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

const benchTable = "rewind_bench_backfill"

func (a *app) benchBackfill(ctx context.Context, pg pgFlags, rows int64, chunk int, sample int64, keep bool) (*benchBackfillResult, error) {
	work, ledger, closeAll, err := pg.pools(ctx)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	if err := work.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	for _, s := range []string{
		"DROP TABLE IF EXISTS " + benchTable,
		"CREATE TABLE " + benchTable + " (id bigint PRIMARY KEY, val int NOT NULL, n int NOT NULL DEFAULT 0, pad text NOT NULL)",
		fmt.Sprintf("INSERT INTO %s (id, val, pad) SELECT g, g %% 1000, md5(g::text) FROM generate_series(1, %d) g", benchTable, rows),
	} {
		if _, err := work.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("build the benchmark table: %w", err)
		}
	}
	if !keep {
		defer work.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+benchTable)
	}
	vacuum := func() error {
		_, err := work.Exec(ctx, "VACUUM ANALYZE "+benchTable)
		return err
	}
	res := &benchBackfillResult{Rows: rows, Chunk: chunk, RowByRowSample: sample}
	if err := vacuum(); err != nil {
		return nil, err
	}
	raw1, err := rawKeyset(ctx, work, chunk)
	if err != nil {
		return nil, err
	}
	if err := vacuum(); err != nil {
		return nil, err
	}
	r, err := backfill.New(backfill.Config{DB: work, Ledger: ledger, Actor: pg.actor})
	if err != nil {
		return nil, err
	}
	job := &backfill.Job{Name: "bench-backfill", Version: time.Now().UTC().Format(time.RFC3339Nano), ChunkSize: chunk,
		Source: &backfill.Table{Name: benchTable, Key: []string{"id"}}, Set: map[string]string{"n": "n + 1"}}
	start := time.Now()
	out, err := r.Apply(ctx, job, backfill.ApplyOptions{})
	if err != nil {
		return nil, err
	}
	res.ApplySeconds = time.Since(start).Seconds()
	if out.RowsChanged != rows {
		return nil, fmt.Errorf("rewind's apply changed %d rows, want %d", out.RowsChanged, rows)
	}
	res.RowsPerSec = float64(rows) / res.ApplySeconds
	if err := vacuum(); err != nil {
		return nil, err
	}
	raw2, err := rawKeyset(ctx, work, chunk)
	if err != nil {
		return nil, err
	}
	res.RawKeysetRuns = []float64{raw1, raw2}
	res.RawKeysetRPS = (raw1 + raw2) / 2
	if err := vacuum(); err != nil {
		return nil, err
	}
	if res.RowByRowRPS, err = rowByRow(ctx, work, sample); err != nil {
		return nil, err
	}
	res.RatioVsRaw = res.RowsPerSec / res.RawKeysetRPS
	res.RatioVsRowByRow = res.RowsPerSec / res.RowByRowRPS
	return res, nil
}

// rawKeyset is the reference: what a careful hand-written script does.
func rawKeyset(ctx context.Context, db *pgxpool.Pool, chunk int) (float64, error) {
	start := time.Now()
	var last, n int64
	next := fmt.Sprintf("SELECT max(id) FROM (SELECT id FROM %s WHERE id > $1 ORDER BY id LIMIT %d) c", benchTable, chunk)
	update := "UPDATE " + benchTable + " SET n = n + 1 WHERE id > $1 AND id <= $2"
	for {
		var hi *int64
		if err := db.QueryRow(ctx, next, last).Scan(&hi); err != nil {
			return 0, fmt.Errorf("raw keyset loop: %w", err)
		}
		if hi == nil {
			break
		}
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, update, last, *hi)
			n += tag.RowsAffected()
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("raw keyset loop: %w", err)
		}
		last = *hi
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// rowByRow updates sample rows one statement (and transaction) each.
func rowByRow(ctx context.Context, db *pgxpool.Pool, sample int64) (float64, error) {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	update := "UPDATE " + benchTable + " SET n = n + 1 WHERE id = $1"
	start := time.Now()
	for id := int64(1); id <= sample; id++ {
		if _, err := conn.Exec(ctx, update, id); err != nil {
			return 0, fmt.Errorf("row-by-row loop: %w", err)
		}
	}
	return float64(sample) / time.Since(start).Seconds(), nil
}
