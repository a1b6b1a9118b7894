package cli

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/bench"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/projection"
	"github.com/rewindhq/rewind/store"
)

// benchProjectionResult is what `rewind bench projection` prints.
type benchProjectionResult struct {
	Events int `json:"events"`
	// CopyRowsPerSec: one COPY of a row per event (position, stream, type,
	// data) into a plain table, fed by a read of the log.
	CopyRowsPerSec float64 `json:"copy_rows_per_sec"`
	CopySeconds    float64 `json:"copy_seconds"`
	// ProjectionEventsPerSec: a rebuild of a projection whose handler
	// writes the same row per event (Tx.CopyRow), from position 0 to the
	// end, in batches of BatchSize with the checkpoint in each batch's
	// transaction.
	ProjectionEventsPerSec float64 `json:"projection_events_per_sec"`
	ProjectionSeconds      float64 `json:"projection_seconds"`
	BatchSize              int     `json:"batch_size"`
	RatioToCopy            float64 `json:"ratio_to_copy"`
	FillSeconds            float64 `json:"fill_seconds,omitempty"`
	LoadBefore             string  `json:"load_avg_before,omitempty"`
	LoadAfter              string  `json:"load_avg_after,omitempty"`
}

func (a *app) benchProjectionCmd() *cobra.Command {
	var (
		f               projFlags
		events, streams int
		batch           int
		jsonOut         bool
	)
	cmd := &cobra.Command{
		Use:   "projection",
		Short: "Measure a projection rebuild into PostgreSQL against a raw COPY of the same rows",
		Long: `Fill the store in --data-dir up to --events events (when it holds fewer), then in the
same run, into the database of --dsn:

  copy_rows_per_sec          one COPY of a row per event (position, stream, type, data)
                             into a fresh table, fed by a read of the log
  projection_events_per_sec  a rebuild from scratch of a projection whose handler writes
                             the same row per event (Tx.CopyRow), in batches of
                             --batch-size, each batch's checkpoint in its transaction

ratio_to_copy = projection_events_per_sec / copy_rows_per_sec. The tables and the
projection's control rows are dropped at the end.`,
		Example: `  rewind bench projection --data-dir /tmp/b5 --dsn postgres://postgres@127.0.0.1/postgres --events 1000000 --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pool, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			return a.runBenchProjection(ctx, pool, events, streams, batch, jsonOut)
		},
	}
	f.add(cmd)
	config.IntVar(cmd.Flags(), &events, "events", 1_000_000, "events the store should hold and the projection applies")
	config.IntVar(cmd.Flags(), &streams, "streams", 1000, "streams to spread filled events over")
	config.IntVar(cmd.Flags(), &batch, "batch-size", 50_000, "events per projection transaction (projection.Config.BatchSize)")
	atLeast(cmd.Flags(), 1, "events", "streams", "batch-size")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func (a *app) runBenchProjection(ctx context.Context, pool *pgxpool.Pool, events, streams, batch int, jsonOut bool) error {
	out := benchProjectionResult{Events: events, BatchSize: batch, LoadBefore: loadAverage()}
	s, err := store.Open(a.dataDir, store.Config{Log: eventlog.Config{Durability: eventlog.None}})
	if err != nil {
		return err
	}
	defer s.Close()
	if have := int(s.Info().LastPosition); have < events {
		bar := a.newProgress("fill", "events", int64(events-have))
		start := time.Now()
		_, err = bench.Append(ctx, s, bench.AppendConfig{Writers: 4, Batch: max(1, min(1000, (events-have)/streams)),
			Events: events - have, Streams: streams, Progress: bar.set})
		bar.done(err == nil)
		out.FillSeconds = time.Since(start).Seconds()
		if err != nil {
			return err
		}
	}
	// A log that holds more than --events is measured whole.
	events = max(events, int(s.Info().LastPosition))
	out.Events = events
	name := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	const ddl = `(position bigint NOT NULL, stream text NOT NULL, type text NOT NULL, data bytea)`
	cols := []string{"position", "stream", "type", "data"}
	raw := pgx.Identifier{name + "_copy"}
	defer func() {
		c := context.WithoutCancel(ctx)
		pool.Exec(c, "DROP TABLE IF EXISTS "+raw.Sanitize())
		pool.Exec(c, "DROP SCHEMA IF EXISTS "+pgx.Identifier{projection.SchemaName(name, 1)}.Sanitize()+" CASCADE")
		pool.Exec(c, "DELETE FROM rewind_proj.versions WHERE name = $1", name)
		pool.Exec(c, "DELETE FROM rewind_proj.control WHERE name = $1", name)
	}()

	// The reference: one COPY of the same rows.
	if _, err := pool.Exec(ctx, "CREATE TABLE "+raw.Sanitize()+" "+ddl); err != nil {
		return err
	}
	start := time.Now()
	next, stop := iter.Pull2(s.ReadAll(ctx, rewind.ReadAllOptions{}))
	n, err := pool.CopyFrom(ctx, raw, cols, &logRows{next: next})
	stop()
	if err != nil {
		return err
	}
	out.CopySeconds = time.Since(start).Seconds()
	out.CopyRowsPerSec = float64(int64(float64(n) / out.CopySeconds))

	// The projection, from scratch, to the same end.
	p := projection.Projection{Name: name, Version: 1,
		Setup: func(schema string) string { return "CREATE TABLE " + schema + ".rows " + ddl },
		Handlers: map[string]projection.Handler{"BenchEvent": func(ctx context.Context, tx *projection.Tx, ev *rewind.RecordedEvent) error {
			tx.CopyRow("rows", cols, int64(ev.Position), ev.Stream, ev.Type, ev.Data)
			return nil
		}},
	}
	r, err := projection.New(p, projection.Config{Pool: pool, Store: s, BatchSize: batch, BatchInterval: time.Hour,
		Window: events, EffectsFromStart: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	start = time.Now()
	if err := r.CatchUp(ctx); err != nil {
		return err
	}
	out.ProjectionSeconds = time.Since(start).Seconds()
	out.ProjectionEventsPerSec = float64(int64(float64(events) / out.ProjectionSeconds))
	out.RatioToCopy = float64(int64(out.ProjectionEventsPerSec/out.CopyRowsPerSec*100+0.5)) / 100
	out.LoadAfter = loadAverage()
	if jsonOut {
		return a.printJSON(out)
	}
	a.printf("projection rebuild: %.0f events/s, %.2f × a raw COPY of the same rows (%.0f rows/s)\n",
		out.ProjectionEventsPerSec, out.RatioToCopy, out.CopyRowsPerSec)
	return nil
}

// logRows feeds COPY with a row per event of a log read.
type logRows struct {
	next func() (*rewind.RecordedEvent, error, bool)
	row  []any
	err  error
}

func (l *logRows) Next() bool {
	ev, err, ok := l.next()
	if !ok {
		return false
	}
	if err != nil {
		l.err = err
		return false
	}
	l.row = append(l.row[:0], int64(ev.Position), ev.Stream, ev.Type, ev.Data)
	return true
}

func (l *logRows) Values() ([]any, error) { return l.row, nil }
func (l *logRows) Err() error             { return l.err }
