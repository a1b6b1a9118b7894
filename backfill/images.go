package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind/backfill/internal/pgparse"
)

// Before-images: what a chunk changed, saved in the chunk's own
// transaction so that a rollback can put it back (see rollback.go).
//
// A chunk saves one row per part (one part, or one per key when the chunk
// is applied key by key after a data error) in rewind.backfill_images of
// the target database: the table it wrote (rel), its key columns, the
// columns the values are of, and four parallel arrays with one element
// per row it changed — the key, what happened to the row (ops: u updated,
// d deleted, i inserted, e an event appended; NULL means all u), the
// values before and the values the chunk wrote. A key, and a row's
// values, of one column are that value's text ('42'); of several, the
// text of a text[] of them ('{42,7}', '{a@b.c,NULL}'): every value in
// PostgreSQL's text form, which its input function reads back exactly.
// (One column saves building and parsing an array per value: a set job
// of one column, the most common, kept its throughput.)
// One row per chunk rather than one per key: writing a thousand index
// entries per chunk halved the throughput of a set job, one TOASTed row
// costs a fraction of that. rewind.backfill_image_rows shows them one row
// per key.
//
// Three kinds:
//   - columns (set jobs): the set columns of each row the chunk wrote;
//   - rows (statement jobs and TableSink): whole rows, before and after,
//     including deleted rows (no after) and inserted ones (no before);
//   - events (StoreSink): the stream, id and type of each event appended,
//     which no rollback can take back.
const (
	imagesTable = `CREATE TABLE IF NOT EXISTS rewind.backfill_images (
		run_id      text NOT NULL,
		seq         bigint NOT NULL,
		part        int NOT NULL,
		rel         text NOT NULL,
		kind        text NOT NULL,
		key_columns text[] NOT NULL,
		columns     text[] NOT NULL,
		keys        text[] NOT NULL,
		ops         "char"[],
		before      text[],
		after       text[],
		PRIMARY KEY (run_id, seq, part))`
	// imagesLZ4 compresses the image arrays with lz4 where the server has
	// it (PostgreSQL 14 and later, built with lz4): a chunk's images are
	// compressed in the chunk's statement, and pglz, the default, cost 0.2
	// ms of backend CPU per 1,000-row chunk more (a fifth of what the
	// images cost). Tables made before keep their compression; the values
	// read back the same either way.
	imagesLZ4 = `DO $$BEGIN
		IF current_setting('server_version_num')::int >= 140000 AND EXISTS (SELECT FROM pg_settings
			WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
			EXECUTE 'ALTER TABLE rewind.backfill_images ALTER COLUMN keys SET COMPRESSION lz4, '
				'ALTER COLUMN before SET COMPRESSION lz4, ALTER COLUMN after SET COMPRESSION lz4';
		END IF;
	END$$`
	// undoneTable: each chunk of a run is undone once, whatever the
	// rollback runs (the primary key fences a second one).
	undoneTable = `CREATE TABLE IF NOT EXISTS rewind.backfill_undone (
		run_id    text NOT NULL,
		seq       bigint NOT NULL,
		by_run    text NOT NULL,
		undone_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		PRIMARY KEY (run_id, seq))`
	purgesTable = `CREATE TABLE IF NOT EXISTS rewind.backfill_image_purges (
		run_id    text PRIMARY KEY,
		purged_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		actor     text NOT NULL,
		chunks    bigint NOT NULL,
		images    bigint NOT NULL)`
	imageRowsView = `CREATE OR REPLACE VIEW rewind.backfill_image_rows AS
		SELECT im.run_id, im.seq, im.part, im.rel, im.kind, im.key_columns, im.columns,
			CASE WHEN cardinality(im.key_columns) = 1 THEN ARRAY[u.k] ELSE u.k::text[] END AS key, coalesce(u.op, 'u') AS op,
			CASE WHEN cardinality(im.columns) = 1 THEN CASE WHEN coalesce(u.op, 'u') NOT IN ('i', 'e') THEN ARRAY[u.b] END
				ELSE u.b::text[] END AS before,
			CASE WHEN cardinality(im.columns) = 1 THEN CASE WHEN coalesce(u.op, 'u') NOT IN ('d', 'e') OR im.kind = 'events' THEN ARRAY[u.a] END
				ELSE u.a::text[] END AS after
		FROM rewind.backfill_images im, unnest(im.keys, im.ops, im.before, im.after) AS u(k, op, b, a)`
)

