package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// applier applies a job's change to one chunk inside the chunk's
// transaction, and previews it without writing.
type applier interface {
	prepare(ctx context.Context, db querier, args pgx.NamedArgs) error
	apply(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error)
	preview(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds, n int) ([]Diff, []string, error)
	// explain returns the chunk statement's plan and notes about it.
	explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, []string, error)
}

// chunkEnv is what applying one chunk has at hand.
type chunkEnv struct {
	tx      pgx.Tx
	args    pgx.NamedArgs
	runID   string
	seq     int64
	jobHash string
	intents *intents // for sinks outside the database
	// images: save before-images (images.go) in the chunk's transaction;
	// part numbers the chunk's image rows.
	images bool
	part   int
	// log receives how a chunk took its before-images (debug level).
	log *slog.Logger
	// checkStart, when set, checks the session the chunk began with
	// (sessionSQL's row): the applier's first statement carries it
	// (scanFirst).
	checkStart func(pgx.Row) error
}

// firstStatement is an applier whose chunk statement reads its rows
// through scanFirst, so that the session check goes with it.
type firstStatement interface {
	applier
	firstStatement()
}

// scanFirst runs q, the chunk's first statement, and scans its one row
// into dest. With the check of the session the chunk began with pending,
// both go in one round trip: the check is read first, and if it fails,
// its error is returned and q's result is not read; q has run, but under
// the chunk's transaction, which the error rolls back (the connection is
// closed). A round trip less per chunk, of the six or seven a chunk takes.
func (env *chunkEnv) scanFirst(ctx context.Context, q string, args bindArgs, dest ...any) error {
	check := env.checkStart
	if check == nil {
		return env.tx.QueryRow(ctx, q, args).Scan(dest...)
	}
	env.checkStart = nil
	b := &pgx.Batch{}
	b.Queue(sessionSQL).QueryRow(check)
	b.Queue(q, args).QueryRow(func(row pgx.Row) error { return row.Scan(dest...) })
	return env.tx.SendBatch(ctx, b).Close()
}

// chunkResult is what a chunk did, as recorded in its checkpoint.
type chunkResult struct {
	Seen, Changed, Skipped int64
	In, Out                string    // checksums of input and output
	At                     time.Time // the database's clock during the chunk, for the audit entry

	// next is the following chunk, found in the same round trip as the
	// checkpoint when the change cannot affect it (set jobs).
	next     *Bounds
	nextOK   bool
	nextSize int // the size next was found for
	// control is the run's control record as the chunk committed, read
	// by its fence (controlFenceSQL); nil when it has none.
	control *Control
}

// Diff is one row of a dry run's preview: the columns that would change.
type Diff struct {
	Key    Key               `json:"key"`
	Before map[string]string `json:"before"`
	After  map[string]string `json:"after"`
}

// explainText explains q, in a read-only transaction that is rolled back
// (a savepoint when db is a transaction): planning evaluates functions
// declared STABLE or IMMUTABLE to estimate selectivities, and one that
// writes or calls nextval() despite its declaration would otherwise
// change the database when a job is merely checked. Such a function
// fails the EXPLAIN with SQLSTATE 25006 (see stableWrites).
func explainText(ctx context.Context, db querier, q string, args pgx.NamedArgs) (string, error) {
	var text string
	err := readOnly(ctx, db, func(tx querier) error {
		rows, err := tx.Query(ctx, "EXPLAIN "+q, bindArgs(args))
		if err != nil {
			return err
		}
		text, err = planLines(rows)
		return err
	})
	return text, err
}

// stableWrites is the refusal of a job whose SQL, merely planned, tried
// to write or advance a sequence: it calls a function declared STABLE or
// IMMUTABLE that does (nextval() in a PL/pgSQL body), which PostgreSQL
// may evaluate while planning, any number of times, so the value written
// is not the value a row gets once.
func stableWrites(field, sql string, t *Table, err error) error {
	return &rewind.ValidationError{Field: field, Value: sql,
		Reason: "calls a function declared STABLE or IMMUTABLE that writes or advances a sequence (PostgreSQL " +
			"evaluates such functions while planning, so even a dry run would run them): declare the function " +
			"VOLATILE (ALTER FUNCTION … VOLATILE), which the runner evaluates once per row: " + t.masked(err.Error())}
}

func planLines(rows pgx.Rows) (string, error) {
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return "", err
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n"), rows.Err()
}

