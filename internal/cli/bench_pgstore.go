package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/pgstore"
)

// pgstoreBenchReport is what `rewind bench pgstore --json` prints. Each
// ratio is rewind's throughput over a hand-written reference's, measured
// interleaved in the same run (higher is better; the target is ≥ 0.8).
type pgstoreBenchReport struct {
	Events int `json:"events"`
	Batch  int `json:"batch"`
	// Batched Append (one writer) against INSERT … SELECT unnest(…) of the
	// same rows in autocommit, batch for batch.
	AppendEventsPerSec float64 `json:"append_events_per_sec"`
	InsertEventsPerSec float64 `json:"insert_events_per_sec"`
	AppendRatio        float64 `json:"append_ratio"`
	// rewind copy's import (ImportLog, CopyBatch records a transaction)
	// against a raw COPY of the same rows into a table like events, chunk
	// for chunk.
	CopyBatch         int     `json:"copy_batch"`
	ImportEventsPerS  float64 `json:"import_events_per_sec"`
	RawCopyEventsPerS float64 `json:"raw_copy_events_per_sec"`
	CopyRatio         float64 `json:"copy_ratio"`
	// A subscription catching up from 0 against a keyset read of the
	// same columns, WHERE position > $1 ORDER BY position LIMIT 500.
	CatchupEventsPerSec float64 `json:"catchup_events_per_sec"`
	KeysetEventsPerSec  float64 `json:"keyset_events_per_sec"`
	CatchupRatio        float64 `json:"catchup_ratio"`
	// The same before the tables had statistics (one pass each).
	CatchupRatioFresh float64 `json:"catchup_ratio_before_analyze"`
	// The machine's load averages (/proc/loadavg) before and after.
	UptimeBefore string `json:"uptime_before"`
	UptimeAfter  string `json:"uptime_after"`
}