// Image kinds.
const (
	imageColumns = "columns"
	imageRows    = "rows"
	imageEvents  = "events"
)

// textArray is the SQL of an image's text of cols of the row prefix
// names: t."a"::text for one column, ARRAY[t."a"::text, t."b"::text]::text
// for several.
func textArray(prefix string, cols []string) string {
	vals := make([]string, len(cols))
	for i, c := range cols {
		vals[i] = prefix + quote(c)
	}
	return textOf(vals)
}

// textOf is textArray of SQL values.
func textOf(vals []string) string {
	if len(vals) == 1 {
		return vals[0] + "::text"
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = v + "::text"
	}
	return "ARRAY[" + strings.Join(parts, ", ") + "]::text"
}

// parsedKey and parsedValues read an image element back as a text[]:
// the SQL of elem as the key (n key columns) or values (n columns).
func parsedKey(elem string, n int) string {
	if n == 1 {
		return "ARRAY[" + elem + "]"
	}
	return elem + "::text[]"
}

// parsedValues is parsedKey for values, NULL when there is no row (the
// before of an inserted row, the after of a deleted one: op says which).
func parsedValues(elem string, n int, absent string) string {
	if n == 1 {
		return "CASE WHEN NOT (" + absent + ") THEN ARRAY[" + elem + "] END"
	}
	return elem + "::text[]"
}

// imageArgs binds what an image row records of itself.
func imageArgs(a pgx.NamedArgs, env *chunkEnv, t *Table, kind string, cols []string) {
	env.part++
	a["_rw_run"] = typed{typ: "text", v: env.runID}
	a["_rw_seq"] = typed{typ: "bigint", v: env.seq}
	a["_rw_part"] = typed{typ: "integer", v: int32(env.part)}
	a["_rw_rel"] = typed{typ: "text", v: t.ref}
	a["_rw_kind"] = typed{typ: "text", v: kind}
	a["_rw_keycols"] = typed{typ: "text[]", v: t.Key}
	a["_rw_cols"] = typed{typ: "text[]", v: cols}
}

const insertImage = `INSERT INTO rewind.backfill_images (run_id, seq, part, rel, kind, key_columns, columns, keys, ops, before, after)`

// errChangedMeanwhile is a row of the chunk that another transaction
// changed between the chunk statement's snapshot and its write: its
// before-image would be the older version's. It is transient: the chunk
// is tried again, on a new snapshot.
func errChangedMeanwhile(what string) error {
	return &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "backfill: " + what +
		" changed while the chunk ran, so its before-image would not be the version the chunk replaced; " +
		"the chunk is tried again"}
}

// Before-images of a set job's chunk are taken in the chunk's one
// statement, in one of two ways.
//
// One pass (applyImagedOnePass), the usual way: the statement reads the
// chunk's rows once for the input checksum, which rows differ from their
// new values, and the images of those rows: the key, the old values and
// the new ones, computed from the row read. Its UPDATE then scans the
// range itself, as the chunk statement without images does, and writes
// the rows that differ; it returns only their checksum. Nothing joins the
// two: the images are those of the rows read, so the statement must prove
// that the UPDATE wrote exactly those row versions, with exactly those
// values:
//   - A row another transaction changes after the statement's snapshot
//     was taken reaches the UPDATE as a newer version (PostgreSQL's recheck
//     follows the row to its newest version), whose xmin is a transaction
//     the snapshot does not see, so at least the snapshot's xmin (the
//     oldest transaction running when it was taken; a subtransaction's xid
//     is above its parent's). The UPDATE writes only rows whose xmin is
//     older than that, which the snapshot saw and no one changed since; a
//     row it leaves out shows in the counts, and the chunk is tried again
//     (errChangedMeanwhile). A row the snapshot saw whose xmin is not older
//     (written since the oldest running transaction began: it "looks
//     new") is written only if it is still the version read, by its
//     (tableoid, ctid), which a newer version cannot have. More than
//     manyNew of those in a chunk (a transaction left open makes every
//     row written since look new) and the statement writes nothing: the
//     chunk, and the next joinAfterNew chunks, take the join below.
//   - So every row the UPDATE writes is a version the read imaged, and
//     equal counts make it all of them. The checksum of the rows written
//     (the output checksum) must then equal the checksum of the new values
//     the images hold, computed from the rows read: otherwise the UPDATE
//     wrote other values than those imaged (a function declared stable
//     that is not), the chunk is tried again (errWrittenDiffers), and the
//     run's chunks take the join from then on.
//
// By join (applyImagedJoin): the statement reads the chunk's rows into a
// CTE and the UPDATE joins it by (tableoid, ctid), so that it writes
// exactly the row versions read and returns their old values with the new
// ones; a row changed in between has another ctid and PostgreSQL's recheck
// of the join leaves it out, which the counts show (errChangedMeanwhile).
// The second read of the rows and the join cost about 0.5 ms of backend
// CPU per 1,000-row chunk more than one pass (an eighth of the statement,
// on a quiet machine; docs/benchmarks.md), so the join is kept for what
// one pass cannot prove right (checkOnePass): set expressions that call a
// volatile function (each row's values must be evaluated once, in the
// UPDATE) or have a subquery (one pass would evaluate it a third time), a
// where that calls a volatile function (the UPDATE could pick other rows
// than the read), BEFORE or INSTEAD OF UPDATE row triggers on the table
// or a table inheriting from it (the row written is not the row
// computed), PostgreSQL before 13 (no pg_current_snapshot()).

