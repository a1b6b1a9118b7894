package pgstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

// The log as records, for `rewind copy` (rewind.LogExporter and
// rewind.LogImporter). An import is one transaction that keeps the
// discipline of appends: it locks its streams' rows (in name order), takes
// the append lock, checks that its first record follows head.last, writes
// the records by COPY at their own positions, moves head.last to the last
// of them and commits, holding the lock to the end. So a reader of the
// target sees the whole import or none of it, never a gap, exactly as for
// an append.

var _ interface {
	rewind.LogExporter
	rewind.LogImporter
} = (*Store)(nil)

// copyColumns are the events columns an import writes, in CopyFrom's order.
var copyColumns = []string{"position", "stream", "version", "kind", "event_id", "generated", "type", "schema_version",
	"content_type", "data", "metadata", "occurred_at", "recorded_at", "batch_first", "batch_last"}

// ExportLog returns up to n records from position from on; see
// rewind.LogExporter. (The query is written as a subscription's page is,
// so that its plan walks the primary key without statistics too.)
func (s *Store) ExportLog(ctx context.Context, from rewind.Position, n int) ([]rewind.LogRecord, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	// h.last in the same snapshot tells a hole at the end of the page
	// (GapError) from the end of the log.
	q := `SELECT h.last, e.position, e.stream, e.version, e.kind, e.event_id, e.generated, e.type, e.schema_version,
			e.content_type, e.data, e.metadata, e.occurred_at, e.recorded_at, e.batch_last
		FROM (SELECT last FROM ` + quoteIdent(s.cfg.Schema) + `.head LIMIT 1) h LEFT JOIN LATERAL (
			SELECT * FROM ` + quoteIdent(s.cfg.Schema) + `.events
			WHERE position >= $1 AND position + 0 <= h.last ORDER BY position LIMIT $2) e ON true`
	first := int64(max(from, 1))
	rows, err := s.pool.Query(ctx, q, first, n)
	if err != nil {
		return nil, s.dbError("export", err)
	}
	defer rows.Close()
	var out []rewind.LogRecord
	var last int64
	for rows.Next() {
		var (
			r                        rewind.LogRecord
			pos, version, batchLast  *int64
			kind                     *int16
			sv                       *int32
			md                       map[string]string
			occurred                 *int64
			stream, typ, contentType *string
			id                       *uuid.UUID
			generated                *bool
			recordedAt               *time.Time
		)
		if err := rows.Scan(&last, &pos, &stream, &version, &kind, &id, &generated, &typ, &sv, &contentType,
			&r.Data, &md, &occurred, &recordedAt, &batchLast); err != nil {
			return nil, s.dbError("export", err)
		}
		if pos == nil {
			break // no event after from
		}
		if want := first + int64(len(out)); *pos != want {
			return nil, &GapError{Schema: s.cfg.Schema, Missing: rewind.Position(want)}
		}
		r.Stream, r.ID, r.GeneratedID, r.Type, r.ContentType = *stream, *id, *generated, *typ, *contentType
		r.Position, r.Version, r.SchemaVersion = rewind.Position(*pos), uint64(*version), uint32(*sv)
		r.Delete, r.BatchEnd = *kind == 1, *pos == *batchLast
		r.RecordedAt = recordedAt.UTC()
		if len(md) > 0 {
			r.Metadata = md
		}
		if occurred != nil {
			r.OccurredAt = time.Unix(0, *occurred).UTC()
		}
		if r.Data == nil {
			r.Data = []byte{}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbError("export", err)
	}
	if next := first + int64(len(out)); len(out) < n && next <= last {
		return nil, &GapError{Schema: s.cfg.Schema, Missing: rewind.Position(next)}
	}
	return out, nil
}

// importedStream is a stream's row as an import leaves it.
type importedStream struct {
	version, deleted, first, last int64
}

// ImportLog writes records at their own positions in one transaction; see
// rewind.LogImporter. PostgreSQL keeps recorded-at times to the
// microsecond: finer digits are dropped.
func (s *Store) ImportLog(ctx context.Context, records []rewind.LogRecord) error {
	if len(records) == 0 {
		return nil
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	if !records[len(records)-1].BatchEnd {
		return &rewind.ValidationError{Field: "records", Reason: "must end at the end of a batch"}
	}
	names := make([]string, 0, 16)
	for i := range records {
		r := &records[i]
		if err := store.ValidateStreamName(r.Stream); err != nil {
			return err
		}
		if !r.Delete {
			if err := store.ValidateEvent(&r.Event); err != nil {
				return err
			}
			if size := store.EncodedSize(r.Stream, &r.Event); size > s.cfg.MaxEventSize {
				return &rewind.LimitError{Limit: fmt.Sprintf("event at position %d size (bytes)", r.Position),
					Max: int64(s.cfg.MaxEventSize), Got: int64(size)}
			}
		}
		if r.SchemaVersion > 1<<31-1 {
			return &rewind.ValidationError{Field: "schema_version", Value: fmt.Sprint(r.SchemaVersion),
				Reason: "must be at most 2147483647"}
		}
		names = append(names, r.Stream)
	}
	slices.Sort(names)
	names = slices.Compact(names)

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.dbError("import: begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	schema := quoteIdent(s.cfg.Schema)
	// In one round trip: the streams' rows first, in name order, then the
	// append lock: the order appends take them in.
	states := make(map[string]*importedStream, len(names))
	var last int64
	var lastAtp *time.Time
	var lock pgx.Batch
	lock.Queue(`INSERT INTO `+schema+`.streams AS s (name, version, deleted, first_pos, last_pos)
			SELECT n, 0, 0, 0, 0 FROM unnest($1::text[]) WITH ORDINALITY AS u(n, o) ORDER BY o
			ON CONFLICT (name) DO UPDATE SET name = s.name
			RETURNING name, version, deleted, first_pos, last_pos`, names).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var name string
			st := &importedStream{}
			if err := rows.Scan(&name, &st.version, &st.deleted, &st.first, &st.last); err != nil {
				return err
			}
			states[name] = st
		}
		return rows.Err()
	})
	// head is read by a statement of its own after the lock's: under READ
	// COMMITTED a statement reads in the snapshot it took when it began,
	// so a read in the lock's statement would miss an append that held the
	// lock and committed while this one waited for it, and the COPY would
	// collide with that append's positions (TestImportAfterConcurrentAppend).
	lock.Queue(`SELECT pg_advisory_xact_lock($1, $2)`, s.lk1, s.lk2)
	lock.Queue(`SELECT last, nullif(recorded_at, '-infinity') FROM ` + schema + `.head`).
		QueryRow(func(row pgx.Row) error { return row.Scan(&last, &lastAtp) })
	if err := tx.SendBatch(ctx, &lock).Close(); err != nil {
		return s.dbError("import: lock the streams and the log", err)
	}
	if int64(records[0].Position) != last+1 {
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(records[0].Position),
			Reason: fmt.Sprintf("the first record must take the log's next position, %d: the target is no longer a "+
				"prefix of the source (did something else append to it?)", last+1)}
	}
	rowsIn := newImportRows(records, states, last, lastAtp)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{s.cfg.Schema, "events"}, copyColumns, rowsIn); err != nil {
		if rowsIn.err != nil {
			return rowsIn.err // a record refused: the transaction rolls back what was sent
		}
		if derr := s.duplicateImportID(ctx, records, err); derr != nil {
			return derr
		}
		return s.dbError("import: copy events", err)
	}
	at := rowsIn.at
	sv, sd, sf, sl := make([]int64, len(names)), make([]int64, len(names)), make([]int64, len(names)), make([]int64, len(names))
	for i, n := range names {
		st := states[n]
		sv[i], sd[i], sf[i], sl[i] = st.version, st.deleted, st.first, st.last
	}
	end := int64(records[len(records)-1].Position)
	var bb pgx.Batch
	bb.Queue(`UPDATE `+schema+`.streams s SET version = v.version, deleted = v.deleted, first_pos = v.f, last_pos = v.l
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v(name, version, deleted, f, l)
		WHERE s.name = v.name`, names, sv, sd, sf, sl)
	bb.Queue(`UPDATE `+schema+`.head SET last = $1, recorded_at = greatest(recorded_at, $2)`, end, at)
	bb.Queue(`SELECT pg_notify($1, '')`, channel(s.cfg.Schema))
	if err := tx.SendBatch(ctx, &bb).Close(); err != nil {
		return s.dbError("import: update streams and head", err)
	}
	// The commit is not interrupted: a chunk written whole is committed
	// even when the caller is cancelled meanwhile (an interrupted rewind
	// copy stops after it, exit 130), rather than left with an outcome
	// nobody knows. A commit PostgreSQL does not answer still ends.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitWait)
	defer cancel()
	if err := tx.Commit(cctx); err != nil {
		// An ERROR answering the COMMIT means it failed; a FATAL may
		// come after PostgreSQL committed (a session ended as it
		// answered), so its outcome is unknown, like a lost connection's.
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Severity != "FATAL" && pe.Severity != "PANIC" {
			return s.dbError("import: commit (nothing was written)", err)
		}
		return fmt.Errorf("%w: the import's commit got no answer (%w); run the copy again: it resumes from where the "+
			"target stands", rewind.ErrOutcomeUnknown, err)
	}
	s.signal()
	return nil
}

