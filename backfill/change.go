package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// applier applies a job's change to one chunk inside the chunk's
// transaction, and previews it without writing.
type applier interface {
	prepare(ctx context.Context, db querier, args pgx.NamedArgs) error
	apply(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error)
	preview(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds, n int) ([]Diff, []string, error)
	explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, error)
}

// chunkEnv is what applying one chunk has at hand.
type chunkEnv struct {
	tx      pgx.Tx
	args    pgx.NamedArgs
	runID   string
	seq     int64
	jobHash string
	intents *intents // for sinks outside the database
}

// chunkResult is what a chunk did, as recorded in its checkpoint.
type chunkResult struct {
	Seen, Changed, Skipped int64
	In, Out                string    // checksums of input and output
	At                     time.Time // the database's clock during the chunk, for the audit entry

	// next is the following chunk, found in the same round trip as the
	// checkpoint when the change cannot affect it (set jobs).
	next   *Bounds
	nextOK bool
}

// Diff is one row of a dry run's preview: the columns that would change.
type Diff struct {
	Key    Key               `json:"key"`
	Before map[string]string `json:"before"`
	After  map[string]string `json:"after"`
}

func explainText(ctx context.Context, db querier, q string, args pgx.NamedArgs) (string, error) {
	rows, err := db.Query(ctx, "EXPLAIN "+q, args)
	if err != nil {
		return "", err
	}
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

// setChange updates the source table's columns with SQL expressions.
type setChange struct {
	t    *Table
	set  map[string]string
	cols []string        // sorted
	noEq map[string]bool // columns whose type has no equality operator (json…): compared as text
	// hashRow hashes a row of the checksummed columns: their record hash
	// when every type has a hash function (no text conversion), else the
	// hash of the row's text.
	hashRow func(row string) string
}

func newSetChange(t *Table, set map[string]string) *setChange {
	return &setChange{t: t, set: set, cols: slices.Sorted(maps.Keys(set))}
}

func (s *setChange) prepare(ctx context.Context, db querier, args pgx.NamedArgs) error {
	s.hashRow = func(row string) string { return "hashtextextended(" + row + "::text, 0)" }
	// Hashing a row of NULLs of the columns' types finds out whether each
	// type has an extended hash function, without reading the table.
	var nulls []string
	for _, c := range append(slices.Clone(s.t.Key), s.cols...) {
		if typ, ok := s.t.types[c]; ok {
			nulls = append(nulls, "NULL::"+typ)
		}
	}
	if _, err := db.Exec(ctx, fmt.Sprintf("SELECT hash_record_extended(ROW(%s), 0)", strings.Join(nulls, ", "))); err == nil {
		s.hashRow = func(row string) string { return "hash_record_extended(" + row + ", 0)" }
	}
	for _, c := range s.cols {
		field := "set." + c
		if _, ok := s.t.types[c]; !ok {
			return &rewind.ValidationError{Field: field, Value: c, Reason: fmt.Sprintf("table %s has no such column", s.t.ref)}
		}
		if slices.Contains(s.t.Key, c) {
			return &rewind.ValidationError{Field: field, Value: c, Reason: "a set job cannot change a key column"}
		}
		if strings.TrimSpace(s.set[c]) == "" {
			return &rewind.ValidationError{Field: field, Reason: "needs an SQL expression"}
		}
		q := fmt.Sprintf("SELECT CAST((%s) AS %s) FROM %s t", s.set[c], s.t.types[c], s.t.ref)
		if _, err := explainText(ctx, db, q, args); err != nil {
			return sqlError(field, s.set[c], err)
		}
		q = fmt.Sprintf("SELECT t.%s IS DISTINCT FROM t.%s FROM %s t", quote(c), quote(c), s.t.ref)
		if _, err := explainText(ctx, db, q, nil); err != nil {
			if s.noEq == nil {
				s.noEq = map[string]bool{}
			}
			s.noEq[c] = true
		}
	}
	return nil
}

// checksumCols lists the key and set columns, which a set job's checksums cover.
func (s *setChange) checksumCols(prefix string) string {
	cols := s.t.keyCols(prefix)
	for _, c := range s.cols {
		cols += ", " + prefix + quote(c)
	}
	return cols
}

// assignments returns "col = (expr)::type, …" and the row comparison that
// keeps rows already holding the values from being written.
func (s *setChange) assignments() (set, differs string) {
	var sets, olds, news []string
	for _, c := range s.cols {
		v := fmt.Sprintf("CAST((%s) AS %s)", s.set[c], s.t.types[c])
		sets = append(sets, quote(c)+" = "+v)
		if s.noEq[c] {
			olds, news = append(olds, "t."+quote(c)+"::text"), append(news, v+"::text")
		} else {
			olds, news = append(olds, "t."+quote(c)), append(news, v)
		}
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
	var r chunkResult
	a := with(env.args)
	row := "ROW(" + s.checksumCols("t.") + ")"
	q := fmt.Sprintf(`WITH i AS (SELECT count(*) AS n, coalesce(sum(%s), 0)::text AS h FROM %s t WHERE %s AND %s),
		u AS (%s RETURNING %s AS _rw_h),
		o AS (SELECT count(*) AS n, coalesce(sum(u._rw_h), 0)::text AS h FROM u)
		SELECT i.n, o.n, i.h, o.h, clock_timestamp() FROM i, o`,
		s.hashRow(row), s.t.ref, s.t.rangeCond(a, b), s.t.where(), s.updateSQL(a, b), s.hashRow(row))
	err := env.tx.QueryRow(ctx, q, a).Scan(&r.Seen, &r.Changed, &r.In, &r.Out, &r.At)
	return r, err
}

func (s *setChange) preview(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds, n int) ([]Diff, []string, error) {
	a := with(args)
	var sel []string
	for _, c := range s.cols {
		sel = append(sel, "t."+quote(c)+"::text", fmt.Sprintf("CAST(CAST((%s) AS %s) AS text)", s.set[c], s.t.types[c]))
	}
	q := fmt.Sprintf("SELECT %s, %s FROM %s t WHERE %s AND %s ORDER BY %s LIMIT %d",
		s.t.keyText("t."), strings.Join(sel, ", "), s.t.ref, s.t.rangeCond(a, Bounds{After: b.After}), s.t.where(), s.t.keyCols("t."), n)
	rows, err := db.Query(ctx, q, a)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var diffs []Diff
	nk := len(s.t.Key)
	for rows.Next() {
		vals := make([]*string, nk+2*len(s.cols))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		d := Diff{Key: make(Key, nk), Before: map[string]string{}, After: map[string]string{}}
		for i := range nk {
			d.Key[i] = derefText(vals[i])
		}
		for i, c := range s.cols {
			d.Before[c], d.After[c] = derefText(vals[nk+2*i]), derefText(vals[nk+2*i+1])
		}
		diffs = append(diffs, d)
	}
	return diffs, nil, rows.Err()
}

func derefText(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

func (s *setChange) explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, error) {
	a := with(args)
	return explainText(ctx, db, s.updateSQL(a, b), a)
}

// statementChange runs an SQL statement per chunk with the chunk's key
// bounds bound as @lo and @hi (or @lo_COL and @hi_COL).
type statementChange struct {
	t   *Table
	sql string
}

var boundRE = regexp.MustCompile(`@(lo|hi)(_[A-Za-z0-9_]+)?\b`)

func (s *statementChange) bind(args pgx.NamedArgs, b Bounds) pgx.NamedArgs {
	a := with(args)
	for i, c := range s.t.Key {
		var lo, hi any
		if b.Lo != nil {
			lo, hi = b.Lo[i], b.Hi[i]
		}
		a["lo_"+c], a["hi_"+c] = lo, hi
		if len(s.t.Key) == 1 {
			a["lo"], a["hi"] = lo, hi
		}
	}
	return a
}

func (s *statementChange) prepare(ctx context.Context, db querier, args pgx.NamedArgs) error {
	if !boundRE.MatchString(s.sql) {
		return &rewind.ValidationError{Field: "statement", Value: s.sql,
			Reason: "must restrict itself to the chunk with @lo and @hi (or @lo_COLUMN and @hi_COLUMN)"}
	}
	if _, err := explainText(ctx, db, s.sql, s.bind(args, Bounds{})); err != nil {
		return sqlError("statement", s.sql, err)
	}
	return nil
}

func (s *statementChange) apply(ctx context.Context, env *chunkEnv, b Bounds) (chunkResult, error) {
	var r chunkResult
	var err error
	if r.Seen, r.In, r.At, err = s.t.lockRead(ctx, env.tx, env.args, b); err != nil {
		return r, err
	}
	tag, err := env.tx.Exec(ctx, s.sql, s.bind(env.args, b))
	if err != nil {
		return r, err
	}
	r.Changed = tag.RowsAffected()
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

func (s *statementChange) explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, error) {
	return explainText(ctx, db, s.sql, s.bind(args, b))
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

func (p *processChange) explain(ctx context.Context, db querier, args pgx.NamedArgs, b Bounds) (string, error) {
	t, ok := p.src.(*Table)
	if !ok {
		return "", nil
	}
	a := with(args)
	q := fmt.Sprintf("SELECT * FROM %s t WHERE %s AND %s ORDER BY %s FOR UPDATE", t.ref, t.rangeCond(a, b), t.where(), t.keyCols("t."))
	return explainText(ctx, db, q, a)
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