// One pass's limits: up to manyNew rows of a chunk that look new are
// checked by ctid; with more, the chunk and the next joinAfterNew chunks
// take the join.
const (
	manyNew      = 128
	joinAfterNew = 32
)

// Paths of a set job's chunk images, as logged.
const (
	pathOnePass = "one-pass"
	pathJoin    = "join"
)

// errWrittenDiffers is a one-pass chunk whose UPDATE wrote other values
// than those its before-images hold. Transient: the chunk is tried again,
// by join.
func errWrittenDiffers(out, imaged string) error {
	return &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "backfill: the rows the chunk wrote do not hold the " +
		"values its before-images computed from the rows it read (output checksum " + out + ", images " + imaged +
		"): a set expression or the where gave another value in the UPDATE than in the read; the chunk is tried " +
		"again, its before-images taken by joining the rows read, as are the run's next chunks"}
}

// onePassFacts are what decides whether a set job's chunks may take
// their before-images in one pass (see above).
type onePassFacts struct {
	version       int    // server_version_num
	volatileSet   bool   // a set expression calls a volatile function
	subquery      bool   // a set expression has a subquery
	volatileWhere string // a volatile function the where calls
	trigger       string // a BEFORE or INSTEAD OF UPDATE row trigger of the table or a child
	rule          string // an UPDATE rule of the table or a child
}

// joinOnly is why chunks with these facts take their before-images by
// join, "" when one pass can take them.
func (f onePassFacts) joinOnly() string {
	switch {
	case f.version < 130000:
		major := fmt.Sprint(f.version / 10000)
		if f.version < 100000 {
			major += fmt.Sprintf(".%d", f.version/100%100)
		}
		return "PostgreSQL " + major + " has no pg_current_snapshot()"
	case f.volatileSet:
		return "a set expression calls a volatile function"
	case f.subquery:
		return "a set expression has a subquery"
	case f.volatileWhere != "":
		return "the where calls " + f.volatileWhere + "(), a volatile function"
	case f.trigger != "":
		return "the table has " + f.trigger
	case f.rule != "":
		return "the table has UPDATE " + f.rule
	}
	return ""
}