// explainPlan is the plan a dry run shows. PostgreSQL prints the values
// of bound parameters in a plan, so when q binds a secret parameter the
// plan is PostgreSQL's generic one, which shows $1, $2… instead; db must
// then be a transaction (the statement is prepared on its connection).
func explainPlan(ctx context.Context, db querier, t *Table, q string, args pgx.NamedArgs) (string, []string, error) {
	b, err := cachedBindSites(q)
	if err != nil {
		return "", nil, err
	}
	var secrets []string
	for _, n := range b.names {
		if t.secret[n] {
			secrets = append(secrets, "@"+n)
		}
	}
	if len(secrets) == 0 {
		text, err := explainText(ctx, db, q, args)
		return text, nil, err
	}
	tx, ok := db.(pgx.Tx)
	if !ok {
		return "", []string{"the chunk statement's plan is not shown: it binds secret parameters"}, nil
	}
	text, err := genericPlan(ctx, tx, b, args)
	if err != nil {
		return "", []string{"the chunk statement's plan is not shown: it binds secret parameters (" +
			strings.Join(secrets, ", ") + ") and PostgreSQL could not plan it without their values: " + t.masked(err.Error())}, nil
	}
	return text, []string{"the plan is PostgreSQL's generic plan, with $1, $2… for the parameters, because the chunk statement binds " +
		"secret parameters (" + strings.Join(secrets, ", ") + ") whose values must not be shown"}, nil
}

// genericPlan explains b's statement as PostgreSQL's generic plan: one
// prepared without parameter values. Everything happens under a
// savepoint that is rolled back, then the statement is deallocated.
func genericPlan(ctx context.Context, tx pgx.Tx, b *bound, args pgx.NamedArgs) (string, error) {
	sql, _, err := b.render(args)
	if err != nil {
		return "", err
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return "", err
	}
	name := "rewind_explain_" + strings.ReplaceAll(id.String(), "-", "")
	sp, err := tx.Begin(ctx)
	if err != nil {
		return "", err
	}
	text, err := func() (string, error) {
		defer sp.Rollback(context.WithoutCancel(ctx))
		if _, err := sp.Exec(ctx, "PREPARE "+name+" AS "+sql); err != nil {
			return "", err
		}
		if _, err := sp.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
			return "", err
		}
		nulls := strings.TrimSuffix(strings.Repeat("NULL, ", len(b.names)), ", ")
		rows, err := sp.Query(ctx, "EXPLAIN EXECUTE "+name+"("+nulls+")")
		if err != nil {
			return "", err
		}
		return planLines(rows)
	}()
	if _, derr := tx.Exec(ctx, "DEALLOCATE "+name); derr != nil && err == nil {
		err = derr
	}
	return text, err
}

// readOnly runs fn in a read-only transaction that is rolled back, or,
// when db is a transaction already, under a savepoint that is rolled back:
// evaluating a job's expressions to check or preview them must change
// nothing. A read-only transaction refuses nextval() and writes, so a
// sequence does not advance either.
func readOnly(ctx context.Context, db querier, fn func(querier) error) error {
	var tx pgx.Tx
	var err error
	switch d := db.(type) {
	case pgx.Tx:
		tx, err = d.Begin(ctx)
	case interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	}:
		tx, err = d.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	default:
		return fmt.Errorf("backfill: cannot start a read-only transaction on %T", db)
	}
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return fn(tx)
}

// hasSideEffects reports whether err is PostgreSQL refusing a write (such
// as nextval()) in a read-only transaction.
func hasSideEffects(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "25006"
}

// setChange updates the source table's columns with SQL expressions.
type setChange struct {
	t    *Table
	set  map[string]string
	cols []string        // sorted
	noEq map[string]bool // columns whose type has no equality operator (json…): compared as text
	// secretCols are the columns whose expression binds a secret
	// parameter: a dry run does not show their new values.
	secretCols map[string]bool
	// hashFns are how the checksummed columns' values are hashed (see
	// hashRow and learnHashes), key columns then set columns in order,
	// as fmt templates of the value and the seed. legacyRow
	// hashes a row as runs of earlier versions did, and legacy is set
	// when the run being applied or verified is one of those (pinChecksum).
	hashFns   []string
	legacyRow func(row string) string
	legacy    bool
	// volatile: a set expression calls a volatile function (nextval(),
	// random(), clock_timestamp()…). Comparing its value with the row's
	// would evaluate it a second time, and the value written would not be
	// the value compared; so every row the chunk selects is written, and
	// each row's expressions are evaluated once.
	volatile bool
	// joinOnly is why the chunks take their before-images by join, not in
	// one pass (images.go), "" when one pass can: found by prepare.
	// writtenDiffered is set once a one-pass chunk wrote other values than
	// its images computed, and joinFor counts the chunks still to take the
	// join after one where many rows looked new; both shared by the run's
	// workers.
	joinOnly        string
	writtenDiffered atomic.Bool
	joinFor         atomic.Int64
}

func newSetChange(t *Table, set map[string]string) *setChange {
	return &setChange{t: t, set: set, cols: slices.Sorted(maps.Keys(set))}
}

