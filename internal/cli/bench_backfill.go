package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/config"
)

// benchBackfillResult is what `rewind bench backfill --json` prints.
type benchBackfillResult struct {
	Rows  int64 `json:"rows"`
	Chunk int   `json:"chunk"`
	// RawKeysetRPS is a plain keyset loop (find the next chunk's last key,
	// UPDATE the chunk, one transaction per chunk, no ledger): the median
	// of its passes, which alternate with rewind's so that drift in the
	// machine's load affects both alike.
	RawKeysetRPS  float64   `json:"raw_keyset_rps"`
	RawKeysetRuns []float64 `json:"raw_keyset_runs"`
	// RowsPerSec is rewind's apply, ledger and audit included: the median
	// of its passes.
	RowsPerSec     float64   `json:"rows_per_sec"`
	RowsPerSecRuns []float64 `json:"rows_per_sec_runs"`
	// TwoWorkersRPS is the same apply with two workers (eight shards),
	// each pass right after a one-worker pass; WorkersRatio is its
	// median over rows_per_sec.
	TwoWorkersRPS   float64   `json:"two_workers_rps"`
	TwoWorkersRuns  []float64 `json:"two_workers_runs"`
	WorkersRatio    float64   `json:"workers_ratio"`
	RowByRowRPS     float64   `json:"row_by_row_rps"`
	RowByRowSample  int64     `json:"row_by_row_sample"`
	RatioVsRaw      float64   `json:"ratio_vs_raw"`
	RatioVsRowByRow float64   `json:"ratio_vs_row_by_row"`
	// BeforeImagesRatio is rows_per_sec (whose job keeps before-images,
	// the default) over raw_keyset_rps; RowsPerSecNoImages the same job
	// with rollback: false, for what the images cost.
	BeforeImagesRatio      float64   `json:"before_images_ratio"`
	RowsPerSecNoImages     float64   `json:"rows_per_sec_no_images"`
	RowsPerSecNoImagesRuns []float64 `json:"rows_per_sec_no_images_runs"`
	// RollbackRPS is Runner.Rollback of each images pass's run, right after
	// it (rows restored per second), and RollbackRatio its median over
	// raw_keyset_rps.
	RollbackRPS   float64   `json:"rollback_rps"`
	RollbackRuns  []float64 `json:"rollback_runs"`
	RollbackRatio float64   `json:"rollback_ratio"`
	// LoadAverage is the machine's 1-minute load average before and after,
	// from /proc/loadavg (empty where unavailable): figures taken on a
	// loaded machine say so.
	LoadAverage []string `json:"load_average,omitempty"`
	// Checkpoints: each pass began right after a CHECKPOINT (false where
	// the role may not ask for one).
	Checkpoints bool `json:"checkpoint_each_pass"`
	// With --load pgbench: pgbench's p99 latency alone and during
	// default-throttled backfills, their ratio, and the backfill's rate.
	*pgbenchResult
}