// checkOnePass finds what keeps a set job's chunks from taking their
// before-images in one pass, and sets joinOnly to it.
func (s *setChange) checkOnePass(ctx context.Context, db querier) error {
	f := onePassFacts{volatileSet: s.volatile}
	for _, c := range s.cols {
		if e, err := parseExpr("set."+c, s.set[c]); err == nil {
			f.subquery = f.subquery || hasSubquery(e.tree)
		}
	}
	var where []string
	if strings.TrimSpace(s.t.Where) != "" {
		if e, err := parseExpr("where", s.t.Where); err == nil {
			where = funcNames(e.tree)
		}
	}
	var trigger, rule, volatile *string
	err := db.QueryRow(ctx, `WITH RECURSIVE r(oid) AS (SELECT $1::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN r ON i.inhparent = r.oid)
		SELECT current_setting('server_version_num')::int,
			(SELECT format('%s trigger %I on %s', CASE WHEN g.tgtype & 2 <> 0 THEN 'BEFORE' ELSE 'INSTEAD OF' END, g.tgname, g.tgrelid::regclass)
				FROM pg_trigger g WHERE g.tgrelid IN (SELECT oid FROM r) AND g.tgtype & 17 = 17 AND g.tgtype & 66 <> 0 ORDER BY g.tgname LIMIT 1),
			(SELECT format('rule %I on %s', w.rulename, w.ev_class::regclass) FROM pg_rewrite w
				WHERE w.ev_class IN (SELECT oid FROM r) AND w.ev_type = '2' ORDER BY w.rulename LIMIT 1),
			(SELECT min(proname) FROM pg_proc WHERE proname = ANY($2) AND provolatile = 'v')`,
		s.t.oid, where).Scan(&f.version, &trigger, &rule, &volatile)
	if err != nil {
		return fmt.Errorf("check how the chunks can take their before-images: %w", err)
	}
	for _, p := range []struct{ to, from *string }{{&f.trigger, trigger}, {&f.rule, rule}, {&f.volatileWhere, volatile}} {
		if p.from != nil {
			*p.to = *p.from
		}
	}
	s.joinOnly = f.joinOnly()
	return nil
}

// hasSubquery reports whether an expression's tree has a subquery.
func hasSubquery(tree any) bool {
	var found bool
	pgparse.Walk(tree, func(kind string, _ map[string]any) { found = found || kind == "SubLink" })
	return found
}

// joinReason says why this chunk takes its before-images by join, or "".
func (s *setChange) joinReason() string {
	if s.joinOnly != "" {
		return s.joinOnly
	}
	if s.writtenDiffered.Load() {
		return "a chunk of the run wrote other values than its one-pass before-images computed"
	}
	for n := s.joinFor.Load(); n > 0; n = s.joinFor.Load() {
		if s.joinFor.CompareAndSwap(n, n-1) {
			return fmt.Sprintf("more than %d rows of a recent chunk looked new (a long transaction open?)", manyNew)
		}
	}
	return ""
}

// applyImaged is a set job's chunk with its before-images (see above).
func (s *setChange) applyImaged(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error) {
	why := s.joinReason()
	if why == "" {
		part := env.part
		r, err := s.applyImagedOnePass(ctx, env, b)
		var many *manyNewError
		if !errors.As(err, &many) {
			env.logPath(pathOnePass, "")
			return r, err
		}
		// The statement wrote nothing.
		s.joinFor.Store(joinAfterNew)
		env.part = part
		why = fmt.Sprintf("%d rows of the chunk looked new (written since the oldest transaction running began), "+
			"more than %d; the next %d chunks too", many.rows, manyNew, joinAfterNew)
		if env.log != nil {
			env.log.Info("backfill: chunks take their before-images by join for a while, which costs more: "+
				"is a transaction left open?", "run", env.runID, "chunk", env.seq, "why", why)
		}
	}
	env.logPath(pathJoin, why)
	return s.applyImagedJoin(ctx, env, b)
}

// manyNewError is a one-pass chunk statement that wrote nothing: more
// than manyNew of its rows looked new. applyImaged takes the join then;
// it never leaves applyImaged.
type manyNewError struct{ rows int64 }

func (e *manyNewError) Error() string {
	return fmt.Sprintf("backfill: %d rows of the chunk looked new; the one-pass statement wrote nothing", e.rows)
}

// logPath logs, at debug level, how the chunk took its before-images
// (pathOnePass or pathJoin) and why it took the join.
func (env *chunkEnv) logPath(path, why string) {
	if env.log == nil || !env.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	env.log.Debug("backfill: chunk before-images", "run", env.runID, "chunk", env.seq, "path", path, "why", why)
}