func (s *setChange) prepare(ctx context.Context, db querier, args pgx.NamedArgs) error {
	s.legacyRow = func(row string) string { return "hashtextextended(" + row + "::text, 0)" }
	// Hashing a row of NULLs of the columns' types finds out whether each
	// type has an extended hash function, without reading the table.
	var nulls []string
	for _, c := range append(slices.Clone(s.t.Key), s.cols...) {
		if typ, ok := s.t.types[c]; ok {
			nulls = append(nulls, "NULL::"+typ)
		}
	}
	if _, err := db.Exec(ctx, fmt.Sprintf("SELECT hash_record_extended(ROW(%s), 0)", strings.Join(nulls, ", "))); err == nil {
		s.legacyRow = func(row string) string { return "hash_record_extended(" + row + ", 0)" }
	}
	var calls []string
	for _, c := range s.cols {
		if e, err := parseExpr("set."+c, s.set[c]); err == nil {
			calls = append(calls, funcNames(e.tree)...)
		}
	}
	if len(calls) > 0 {
		// By name: an overloaded name with one volatile variant counts as
		// volatile, which only costs writing rows that hold the value.
		if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_proc WHERE proname = ANY($1) AND provolatile = 'v')",
			calls).Scan(&s.volatile); err != nil {
			return fmt.Errorf("check whether the set expressions are volatile: %w", err)
		}
	}
	for _, c := range s.cols {
		field := "set." + c
		if _, ok := s.t.types[c]; !ok {
			return &rewind.ValidationError{Field: field, Value: c, Reason: fmt.Sprintf("table %s has no such column", s.t.ref)}
		}
		if slices.Contains(s.t.Key, c) {
			return &rewind.ValidationError{Field: field, Value: c, Reason: "a set job cannot change a key column"}
		}
		e, err := parseExpr(field, s.set[c])
		if err != nil {
			return err
		}
		for _, n := range e.names {
			if s.t.secret[n] {
				if s.secretCols == nil {
					s.secretCols = map[string]bool{}
				}
				s.secretCols[c] = true
			}
		}
		if s.t.notNull[c] && e.alwaysNull(args) {
			return &rewind.ValidationError{Field: field, Value: s.set[c],
				Reason: fmt.Sprintf("is NULL for every row, and column %s is NOT NULL", c)}
		}
		// PostgreSQL's analysis of the UPDATE itself refuses what a
		// SELECT would take: a generated or identity column, an aggregate,
		// window or set-returning function, and a value of a type the
		// column cannot be assigned (a text parameter into an integer
		// column), as plain SQL would: the chunks' explicit CAST to the
		// column's type would accept more. EXPLAIN runs nothing.
		q := fmt.Sprintf("UPDATE %s t SET %s = %s WHERE false", s.t.ref, quote(c), wrap(s.set[c]))
		if _, err := explainText(ctx, db, q, args); hasSideEffects(err) {
			return stableWrites(field, s.set[c], s.t, err)
		} else if err != nil {
			return s.t.sqlError(field, s.set[c], err)
		}
		if no, err := noEquality(ctx, db, s.t, c); err != nil {
			return err
		} else if no {
			if s.noEq == nil {
				s.noEq = map[string]bool{}
			}
			s.noEq[c] = true
		}
	}
	if err := s.learnHashes(ctx, db); err != nil {
		return err
	}
	if err := s.checkOnePass(ctx, db); err != nil {
		return err
	}
	a := with(args)
	if _, err := explainText(ctx, db, s.updateSQL(a, Bounds{}), a); hasSideEffects(err) {
		return s.stableWrites(ctx, db, a, err)
	} else if err != nil {
		return s.t.sqlError("set", fmt.Sprint(s.set), err)
	}
	if s.t.policy == Skip {
		return nil // failing rows are quarantined, not refused
	}
	return s.checkFirstChunk(ctx, db, args)
}

// stableWrites names the set expression whose planning wrote (see
// stableWrites): the one whose comparison with the column fails to plan
// read-only, else the whole set.
func (s *setChange) stableWrites(ctx context.Context, db querier, a pgx.NamedArgs, err error) error {
	for _, c := range s.cols {
		q := fmt.Sprintf("SELECT 1 FROM %s t WHERE t.%s IS DISTINCT FROM %s", s.t.ref, quote(c), s.value(c))
		if s.noEq[c] {
			q = fmt.Sprintf("SELECT 1 FROM %s t WHERE t.%s::text IS DISTINCT FROM %s::text", s.t.ref, quote(c), s.value(c))
		}
		if _, cerr := explainText(ctx, db, q, a); hasSideEffects(cerr) {
			return stableWrites("set."+c, s.set[c], s.t, cerr)
		}
	}
	return stableWrites("set", fmt.Sprint(s.set), s.t, err)
}

// value is the new value of column c: its expression cast to c's type.
func (s *setChange) value(c string) string {
	return fmt.Sprintf("CAST(%s AS %s)", wrap(s.set[c]), s.t.types[c])
}

