package backfill

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// imageHeader is what an image row says of itself: the table it is of,
// its key columns, what it holds and of which columns.
type imageHeader struct {
	rel     string
	kind    string
	keyCols []string
	cols    []string
}

func (h imageHeader) same(o imageHeader) bool {
	return h.rel == o.rel && h.kind == o.kind && slices.Equal(h.keyCols, o.keyCols) && slices.Equal(h.cols, o.cols)
}

// restorer builds the SQL that compares a run's before-images with the
// table as it is now and puts back what can be put back.
//
// Each image row gets an action (_rw_act):
//
//	update, insert, delete  what restoring it takes
//	none                    the row is as before already (or an inserted row is gone)
//	conflict                the row changed since the run wrote it (or was deleted,
//	                        or inserted again): skipped unless forced
//	deleted                 a set job's row deleted since: its image holds only the
//	                        changed columns, so it cannot be put back
//
// "Changed since the run wrote it" compares the row's current values with
// the values the chunk wrote, column by column with the columns' types
// (a column without an equality operator, such as json, as text).
type restorer struct {
	h        imageHeader
	t        *Table
	idx      map[string]int  // column → its 1-based place in the image's values
	present  []string        // the image's columns the table still has
	missing  []string        // the image's columns the table no longer has
	writable []string        // present, not generated: what an INSERT restores
	settable []string        // writable, not GENERATED ALWAYS AS IDENTITY: what an UPDATE restores
	noEq     map[string]bool // compared as text
}