func (a *app) benchPgstoreCmd() *cobra.Command {
	var (
		dsn           string
		events, batch int
		copyBatch     int
		jsonOut       bool
	)
	cmd := &cobra.Command{
		Use:   "pgstore --dsn postgres://…",
		Short: "Measure the PostgreSQL store against hand-written SQL on the same database",
		Long: `Measure the PostgreSQL store in scratch schemas of the database --dsn names
(made, then dropped): batched appends against INSERT … SELECT unnest(…) of the
same rows (append_ratio), rewind copy's import against a raw COPY of the same
rows (copy_ratio), and a subscription catching up from position 0 against a
keyset read loop (catchup_ratio). Each pair runs interleaved in the same run, so
the machine's load weighs on both alike; the load averages are printed with the
figures. docs/benchmarks.md has the method and the figures.`,
		Example: `  rewind bench pgstore --dsn postgres://postgres@127.0.0.1:5432/bench --events 200000 --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dsn == "" {
				return usageError(cmd, errors.New("give the database with --dsn postgres://…"))
			}
			if events < 1000 || batch < 1 || batch > 10_000 || copyBatch < 1 || copyBatch > 100_000 {
				return invalidFlag("events", fmt.Sprint(events), "--events ≥ 1000, --batch 1–10000, --copy-batch 1–100000")
			}
			r, err := a.benchPgstore(cmd.Context(), dsn, events, batch, copyBatch, jsonOut)
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(r)
			}
			a.printf("append  %8.0f events/s, insert %8.0f events/s, ratio %.2f\n", r.AppendEventsPerSec, r.InsertEventsPerSec, r.AppendRatio)
			a.printf("import  %8.0f events/s, COPY   %8.0f events/s, ratio %.2f\n", r.ImportEventsPerS, r.RawCopyEventsPerS, r.CopyRatio)
			a.printf("catchup %8.0f events/s, keyset %8.0f events/s, ratio %.2f\n", r.CatchupEventsPerSec, r.KeysetEventsPerSec, r.CatchupRatio)
			a.printf("load %s -> %s\n", r.UptimeBefore, r.UptimeAfter)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dsn, "dsn", "", "PostgreSQL database to run in (scratch schemas are made and dropped)")
	config.IntVar(f, &events, "events", 100_000, "events appended, copied and read")
	config.IntVar(f, &batch, "batch", 1000, "events per append")
	config.IntVar(f, &copyBatch, "copy-batch", 5000, "records per import transaction (rewind copy's --batch)")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func uptime() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func (a *app) benchPgstore(ctx context.Context, dsn string, events, batch, copyBatch int, quiet bool) (*pgstoreBenchReport, error) {
	say := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(a.stderr, format+"\n", args...)
		}
	}
	r := &pgstoreBenchReport{Events: events, Batch: batch, CopyBatch: copyBatch, UptimeBefore: uptime()}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	tag := fmt.Sprintf("rewind_bench_%d", os.Getpid())
	srcSchema, dstSchema, rawSchema := tag+"_src", tag+"_dst", tag+"_raw"
	drop := func() {
		for _, s := range []string{srcSchema, dstSchema, rawSchema} {
			pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE")
		}
	}
	drop()
	defer drop()
	open := func(schema string) (*pgstore.Store, error) {
		if _, err := pgstore.Migrate(ctx, dsn, pgstore.Config{Schema: schema}); err != nil {
			return nil, err
		}
		return pgstore.Open(ctx, dsn, pgstore.Config{Schema: schema})
	}
	src, err := open(srcSchema)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst, err := open(dstSchema)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	raw := pgx.Identifier{rawSchema}.Sanitize()
	evTable := pgx.Identifier{srcSchema, "events"}.Sanitize()
	for _, q := range []string{"CREATE SCHEMA " + raw,
		"CREATE TABLE " + raw + ".inserted (LIKE " + evTable + " INCLUDING ALL)",
		"CREATE TABLE " + raw + ".copied (LIKE " + evTable + " INCLUDING ALL)"} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return nil, err
		}
	}

	// 1. Append against INSERT … SELECT unnest, batch for batch.
	say("append: %d events in batches of %d, interleaved with raw inserts", events, batch)
	mk := func(n int) []rewind.Event {
		evs := make([]rewind.Event, n)
		for i := range evs {
			evs[i] = rewind.Event{ID: uuid.New(), Type: "OrderPlaced", Data: []byte(`{"order":12345,"total":"99.50","items":3}`),
				Metadata: map[string]string{"correlation": "c-1"}}
		}
		return evs
	}
	var appendT, insertT time.Duration
	var rawPos int64
	for done, round := 0, 0; done < events; round++ {
		n := min(batch, events-done)
		stream := fmt.Sprintf("bench-%d", round%10)
		evs, evs2 := mk(n), mk(n)
		t0 := time.Now()
		if _, err := src.Append(ctx, stream, rewind.Any, evs...); err != nil {
			return nil, err
		}
		t1 := time.Now()
		if err := rawInsert(ctx, pool, raw+".inserted", stream, rawPos, int64(round/10*batch), evs2); err != nil {
			return nil, err
		}
		t2 := time.Now()
		appendT += t1.Sub(t0)
		insertT += t2.Sub(t1)
		rawPos += int64(n)
		done += n
	}
	r.AppendEventsPerSec = float64(events) / appendT.Seconds()
	r.InsertEventsPerSec = float64(events) / insertT.Seconds()
	r.AppendRatio = insertT.Seconds() / appendT.Seconds()

	// 2. rewind copy's import against a raw COPY of the same rows.
	say("copy: %d records in transactions of %d, interleaved with raw COPY", events, copyBatch)
	var recs []rewind.LogRecord
	for next := rewind.Position(1); ; {
		got, err := src.ExportLog(ctx, next, 10_000)
		if err != nil {
			return nil, err
		}
		if len(got) == 0 {
			break
		}
		recs = append(recs, got...)
		next = got[len(got)-1].Position + 1
	}
	var importT, copyT time.Duration
	for i := 0; i < len(recs); {
		j := min(i+copyBatch, len(recs))
		for j < len(recs) && !recs[j-1].BatchEnd {
			j++
		}
		chunk := recs[i:j]
		rows := copyRows(chunk)
		t0 := time.Now()
		if err := dst.ImportLog(ctx, chunk); err != nil {
			return nil, err
		}
		t1 := time.Now()
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{rawSchema, "copied"}, benchCopyColumns, pgx.CopyFromRows(rows)); err != nil {
			return nil, err
		}
		t2 := time.Now()
		importT += t1.Sub(t0)
		copyT += t2.Sub(t1)
		i = j
	}
	r.ImportEventsPerS = float64(len(recs)) / importT.Seconds()
	r.RawCopyEventsPerS = float64(len(recs)) / copyT.Seconds()
	r.CopyRatio = copyT.Seconds() / importT.Seconds()

	// 3. Catch-up from 0 against a keyset loop, interleaved every 5000
	// events: once as the tables are just after the appends (no statistics
	// until autovacuum comes by), then twice after an ANALYZE.
	say("catch-up: %d events, subscription and keyset read interleaved", events)
	subT, keyT, err := catchUpVsKeyset(ctx, src, pool, evTable, len(recs))
	if err != nil {
		return nil, err
	}
	r.CatchupRatioFresh = keyT.Seconds() / subT.Seconds()
	if err := src.Analyze(ctx); err != nil {
		return nil, err
	}
	subT, keyT = 0, 0
	for range 2 {
		st, kt, err := catchUpVsKeyset(ctx, src, pool, evTable, len(recs))
		if err != nil {
			return nil, err
		}
		subT, keyT = subT+st, keyT+kt
	}
	r.CatchupEventsPerSec = float64(2*len(recs)) / subT.Seconds()
	r.KeysetEventsPerSec = float64(2*len(recs)) / keyT.Seconds()
	r.CatchupRatio = keyT.Seconds() / subT.Seconds()
	r.UptimeAfter = uptime()
	return r, nil
}

// rawInsert is the append's reference: one INSERT … SELECT unnest(…) of
// the same columns in autocommit, positions and versions from the client,
// nothing checked.
func rawInsert(ctx context.Context, pool *pgxpool.Pool, table, stream string, base, version int64, evs []rewind.Event) error {
	n := len(evs)
	ids, gen, types, svs, cts := make([]uuid.UUID, n), make([]bool, n), make([]string, n), make([]int32, n), make([]string, n)
	data, md, occ := make([][]byte, n), make([]*string, n), make([]*int64, n)
	for i, e := range evs {
		ids[i], types[i], svs[i], cts[i], data[i] = e.ID, e.Type, 1, rewind.DefaultContentType, e.Data
		if len(e.Metadata) > 0 {
			b, _ := json.Marshal(e.Metadata)
			s := string(b)
			md[i] = &s
		}
	}
	_, err := pool.Exec(ctx, `INSERT INTO `+table+` (position, stream, version, kind, event_id, generated, type, schema_version,
			content_type, data, metadata, occurred_at, recorded_at, batch_first, batch_last)
		SELECT $11 + u.ord, $1, $12 + u.ord, 0, u.id, u.gen, u.typ, u.sv, u.ct, u.data, u.md::jsonb, u.occ, now(), $11 + 1, $11 + $2
		FROM unnest($3::uuid[], $4::boolean[], $5::text[], $6::integer[], $7::text[], $8::bytea[], $9::text[],
			$10::bigint[]) WITH ORDINALITY AS u(id, gen, typ, sv, ct, data, md, occ, ord)`,
		stream, int64(n), ids, gen, types, svs, cts, data, md, occ, base, version)
	return err
}

var benchCopyColumns = []string{"position", "stream", "version", "kind", "event_id", "generated", "type", "schema_version",
	"content_type", "data", "metadata", "occurred_at", "recorded_at", "batch_first", "batch_last"}

// copyRows are the rows a raw COPY writes for recs: the same as an import's.
func copyRows(recs []rewind.LogRecord) [][]any {
	rows := make([][]any, len(recs))
	for i, r := range recs {
		var md any
		if len(r.Metadata) > 0 {
			md = r.Metadata
		}
		rows[i] = []any{int64(r.Position), r.Stream, int64(r.Version), int16(0), [16]byte(r.ID), r.GeneratedID, r.Type,
			int32(max(r.SchemaVersion, 1)), r.ContentType, r.Data, md, nil, r.RecordedAt, int64(r.Position), int64(r.Position)}
	}
	return rows
}

// catchUpVsKeyset reads the first n events of the log by a subscription
// from 0 and by a keyset loop, 5000 events of one then of the other, and
// returns the time each took.
func catchUpVsKeyset(ctx context.Context, s *pgstore.Store, pool *pgxpool.Pool, table string, n int) (subT, keyT time.Duration, _ error) {
	sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		return 0, 0, err
	}
	defer sub.Close()
	var pos int64
	for done := 0; done < n; {
		k := min(5000, n-done)
		t0 := time.Now()
		for range k {
			if _, err := sub.Next(ctx); err != nil {
				return 0, 0, err
			}
		}
		t1 := time.Now()
		if pos, err = keysetRead(ctx, pool, table, pos, k); err != nil {
			return 0, 0, err
		}
		subT += t1.Sub(t0)
		keyT += time.Since(t1)
		done += k
	}
	return subT, keyT, nil
}

// keysetRead is the catch-up's reference: pages of 500 by position, the
// same columns scanned into Go values.
func keysetRead(ctx context.Context, pool *pgxpool.Pool, table string, pos int64, n int) (int64, error) {
	for read := 0; read < n; {
		rows, err := pool.Query(ctx, `SELECT position, stream, version, event_id, generated, type, schema_version, content_type,
				data, metadata, occurred_at, recorded_at, batch_first, batch_last
			FROM `+table+` WHERE position > $1 ORDER BY position LIMIT $2`, pos, min(500, n-read))
		if err != nil {
			return pos, err
		}
		got := 0
		for rows.Next() {
			var (
				stream, typ, ct string
				version, bf, bl int64
				id              uuid.UUID
				gen             bool
				sv              int32
				data            []byte
				md              map[string]string
				occ             *int64
				rec             time.Time
			)
			if err := rows.Scan(&pos, &stream, &version, &id, &gen, &typ, &sv, &ct, &data, &md, &occ, &rec, &bf, &bl); err != nil {
				rows.Close()
				return pos, err
			}
			got++
		}
		if err := rows.Err(); err != nil {
			return pos, err
		}
		if got == 0 {
			return pos, fmt.Errorf("keyset read: the table ends at position %d", pos)
		}
		read += got
	}
	return pos, nil
}