// checkFirstChunk evaluates each set expression on the first chunk's rows,
// read-only and rolled back, so that what PostgreSQL would refuse in chunk
// 1 under the halt policy (a NOT NULL column given NULL, a value that does
// not convert, a division by zero) is refused before a run exists. An
// expression with side effects (nextval()) is not evaluated: a read-only
// transaction refuses it, and the chunks are where it runs.
func (s *setChange) checkFirstChunk(ctx context.Context, db querier, args pgx.NamedArgs) error {
	first := s.t.firstChunkSQL()
	for _, c := range s.cols {
		var k Key
		err := readOnly(ctx, db, func(tx querier) error {
			return unchangedSession(ctx, tx, func() error {
				a := with(args)
				q := fmt.Sprintf("SELECT %s FROM (%s) t WHERE %s IS NULL", s.t.keyText("t."), first, s.value(c))
				rows, err := tx.Query(ctx, q, bindArgs(a))
				if err != nil {
					return err
				}
				keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Key, error) { return scanKey(row, len(s.t.Key)) })
				if len(keys) > 0 {
					k = keys[0]
				}
				return err
			})
		})
		var se *SessionChangedError
		switch {
		case errors.As(err, &se):
			return sessionRefused("set."+c, s.set[c], se)
		case hasSideEffects(err):
			continue
		case err != nil:
			return s.t.sqlError("set."+c, s.set[c], err)
		case k != nil && s.t.notNull[c]:
			return &rewind.ValidationError{Field: "set." + c, Value: s.set[c],
				Reason: fmt.Sprintf("is NULL for key %s in the first chunk, and column %s is NOT NULL "+
					"(the run would halt there; on_data_error: skip quarantines such rows instead)", s.t.masked(k.String()), c)}
		}
	}
	return nil
}

// checksumCols lists the key and set columns, which a set job's checksums
// cover, as values of the row prefix names.
func (s *setChange) checksumCols(prefix string) []string {
	var cols []string
	for _, c := range append(slices.Clone(s.t.Key), s.cols...) {
		cols = append(cols, prefix+quote(c))
	}
	return cols
}

// checksumColumns is the Run.Session entry "checksum" of a set job's run
// whose checksums hash each column by its type (hashRow). Runs of earlier
// versions have none: their rows were hashed whole (legacyRow).
const checksumColumns = "columns"

// hashRow is the SQL of a row's 64-bit hash, for a set job's checksums:
// vals are the values of the checksummed columns (checksumCols: the key
// columns, then the set columns, or expressions of their types). Each
// value is hashed by its type's extended hash function (learnHashes
// says which, and how for types without one of their own), seeded with
// its position, and the hashes are combined by XOR; a NULL hashes to its
// position. PostgreSQL's hash_record_extended of the whole row, which
// runs of earlier versions used, deforms a record built for each row:
// three times the time of hashing the columns themselves (0.7 against
// 0.2 ms per 1,000 rows of two integer columns), and a set job's chunk
// with its before-images hashes its rows three times.
func (s *setChange) hashRow(vals []string) string { return s.hashRowAs(s.legacy, vals) }

// hashRowAs is hashRow by column, or whole (legacyRow) when legacy.
func (s *setChange) hashRowAs(legacy bool, vals []string) string {
	if legacy {
		return s.legacyRow("ROW(" + strings.Join(vals, ", ") + ")")
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprintf("coalesce("+s.hashFns[i]+", %[2]d)", v, i+1)
	}
	return "(" + strings.Join(parts, " # ") + ")"
}

// learnHashes finds how each checksummed column's value is hashed (a
// domain's by its base type), as a template of the value (%[1]s) and
// the seed (%[2]d):
//   - by the extended hash function of the type's default hash operator
//     class, when it is declared for the type itself (integer, text,
//     numeric, uuid, timestamptz…);
//   - by hash_record_extended of a one-column row, for the other types
//     PostgreSQL can hash (bytea, boolean and date, whose functions take
//     another type; arrays, enums, ranges and composites, whose are
//     polymorphic): by value, so that no setting changes the hash, as
//     bytea_output would change bytea's text;
//   - money as numeric (its text follows lc_monetary);
//   - the rest (json, point, xml…) by its text, which the pinned
//     settings make canonical (see SessionParams).
func (s *setChange) learnHashes(ctx context.Context, db querier) error {
	cols := append(slices.Clone(s.t.Key), s.cols...)
	rows, err := db.Query(ctx, `WITH RECURSIVE c(i, typ) AS (
			SELECT u.i, a.atttypid FROM unnest($2::text[]) WITH ORDINALITY u(name, i) JOIN pg_attribute a ON a.attrelid = $1 AND a.attname = u.name
			UNION ALL SELECT c.i, y.typbasetype FROM c JOIN pg_type y ON y.oid = c.typ AND y.typtype = 'd')
		SELECT c.i, coalesce((SELECT f.oid::regproc::text FROM pg_opclass o
				JOIN pg_am m ON m.oid = o.opcmethod AND m.amname = 'hash'
				JOIN pg_amproc p ON p.amprocfamily = o.opcfamily AND p.amprocnum = 2 AND p.amproclefttype = o.opcintype AND p.amprocrighttype = o.opcintype
				JOIN pg_proc f ON f.oid = p.amproc AND f.pronargs = 2 AND f.proargtypes[0] = o.opcintype AND f.proargtypes[1] = 'int8'::regtype
					AND f.prorettype = 'int8'::regtype
				WHERE o.opcdefault AND o.opcintype = c.typ ORDER BY f.oid LIMIT 1), ''), format_type(c.typ, NULL)
		FROM c JOIN pg_type y ON y.oid = c.typ AND y.typtype <> 'd' ORDER BY c.i`, s.t.oid, cols)
	if err != nil {
		return fmt.Errorf("read the hash functions of %s's columns: %w", s.t.ref, err)
	}
	type found struct{ fn, base string }
	fs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (found, error) {
		var i int
		var f found
		err := row.Scan(&i, &f.fn, &f.base)
		return f, err
	})
	if err != nil {
		return fmt.Errorf("read the hash functions of %s's columns: %w", s.t.ref, err)
	}
	if len(fs) != len(cols) {
		return fmt.Errorf("read the hash functions of %s's columns: found %d of %d columns", s.t.ref, len(fs), len(cols))
	}
	s.hashFns = make([]string, len(fs))
	for i, f := range fs {
		switch {
		case f.fn != "":
			s.hashFns[i] = strings.ReplaceAll(f.fn, "%", "%%") + "(%[1]s, %[2]d)"
		case f.base == "money":
			s.hashFns[i] = "hash_numeric_extended((%[1]s)::numeric, %[2]d)"
		default:
			// Hashing a NULL of the type finds out whether PostgreSQL can
			// hash it, without reading the table.
			if _, err := db.Exec(ctx, "SELECT hash_record_extended(ROW(NULL::"+f.base+"), 0)"); err == nil {
				s.hashFns[i] = "hash_record_extended(ROW((%[1]s)::" + strings.ReplaceAll(f.base, "%", "%%") + "), %[2]d)"
			} else {
				s.hashFns[i] = "hashtextextended((%[1]s)::text, %[2]d)"
			}
		}
	}
	return nil
}