// newRestorer checks the image's table as it is now.
func newRestorer(ctx context.Context, db querier, h imageHeader) (*restorer, error) {
	t := &Table{Name: h.rel, Key: h.keyCols}
	if err := t.prepare(ctx, db, pgx.NamedArgs{}); err != nil {
		return nil, fmt.Errorf("the table run images are of, %s: %w", h.rel, err)
	}
	rs := &restorer{h: h, t: t, idx: map[string]int{}, noEq: map[string]bool{}}
	special := map[string]string{}
	rows, err := db.Query(ctx, `SELECT attname, CASE WHEN attgenerated <> '' THEN 'generated' WHEN attidentity = 'a' THEN 'identity' ELSE '' END
		FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, t.oid)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.ref, err)
	}
	for rows.Next() {
		var name, what string
		if err := rows.Scan(&name, &what); err != nil {
			rows.Close()
			return nil, err
		}
		special[name] = what
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.ref, err)
	}
	for i, c := range h.cols {
		rs.idx[c] = i + 1
		if _, ok := t.types[c]; !ok {
			rs.missing = append(rs.missing, c)
			continue
		}
		rs.present = append(rs.present, c)
		if special[c] != "generated" {
			rs.writable = append(rs.writable, c)
			if special[c] != "identity" {
				rs.settable = append(rs.settable, c)
			}
		}
		if rs.noEq[c], err = noEquality(ctx, db, t, c); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// noEquality reports whether column c of t is compared as text: its
// type has no equality operator (json, point), or holds one that has
// none (see noEqInside).
func noEquality(ctx context.Context, db querier, t *Table, c string) (bool, error) {
	q := fmt.Sprintf("SELECT t.%s IS DISTINCT FROM t.%s FROM %s t", quote(c), quote(c), t.ref)
	if _, err := explainText(ctx, db, q, nil); err != nil {
		return true, nil
	}
	return noEqInside(ctx, db, t, c)
}

// noEqInside reports whether column c's type holds, inside an array,
// composite, range or multirange (or a domain over one), a type without
// a default btree operator class (json, point): PostgreSQL plans the
// comparison of such a container and fails only when it compares two
// values that reach that type, which one value compared with itself need
// not do (an empty range, an array of NULLs). So the type's tree is read
// from the catalog instead.
func noEqInside(ctx context.Context, db querier, t *Table, c string) (bool, error) {
	var inside bool
	err := db.QueryRow(ctx, `WITH RECURSIVE n(typ) AS (
			SELECT atttypid FROM pg_attribute WHERE attrelid = $1 AND attname = $2
			UNION
			SELECT s.sub FROM n JOIN pg_type y ON y.oid = n.typ CROSS JOIN LATERAL (
				SELECT y.typbasetype WHERE y.typtype = 'd'
				UNION ALL SELECT y.typelem WHERE y.typcategory = 'A' AND y.typelem <> 0
				UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE y.typtype = 'c' AND a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped
				UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE y.typtype = 'r' AND r.rngtypid = y.oid
				UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE y.typtype = 'm' AND r.rngmultitypid = y.oid) s(sub))
		SELECT count(*) FILTER (WHERE y.typtype IN ('c', 'r', 'm') OR y.typcategory = 'A') > 0 AND
			count(*) FILTER (WHERE y.typtype NOT IN ('c', 'r', 'm', 'd') AND NOT (y.typcategory = 'A' AND y.typelem <> 0)
				AND NOT EXISTS (SELECT FROM pg_opclass o JOIN pg_am m ON m.oid = o.opcmethod AND m.amname = 'btree'
					WHERE o.opcdefault AND (o.opcintype = y.oid OR (y.typtype = 'e' AND o.opcintype = 'anyenum'::regtype)
						OR EXISTS (SELECT FROM pg_cast k WHERE k.castsource = y.oid AND k.casttarget = o.opcintype AND k.castmethod = 'b'
							AND k.castcontext = 'i')))) > 0
		FROM n JOIN pg_type y ON y.oid = n.typ`, t.oid, c).Scan(&inside)
	if err != nil {
		return false, fmt.Errorf("read the type of column %s of %s: %w", c, t.ref, err)
	}
	return inside, nil
}

func (rs *restorer) value(arr, c string) string { return rs.valueIn(arr, c, false) }

// valueIn is value, of a flat arr: an image of one column read as its
// one element's text rather than as a text[] of one (see fastSQL).
func (rs *restorer) valueIn(arr, c string, flat bool) string {
	return fmt.Sprintf("CAST(%s AS %s)", rs.elem(arr, c, flat), rs.t.types[c])
}

// elem is the text of image column c in arr (flat: arr is that text).
func (rs *restorer) elem(arr, c string, flat bool) string {
	if flat {
		return arr
	}
	return fmt.Sprintf("%s[%d]", arr, rs.idx[c])
}

// differs compares the row t with the image values arr, column by column.
func (rs *restorer) differs(arr string) string { return rs.differsIn(arr, false) }

// differsIn is differs, of a flat arr (see valueIn).
func (rs *restorer) differsIn(arr string, flat bool) string {
	if len(rs.present) == 0 {
		return "false"
	}
	var now, then []string
	for _, c := range rs.present {
		if rs.noEq[c] {
			now, then = append(now, "t."+quote(c)+"::text"), append(then, rs.elem(arr, c, flat))
		} else {
			now, then = append(now, "t."+quote(c)), append(then, rs.valueIn(arr, c, flat))
		}
	}
	return fmt.Sprintf("ROW(%s) IS DISTINCT FROM ROW(%s)", strings.Join(now, ", "), strings.Join(then, ", "))
}

// classify is the WITH parts every statement of a restore shares: _rw_m,
// the image rows of @_rw_r's chunks @_rw_seqs (only the keys rollback run
// @_rw_prev left as conflicts, when it is not NULL); _rw_c, each with the table's row now, as the
// statement's snapshot sees it; _rw_x, each with its action (@_rw_force
// turns conflicts into restores).
func (rs *restorer) classify() string {
	keyMatch := make([]string, len(rs.t.Key))
	order := make([]string, len(rs.t.Key))
	for i, k := range rs.t.Key {
		keyMatch[i] = fmt.Sprintf("t.%s = CAST(m._rw_kt[%d] AS %s)", quote(k), i+1, rs.t.types[k])
		order[i] = fmt.Sprintf("CAST(_rw_kt[%d] AS %s)", i+1, rs.t.types[k])
	}
	now := "NULL::text[]"
	if len(rs.present) > 0 {
		parts := make([]string, len(rs.present))
		for i, c := range rs.present {
			parts[i] = "t." + quote(c) + "::text"
		}
		now = "CASE WHEN t.ctid IS NOT NULL THEN ARRAY[" + strings.Join(parts, ", ") + "] END"
	}
	var act string
	if rs.h.kind == imageColumns {
		act = `CASE WHEN NOT _rw_here THEN 'deleted' WHEN NOT _rw_differs THEN 'none'
			WHEN NOT _rw_changed OR @_rw_force THEN 'update' ELSE 'conflict' END`
	} else {
		act = `CASE _rw_op
			WHEN 'u' THEN CASE WHEN NOT _rw_here THEN CASE WHEN @_rw_force THEN 'insert' ELSE 'conflict' END
				WHEN NOT _rw_differs THEN 'none' WHEN NOT _rw_changed OR @_rw_force THEN 'update' ELSE 'conflict' END
			WHEN 'd' THEN CASE WHEN NOT _rw_here THEN 'insert' WHEN NOT _rw_differs THEN 'none'
				WHEN @_rw_force THEN 'update' ELSE 'conflict' END
			WHEN 'i' THEN CASE WHEN NOT _rw_here THEN 'none' WHEN NOT _rw_changed OR @_rw_force THEN 'delete' ELSE 'conflict' END
			ELSE 'none' END`
	}
	return fmt.Sprintf(`WITH _rw_m AS (
	SELECT im.seq AS _rw_s, u.k AS _rw_k, %[8]s AS _rw_kt, coalesce(u.op, 'u') AS _rw_op, %[9]s AS _rw_b, %[10]s AS _rw_a,
		u.b AS _rw_bt, u.a AS _rw_at
	FROM rewind.backfill_images im, unnest(im.keys, im.ops, im.before, im.after) AS u(k, op, b, a)
	WHERE im.run_id = @_rw_r AND im.seq = ANY(@_rw_seqs) AND (@_rw_prev::text IS NULL OR EXISTS (SELECT 1
		FROM rewind.backfill_quarantine q WHERE q.run_id = @_rw_prev AND q.key = %[8]s AND q.code = 'conflict'
		AND q.resolved_at IS NULL))),
_rw_c AS (
	SELECT m.*, t.tableoid AS _rw_o, t.ctid AS _rw_c, t.ctid IS NOT NULL AS _rw_here, %[1]s AS _rw_now,
		coalesce(%[2]s, true) AS _rw_changed, coalesce(%[3]s, true) AS _rw_differs
	FROM _rw_m m LEFT JOIN %[4]s t ON %[5]s),
_rw_x AS (SELECT c.*, %[6]s AS _rw_act, %[7]s AS _rw_order FROM _rw_c c)`,
		now, rs.differs("m._rw_a"), rs.differs("m._rw_b"), rs.t.ref, strings.Join(keyMatch, " AND "), act,
		"ROW("+strings.Join(order, ", ")+")", parsedKey("u.k", len(rs.h.keyCols)), rs.parsed("u.b", "before"),
		rs.parsed("u.a", "after"))
}

// why says, in the quarantine, why a row was not restored.
const why = `CASE WHEN _rw_act = 'deleted' THEN 'deleted since the run wrote it; the image holds only the columns the run changed, so the row cannot be put back'
	WHEN _rw_op = 'u' AND NOT _rw_here THEN 'deleted since the run wrote it (--force inserts it back as it was before)'
	WHEN _rw_op = 'd' THEN 'inserted again since the run deleted it (--force overwrites it with the row as it was before)'
	WHEN _rw_op = 'i' THEN 'changed since the run inserted it (--force deletes it)'
	ELSE 'changed since the run wrote it (--force overwrites it with its values before the run)' END`

// restoreSQL restores the image rows classify selects, in one statement,
// and records those it skips in the rollback run's quarantine. Its row:
// image rows, rows to restore, rows restored, conflicts, rows deleted
// since (not restorable), rows already as before, and the checksums of
// the images (each key with the values the run wrote) and of what was
// restored (each key with its values before). With resolve, the keys
// restored are marked resolved in @_rw_prev's quarantine (a forced pass
// over an earlier rollback's conflicts).
func (rs *restorer) restoreSQL(resolve bool) string {
	var b strings.Builder
	b.WriteString(rs.classify())
	match := "t.ctid = x._rw_c AND t.tableoid = x._rw_o"
	if len(rs.settable) > 0 {
		sets := make([]string, len(rs.settable))
		for i, c := range rs.settable {
			sets[i] = quote(c) + " = " + rs.value("x._rw_b", c)
		}
		fmt.Fprintf(&b, ",\n_rw_u AS (UPDATE %s t SET %s FROM _rw_x x WHERE x._rw_act = 'update' AND %s RETURNING 1)",
			rs.t.ref, strings.Join(sets, ", "), match)
	} else {
		b.WriteString(",\n_rw_u AS (SELECT 1 FROM _rw_x WHERE _rw_act = 'update')")
	}
	fmt.Fprintf(&b, ",\n_rw_d AS (DELETE FROM %s t USING _rw_x x WHERE x._rw_act = 'delete' AND %s RETURNING 1)", rs.t.ref, match)
	if rs.h.kind == imageRows {
		names, vals := make([]string, len(rs.writable)), make([]string, len(rs.writable))
		for i, c := range rs.writable {
			names[i], vals[i] = quote(c), rs.value("x._rw_b", c)
		}
		// ON CONFLICT DO NOTHING: a row inserted meanwhile is left out,
		// which the counts show (the chunk is tried again and finds it).
		fmt.Fprintf(&b, ",\n_rw_i AS (INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM _rw_x x "+
			"WHERE x._rw_act = 'insert' ON CONFLICT DO NOTHING RETURNING 1)",
			rs.t.ref, strings.Join(names, ", "), strings.Join(vals, ", "))
	} else {
		b.WriteString(",\n_rw_i AS (SELECT 1 WHERE false)")
	}
	fmt.Fprintf(&b, `,
_rw_q AS (INSERT INTO rewind.backfill_quarantine (run_id, key, chunk_seq, code, error)
	SELECT @_rw_rb, _rw_kt, _rw_s, CASE WHEN _rw_act = 'deleted' THEN 'deleted' ELSE 'conflict' END, %s
	FROM _rw_x WHERE _rw_act IN ('conflict', 'deleted')
	ON CONFLICT (run_id, key) DO UPDATE SET attempts = backfill_quarantine.attempts + 1, resolved_at = NULL)`, why)
	if resolve {
		b.WriteString(`,
_rw_r AS (UPDATE rewind.backfill_quarantine q SET resolved_at = clock_timestamp() FROM _rw_x x
	WHERE q.run_id = @_rw_prev AND q.key = x._rw_kt AND x._rw_act NOT IN ('conflict', 'deleted') AND q.resolved_at IS NULL)`)
	}
	b.WriteString(`
SELECT count(*), count(*) FILTER (WHERE _rw_act IN ('update', 'insert', 'delete')),
	(SELECT count(*) FROM _rw_u) + (SELECT count(*) FROM _rw_d) + (SELECT count(*) FROM _rw_i),
	count(*) FILTER (WHERE _rw_act = 'conflict'), count(*) FILTER (WHERE _rw_act = 'deleted'), count(*) FILTER (WHERE _rw_act = 'none'),
	coalesce(sum(hashtextextended(_rw_k || coalesce(_rw_at, ''), 0)), 0)::text,
	coalesce(sum(hashtextextended(_rw_k || coalesce(_rw_bt, ''), 0)) FILTER (WHERE _rw_act IN ('update', 'insert', 'delete')), 0)::text,
	clock_timestamp()
FROM _rw_x`)
	return b.String()
}

// fastSQL restores, in one statement, every image row of chunk @_rw_seqs
// whose row is as the run wrote it (or every row there is, with
// @_rw_force): the conflict test is in the writes' own WHERE, so that
// PostgreSQL checks it again on the row's latest version if another
// transaction changes it meanwhile. It is the whole rollback of a chunk
// that nobody touched since: its row is image rows, rows restored and the
// checksums as restoreSQL's. When it restores fewer rows than there are
// images, restoreSQL, run next in the same transaction, classifies the
// rest (those restored show as before already) and records the conflicts.
//
// An image of one key column, or of one value column, is read flat: each
// element is that value's text, not a text[] of one built per row and
// subscripted (a set job of one column on a one-column key, the most
// common, undid 7 % faster in backend CPU).
func (rs *restorer) fastSQL() string {
	flatKey, flat := len(rs.h.keyCols) == 1 && len(rs.t.Key) == 1, len(rs.h.cols) == 1
	keyMatch := make([]string, len(rs.t.Key))
	for i, k := range rs.t.Key {
		kt := fmt.Sprintf("m._rw_kt[%d]", i+1)
		if flatKey {
			kt = "m._rw_kt"
		}
		keyMatch[i] = fmt.Sprintf("t.%s = CAST(%s AS %s)", quote(k), kt, rs.t.types[k])
	}
	match := strings.Join(keyMatch, " AND ")
	asWritten := fmt.Sprintf("(@_rw_force OR NOT (%s))", rs.differsIn("m._rw_a", flat))
	key, before, after := parsedKey("u.k", len(rs.h.keyCols)), rs.parsed("u.b", "before"), rs.parsed("u.a", "after")
	if flatKey {
		key = "u.k"
	}
	if flat {
		before = "CASE WHEN NOT (coalesce(u.op, 'u') = 'i') THEN u.b END"
		after = "CASE WHEN NOT (coalesce(u.op, 'u') = 'd') THEN u.a END"
	}
	done := "hashtextextended(m._rw_k || coalesce(m._rw_bt, ''), 0) AS _rw_h, hashtextextended(m._rw_k || coalesce(m._rw_at, ''), 0) AS _rw_ih"
	images := fmt.Sprintf(`SELECT u.k AS _rw_k, %s AS _rw_kt, coalesce(u.op, 'u') AS _rw_op, %s AS _rw_b, %s AS _rw_a, u.b AS _rw_bt, u.a AS _rw_at
	FROM rewind.backfill_images im, unnest(im.keys, im.ops, im.before, im.after) AS u(k, op, b, a)
	WHERE im.run_id = @_rw_r AND im.seq = ANY(@_rw_seqs)`, key, before, after)
	// The rows restored give both checksums: when they are all the image
	// rows (which the first column compares), their input checksum is the
	// chunk's. The image rows are counted from the arrays' length, so that
	// a set job's images are read once, by the UPDATE.
	result := `
SELECT (SELECT coalesce(sum(cardinality(keys)), 0) FROM rewind.backfill_images WHERE run_id = @_rw_r AND seq = ANY(@_rw_seqs)),
	count(*), coalesce(sum(_rw_ih), 0)::text, coalesce(sum(_rw_h), 0)::text, clock_timestamp()
FROM (SELECT _rw_h, _rw_ih FROM _rw_u UNION ALL SELECT _rw_h, _rw_ih FROM _rw_d UNION ALL SELECT _rw_h, _rw_ih FROM _rw_i) x`
	var b strings.Builder
	source := "(" + images + ") m"
	if rs.h.kind == imageRows {
		fmt.Fprintf(&b, "WITH _rw_m AS (\n\t%s)", images)
		source = "_rw_m m"
	} else {
		b.WriteString("WITH _rw_none AS (SELECT)")
	}
	if len(rs.settable) > 0 {
		sets := make([]string, len(rs.settable))
		for i, c := range rs.settable {
			sets[i] = quote(c) + " = " + rs.valueIn("m._rw_b", c, flat)
		}
		fmt.Fprintf(&b, ",\n_rw_u AS (UPDATE %s t SET %s FROM %s WHERE m._rw_op = 'u' AND %s AND %s AND %s RETURNING %s)",
			rs.t.ref, strings.Join(sets, ", "), source, match, asWritten, rs.differsIn("m._rw_b", flat), done)
	} else {
		b.WriteString(",\n_rw_u AS (SELECT 0::bigint AS _rw_h, 0::bigint AS _rw_ih WHERE false)")
	}
	if rs.h.kind == imageRows {
		names, vals := make([]string, len(rs.writable)), make([]string, len(rs.writable))
		for i, c := range rs.writable {
			names[i], vals[i] = quote(c), rs.valueIn("m._rw_b", c, flat)
		}
		fmt.Fprintf(&b, ",\n_rw_d AS (DELETE FROM %s t USING _rw_m m WHERE m._rw_op = 'i' AND %s AND %s RETURNING %s)",
			rs.t.ref, match, asWritten, done)
		fmt.Fprintf(&b, ",\n_rw_i AS (INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM _rw_m m "+
			"WHERE m._rw_op = 'd' ON CONFLICT DO NOTHING RETURNING hashtextextended(%s, 0) AS _rw_h, "+
			"hashtextextended(%s || '', 0) AS _rw_ih)",
			rs.t.ref, strings.Join(names, ", "), strings.Join(vals, ", "), rs.restoredText(), rs.keyText())
	} else {
		b.WriteString(",\n_rw_d AS (SELECT 0::bigint AS _rw_h, 0::bigint AS _rw_ih WHERE false)," +
			"\n_rw_i AS (SELECT 0::bigint AS _rw_h, 0::bigint AS _rw_ih WHERE false)")
	}
	b.WriteString(result)
	return b.String()
}

// keyText is, in an INSERT's RETURNING, the key's text as an image
// stores it.
func (rs *restorer) keyText() string {
	keys := make([]string, len(rs.t.Key))
	for i, k := range rs.t.Key {
		keys[i] = "t." + quote(k) + "::text"
	}
	if len(keys) == 1 {
		return keys[0]
	}
	return "ARRAY[" + strings.Join(keys, ", ") + "]::text"
}

// restoredText is, in an INSERT's RETURNING, the text the output checksum
// hashes for the row inserted: its key and values before, as the image
// wrote them.
func (rs *restorer) restoredText() string {
	keys := make([]string, len(rs.t.Key))
	for i, k := range rs.t.Key {
		keys[i] = "t." + quote(k) + "::text"
	}
	vals := make([]string, len(rs.h.cols))
	for i, c := range rs.h.cols {
		if _, ok := rs.t.types[c]; ok {
			vals[i] = "t." + quote(c) + "::text"
		} else {
			vals[i] = "NULL::text"
		}
	}
	join := func(parts []string) string {
		if len(parts) == 1 {
			return parts[0]
		}
		return "ARRAY[" + strings.Join(parts, ", ") + "]::text"
	}
	return join(keys) + " || " + join(vals)
}

// parsed reads the image element elem (u.b or u.a) as a text[] of the
// image's columns; which is before or after.
func (rs *restorer) parsed(elem, which string) string {
	absent := "coalesce(u.op, 'u') = 'i'"
	if which == "after" {
		absent = "coalesce(u.op, 'u') = 'd'"
	}
	return parsedValues(elem, len(rs.h.cols), absent)
}

// countSQL counts the actions, read-only (a plan).
func (rs *restorer) countSQL() string {
	return rs.classify() + `
SELECT count(*), count(*) FILTER (WHERE _rw_act IN ('update', 'insert', 'delete')), count(*) FILTER (WHERE _rw_act = 'conflict'),
	count(*) FILTER (WHERE _rw_act = 'deleted'), count(*) FILTER (WHERE _rw_act = 'none') FROM _rw_x`
}

// sampleSQL lists up to @_rw_limit rows whose action is in @_rw_acts, in
// chunk and key order: chunk, key, action, the row now, before, written,
// why.
func (rs *restorer) sampleSQL() string {
	return rs.classify() + `
SELECT _rw_s, _rw_kt, _rw_act, _rw_op, _rw_now, _rw_b, _rw_a, ` + why + `
FROM _rw_x WHERE _rw_act = ANY(@_rw_acts) ORDER BY _rw_s, _rw_order LIMIT @_rw_limit`
}

// restoreArgs binds what classify needs.
func restoreArgs(run string, seqs []int64, force bool, prev string) pgx.NamedArgs {
	var p any
	if prev != "" {
		p = prev
	}
	return pgx.NamedArgs{
		"_rw_r":     typed{typ: "text", v: run},
		"_rw_seqs":  typed{typ: "bigint[]", v: seqs},
		"_rw_force": typed{typ: "boolean", v: force},
		"_rw_prev":  typed{typ: "text", v: p},
	}
}

// columnsOf maps the values of an image row (a text[] of the image's
// columns, or of the present ones for now) to their columns.
func (rs *restorer) columnsOf(vals []*string, cols []string) map[string]string {
	if vals == nil {
		return nil
	}
	out := make(map[string]string, len(cols))
	for i, c := range cols {
		if i < len(vals) {
			out[c] = derefText(vals[i])
		}
	}
	return out
}
