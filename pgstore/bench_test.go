package pgstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

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
	b.ResetTimer()
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("bench-%d", w)
			var version int64
			for next.Add(1) <= int64(b.N) {
				evs := mkBatch()
				t0 := time.Now()
				if _, err := s.Append(ctx, stream, rewind.Any, evs...); err != nil {
					b.Error(err)
					return
				}
				t1 := time.Now()
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
}