// pinChecksum makes the chunks and verify hash rows as run did: by
// column, or, for a run of an earlier version, whole (legacyRow).
func (s *setChange) pinChecksum(run *Run) {
	s.legacy = run.Session["checksum"] != checksumColumns
}

// assignments returns "col = (expr)::type, …" and the row comparison that
// keeps rows already holding the values from being written.
func (s *setChange) assignments() (set, differs string) {
	var sets, olds, news []string
	for _, c := range s.cols {
		v := s.value(c)
		sets = append(sets, quote(c)+" = "+v)
		if s.noEq[c] {
			olds, news = append(olds, "t."+quote(c)+"::text"), append(news, v+"::text")
		} else {
			olds, news = append(olds, "t."+quote(c)), append(news, v)
		}
	}
	if s.volatile {
		return strings.Join(sets, ", "), "true"
	}
	return strings.Join(sets, ", "), fmt.Sprintf("ROW(%s) IS DISTINCT FROM ROW(%s)", strings.Join(olds, ", "), strings.Join(news, ", "))
}

func (s *setChange) updateSQL(args pgx.NamedArgs, b Bounds) string {
	set, differs := s.assignments()
	return fmt.Sprintf("UPDATE %s t SET %s WHERE %s AND %s AND %s",
		s.t.ref, set, s.t.rangeCond(args, b), s.t.where(), differs)
}

// apply updates the chunk's rows in one statement. The UPDATE locks the
// rows it writes; rows that already hold the values are neither written
// nor locked. The input checksum covers the key and set columns of the
// rows seen, as of the statement's snapshot; the output checksum the same
// columns of the rows written.
func (s *setChange) apply(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error) {
	if env.images {
		return s.applyImaged(ctx, env, b)
	}
	var r chunkResult
	a := with(env.args)
	row := s.checksumCols("t.")
	q := fmt.Sprintf(`WITH i AS (SELECT count(*) AS n, coalesce(sum(%s), 0)::text AS h FROM %s t WHERE %s AND %s),
		u AS (%s RETURNING %s AS _rw_h),
		o AS (SELECT count(*) AS n, coalesce(sum(u._rw_h), 0)::text AS h FROM u)
		SELECT i.n, o.n, i.h, o.h, clock_timestamp() FROM i, o`,
		s.hashRow(row), s.t.ref, s.t.rangeCond(a, b), s.t.where(), s.updateSQL(a, b), s.hashRow(row))
	err := env.scanFirst(ctx, q, bindArgs(a), &r.Seen, &r.Changed, &r.In, &r.Out, &r.At)
	return r, s.t.maskErr(err)
}

func (s *setChange) firstStatement() {}

