package pgstore

import (
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// sqlText holds the store's statements, with its schema written in.
type sqlText struct {
	lockStream, lockStreamForDelete, insert, tombstone string
	selectCols                                         string
	head, streamInfo, listStreams, count               string
	readForward, readBackward, readAll, firstAt, poll  string
	pollAll                                            string
	horizon, blocked                                   string
}

// The columns of an event, in the order scanRow reads them.
const eventCols = `position, stream, version, event_id, generated, type, schema_version, content_type, data, metadata,
	occurred_at, recorded_at, batch_first, batch_last`

func newSQL(schema string) sqlText {
	r := strings.NewReplacer("S.", quoteIdent(schema)+".")
	return sqlText{
		// Locks the stream's row, made if missing (an append that fails
		// rolls it back), and reads its version.
		lockStream: r.Replace(`INSERT INTO S.streams AS s (name, version, deleted, first_pos, last_pos) VALUES ($1, 0, 0, 0, 0)
			ON CONFLICT (name) DO UPDATE SET name = s.name RETURNING version, deleted`),
		lockStreamForDelete: r.Replace(`SELECT version, deleted FROM S.streams WHERE name = $1 FOR UPDATE`),
		// Takes the append lock, then positions from the head row, and
		// writes. An id recorded already fails it on events_event_id
		// (after waiting for a transaction still writing it). The lock is held
		// to the commit, so positions are given out and become visible in
		// one order: a reader that sees position p sees everything before.
		// Takes the append lock, then positions from the head row for
		// every event of the group, inserts them and updates the streams
		// (one row of $16.. each). An id recorded already fails it on
		// events_event_id (after waiting for a transaction still writing
		// it). The lock is held to the commit, so positions are given out
		// and become visible in one order: a reader that sees position p
		// sees everything before.
		insert: r.Replace(`WITH lk AS MATERIALIZED (SELECT pg_advisory_xact_lock($1, $2)),
			h AS (UPDATE S.head SET last = last + $3, recorded_at = greatest(recorded_at, clock_timestamp())
				FROM lk RETURNING last - $3 AS base, recorded_at),
			ins AS (INSERT INTO S.events (position, stream, version, kind, event_id, generated, type, schema_version,
					content_type, data, metadata, occurred_at, recorded_at, batch_first, batch_last)
				SELECT h.base + u.ord, u.stream, u.version, 0, u.id, u.gen, u.typ, u.sv, u.ct, u.data, u.md::jsonb, u.occ,
					h.recorded_at, h.base + u.bfirst, h.base + u.blast
				FROM h, unnest($4::text[], $5::bigint[], $6::uuid[], $7::boolean[], $8::text[], $9::integer[], $10::text[],
					$11::bytea[], $12::text[], $13::bigint[], $14::bigint[], $15::bigint[])
					WITH ORDINALITY AS u(stream, version, id, gen, typ, sv, ct, data, md, occ, bfirst, blast, ord)
				RETURNING 1),
			st AS (UPDATE S.streams s SET version = v.version,
					first_pos = CASE WHEN v.first_off > 0 THEN h.base + v.first_off ELSE s.first_pos END,
					last_pos = h.base + v.last_off
				FROM h, unnest($16::text[], $17::bigint[], $18::bigint[], $19::bigint[]) AS v(name, version, first_off, last_off)
				WHERE s.name = v.name RETURNING 1)
			SELECT h.base, h.recorded_at
			FROM h, (SELECT count(*) FROM ins) AS i, (SELECT count(*) FROM st) AS st, (SELECT pg_notify($20, '')) AS n`),
		tombstone: r.Replace(`WITH lk AS MATERIALIZED (SELECT pg_advisory_xact_lock($4, $5)),
			h AS (UPDATE S.head SET last = last + 1, recorded_at = greatest(recorded_at, clock_timestamp())
				FROM lk RETURNING last AS pos, recorded_at),
			ins AS (INSERT INTO S.events (position, stream, version, kind, event_id, generated, type, schema_version,
					content_type, data, metadata, occurred_at, recorded_at, batch_first, batch_last)
				SELECT h.pos, $1, $3, 1, $2, true, '` + rewind.TypeStreamDeleted + `', 1, '` + rewind.DefaultContentType + `',
					'', NULL, NULL, h.recorded_at, h.pos, h.pos FROM h RETURNING 1),
			st AS (UPDATE S.streams SET deleted = version, first_pos = 0, last_pos = 0 WHERE name = $1 RETURNING 1)
			SELECT h.pos FROM h, (SELECT count(*) FROM ins) AS i, (SELECT count(*) FROM st) AS st,
				(SELECT pg_notify($6, '')) AS n`),
		selectCols: r.Replace(`SELECT ` + eventCols + ` FROM S.events`),
		head:       r.Replace(`SELECT last FROM S.head`),
		streamInfo: r.Replace(`SELECT name, version, deleted, first_pos, last_pos FROM S.streams WHERE name = $1 AND version > 0`),
		listStreams: r.Replace(`SELECT name, version, deleted, first_pos, last_pos FROM S.streams
			WHERE version > 0 AND name >= $1::text COLLATE "C" AND starts_with(name, $1) AND name > $2::text COLLATE "C"
				AND ($3 OR version > deleted)
			ORDER BY name LIMIT $4`),
		count: r.Replace(`SELECT (SELECT last FROM S.head), (SELECT count(*) FROM S.streams WHERE version > 0)`),
		// One statement, one snapshot: the stream's state and its events.
		readForward: r.Replace(`SELECT s.version, s.deleted, e.* FROM S.streams s LEFT JOIN LATERAL (
				SELECT ` + eventCols + ` FROM S.events
				WHERE stream = s.name AND kind = 0 AND version > s.deleted AND version >= $2
				ORDER BY version LIMIT $3) e ON true
			WHERE s.name = $1 AND s.version > 0`),
		readBackward: r.Replace(`SELECT s.version, s.deleted, e.* FROM S.streams s LEFT JOIN LATERAL (
				SELECT ` + eventCols + ` FROM S.events
				WHERE stream = s.name AND kind = 0 AND version > s.deleted AND version <= $2
				ORDER BY version DESC LIMIT $3) e ON true
			WHERE s.name = $1 AND s.version > 0`),
		// A page of the log between two positions, filtered.
		readAll: r.Replace(`SELECT ` + eventCols + ` FROM S.events
			WHERE position >= $1 AND position <= $2 AND starts_with(stream, $3) AND (cardinality($4::text[]) = 0 OR type = ANY($4))
			ORDER BY position LIMIT $5`),
		firstAt: r.Replace(`SELECT min(position) FROM S.events WHERE recorded_at >= $1`),
		// The log's end and the page after a subscription's position, in
		// one snapshot.
		// Written for the plan a page needs, the primary key walked from
		// the position, whatever the statistics: in a store just filled
		// (none until autovacuum analyzes it) the planner guesses thousands
		// of head rows (LIMIT 1 says one; else it JIT-compiles every
		// page) and few events passing the bounds and the filters
		// (position + 0 keeps the upper bound out of the index range, and
		// $2 = '' lets an empty prefix fold away; else it sorts the rest of
		// the log for each page: 0.03-0.05 x a keyset read instead of ~0.7 x).
		poll: r.Replace(`SELECT h.last, e.* FROM (SELECT last FROM S.head LIMIT 1) h LEFT JOIN LATERAL (
				SELECT ` + eventCols + ` FROM S.events
				WHERE position > $1 AND position + 0 <= h.last AND ($2 = '' OR starts_with(stream, $2))
					AND (cardinality($3::text[]) = 0 OR type = ANY($3))
				ORDER BY position LIMIT ` + strconv.Itoa(readPage) + `) e ON true`),
		// The same for a subscription without a filter, which is most of
		// them, with nothing left for the planner to decide from the
		// parameters: its generic plan is the custom one, so PostgreSQL
		// keeps it after five pages instead of planning every page again
		// (the filtered page's generic plan looks dearer to it, as the
		// filters' selectivity is unknown, so it plans each page: ~0.1-0.7 ms).
		pollAll: r.Replace(`SELECT h.last, e.* FROM (SELECT last FROM S.head LIMIT 1) h LEFT JOIN LATERAL (
				SELECT ` + eventCols + ` FROM S.events
				WHERE position > $1 AND position + 0 <= h.last
				ORDER BY position LIMIT ` + strconv.Itoa(readPage) + `) e ON true`),
		// The sessions waiting for a lock on a stream's row or on the
		// head row (which every append updates): a waiter for a row lock
		// holds or waits for the row's tuple lock while it waits.
		blocked: r.Replace(`SELECT a.pid, now() - a.query_start, a.wait_event_type || ':' || a.wait_event,
				pg_blocking_pids(a.pid)
			FROM pg_stat_activity a
			WHERE a.wait_event_type = 'Lock' AND a.pid IN (SELECT pid FROM pg_locks
				WHERE locktype = 'tuple' AND relation IN ('S.streams'::regclass, 'S.head'::regclass))
			ORDER BY a.query_start`),
		horizon: r.Replace(`SELECT (SELECT last FROM S.head),
				(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2::oid
					AND objsubid = 2 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())),
				a.pid, a.xact_start, now() - a.xact_start, a.state, a.wait_event_type, a.wait_event
			FROM (SELECT 1) one LEFT JOIN (pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid)
				ON l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 2 AND l.granted
				AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`),
	}
}

// row is an event as read, with what idempotency checks need.
type row struct {
	ev                    rewind.RecordedEvent
	generated             bool
	batchFirst, batchLast int64
}

// scanRow reads the columns of eventCols.
func scanRow(rows pgx.Rows) (*row, error) {
	var r row
	if _, err := scanInto(rows, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// scanInto reads the columns of eventCols after prefix. It reports false
// when they are NULL: the outer side of a LEFT JOIN found no event.
func scanInto(rows pgx.CollectableRow, r *row, prefix ...any) (bool, error) {
	var (
		pos, version, occurred, bf, bl *int64
		stream, typ, ct                *string
		gen                            *bool
		sv                             *int32
		md                             map[string]string
		id                             *uuid.UUID
		rec                            *time.Time
		data                           []byte
	)
	dest := append(prefix, &pos, &stream, &version, &id, &gen, &typ, &sv, &ct, &data, &md, &occurred, &rec, &bf, &bl)
	if err := rows.Scan(dest...); err != nil {
		return false, err
	}
	if pos == nil {
		return false, nil
	}
	r.ev = rewind.RecordedEvent{Event: rewind.Event{ID: *id, Type: *typ, SchemaVersion: uint32(*sv), ContentType: *ct,
		Data: data}, Stream: *stream, Version: uint64(*version), Position: rewind.Position(*pos), RecordedAt: rec.UTC()}
	r.generated, r.batchFirst, r.batchLast = *gen, *bf, *bl
	if len(md) > 0 {
		r.ev.Metadata = md
	}
	if occurred != nil {
		r.ev.OccurredAt = time.Unix(0, *occurred).UTC()
	}
	if r.ev.Data == nil {
		r.ev.Data = []byte{}
	}
	return true, nil
}