// applyImagedOnePass is the one-pass chunk statement (see above). With
// more than manyNew rows that differ and look new, it writes nothing and
// returns a *manyNewError.
func (s *setChange) applyImagedOnePass(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error) {
	var r chunkResult
	a := with(env.args)
	imageArgs(a, env, s.t, imageColumns, s.cols)
	set, differs := s.assignments()
	rng, where := s.t.rangeCond(a, b), s.t.where()
	// The read: its inner query holds the chunk's rows with their new
	// values (_rw_v0…), computed once per row; the outer one adds whether
	// they differ (_rw_d) and look new (_rw_n).
	var cols, vals, olds, news []string
	for _, k := range s.t.Key {
		cols = append(cols, "t."+quote(k))
	}
	for i, c := range s.cols {
		v := fmt.Sprintf("_rw_v%d", i)
		cols, vals = append(cols, "t."+quote(c)), append(vals, s.value(c)+" AS "+v)
		if s.noEq[c] {
			olds, news = append(olds, "t."+quote(c)+"::text"), append(news, "t."+v+"::text")
		} else {
			olds, news = append(olds, "t."+quote(c)), append(news, "t."+v)
		}
	}
	newVals := make([]string, len(s.cols))
	for i := range s.cols {
		newVals[i] = fmt.Sprintf("t._rw_v%d", i)
	}
	read := fmt.Sprintf(`SELECT t.*, ROW(%s) IS DISTINCT FROM ROW(%s) AS _rw_d, age(t._rw_xmin) <= x._rw_a AS _rw_n
		FROM (SELECT %s, %s, t.tableoid AS _rw_o, t.ctid AS _rw_c, t.xmin AS _rw_xmin FROM %s t WHERE %s AND %s OFFSET 0) t, _rw_x x OFFSET 0`,
		strings.Join(olds, ", "), strings.Join(news, ", "), strings.Join(cols, ", "), strings.Join(vals, ", "), s.t.ref, rng, where)
	q := fmt.Sprintf(`WITH _rw_x AS (SELECT age((pg_snapshot_xmin(pg_current_snapshot())::text::bigint %% 4294967296)::text::xid) AS _rw_a),
		_rw_s AS (SELECT count(*) AS n, coalesce(sum(%[1]s), 0)::text AS h,
			array_agg(%[2]s) FILTER (WHERE _rw_d) AS k, array_agg(%[3]s) FILTER (WHERE _rw_d) AS b,
			array_agg(%[4]s) FILTER (WHERE _rw_d) AS a, coalesce(sum(%[5]s) FILTER (WHERE _rw_d), 0)::text AS p,
			array_agg(ROW(_rw_o, _rw_c)) FILTER (WHERE _rw_d AND _rw_n) AS c
			FROM (%[6]s) t),
		_rw_u AS (UPDATE %[7]s t SET %[8]s WHERE %[9]s AND %[10]s AND %[11]s
			AND (age(t.xmin) > (SELECT _rw_a FROM _rw_x) OR ROW(t.tableoid, t.ctid) = ANY(CAST((SELECT c FROM _rw_s) AS record[])))
			AND (SELECT coalesce(cardinality(c), 0) FROM _rw_s) <= %[12]d
			RETURNING %[13]s AS _rw_h),
		_rw_o AS (SELECT count(*) AS n, coalesce(sum(_rw_h), 0)::text AS h FROM _rw_u),
		_rw_m AS (%[14]s SELECT @_rw_run, @_rw_seq, @_rw_part, @_rw_rel, @_rw_kind, @_rw_keycols, @_rw_cols, k, NULL, b, a
			FROM _rw_s WHERE k IS NOT NULL AND coalesce(cardinality(c), 0) <= %[12]d)
		SELECT s.n, o.n, s.h, o.h, clock_timestamp(), coalesce(cardinality(s.k), 0), s.p, coalesce(cardinality(s.c), 0)
		FROM _rw_s s, _rw_o o`,
		s.hashRow(cols), textArray("t.", s.t.Key), textArray("t.", s.cols), textOf(newVals),
		s.hashRow(append(cols[:len(s.t.Key):len(s.t.Key)], newVals...)), read,
		s.t.ref, set, rng, where, differs, manyNew, s.hashRow(s.checksumCols("t.")), insertImage)
	var want, looksNew int64
	var imaged string
	err := env.scanFirst(ctx, q, bindArgs(a), &r.Seen, &r.Changed, &r.In, &r.Out, &r.At, &want, &imaged, &looksNew)
	switch {
	case err != nil:
		return r, s.t.maskErr(err)
	case looksNew > manyNew:
		return chunkResult{}, &manyNewError{rows: looksNew}
	case r.Changed != want:
		return r, errChangedMeanwhile(fmt.Sprintf("%d row(s) of the chunk", want-r.Changed))
	case r.Out != imaged:
		s.writtenDiffered.Store(true)
		return r, errWrittenDiffers(r.Out, imaged)
	}
	return r, nil
}

