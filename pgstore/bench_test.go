package pgstore

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// BenchmarkAppendVsInsert measures batched appends against the reference a
// hand-written event table would get: one INSERT … SELECT unnest(…) per
// batch of the same rows, in autocommit, into a copy of the events table
// with the same indexes (positions and versions computed by the client,
// nothing checked). The two run interleaved, batch for batch, in the same
// run, so that the machine's load weighs on both alike; the figure is the
// ratio of their throughputs (append/insert, higher is better).
//
// With one writer it also reports the heap allocations of an append per
// event (its validation and encoding, and the committer's write).
//
// writers=1 measures the cost of what an append does beyond the insert
// (the stream's lock and expected version, the append lock, the head row,
// the stream row, NOTIFY); writers=8 with one event per append measures
// what the append lock costs when appends take turns, against inserts
// that do not.
func BenchmarkAppendVsInsert(b *testing.B) {
	for _, c := range []struct{ writers, batch int }{{1, 100}, {1, 1000}, {8, 1}, {8, 100}} {
		b.Run(fmt.Sprintf("writers=%d/batch=%d", c.writers, c.batch), func(b *testing.B) {
			benchAppendVsInsert(b, c.writers, c.batch)
		})
	}
}

func benchAppendVsInsert(b *testing.B, writers, batch int) {
	db := &testDB{DB: newBenchDB(b)}
	ctx := context.Background()
	schema := "bench"
	if _, err := Migrate(ctx, db.DSN, Config{Schema: schema}); err != nil {
		b.Fatal(err)
	}
	s, err := Open(ctx, db.DSN, Config{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	db.Exec(b, `CREATE TABLE raw (LIKE bench.events INCLUDING ALL)`)
	mkBatch := func() []rewind.Event {
		evs := make([]rewind.Event, batch)
		for i := range evs {
			evs[i] = rewind.Event{ID: uuid.New(), Type: "OrderPlaced", Data: []byte(`{"order":12345,"total":"99.50","items":3}`),
				Metadata: map[string]string{"correlation": "c-1"}}
		}
		return evs
	}
	var rawPos atomic.Int64
	insert := func(stream string, version int64, evs []rewind.Event) error {
		bt, err := s.encode(stream, evs)
		if err != nil {
			return err
		}
		n := int64(len(evs))
		base := rawPos.Add(n) - n
		_, err = db.Pool.Exec(ctx, `INSERT INTO raw (position, stream, version, kind, event_id, generated, type, schema_version,
				content_type, data, metadata, occurred_at, recorded_at, batch_first, batch_last)
			SELECT $11 + u.ord, $1, $12 + u.ord, 0, u.id, u.gen, u.typ, u.sv, u.ct, u.data, u.md::jsonb, u.occ, now(), $11 + 1, $11 + $2
			FROM unnest($3::uuid[], $4::boolean[], $5::text[], $6::integer[], $7::text[], $8::bytea[], $9::text[],
				$10::bigint[]) WITH ORDINALITY AS u(id, gen, typ, sv, ct, data, md, occ, ord)`,
			stream, n, bt.ids, bt.generated, bt.types, bt.schemas, bt.contents, bt.data, bt.metadata, bt.occurred, base, version)
		return err
	}
	var appendTime, insertTime atomic.Int64
	var appendAllocs atomic.Uint64 // with one writer: nothing else runs during its appends
	b.ResetTimer()
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("bench-%d", w)
			var version int64
			for next.Add(1) <= int64(b.N) {
				evs := mkBatch()
				var a0 uint64
				if writers == 1 {
					a0 = mallocs()
				}
				t0 := time.Now()
				if _, err := s.Append(ctx, stream, rewind.Any, evs...); err != nil {
					b.Error(err)
					return
				}
				t1 := time.Now()
				if writers == 1 {
					appendAllocs.Add(mallocs() - a0)
				}
				if err := insert(stream, version, mkBatch()); err != nil {
					b.Error(err)
					return
				}
				t2 := time.Now()
				version += int64(batch)
				appendTime.Add(int64(t1.Sub(t0)))
				insertTime.Add(int64(t2.Sub(t1)))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	events := float64(b.N * batch)
	// Per writer, each side's time is its own; across writers, the sum
	// of times divided by the writers is the wall time each side took.
	appendSec := float64(appendTime.Load()) / 1e9 / float64(writers)
	insertSec := float64(insertTime.Load()) / 1e9 / float64(writers)
	b.ReportMetric(events/appendSec, "append_events/s")
	b.ReportMetric(events/insertSec, "insert_events/s")
	b.ReportMetric(insertSec/appendSec, "ratio")
	if writers == 1 {
		b.ReportMetric(float64(appendAllocs.Load())/events, "append_allocs/event")
	}
}

// benchEvents are n events shaped like rewind bench pgstore's: a small JSON
// body and one metadata entry.
func benchEvents(n int) []rewind.Event {
	evs := make([]rewind.Event, n)
	for i := range evs {
		evs[i] = rewind.Event{ID: uuid.New(), Type: "OrderPlaced", Data: []byte(`{"order":12345,"total":"99.50","items":3}`),
			Metadata: map[string]string{"correlation": "c-1"}}
	}
	return evs
}

// benchStore is a store holding n events appended 1000 at a time to ten
// streams, analyzed.
func benchStore(b *testing.B, n int) (*Store, *testDB) {
	db := &testDB{DB: newBenchDB(b)}
	ctx := context.Background()
	if _, err := Migrate(ctx, db.DSN, Config{Schema: "bench"}); err != nil {
		b.Fatal(err)
	}
	s, err := Open(ctx, db.DSN, Config{Schema: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for i := 0; i < n; i += 1000 {
		if _, err := s.Append(ctx, fmt.Sprintf("bench-%d", i/1000%10), rewind.Any, benchEvents(min(1000, n-i))...); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Analyze(ctx); err != nil {
		b.Fatal(err)
	}
	return s, db
}

// mallocs is the process's count of heap allocations so far.
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// BenchmarkCatchUp reads a log of 20,000 events by a subscription from 0,
// interleaved pass for pass with the keyset loop `rewind bench pgstore`
// compares it with (pages of 500 by position, the same columns scanned
// into Go values). It reports each side's heap allocations per event,
// which do not depend on the machine's load, and the throughput ratio
// (subscription/keyset, higher is better).
func BenchmarkCatchUp(b *testing.B) {
	const n = 20_000
	s, db := benchStore(b, n)
	ctx := context.Background()
	var subT, keyT time.Duration
	var subA, keyA uint64
	b.ResetTimer()
	for range b.N {
		a0, t0 := mallocs(), time.Now()
		sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := sub.Next(ctx); err != nil {
				b.Fatal(err)
			}
		}
		sub.Close()
		a1, t1 := mallocs(), time.Now()
		for pos, read := int64(0), 0; read < n; {
			rows, err := db.Pool.Query(ctx, `SELECT `+eventCols+` FROM bench.events WHERE position > $1 ORDER BY position LIMIT $2`, pos, 500)
			if err != nil {
				b.Fatal(err)
			}
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
					b.Fatal(err)
				}
				read++
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
		}
		a2, t2 := mallocs(), time.Now()
		subT, keyT = subT+t1.Sub(t0), keyT+t2.Sub(t1)
		subA, keyA = subA+a1-a0, keyA+a2-a1
	}
	b.StopTimer()
	events := float64(b.N * n)
	b.ReportMetric(float64(subA)/events, "sub_allocs/event")
	b.ReportMetric(float64(keyA)/events, "keyset_allocs/event")
	b.ReportMetric(events/subT.Seconds(), "sub_events/s")
	b.ReportMetric(keyT.Seconds()/subT.Seconds(), "ratio")
}

// BenchmarkImportLog imports a log of 20,000 records into a second store in
// transactions of 5000 records (rewind copy's default), interleaved chunk
// for chunk with a raw COPY of the same rows into a table like events, as
// `rewind bench pgstore` does. It reports the import's heap allocations per
// record and the throughput ratio (import/COPY, higher is better).
func BenchmarkImportLog(b *testing.B) {
	const n, chunk = 20_000, 5000
	src, db := benchStore(b, n)
	ctx := context.Background()
	recs, err := src.ExportLog(ctx, 1, n)
	if err != nil {
		b.Fatal(err)
	}
	var impT, copyT time.Duration
	var impA uint64
	b.ResetTimer()
	for i := range b.N {
		schema := fmt.Sprintf("imp%d", i)
		b.StopTimer()
		if _, err := Migrate(ctx, db.DSN, Config{Schema: schema}); err != nil {
			b.Fatal(err)
		}
		dst, err := Open(ctx, db.DSN, Config{Schema: schema})
		if err != nil {
			b.Fatal(err)
		}
		db.Exec(b, `CREATE TABLE `+schema+`.raw (LIKE bench.events INCLUDING ALL)`)
		b.StartTimer()
		for at := 0; at < n; at += chunk {
			part := recs[at : at+chunk]
			rows := make([][]any, len(part))
			for j, r := range part {
				var md any
				if len(r.Metadata) > 0 {
					md = r.Metadata
				}
				rows[j] = []any{int64(r.Position), r.Stream, int64(r.Version), int16(0), [16]byte(r.ID), r.GeneratedID, r.Type,
					int32(max(r.SchemaVersion, 1)), r.ContentType, r.Data, md, nil, r.RecordedAt, int64(r.Position), int64(r.Position)}
			}
			a0, t0 := mallocs(), time.Now()
			if err := dst.ImportLog(ctx, part); err != nil {
				b.Fatal(err)
			}
			a1, t1 := mallocs(), time.Now()
			if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{schema, "raw"}, copyColumns, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
			impT, copyT = impT+t1.Sub(t0), copyT+time.Since(t1)
			impA += a1 - a0
		}
		dst.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(impA)/float64(b.N*n), "import_allocs/record")
	b.ReportMetric(float64(b.N*n)/impT.Seconds(), "import_records/s")
	b.ReportMetric(copyT.Seconds()/impT.Seconds(), "ratio")
}
