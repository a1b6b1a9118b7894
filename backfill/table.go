package backfill

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// Table is a PostgreSQL table iterated by its key.
type Table struct {
	// Name is the table, optionally schema-qualified.
	Name string
	// Key lists the columns of a primary key or unique index, in the order
	// to iterate. Composite keys are compared as rows.
	Key []string
	// Where selects the rows that still need the change, so that a
	// finished job finds nothing more to do. It may use @parameters.
	// Empty selects every row.
	Where string
	// Columns are the columns a process function reads. Defaults to all.
	Columns []string

	ref     string            // the table as SQL, quoted
	oid     uint32            // the table's oid
	types   map[string]string // column → type
	notNull map[string]bool   // columns declared NOT NULL
	order   []string          // all columns in table order

	// Set by Job.validate, for the job's own table.
	chunk  int                 // the job's chunk size
	policy Policy              // the job's data-error policy
	secret map[string]bool     // the secret parameters' names
	ptypes map[string]string   // the parameters' declared types
	redact func(string) string // masks secret values in messages
}

func (t *Table) describe() map[string]any {
	return map[string]any{"table": t.Name, "key": t.Key, "where": t.Where, "columns": t.Columns}
}

func quote(name string) string { return pgx.Identifier{name}.Sanitize() }

func (t *Table) prepare(ctx context.Context, db querier, args pgx.NamedArgs) error {
	if t.Name == "" {
		return &rewind.ValidationError{Field: "table", Reason: "is required"}
	}
	if len(t.Key) == 0 {
		return &rewind.ValidationError{Field: "key", Reason: "is required: the columns of a primary key or unique index"}
	}
	var oid *uint32
	var ref, schema, kind *string
	// The table is named with its schema in every query the runner sends,
	// so that nothing that changes the search_path can send them to
	// another schema's table of the same name.
	err := db.QueryRow(ctx, `SELECT to_regclass($1)::oid, format('%I.%I', n.nspname, c.relname), n.nspname, c.relkind::text
		FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid
		LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`, t.Name).Scan(&oid, &ref, &schema, &kind)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3F000" { // schema does not exist
			oid = nil
		} else if errors.As(err, &pe) {
			return &rewind.ValidationError{Field: "table", Value: t.Name, Reason: pe.Message}
		} else {
			return fmt.Errorf("look up table %s: %w", t.Name, err)
		}
	}
	if oid == nil {
		return &rewind.ValidationError{Field: "table", Value: t.Name, Reason: "no such table in the database"}
	}
	if err := checkRelation(*ref, *schema, *kind); err != nil {
		return &rewind.ValidationError{Field: "table", Value: t.Name, Reason: err.Error()}
	}
	t.ref, t.oid = *ref, *oid
	if err := t.loadColumns(ctx, db, *oid); err != nil {
		return err
	}
	for _, c := range slices.Concat(t.Key, t.Columns) {
		if _, ok := t.types[c]; !ok {
			return &rewind.ValidationError{Field: "column", Value: c, Reason: fmt.Sprintf("table %s has no such column", t.ref)}
		}
	}
	if err := t.checkUniqueKey(ctx, db, *oid); err != nil {
		return err
	}
	q := "SELECT 1 FROM " + t.ref + " t WHERE " + t.where()
	if _, err := explainText(ctx, db, q, args); hasSideEffects(err) {
		return stableWrites("where", t.Where, t, err)
	} else if err != nil {
		return t.sqlError("where", t.Where, err)
	}
	if t.chunk > 0 && strings.TrimSpace(t.Where) != "" {
		return t.checkWhere(ctx, db, args)
	}
	return nil
}

// checkRelation refuses what a job may not write: a relation that is not
// a table (a view: its rows have no ctid to image or fence by; an
// index, a sequence), PostgreSQL's catalogs, and rewind's own ledger.
func checkRelation(ref, schema, kind string) error {
	switch {
	case schema == "pg_catalog" || schema == "information_schema" || strings.HasPrefix(schema, "pg_toast"):
		return fmt.Errorf("%s is a system catalog of PostgreSQL; a backfill writes only user tables", ref)
	case schema == "rewind":
		return fmt.Errorf("%s is in rewind's own schema (its ledger, its store); a backfill must not write it", ref)
	case kind == "r" || kind == "p":
		return nil
	}
	what := map[string]string{"v": "a view", "m": "a materialized view", "f": "a foreign table", "S": "a sequence",
		"i": "an index", "I": "an index", "c": "a composite type", "t": "a TOAST table"}[kind]
	if what == "" {
		what = "not a table"
	}
	return fmt.Errorf("%s is %s; a backfill's table must be a table or a partitioned table (write to the table under a view)", ref, what)
}