// applyImagedJoin is the chunk statement that takes its before-images by
// join (see above): _rw_i reads the chunk's rows once (the input
// checksum, which rows differ, their old values), the UPDATE joins it by
// (tableoid, ctid) and returns the old values with the new ones.
func (s *setChange) applyImagedJoin(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error) {
	var r chunkResult
	a := with(env.args)
	imageArgs(a, env, s.t, imageColumns, s.cols)
	set, differs := s.assignments()
	rng := s.t.rangeCond(a, b)
	hash := s.hashRow(s.checksumCols("t."))
	q := fmt.Sprintf(`WITH _rw_i AS (SELECT t.tableoid AS _rw_o, t.ctid AS _rw_c, %[2]s AS _rw_b,
			%[3]s AS _rw_d, %[4]s AS _rw_h FROM %[5]s t WHERE %[6]s AND %[7]s),
		_rw_s AS (SELECT count(*) AS n, coalesce(sum(_rw_h), 0)::text AS h, count(*) FILTER (WHERE _rw_d) AS d FROM _rw_i),
		_rw_u AS (UPDATE %[5]s t SET %[8]s FROM _rw_i i WHERE %[6]s AND t.tableoid = i._rw_o AND t.ctid = i._rw_c AND i._rw_d
			RETURNING %[4]s AS _rw_h, %[1]s AS _rw_k, i._rw_b, %[9]s AS _rw_a),
		_rw_o AS (SELECT count(*) AS n, coalesce(sum(_rw_h), 0)::text AS h FROM _rw_u),
		_rw_m AS (%[10]s SELECT @_rw_run, @_rw_seq, @_rw_part, @_rw_rel, @_rw_kind, @_rw_keycols, @_rw_cols,
			array_agg(_rw_k), NULL, array_agg(_rw_b), array_agg(_rw_a) FROM _rw_u HAVING count(*) > 0)
		SELECT s.n, o.n, s.h, o.h, clock_timestamp(), s.d FROM _rw_s s, _rw_o o`,
		textArray("t.", s.t.Key), textArray("t.", s.cols), differs, hash, s.t.ref, rng, s.t.where(), set,
		textArray("t.", s.cols), insertImage)
	var want int64
	err := env.scanFirst(ctx, q, bindArgs(a), &r.Seen, &r.Changed, &r.In, &r.Out, &r.At, &want)
	if err != nil {
		return r, s.t.maskErr(err)
	}
	if r.Changed != want {
		return r, errChangedMeanwhile(fmt.Sprintf("%d row(s) of the chunk", want-r.Changed))
	}
	return r, nil
}

// rowImager saves whole-row before-images of the rows a statement (a
// statement job's, or a TableSink's write) changed: the statement returns
// the key and new values of each row it changed (_rw_w), and the rows as
// the statement's snapshot saw them — their old versions — are joined to
// them. The rows it may change must be locked by the chunk beforehand
// (lockReadAll, TableSink.lockRows), so that the snapshot's version is the
// one the statement changed; a row the statement updated without having
// seen it (INSERT … ON CONFLICT DO UPDATE on a row inserted meanwhile) is
// counted as unimaged, and the chunk is tried again.
type rowImager struct {
	t    *Table
	ref  string // the statement's name for its table (alias), quoted
	kind string // InsertStmt, UpdateStmt, DeleteStmt or MergeStmt
}

// returning is what the statement returns of each row it changed: its
// key (_rw_k0…), its values afterwards (_rw_a), whether it existed before
// (_rw_x: xmax is set on the new version of a row that INSERT … ON
// CONFLICT DO UPDATE updated) and MERGE's action.
func (im rowImager) returning() string {
	parts := make([]string, 0, len(im.t.Key)+3)
	for i, k := range im.t.Key {
		parts = append(parts, fmt.Sprintf("%s.%s AS _rw_k%d", im.ref, quote(k), i))
	}
	parts = append(parts, textArray(im.ref+".", im.t.order)+" AS _rw_a", im.ref+".xmax::text <> '0' AS _rw_x")
	if im.kind == "MergeStmt" {
		parts = append(parts, "merge_action() AS _rw_act")
	}
	return strings.Join(parts, ", ")
}