// preview shows the first n rows' changes, evaluated read-only and rolled
// back. New values computed from a secret parameter are shown as "***";
// expressions with side effects (nextval()) are not evaluated at all.
func (s *setChange) preview(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds, n int) ([]Diff, []string, error) {
	a := with(args)
	var sel []string
	for _, c := range s.cols {
		sel = append(sel, "t."+quote(c)+"::text", fmt.Sprintf("CAST(%s AS text)", s.value(c)))
	}
	q := fmt.Sprintf("SELECT %s, %s FROM %s t WHERE %s AND %s ORDER BY %s LIMIT %d",
		s.t.keyText("t."), strings.Join(sel, ", "), s.t.ref, s.t.rangeCond(a, Bounds{After: b.After}), s.t.where(), s.t.keyCols("t."), n)
	var diffs []Diff
	err := readOnly(ctx, db, func(tx querier) error {
		rows, err := tx.Query(ctx, q, bindArgs(a))
		if err != nil {
			return err
		}
		defer rows.Close()
		nk := len(s.t.Key)
		for rows.Next() {
			vals := make([]*string, nk+2*len(s.cols))
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			d := Diff{Key: make(Key, nk), Before: map[string]string{}, After: map[string]string{}}
			for i := range nk {
				d.Key[i] = derefText(vals[i])
			}
			for i, c := range s.cols {
				d.Before[c], d.After[c] = derefText(vals[nk+2*i]), derefText(vals[nk+2*i+1])
				if s.secretCols[c] {
					d.After[c] = "***"
				}
			}
			diffs = append(diffs, d)
		}
		return rows.Err()
	})
	if hasSideEffects(err) {
		return nil, []string{"the new values are not previewed: evaluating the set expressions has side effects (" +
			s.t.masked(err.Error()) + "), which a dry run does not allow; they are evaluated only by --execute"}, nil
	}
	if err != nil {
		return nil, nil, s.t.maskErr(err)
	}
	var notes []string
	if len(s.secretCols) > 0 {
		notes = append(notes, "new values computed from secret parameters are shown as ***")
	}
	return diffs, notes, nil
}

func derefText(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

func (s *setChange) explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, []string, error) {
	a := with(args)
	return explainPlan(ctx, db, s.t, s.updateSQL(a, b), a)
}

// statementChange runs an SQL statement per chunk with the chunk's key
// bounds bound as @lo and @hi (or @lo_COL and @hi_COL).
type statementChange struct {
	t   *Table
	sql string
	// checked is the statement that runs: sql with a RETURNING of the
	// key of every row it changes, inside a query that counts those rows
	// and finds the first outside the chunk (see apply); imaged is the
	// same with the rows' before-images saved (images.go).
	checked, imaged string
}

func (s *statementChange) bind(args pgx.NamedArgs, b Bounds) pgx.NamedArgs {
	a := with(args)
	for i, c := range s.t.Key {
		var lo, hi any
		if b.Lo != nil {
			lo, hi = b.Lo[i], b.Hi[i]
		}
		// The bounds are bound as the key column's type, whatever the
		// statement compares them with.
		typ := s.t.types[c]
		a["lo_"+c], a["hi_"+c] = typed{typ: typ, v: lo}, typed{typ: typ, v: hi}
		if len(s.t.Key) == 1 {
			a["lo"], a["hi"] = a["lo_"+c], a["hi_"+c]
		}
	}
	return a
}

// prepare checks the statement against the database: every table it
// writes, in a data-modifying WITH too, must be the job's table (the
// parser found them; the database resolves their names as the statement
// would), and PostgreSQL must accept it (EXPLAIN runs nothing).
func (s *statementChange) prepare(ctx context.Context, db querier, args pgx.NamedArgs) error {
	info, err := parseStatement("statement", s.sql)
	if err != nil {
		return err
	}
	if info.kind == "MergeStmt" {
		var version int
		if err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
			return fmt.Errorf("check the server's version: %w", err)
		}
		if version < 170000 {
			return &rewind.ValidationError{Field: "statement", Value: s.sql,
				Reason: fmt.Sprintf("MERGE has no RETURNING before PostgreSQL 17 (this server is %d), so the runner cannot check "+
					"that it changes only the chunk's rows; write it as UPDATE, or INSERT … ON CONFLICT", version)}
		}
	}
	s.checked = s.checkedSQL(info)
	im := rowImager{t: s.t, ref: quote(info.ref), kind: info.kind}
	s.imaged = s.outsideSQL(s.sql[:info.end]+"\nRETURNING "+im.returning(), im.ctes(), ", "+unimaged)
	for _, rel := range info.targets {
		var oid *uint32
		if err := db.QueryRow(ctx, "SELECT to_regclass($1)::oid", rel.sql()).Scan(&oid); err != nil {
			return s.t.sqlError("statement", s.sql, err)
		}
		if oid == nil || *oid != s.t.oid {
			return &rewind.ValidationError{Field: "statement", Value: s.sql,
				Reason: fmt.Sprintf("writes %s, which is not the job's table %s; a statement may write only the job's table", rel, s.t.ref)}
		}
	}
	if _, err := explainText(ctx, db, s.checked, s.bind(args, Bounds{})); hasSideEffects(err) {
		return stableWrites("statement", s.sql, s.t, err)
	} else if err != nil {
		return s.t.sqlError("statement", s.sql, err)
	}
	return s.checkFirstChunk(ctx, db, args, info)
}

// keyReturning lists the key columns of the statement's table as
// _rw_k0, _rw_k1….
func (s *statementChange) keyReturning(info *statementInfo) string {
	ret := make([]string, len(s.t.Key))
	for i, k := range s.t.Key {
		ret[i] = fmt.Sprintf("%s.%s AS _rw_k%d", quote(info.ref), quote(k), i)
	}
	return strings.Join(ret, ", ")
}