// firstChunkSQL selects the rows of the job's first chunk.
func (t *Table) firstChunkSQL() string {
	return fmt.Sprintf("SELECT * FROM %s t WHERE %s ORDER BY %s LIMIT %d", t.ref, t.where(), t.keyCols("t."), t.chunk)
}

// checkWhere finds the first chunk, read-only and rolled back: the WHERE
// is evaluated many times per chunk, so one that writes (nextval(), a
// function that inserts) or fails on the first rows is refused now.
func (t *Table) checkWhere(ctx context.Context, db querier, args pgx.NamedArgs) error {
	err := readOnly(ctx, db, func(tx querier) error {
		return unchangedSession(ctx, tx, func() error {
			var n int64
			return tx.QueryRow(ctx, "SELECT count(*) FROM ("+t.firstChunkSQL()+") t", bindArgs(args)).Scan(&n)
		})
	})
	if se := (*SessionChangedError)(nil); errors.As(err, &se) {
		return sessionRefused("where", t.Where, se)
	}
	if hasSideEffects(err) {
		return &rewind.ValidationError{Field: "where", Value: t.Where,
			Reason: "must not write or advance a sequence, as it is evaluated several times per chunk: " + t.masked(err.Error())}
	}
	if err != nil {
		return t.sqlError("where", t.Where, err)
	}
	return nil
}

func (t *Table) loadColumns(ctx context.Context, db querier, oid uint32) error {
	rows, err := db.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return fmt.Errorf("read columns of %s: %w", t.ref, err)
	}
	t.types, t.notNull, t.order = map[string]string{}, map[string]bool{}, nil
	notNull := t.notNull
	for rows.Next() {
		var name, typ string
		var nn bool
		if err := rows.Scan(&name, &typ, &nn); err != nil {
			return err
		}
		t.types[name], notNull[name] = typ, nn
		t.order = append(t.order, name)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read columns of %s: %w", t.ref, err)
	}
	for _, k := range t.Key {
		if _, ok := t.types[k]; ok && !notNull[k] {
			return &rewind.ValidationError{Field: "key", Value: k, Reason: "key columns must be NOT NULL"}
		}
	}
	return nil
}