// ctes follow the WITH part _rw_w that returns returning(): _rw_x joins
// each changed row with its old version, _rw_m saves the images.
func (im rowImager) ctes() string {
	on := make([]string, len(im.t.Key))
	for i, k := range im.t.Key {
		on[i] = fmt.Sprintf("o.%s = w._rw_k%d", quote(k), i)
	}
	keys := make([]string, len(im.t.Key))
	for i := range im.t.Key {
		keys[i] = fmt.Sprintf("w._rw_k%d::text", i)
	}
	key := "ARRAY[" + strings.Join(keys, ", ") + "]::text"
	if len(keys) == 1 {
		key = keys[0]
	}
	var op string
	switch im.kind {
	case "DeleteStmt":
		op = "'d'"
	case "UpdateStmt":
		op = "'u'"
	case "MergeStmt":
		op = "CASE w._rw_act WHEN 'DELETE' THEN 'd' WHEN 'INSERT' THEN 'i' ELSE 'u' END"
	default: // INSERT, or INSERT … ON CONFLICT DO UPDATE of an existing row
		op = "CASE WHEN o.ctid IS NULL THEN 'i' ELSE 'u' END"
	}
	return fmt.Sprintf(`,
_rw_x AS (SELECT %s AS _rw_k, (%s)::"char" AS _rw_op,
	CASE WHEN o.ctid IS NOT NULL THEN %s END AS _rw_b, w._rw_a, w._rw_x, o.ctid IS NOT NULL AS _rw_old
	FROM _rw_w w LEFT JOIN %s o ON %s),
_rw_m AS (%s SELECT @_rw_run, @_rw_seq, @_rw_part, @_rw_rel, @_rw_kind, @_rw_keycols, @_rw_cols,
	array_agg(_rw_k), array_agg(_rw_op), array_agg(_rw_b), array_agg(CASE WHEN _rw_op = 'd' THEN NULL ELSE _rw_a END)
	FROM _rw_x HAVING count(*) > 0)`,
		key, op, textArray("o.", im.t.order), im.t.ref, strings.Join(on, " AND "), insertImage)
}

// unimaged counts the changed rows whose old version the snapshot did
// not show: an update or delete of a row it did not see, or an insert
// that turned into an update.
const unimaged = `(SELECT count(*) FROM _rw_x WHERE (_rw_op <> 'i' AND NOT _rw_old) OR (_rw_op = 'i' AND _rw_x))`

// lockReadAll is lockRead for a chunk that saves whole-row images: it
// locks every row of the chunk's key range, not only those matching the
// job's where (the statement may change any row of its range), so that
// none of them changes between the statement's snapshot and its write.
// The count and checksum still cover the rows matching the where.
func (t *Table) lockReadAll(ctx context.Context, tx querier, args pgx.NamedArgs, b Bounds) (int64, string, time.Time, error) {
	a := with(args)
	q := fmt.Sprintf(`SELECT count(*) FILTER (WHERE x._rw_m), coalesce(sum(hashtextextended(x._rw_t, 0)) FILTER (WHERE x._rw_m), 0)::text,
		clock_timestamp() FROM (SELECT t::text AS _rw_t, coalesce(%s, false) AS _rw_m FROM %s t WHERE %s ORDER BY %s FOR NO KEY UPDATE) x`,
		t.where(), t.ref, t.rangeCond(a, b), t.keyCols("t."))
	var n int64
	var sum string
	var at time.Time
	err := tx.QueryRow(ctx, q, bindArgs(a)).Scan(&n, &sum, &at)
	return n, sum, at, err
}

// saveEvents records the events a StoreSink chunk appended (stream, id,
// type), in the chunk's transaction: what a rollback of the run reports
// it cannot take back.
func saveEvents(ctx context.Context, env *chunkEnv, streams, ids, types []string) error {
	if len(ids) == 0 {
		return nil
	}
	env.part++
	keys, after, ops := make([]string, len(ids)), make([]string, len(ids)), make([]string, len(ids))
	for i := range ids {
		keys[i] = pgTextArray(streams[i], ids[i])
		after[i] = types[i] // one column: the value itself
		ops[i] = "e"
	}
	_, err := env.tx.Exec(ctx, insertImage+` VALUES ($1, $2, $3, '', 'events', '{stream,event_id}', '{type}', $4, $5::"char"[], NULL, $6)`,
		env.runID, env.seq, env.part, keys, ops, after)
	if err != nil {
		return fmt.Errorf("record the events of chunk %d: %w", env.seq, err)
	}
	return nil
}

// pgTextArray is the text of a text[] of vals, as PostgreSQL prints it.
func pgTextArray(vals ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