// commitWait bounds an import's commit, which the caller's cancellation
// does not interrupt.
const commitWait = 30 * time.Second

// Analyze updates PostgreSQL's statistics of the store's tables. A copy
// calls it after its imports: a table just filled by COPY has none until
// autovacuum comes by, and the planner, guessing, reads a subscription's
// pages by sorting everything after its position instead of walking the
// primary key (tens of times slower).
func (s *Store) Analyze(ctx context.Context) error {
	schema := quoteIdent(s.cfg.Schema)
	if _, err := s.pool.Exec(ctx, "ANALYZE "+schema+".events, "+schema+".streams, "+schema+".head"); err != nil {
		return s.dbError("analyze", err)
	}
	return nil
}

// duplicateImportID turns the refusal of an imported record whose event id
// the target holds already (the constraint events_event_id) into an
// IdempotencyConflictError naming both positions, or returns nil for other
// errors. An embedded log may hold an id twice — it accepts an id again
// when it made the first one up, or after its deduplication window — but
// PostgreSQL keeps ids unique for ever.
func (s *Store) duplicateImportID(ctx context.Context, records []rewind.LogRecord, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" || pe.ConstraintName != "events_event_id" {
		return nil
	}
	m := dupKey.FindStringSubmatch(pe.Detail)
	if m == nil {
		return nil
	}
	id, perr := uuid.Parse(m[1])
	if perr != nil {
		return nil
	}
	var at []rewind.Position
	for i := range records {
		if records[i].ID == id {
			at = append(at, records[i].Position)
		}
	}
	if len(at) == 0 {
		return nil
	}
	first, again := at[0], at[0]
	if len(at) > 1 {
		again = at[1] // twice in this chunk
	} else {
		var pos int64
		q := `SELECT position FROM ` + quoteIdent(s.cfg.Schema) + `.events WHERE event_id = $1`
		if s.pool.QueryRow(context.WithoutCancel(ctx), q, id).Scan(&pos) != nil {
			return nil
		}
		first = rewind.Position(pos)
	}
	return &rewind.IdempotencyConflictError{EventID: id.String(), Position: first,
		Reason: fmt.Sprintf("the source holds it again at position %d (the embedded store accepts an id again when it "+
			"made the first one up, or after its deduplication window), and PostgreSQL keeps event ids unique: this "+
			"log cannot be copied into PostgreSQL past position %d; nothing of the chunk from position %d was written",
			again, again-1, records[0].Position)}
}

// dupKey finds the id in PostgreSQL's detail of a unique violation.
var dupKey = regexp.MustCompile(`\(event_id\)=\(([0-9a-fA-F-]{36})\)`)