// checkedSQL is the statement as it runs: with a RETURNING of the key of
// each row it changes (inserted, updated or deleted) as a data-modifying
// WITH, counted, and the first of them outside [@lo, @hi] found.
// PostgreSQL allows a data-modifying WITH only at the top level, which is
// one reason why a statement may not have its own.
func (s *statementChange) checkedSQL(info *statementInfo) string {
	return s.outsideSQL(s.sql[:info.end]+"\nRETURNING "+s.keyReturning(info), "", "")
}

// outsideSQL counts the keys _rw_k0… that rows returns, and finds the
// first of them outside [@lo, @hi]; ctes are more WITH parts after rows'
// (_rw_w), extra more columns of the result.
func (s *statementChange) outsideSQL(rows, ctes, extra string) string {
	cols := make([]string, len(s.t.Key))
	texts := make([]string, len(s.t.Key))
	for i := range s.t.Key {
		cols[i] = fmt.Sprintf("_rw_k%d", i)
		texts[i] = cols[i] + "::text"
	}
	lo, hi := s.boundRow("lo"), s.boundRow("hi")
	row := strings.Join(cols, ", ")
	if len(cols) > 1 {
		row = "ROW(" + row + ")"
	}
	outside := fmt.Sprintf("NOT (%s >= %s AND %s <= %s)", row, lo, row, hi)
	return fmt.Sprintf("WITH _rw_w AS (\n%s\n)%s\nSELECT count(*), count(*) FILTER (WHERE %s), "+
		"(SELECT ARRAY[%s] FROM _rw_w WHERE %s ORDER BY %s LIMIT 1)%s FROM _rw_w",
		rows, ctes, outside, strings.Join(texts, ", "), outside, strings.Join(cols, ", "), extra)
}

// checkFirstChunk selects the rows an UPDATE or DELETE would change in the
// first chunk, without changing them (read-only, rolled back), so that a
// statement that would leave its chunk is refused before a run exists, by
// the dry run too. It is a preview: when the statement's parts cannot be
// told apart, or evaluating them fails or has side effects, it says
// nothing, and the check of the rows the statement really changes, as it
// runs, is the guarantee.
func (s *statementChange) checkFirstChunk(ctx context.Context, db querier, args pgx.NamedArgs, info *statementInfo) error {
	if info.rows == nil {
		return nil
	}
	b, ok, err := s.t.next(ctx, db, args, nil, nil, s.t.chunk)
	if err != nil || !ok {
		return nil
	}
	r := info.rows
	q := r.with + "SELECT " + s.keyReturning(info) + " FROM " + r.rel
	if strings.TrimSpace(r.from) != "" {
		q += ",\n" + r.from
	}
	if strings.TrimSpace(r.where) != "" {
		q += "\nWHERE " + r.where
	}
	var n, outside int64
	var first []*string
	err = readOnly(ctx, db, func(tx querier) error {
		return unchangedSession(ctx, tx, func() error {
			return tx.QueryRow(ctx, s.outsideSQL(q, "", ""), bindArgs(s.bind(args, b))).Scan(&n, &outside, &first)
		})
	})
	if se := (*SessionChangedError)(nil); errors.As(err, &se) {
		return sessionRefused("statement", s.sql, se)
	}
	if err != nil || outside == 0 {
		return nil
	}
	k := deref(first)
	for i := range k {
		k[i] = s.t.masked(k[i])
	}
	return &rewind.ValidationError{Field: "statement", Value: s.sql, Reason: fmt.Sprintf("changes rows outside its chunk: "+
		"on the first chunk [%s, %s] it would change %d row(s) outside it, the first with key %s; restrict it to the rows "+
		"between @lo and @hi (a run would stop at the first chunk that does this, having changed nothing in it)",
		b.Lo, b.Hi, outside, k)}
}

// boundRow is the chunk's lo or hi bound as a row of the key's types.
func (s *statementChange) boundRow(side string) string {
	parts := make([]string, len(s.t.Key))
	for i, c := range s.t.Key {
		parts[i] = "@" + side + "_" + c
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "ROW(" + strings.Join(parts, ", ") + ")"
}

// apply runs the statement on the chunk. Every row it changes must be in
// the chunk: the keys it returns are checked in the same query, and one
// outside fails the chunk (and its transaction) with an *EscapeError.
func (s *statementChange) apply(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error) {
	var r chunkResult
	var err error
	lock := s.t.lockRead
	if env.images {
		lock = s.t.lockReadAll
	}
	if r.Seen, r.In, r.At, err = lock(ctx, env.tx, env.args, b); err != nil {
		return r, err
	}
	var outside, noImage int64
	var first []*string
	if env.images {
		a := s.bind(env.args, b)
		imageArgs(a, env, s.t, imageRows, s.t.order)
		err = env.tx.QueryRow(ctx, s.imaged, bindArgs(a)).Scan(&r.Changed, &outside, &first, &noImage)
	} else {
		err = env.tx.QueryRow(ctx, s.checked, bindArgs(s.bind(env.args, b))).Scan(&r.Changed, &outside, &first)
	}
	if err != nil {
		return r, s.t.maskErr(err)
	}
	if noImage > 0 && outside == 0 {
		return r, errChangedMeanwhile(fmt.Sprintf("%d row(s) the statement changed", noImage))
	}
	if outside > 0 {
		k := deref(first)
		for i := range k {
			k[i] = s.t.masked(k[i])
		}
		return r, &EscapeError{Statement: s.sql, Lo: b.Lo, Hi: b.Hi, Rows: outside, Key: k}
	}
	_, r.Out, err = s.t.rangeSum(ctx, env.tx, b)
	return r, err
}

func (s *statementChange) preview(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds, n int) ([]Diff, []string, error) {
	items, err := s.t.read(ctx, db, args, b, false)
	if err != nil {
		return nil, nil, err
	}
	var diffs []Diff
	for _, it := range items[:min(n, len(items))] {
		diffs = append(diffs, Diff{Key: it.Key, Before: rowText(it.Row)})
	}
	return diffs, []string{"a statement job's effect is not previewed (that would mean running it); " +
		"the rows shown are the first chunk's input"}, nil
}

func (s *statementChange) explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, []string, error) {
	return explainPlan(ctx, db, s.t, s.sql, s.bind(args, b))
}

