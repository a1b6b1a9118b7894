package backfill

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// TableSink writes a process function's changes to a PostgreSQL table in
// the target database, in the chunk's transaction: an UPDATE of the rows
// with the changes' keys or, with Upsert, an INSERT … ON CONFLICT DO
// UPDATE. Rows that already hold the values are not written, and do not
// count as changed. Values travel as JSON and are converted with the
// columns' input functions: []byte becomes bytea, time.Time a timestamp.
type TableSink struct {
	// Table is the table, optionally schema-qualified.
	Table string
	// Key lists the columns of a primary key or unique index that identify
	// the rows to write; every change's Row holds them.
	Key []string
	// Upsert inserts rows that do not exist yet.
	Upsert bool

	t *Table
}

func (s *TableSink) describe() map[string]any {
	return map[string]any{"table": s.Table, "key": s.Key, "upsert": s.Upsert}
}

func (s *TableSink) prepare(ctx context.Context, db querier) error {
	s.t = &Table{Name: s.Table, Key: s.Key}
	if err := s.t.prepare(ctx, db, pgx.NamedArgs{}); err != nil {
		if ve, ok := err.(*rewind.ValidationError); ok {
			ve.Field = "sink " + ve.Field
		}
		return err
	}
	return nil
}

// write writes changes and returns the number of rows written, saving
// their before-images when env says so.
func (s *TableSink) write(ctx context.Context, env *chunkEnv, changes []Change) (int64, error) {
	if len(changes) == 0 {
		return 0, nil
	}
	colSet := map[string]bool{}
	rows := make([]map[string]any, len(changes))
	for i, c := range changes {
		for _, k := range s.Key {
			if _, ok := c.Row[k]; !ok {
				return 0, &ItemError{Key: c.Key, Err: fmt.Errorf("change has no value for the sink's key column %q", k)}
			}
		}
		row := make(map[string]any, len(c.Row))
		for col, v := range c.Row {
			if _, ok := s.t.types[col]; !ok {
				return 0, &ItemError{Key: c.Key, Err: fmt.Errorf("table %s has no column %q", s.t.ref, col)}
			}
			colSet[col] = true
			row[col] = jsonValue(v)
		}
		rows[i] = row
	}
	cols := slices.Sorted(maps.Keys(colSet))
	var defs, sets, olds, news, names []string
	for _, c := range cols {
		defs = append(defs, quote(c)+" "+s.t.types[c])
		names = append(names, quote(c))
		if slices.Contains(s.Key, c) {
			continue
		}
		sets = append(sets, quote(c)+" = v."+quote(c))
		olds = append(olds, "t."+quote(c)+"::text")
		news = append(news, "v."+quote(c)+"::text")
	}
	payload, err := json.Marshal(rows)
	if err != nil {
		return 0, fmt.Errorf("encode changes for %s: %w", s.t.ref, err)
	}
	recordset := fmt.Sprintf("jsonb_to_recordset(CAST(@_rw_rows AS jsonb)) AS v(%s)", strings.Join(defs, ", "))
	var q string
	switch {
	case s.Upsert && len(sets) == 0:
		q = fmt.Sprintf("INSERT INTO %s AS t (%s) SELECT %s FROM %s ON CONFLICT (%s) DO NOTHING",
			s.t.ref, strings.Join(names, ", "), "v."+strings.Join(names, ", v."), recordset, s.t.keyCols(""))
	case s.Upsert:
		excluded := strings.ReplaceAll(strings.Join(sets, ", "), "= v.", "= EXCLUDED.")
		q = fmt.Sprintf("INSERT INTO %s AS t (%s) SELECT %s FROM %s ON CONFLICT (%s) DO UPDATE SET %s WHERE ROW(%s) IS DISTINCT FROM ROW(%s)",
			s.t.ref, strings.Join(names, ", "), "v."+strings.Join(names, ", v."), recordset, s.t.keyCols(""), excluded,
			strings.Join(olds, ", "), strings.ReplaceAll(strings.Join(news, ", "), "v.", "EXCLUDED."))
	case len(sets) == 0:
		return 0, nil
	default:
		q = fmt.Sprintf("UPDATE %s t SET %s FROM %s WHERE (%s) = (%s) AND ROW(%s) IS DISTINCT FROM ROW(%s)",
			s.t.ref, strings.Join(sets, ", "), recordset, s.t.keyCols("t."), s.t.keyCols("v."),
			strings.Join(olds, ", "), strings.Join(news, ", "))
	}
	if env.images {
		return s.writeImaged(ctx, env, q, recordset, string(payload))
	}
	tag, err := env.tx.Exec(ctx, q, pgx.NamedArgs{"_rw_rows": string(payload)})
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// writeImaged runs the sink's write q with its rows' before-images
// (rowImager): the rows with the changes' keys are locked first, so that
// none changes between the write's snapshot and the write.
func (s *TableSink) writeImaged(ctx context.Context, env *chunkEnv, q, recordset, payload string) (int64, error) {
	a := pgx.NamedArgs{"_rw_rows": payload}
	lock := fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM %s t WHERE (%s) IN (SELECT %s FROM %s) FOR NO KEY UPDATE OF t) x",
		s.t.ref, s.t.keyCols("t."), s.t.keyCols("v."), recordset)
	if _, err := env.tx.Exec(ctx, lock, bindArgs(a)); err != nil {
		return 0, err
	}
	kind := "UpdateStmt"
	if s.Upsert {
		kind = "InsertStmt"
	}
	im := rowImager{t: s.t, ref: "t", kind: kind}
	imageArgs(a, env, s.t, imageRows, s.t.order)
	var n, noImage int64
	err := env.tx.QueryRow(ctx, "WITH _rw_w AS (\n"+q+"\nRETURNING "+im.returning()+"\n)"+im.ctes()+
		"\nSELECT count(*), "+unimaged+" FROM _rw_w", bindArgs(a)).Scan(&n, &noImage)
	if err != nil {
		return 0, err
	}
	if noImage > 0 {
		return 0, errChangedMeanwhile(fmt.Sprintf("%d row(s) of sink table %s", noImage, s.t.ref))
	}
	return n, nil
}

// jsonValue converts a Go value to what PostgreSQL's input functions read
// back from JSON text.
func jsonValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return `\x` + hex.EncodeToString(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case fmt.Stringer:
		if _, ok := v.(json.Marshaler); !ok {
			return x.String()
		}
	}
	return v
}

// writeSink hands changes to the job's sink.
func writeSink(ctx context.Context, sink Sink, env *chunkEnv, changes []Change) (int64, error) {
	switch s := sink.(type) {
	case *TableSink:
		return s.write(ctx, env, changes)
	case *StoreSink:
		return s.write(ctx, env, changes)
	}
	return 0, fmt.Errorf("backfill: unknown sink %T", sink)
}