func (a *app) benchBackfillCmd() *cobra.Command {
	var pg pgFlags
	var rows int64
	var chunk int
	var sample int64
	var rounds int
	var jsonOut, keep bool
	var load string
	var pl pgbenchLoad
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Measure backfill apply and rollback throughput against a plain keyset loop and a row-by-row loop",
		Long: `Build a table rewind_bench_backfill of --rows rows in the --dsn database, then measure
in the same run, each pass incrementing a counter of every row:

  raw_keyset_rps          a plain keyset loop, --chunk rows per transaction, no ledger
  rows_per_sec            rewind backfill apply of the same change: chunk checkpoints,
                          audit entries, leases, checksums and before-images included
  rows_per_sec_no_images  the same with rollback: false (no before-images)
  rollback_rps            rewind backfill rollback of each rows_per_sec pass's run,
                          right after it: rows restored per second
  two_workers_rps         the same apply with --workers 2 (8 shards); workers_ratio
                          is two_workers_rps / rows_per_sec
  row_by_row_rps          one UPDATE per row in autocommit, on a --sample of rows

A first raw pass, not timed, grows the new table to the size every later pass
finds it at. Then the passes alternate, raw first and last: for each of --rounds a raw pass, then
rewind, its rollback, rewind with 2 workers and rewind without images, in reverse
order in odd rounds (for 2 rounds: raw R rb W N raw N W rb R raw; the rollback
undoes the apply right before it), and the medians are reported. With an even
number of rounds every kind of pass has the same mean position in the run, so that
a steady change during the run (the table gets faster to update, the machine's
load) favours none. VACUUM and a CHECKPOINT run before each pass (the
CHECKPOINT where the role may ask for one: checkpoint_each_pass says), so that
every pass writes the full-page images of a first pass after a checkpoint. The
table is dropped at the end unless --keep. Targets: rows_per_sec
(before_images_ratio) >= 0.6 x raw_keyset_rps, rollback_ratio >= 0.5,
workers_ratio >= 1.3, and rows_per_sec >= 60 x row_by_row_rps.

With --load pgbench, it then runs pgbench's built-in TPC-B-like script with
--pgbench-clients clients (pgbench -i -s --pgbench-scale in a scratch database of
the same cluster, dropped at the end) for --pgbench-time alone, then again while
default-throttled backfills of the table (no chunk: sizes adapt to 500ms; the
default throttle) follow each other, and adds pgbench_p99_ratio (p99 latency during
/ alone, from pgbench's per-transaction logs; target <= 1.5) and the backfill's
rows/s (pgbench_backfill_rps) to the result.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if rows < 1000 {
				return invalidFlag("rows", fmt.Sprint(rows), "must be at least 1000")
			}
			if chunk < 1 {
				return invalidFlag("chunk", fmt.Sprint(chunk), "must be at least 1")
			}
			if rounds < 1 {
				return invalidFlag("rounds", fmt.Sprint(rounds), "must be at least 1")
			}
			if load != "" && load != "pgbench" {
				return invalidFlag("load", load, "must be pgbench (or left out)")
			}
			if sample < 1 {
				return invalidFlag("sample", fmt.Sprint(sample), "must be at least 1")
			}
			if pl.clients < 1 || pl.clients > math.MaxInt32 {
				return invalidFlag("pgbench-clients", fmt.Sprint(pl.clients), "must be from 1 to 2147483647 (pgbench -c)")
			}
			if pl.scale < 1 || pl.scale > math.MaxInt32 {
				return invalidFlag("pgbench-scale", fmt.Sprint(pl.scale), "must be from 1 to 2147483647 (pgbench -s)")
			}
			if pl.dur < time.Second || pl.dur%time.Second != 0 {
				return invalidFlag("pgbench-time", pl.dur.String(), "must be a whole number of seconds, at least 1s (pgbench -T)")
			}
			if pl.binary != "" && load == "" {
				return invalidFlag("pgbench", pl.binary, "is used only with --load pgbench")
			}
			if load == "" {
				pl.clients = 0
			} else if pl.binary == "" {
				// Found before anything is built or measured.
				var err error
				if pl.binary, err = findPgbench(); err != nil {
					return &cliError{code: "invalid_argument", status: 2, msg: err.Error()}
				}
			} else if out, err := exec.CommandContext(cmd.Context(), pl.binary, "--version").Output(); err != nil ||
				!strings.HasPrefix(string(out), "pgbench (PostgreSQL)") {
				return invalidFlag("pgbench", pl.binary, "is not PostgreSQL's pgbench (its --version does not say so): give the path of pgbench")
			}
			res, err := a.benchBackfill(cmd.Context(), pg, rows, chunk, min(sample, rows), rounds, keep, pl)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(res)
			}
			if p := res.pgbenchResult; p != nil {
				a.printf("pgbench -c %d: p99 %.2f ms alone, %.2f ms during the backfill (%.2f x); %.0f vs %.0f tps; "+
					"backfill %.0f rows/s, %.1f s throttled\n", p.Clients, p.P99Alone, p.P99During, p.P99Ratio, p.TPSAlone, p.TPSDuring,
					p.BackfillRPS, p.ThrottledSeconds)
			}
			a.printf("rows %d, chunk %d, load average %v\nraw keyset     %10.0f rows/s  (median of %.0f)\n"+
				"rewind apply   %10.0f rows/s  (median of %.0f; %.2f x raw keyset, before-images included)\n"+
				"  no images    %10.0f rows/s  (median of %.0f)\n"+
				"rollback       %10.0f rows/s  (median of %.0f; %.2f x raw keyset)\n"+
				"2 workers      %10.0f rows/s  (median of %.0f; %.2f x one worker)\n"+
				"row by row     %10.0f rows/s  (rewind is %.0f x faster; sample %d rows)\n",
				res.Rows, res.Chunk, res.LoadAverage, res.RawKeysetRPS, res.RawKeysetRuns, res.RowsPerSec, res.RowsPerSecRuns,
				res.RatioVsRaw, res.RowsPerSecNoImages, res.RowsPerSecNoImagesRuns, res.RollbackRPS, res.RollbackRuns,
				res.RollbackRatio, res.TwoWorkersRPS, res.TwoWorkersRuns, res.WorkersRatio, res.RowByRowRPS, res.RatioVsRowByRow, res.RowByRowSample)
			return nil
		},
	}
	pg.add(cmd)
	config.Int64Var(cmd.Flags(), &rows, "rows", 1_000_000, "rows in the benchmark table")
	config.IntVar(cmd.Flags(), &chunk, "chunk", 1000, "rows per chunk (transaction)")
	config.Int64Var(cmd.Flags(), &sample, "sample", 20_000, "rows updated by the row-by-row loop")
	config.IntVar(cmd.Flags(), &rounds, "rounds", 2, "rounds of passes, each a raw keyset pass and rewind's four (even counts balance the order)")
	config.BoolVar(cmd.Flags(), &keep, "keep", false, "keep the benchmark table")
	cmd.Flags().StringVar(&load, "load", "", "also measure a concurrent load's latency: pgbench")
	config.IntVar(cmd.Flags(), &pl.clients, "pgbench-clients", 4, "pgbench connections (-c), one client each, with --load pgbench")
	config.IntVar(cmd.Flags(), &pl.scale, "pgbench-scale", 10, "pgbench scale (-i -s), in units of 100,000 rows of pgbench_accounts, with --load pgbench")
	cmd.Flags().DurationVar(&pl.dur, "pgbench-time", 30*time.Second, "how long each pgbench pass runs (whole seconds)")
	cmd.Flags().StringVar(&pl.binary, "pgbench", "", "the pgbench binary (default: on PATH, else /usr/lib/postgresql/*/bin)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

const benchTable = "rewind_bench_backfill"

func (a *app) benchBackfill(ctx context.Context, pg pgFlags, rows int64, chunk int, sample int64, rounds int, keep bool,
	pl pgbenchLoad) (*benchBackfillResult, error) {
	pg.conns = 8 // two workers
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
	// Before each pass: VACUUM, then a CHECKPOINT where the role may ask
	// for one (superuser or pg_checkpoint), so that every pass writes a
	// full-page image of each page it first changes, as the first pass
	// after a checkpoint does. Otherwise the checkpoints that the passes'
	// WAL sets off fall in some passes and not in others, and that pass
	// alone pays for the images: one pass in two rounds ran a third
	// slower than its twin.
	res := &benchBackfillResult{Rows: rows, Chunk: chunk, RowByRowSample: sample, LoadAverage: []string{loadAverage()},
		Checkpoints: true}
	vacuum := func() error {
		if _, err := work.Exec(ctx, "VACUUM ANALYZE "+benchTable); err != nil {
			return err
		}
		if res.Checkpoints {
			if _, err := work.Exec(ctx, "CHECKPOINT"); err != nil {
				if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "42501" {
					return fmt.Errorf("checkpoint before a pass: %w", err)
				}
				res.Checkpoints = false // not allowed: passes run as they fall
			}
		}
		return nil
	}
	r, err := backfill.New(backfill.Config{DB: work, Ledger: ledger, Actor: pg.actor})
	if err != nil {
		return nil, err
	}
	// The engine's passes read no throttle signal: they measure what a
	// chunk costs against the raw loop, and the machine's other load must
	// not make them wait. The default throttle is measured by --load.
	off, release, err := throttle.Spec{Off: true}.Build(work, throttle.Config{})
	if err != nil {
		return nil, err
	}
	defer release()
	raw := func() error {
		if err := vacuum(); err != nil {
			return err
		}
		rps, err := rawKeyset(ctx, work, chunk)
		res.RawKeysetRuns = append(res.RawKeysetRuns, rps)
		return err
	}
	// Each pass is a new run of one job, asked for by name; the job is this
	// invocation's own, whatever earlier ones left in the ledger.
	name, lastRun := "bench-backfill-"+time.Now().UTC().Format("20060102T150405.000000000"), ""
	apply := func(i, workers int, runs *[]float64) error {
		if err := vacuum(); err != nil {
			return err
		}
		job := &backfill.Job{Name: name, Version: fmt.Sprintf("%s-%d-%d", time.Now().UTC().Format(time.RFC3339Nano), i, workers),
			ChunkSize: chunk, Source: &backfill.Table{Name: benchTable, Key: []string{"id"}}, Set: map[string]string{"n": "n + 1"}}
		start := time.Now()
		out, err := r.Apply(ctx, job, backfill.ApplyOptions{NewRun: lastRun, Workers: workers, Throttle: off})
		if err != nil {
			return err
		}
		lastRun = out.Run.ID
		if out.RowsChanged != rows {
			return fmt.Errorf("rewind's apply changed %d rows, want %d", out.RowsChanged, rows)
		}
		*runs = append(*runs, float64(rows)/time.Since(start).Seconds())
		return nil
	}
	// The table gets faster to update pass after pass (more of a pass's
	// updates find room on their row's page: 2 % of them in the first
	// pass on the new table, 28 % in the eighth, 114k → 134k rows/s), so
	// the order of the passes is a palindrome: for each round a raw pass,
	// then rewind's four, in reverse in odd rounds, and a last raw pass
	// (raw R rb W N raw N W rb R raw for two rounds). With an even number
	// of rounds every kind of pass sits at the same mean position, and a
	// steady drift favours none. A rollback rolls back the apply right
	// before it: the one-worker pass in even rounds, the two-worker pass
	// in odd ones.
	passes := []func(i int) error{
		func(i int) error { return apply(i, 1, &res.RowsPerSecRuns) },
		func(int) error {
			if err := vacuum(); err != nil {
				return err
			}
			return benchRollback(ctx, r, lastRun, rows, off, res)
		},
		func(i int) error { return apply(i, 2, &res.TwoWorkersRuns) },
		func(i int) error {
			if err := vacuum(); err != nil {
				return err
			}
			return benchNoImages(ctx, r, name, i, chunk, rows, off, res)
		},
	}
	// A first raw pass, not timed: the first pass over the new table
	// writes every row's new version into new pages (the table doubles),
	// which no later pass does (109k–112k rows/s against 127k–133k for
	// the next raw pass in three runs).
	if err := vacuum(); err != nil {
		return nil, err
	}
	if _, err := rawKeyset(ctx, work, chunk); err != nil {
		return nil, err
	}
	for i := range rounds {
		if err := raw(); err != nil {
			return nil, err
		}
		order := passes
		if i%2 == 1 {
			order = slices.Clone(passes)
			slices.Reverse(order)
		}
		for _, pass := range order {
			if err := pass(i); err != nil {
				return nil, err
			}
		}
	}
	if err := raw(); err != nil {
		return nil, err
	}
	if err := vacuum(); err != nil {
		return nil, err
	}
	if res.RowByRowRPS, err = rowByRow(ctx, work, sample); err != nil {
		return nil, err
	}
	res.RawKeysetRPS, res.RowsPerSec = median(res.RawKeysetRuns), median(res.RowsPerSecRuns)
	res.TwoWorkersRPS = median(res.TwoWorkersRuns)
	res.WorkersRatio = res.TwoWorkersRPS / res.RowsPerSec
	res.RatioVsRaw = res.RowsPerSec / res.RawKeysetRPS
	res.BeforeImagesRatio = res.RatioVsRaw
	res.RowsPerSecNoImages, res.RollbackRPS = median(res.RowsPerSecNoImagesRuns), median(res.RollbackRuns)
	res.RollbackRatio = res.RollbackRPS / res.RawKeysetRPS
	res.RatioVsRowByRow = res.RowsPerSec / res.RowByRowRPS
	if pl.clients > 0 {
		if err := vacuum(); err != nil {
			return nil, err
		}
		if res.pgbenchResult, err = pl.run(ctx, work, r, rows); err != nil {
			return nil, err
		}
	}
	res.LoadAverage = append(res.LoadAverage, loadAverage())
	return res, nil
}

// benchRollback times the rollback of run, which changed rows rows.
func benchRollback(ctx context.Context, r *backfill.Runner, run string, rows int64, off *throttle.Throttler, res *benchBackfillResult) error {
	start := time.Now()
	out, err := r.Rollback(ctx, run, backfill.RollbackOptions{Throttle: off})
	if err != nil {
		return err
	}
	if out.Restored != rows {
		return fmt.Errorf("rewind's rollback restored %d rows, want %d", out.Restored, rows)
	}
	res.RollbackRuns = append(res.RollbackRuns, float64(rows)/time.Since(start).Seconds())
	return nil
}

// benchNoImages times rewind's apply of a job with rollback: false.
func benchNoImages(ctx context.Context, r *backfill.Runner, name string, i, chunk int, rows int64, off *throttle.Throttler,
	res *benchBackfillResult) error {
	job := &backfill.Job{Name: name + "-no-images", Version: fmt.Sprintf("%s-%d", time.Now().UTC().Format(time.RFC3339Nano), i),
		ChunkSize: chunk, NoRollback: true, Source: &backfill.Table{Name: benchTable, Key: []string{"id"}}, Set: map[string]string{"n": "n + 1"}}
	o := backfill.ApplyOptions{Throttle: off}
	if runs, err := r.List(ctx, backfill.ListOptions{Job: job.Name, Limit: 1}); err != nil {
		return err
	} else if len(runs) > 0 {
		o.NewRun = runs[0].ID
	}
	start := time.Now()
	out, err := r.Apply(ctx, job, o)
	if err != nil {
		return err
	}
	if out.RowsChanged != rows {
		return fmt.Errorf("rewind's apply (no images) changed %d rows, want %d", out.RowsChanged, rows)
	}
	res.RowsPerSecNoImagesRuns = append(res.RowsPerSecNoImagesRuns, float64(rows)/time.Since(start).Seconds())
	return nil
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loadAverage is the 1-minute load average, or "" where unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
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