func rowText(row map[string]any) map[string]string {
	out := make(map[string]string, len(row))
	for k, v := range row {
		out[k] = valueText(v)
	}
	return out
}

func valueText(v any) string {
	if v == nil {
		return "NULL"
	}
	if b, err := json.Marshal(jsonValue(v)); err == nil {
		s := string(b)
		if len(s) >= 2 && s[0] == '"' {
			var u string
			if json.Unmarshal(b, &u) == nil {
				return u
			}
		}
		return s
	}
	return fmt.Sprint(v)
}

// processChange reads the chunk's items, calls the job's process function
// and hands its changes to the sink.
type processChange struct {
	src  Source
	fn   ProcessFunc
	sink Sink
}

func (p *processChange) prepare(ctx context.Context, db querier, args pgx.NamedArgs) error {
	return p.sink.prepare(ctx, db)
}

func (p *processChange) apply(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error) {
	var r chunkResult
	items, err := p.src.read(ctx, env.tx, env.args, b, true)
	if err != nil {
		return r, err
	}
	r.Seen, r.In = int64(len(items)), itemsSum(items)
	changes, err := p.fn(ctx, items)
	if err != nil {
		return r, err
	}
	r.Out = changesSum(changes)
	r.Changed, err = writeSink(ctx, p.sink, env, changes)
	return r, err
}

func (p *processChange) preview(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds, n int) ([]Diff, []string, error) {
	items, err := p.src.read(ctx, db, args, b, false)
	if err != nil {
		return nil, nil, err
	}
	changes, err := p.fn(ctx, items)
	if err != nil {
		return nil, nil, fmt.Errorf("process the first chunk: %w", err)
	}
	byKey := map[string]Item{}
	for _, it := range items {
		byKey[it.Key.String()] = it
	}
	var diffs []Diff
	for _, c := range changes[:min(n, len(changes))] {
		d := Diff{Key: c.Key, Before: map[string]string{}, After: map[string]string{}}
		in := byKey[c.Key.String()]
		if c.Row != nil {
			for col, v := range c.Row {
				d.After[col] = valueText(v)
				if in.Row != nil {
					d.Before[col] = valueText(in.Row[col])
				}
			}
		} else {
			d.After["stream"], d.After["type"], d.After["data"] = c.Stream, c.Event.Type, string(c.Event.Data)
			if in.Event != nil {
				d.Before["stream"], d.Before["type"], d.Before["data"] = in.Event.Stream, in.Event.Type, string(in.Event.Data)
			}
		}
		diffs = append(diffs, d)
	}
	return diffs, nil, nil
}

func (p *processChange) explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, []string, error) {
	t, ok := p.src.(*Table)
	if !ok {
		return "", nil, nil
	}
	a := with(args)
	q := fmt.Sprintf("SELECT * FROM %s t WHERE %s AND %s ORDER BY %s FOR UPDATE", t.ref, t.rangeCond(a, b), t.where(), t.keyCols("t."))
	return explainPlan(ctx, db, t, q, a)
}

func itemsSum(items []Item) string {
	var b strings.Builder
	for _, it := range items {
		var v any = it.Row
		if it.Event != nil {
			v = it.Event
		}
		j, _ := json.Marshal(jsonRow(v))
		b.WriteString(md5Of(it.Key.String() + "\x00" + string(j)))
	}
	return md5Of(b.String())
}

func changesSum(changes []Change) string {
	var b strings.Builder
	for _, c := range changes {
		j, _ := json.Marshal(struct {
			Key    Key
			Row    any
			Stream string
			Event  rewind.Event
		}{c.Key, jsonRow(c.Row), c.Stream, c.Event})
		b.WriteString(md5Of(string(j)))
	}
	return md5Of(b.String())
}

func jsonRow(v any) any {
	row, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(row))
	for k, x := range row {
		out[k] = jsonValue(x)
	}
	return out
}