func (t *Table) checkUniqueKey(ctx context.Context, db querier, oid uint32) error {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1 AND i.indisunique
		AND i.indpred IS NULL AND i.indexprs IS NULL
		AND (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
		     WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k)::name[])`,
		oid, t.Key).Scan(&ok)
	if err != nil {
		return fmt.Errorf("check the key of %s: %w", t.ref, err)
	}
	if !ok {
		return &rewind.ValidationError{Field: "key", Value: strings.Join(t.Key, ", "),
			Reason: fmt.Sprintf("must be the columns of a primary key or unique index of %s", t.ref)}
	}
	return nil
}

// sqlError turns a database's rejection of a job's SQL into a validation
// error naming the field, with secret values masked. A lock wait that ran
// out or a lost connection says nothing about the SQL: it stays what it is.
func (t *Table) sqlError(field, sql string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && Classify(err) != Transient {
		reason := pe.Message
		if pe.Hint != "" {
			reason += " (hint: " + pe.Hint + ")"
		}
		reason += t.typeNote(sql, pe.Code)
		return &rewind.ValidationError{Field: field, Value: sql, Reason: t.masked(reason)}
	}
	return fmt.Errorf("check the job's %s against table %s: %w", field, t.ref, err)
}

// typeNote names the parameters sql binds and their declared types when
// PostgreSQL refused a type (no such operator or function, a value of
// the wrong type): the parameters are the usual cause, since they are
// bound with their declared types, not the types PostgreSQL would infer.
func (t *Table) typeNote(sql, code string) string {
	switch code {
	case "42804", "42883", "42846", "42725", "22P02", "22007", "22008", "22003":
	default:
		return ""
	}
	b, err := bindSites(sql)
	if err != nil {
		return ""
	}
	var ps []string
	for _, n := range b.names {
		if typ, ok := t.ptypes[n]; ok {
			ps = append(ps, "@"+n+" is "+typ)
		}
	}
	if len(ps) == 0 {
		return ""
	}
	return "; parameters are bound with their declared types (" + strings.Join(ps, ", ") +
		"): cast in the SQL (@name::type) or declare another type"
}

// sessionRefused refuses a job's SQL that changed the session when it
// was evaluated on the first chunk's rows.
func sessionRefused(field, sql string, se *SessionChangedError) error {
	return &rewind.ValidationError{Field: field, Value: sql, Reason: "changes the session (" + se.What +
		"), as set_config() or SET in a function it calls would: the change would outlive the chunk on the runner's " +
		"pooled connections, so a job's SQL must leave search_path, the role, session_replication_role, TimeZone, " +
		"DateStyle, IntervalStyle, standard_conforming_strings, client_encoding, extra_float_digits and bytea_output alone " +
		"(a function may declare SET search_path = … or SET TimeZone = …)"}
}

// masked returns s with the job's secret values replaced by "***".
func (t *Table) masked(s string) string {
	if t.redact == nil {
		return s
	}
	return t.redact(s)
}

// maskErr masks secret values in a database error's text, keeping its
// SQLSTATE (which classifies it): what reaches the ledger and the
// terminal about a chunk must not quote a secret. A job with secret
// parameters keeps no DETAIL at all (see withholdDetail).
func (t *Table) maskErr(err error) error {
	var pe *pgconn.PgError
	if t.redact == nil || !errors.As(err, &pe) {
		return err
	}
	c := *pe
	c.Message, c.Detail, c.Hint, c.Where, c.InternalQuery = t.redact(c.Message), t.redact(c.Detail), t.redact(c.Hint),
		t.redact(c.Where), t.redact(c.InternalQuery)
	if len(t.secret) > 0 && c.Detail != "" {
		c.Detail = DetailWithheld
	}
	if c == *pe {
		return err
	}
	return &c
}

// wrap puts a job's expression on lines of its own inside parentheses: a
// trailing -- comment ends with its line, not with the runner's SQL.
func wrap(expr string) string { return "(\n" + expr + "\n)" }

func (t *Table) where() string {
	if strings.TrimSpace(t.Where) == "" {
		return "true"
	}
	return wrap(t.Where)
}

func (t *Table) keyCols(prefix string) string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = prefix + quote(k)
	}
	return strings.Join(parts, ", ")
}

func (t *Table) keyText(prefix string) string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = prefix + quote(k) + "::text"
	}
	return strings.Join(parts, ", ")
}

// keyParams binds k as named arguments name0, name1… cast to the key
// columns' types, and returns the row of them.
func (t *Table) keyParams(args pgx.NamedArgs, name string, k Key) string {
	parts := make([]string, len(t.Key))
	for i, c := range t.Key {
		n := fmt.Sprintf("_rw_%s%d", name, i)
		args[n] = k[i]
		parts[i] = fmt.Sprintf("CAST(CAST(@%s AS text) AS %s)", n, t.types[c])
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// rangeCond restricts t's rows to b's keys.
func (t *Table) rangeCond(args pgx.NamedArgs, b Bounds) string {
	cols := "(" + t.keyCols("t.") + ")"
	var conds []string
	if b.After != nil {
		conds = append(conds, cols+" > "+t.keyParams(args, "a", b.After))
	} else if b.Lo != nil {
		conds = append(conds, cols+" >= "+t.keyParams(args, "l", b.Lo))
	}
	if b.Hi != nil {
		conds = append(conds, cols+" <= "+t.keyParams(args, "h", b.Hi))
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " AND ")
}

func with(args pgx.NamedArgs) pgx.NamedArgs {
	out := make(pgx.NamedArgs, len(args)+8)
	for k, v := range args {
		out[k] = v
	}
	return out
}

func scanKey(rows pgx.Row, n int) (Key, error) {
	k := make(Key, n)
	ptrs := make([]any, n)
	for i := range k {
		ptrs[i] = &k[i]
	}
	return k, rows.Scan(ptrs...)
}

func (t *Table) end(ctx context.Context, db querier, args pgx.NamedArgs) (Key, error) {
	q := fmt.Sprintf("SELECT %s FROM %s t WHERE %s ORDER BY %s LIMIT 1",
		t.keyText("t."), t.ref, t.where(), desc(t.keyCols("t.")))
	k, err := scanKey(db.QueryRow(ctx, q, bindArgs(args)), len(t.Key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return k, err
}

func desc(cols string) string { return strings.ReplaceAll(cols, ", ", " DESC, ") + " DESC" }

func (t *Table) next(ctx context.Context, db querier, args pgx.NamedArgs, after, end Key, size int) (Bounds, bool, error) {
	q, a := t.nextSQL(args, after, end, size)
	var n nextScan
	if err := n.scan(db.QueryRow(ctx, q, a)); err != nil {
		return Bounds{}, false, err
	}
	return n.bounds(after)
}

// nextSQL is the query that finds the chunk after `after`: one row with its
// first key, last key and size.
func (t *Table) nextSQL(args pgx.NamedArgs, after, end Key, size int) (string, bindArgs) {
	a := bindArgs(with(args))
	inner := fmt.Sprintf("SELECT %s FROM %s t WHERE %s AND %s ORDER BY %s LIMIT %d",
		t.keyCols("t."), t.ref, t.rangeCond(pgx.NamedArgs(a), Bounds{After: after, Hi: end}), t.where(), t.keyCols("t."), size)
	if len(t.Key) == 1 && hasMinMax(t.types[t.Key[0]]) {
		k := "c." + quote(t.Key[0])
		return fmt.Sprintf("SELECT ARRAY[min(%s)::text], ARRAY[max(%s)::text], count(*) FROM (%s) c", k, k, inner), a
	}
	arr := "ARRAY[" + t.keyText("c.") + "]"
	return fmt.Sprintf(`WITH c AS (%s) SELECT (SELECT %s FROM c ORDER BY %s LIMIT 1), (SELECT %s FROM c ORDER BY %s LIMIT 1),
		(SELECT count(*) FROM c)`, inner, arr, t.keyCols("c."), arr, desc(t.keyCols("c."))), a
}

// hasMinMax reports whether PostgreSQL has min() and max() for a column
// type (as format_type names it): not for uuid, boolean or bytea, whose
// keys take the ORDER BY … LIMIT 1 form.
func hasMinMax(typ string) bool {
	base, _, _ := strings.Cut(typ, "(")
	switch strings.TrimSpace(base) {
	case "smallint", "integer", "bigint", "numeric", "real", "double precision", "text", "character varying",
		"character", "date", "timestamp without time zone", "timestamp with time zone", "time without time zone",
		"interval", "oid", "money", "inet":
		return true
	}
	return false
}

// nextScan reads what nextSQL returns.
type nextScan struct {
	lo, hi []*string
	n      int64
}

func (n *nextScan) scan(row pgx.Row) error { return row.Scan(&n.lo, &n.hi, &n.n) }

func (n *nextScan) bounds(after Key) (Bounds, bool, error) {
	if n.n == 0 {
		return Bounds{After: after}, false, nil
	}
	return Bounds{After: after, Lo: deref(n.lo), Hi: deref(n.hi), Count: n.n}, true, nil
}

func deref(p []*string) Key {
	k := make(Key, len(p))
	for i, s := range p {
		if s != nil {
			k[i] = *s
		}
	}
	return k
}

func (t *Table) count(ctx context.Context, db querier, args pgx.NamedArgs, exact bool) (int64, bool, error) {
	if exact {
		var n int64
		err := db.QueryRow(ctx, "SELECT count(*) FROM "+t.ref+" t WHERE "+t.where(), bindArgs(args)).Scan(&n)
		return n, false, err
	}
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	var raw []byte
	if err := db.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT 1 FROM "+t.ref+" t WHERE "+t.where(), bindArgs(args)).Scan(&raw); err != nil {
		return 0, true, err
	}
	if err := json.Unmarshal(raw, &plan); err != nil {
		return 0, true, fmt.Errorf("read the planner's estimate: %w", err)
	}
	if len(plan) == 0 {
		return 0, true, errors.New("read the planner's estimate: EXPLAIN returned no plan")
	}
	return int64(plan[0].Plan.Rows), true, nil
}

func (t *Table) fingerprint(ctx context.Context, db querier, args pgx.NamedArgs) (string, error) {
	var n int64
	var sum string
	q := fmt.Sprintf("SELECT count(*), %s FROM %s t WHERE %s", rowSum("t::text"), t.ref, t.where())
	err := db.QueryRow(ctx, q, bindArgs(args)).Scan(&n, &sum)
	return fmt.Sprintf("%d:%s", n, sum), err
}

func (t *Table) readColumns() []string {
	if len(t.Columns) > 0 {
		return t.Columns
	}
	return t.order
}

func (t *Table) read(ctx context.Context, q querier, args pgx.NamedArgs, b Bounds, lock bool) ([]Item, error) {
	a := with(args)
	cols := t.readColumns()
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = "t." + quote(c)
	}
	lockClause := ""
	if lock {
		lockClause = " FOR UPDATE"
	}
	query := fmt.Sprintf("SELECT %s, %s FROM %s t WHERE %s AND %s ORDER BY %s%s",
		t.keyText("t."), strings.Join(sel, ", "), t.ref, t.rangeCond(a, b), t.where(), t.keyCols("t."), lockClause)
	rows, err := q.Query(ctx, query, bindArgs(a))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []Item
	nk := len(t.Key)
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		it := Item{Key: make(Key, nk), Row: make(map[string]any, len(cols))}
		for i := range nk {
			it.Key[i], _ = vals[i].(string)
		}
		for i, c := range cols {
			it.Row[c] = vals[nk+i]
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

func (t *Table) keys(ctx context.Context, q querier, args pgx.NamedArgs, b Bounds) ([]Key, error) {
	a := with(args)
	query := fmt.Sprintf("SELECT %s FROM %s t WHERE %s AND %s ORDER BY %s",
		t.keyText("t."), t.ref, t.rangeCond(a, b), t.where(), t.keyCols("t."))
	rows, err := q.Query(ctx, query, bindArgs(a))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Key, error) { return scanKey(row, len(t.Key)) })
}

// rowSum is the checksum of a set of rows: the sum of a 64-bit hash of each
// row's text (PostgreSQL's hashtextextended, the stable hash behind hash
// partitioning), in decimal. Like pt-table-checksum's BIT_XOR of CRC32s it
// needs no sort, so it costs little on the hot path; unlike XOR, a row
// counted twice does not cancel out.
func rowSum(text string) string {
	return fmt.Sprintf("coalesce(sum(hashtextextended(%s, 0)), 0)::text", text)
}

// lockRead locks the rows of b that match the job's WHERE and returns
// their number, their checksum and the database's clock.
func (t *Table) lockRead(ctx context.Context, tx querier, args pgx.NamedArgs, b Bounds) (int64, string, time.Time, error) {
	a := with(args)
	q := fmt.Sprintf(`SELECT count(*), %s, clock_timestamp() FROM (
		SELECT t::text AS _rw_t FROM %s t WHERE %s AND %s ORDER BY %s FOR NO KEY UPDATE) x`,
		rowSum("x._rw_t"), t.ref, t.rangeCond(a, b), t.where(), t.keyCols("t."))
	var n int64
	var sum string
	var at time.Time
	err := tx.QueryRow(ctx, q, bindArgs(a)).Scan(&n, &sum, &at)
	return n, sum, at, err
}

// rangeSum returns the number and md5 of every row in b, matching the
// WHERE or not: what a statement left behind.
func (t *Table) rangeSum(ctx context.Context, tx querier, b Bounds) (int64, string, error) {
	a := pgx.NamedArgs{}
	q := fmt.Sprintf("SELECT count(*), %s FROM %s t WHERE %s", rowSum("t::text"), t.ref, t.rangeCond(a, b))
	var n int64
	var sum string
	err := tx.QueryRow(ctx, q, bindArgs(a)).Scan(&n, &sum)
	return n, sum, err
}

// md5Of returns the hex md5 of s.
func md5Of(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
