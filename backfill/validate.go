package backfill

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill/internal/pgparse"
)

// A job's validations are SQL assertions about the data the job leaves
// behind ("no email has upper case letters", "at most 10 rows are
// flagged"). Runner.Validate runs them on demand; a canary runs them
// after its first sample of rows and lets the run go on only if they all
// pass. Each runs in a read-only transaction that is rolled back, with the
// job's parameters bound as @name, so a validation can never change the
// data it checks.

// Validation is one SQL assertion: a query and what it must return.
type Validation struct {
	// Name identifies the validation in reports: letters, digits, '.',
	// '_' or '-'.
	Name string `json:"name"`
	// SQL is one SELECT (WITH, VALUES and UNION included) that may use the
	// job's @parameters. It may not write, lock rows or change the
	// session.
	SQL string `json:"sql"`
	// Expect is what the query must return.
	Expect Expect `json:"expect"`
}

// Expect is what a validation's query must return, in one of three forms:
//
//   - a value (Number, Bool, Text or Null): exactly one row of one
//     column equal to it. A number compares numerically with a column of
//     any numeric type, a boolean with a boolean, text with the value as
//     text (cast in the SQL, value::text, to decide how it prints), Null
//     with NULL;
//   - bounds (Min, Max, or both): one row of one numeric column within
//     them, inclusive;
//   - Rows: the query returns exactly that many rows (any columns). With
//     Rows 0 the report lists the first rows returned, such as the keys
//     still wrong.
type Expect struct {
	Number *string `json:"number,omitempty"` // a decimal number, such as 0 or 12.50
	Bool   *bool   `json:"bool,omitempty"`
	Text   *string `json:"text,omitempty"`
	Null   bool    `json:"null,omitempty"`
	Min    *string `json:"min,omitempty"` // decimal numbers
	Max    *string `json:"max,omitempty"`
	Rows   *int64  `json:"rows,omitempty"`
}

// String says what e expects, as a report shows it.
func (e Expect) String() string {
	switch {
	case e.Number != nil:
		return *e.Number
	case e.Bool != nil:
		return fmt.Sprint(*e.Bool)
	case e.Text != nil:
		return fmt.Sprintf("%q", *e.Text)
	case e.Null:
		return "NULL"
	case e.Rows != nil:
		return fmt.Sprintf("%d row(s)", *e.Rows)
	case e.Min != nil && e.Max != nil:
		return fmt.Sprintf("between %s and %s", *e.Min, *e.Max)
	case e.Min != nil:
		return "at least " + *e.Min
	case e.Max != nil:
		return "at most " + *e.Max
	}
	return "nothing"
}

// check says what is wrong with e's form, or "".
func (e Expect) check() string {
	forms := 0
	for _, given := range []bool{e.Number != nil, e.Bool != nil, e.Text != nil, e.Null, e.Min != nil || e.Max != nil, e.Rows != nil} {
		if given {
			forms++
		}
	}
	switch {
	case forms == 0:
		return "is required: a value the query's one row and column must equal, {min: …, max: …}, or {rows: N}"
	case forms > 1:
		return "give one of a value, {min: …, max: …} or {rows: N}"
	case e.Rows != nil && *e.Rows < 0:
		return fmt.Sprintf("rows must be 0 or more, not %d", *e.Rows)
	}
	for _, n := range []*string{e.Number, e.Min, e.Max} {
		if n != nil {
			if _, ok := decimal(*n); !ok {
				return fmt.Sprintf("%q is not a decimal number", *n)
			}
		}
	}
	if e.Min != nil && e.Max != nil {
		lo, _ := decimal(*e.Min)
		hi, _ := decimal(*e.Max)
		if lo.Cmp(hi) > 0 {
			return fmt.Sprintf("min %s is above max %s", *e.Min, *e.Max)
		}
	}
	return ""
}

var decimalRE = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// decimal reads a decimal number exactly (0.1 is 1/10, not a float's
// nearest value).
func decimal(s string) (*big.Rat, bool) {
	if !decimalRE.MatchString(s) {
		return nil, false
	}
	return new(big.Rat).SetString(s)
}

var validationNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// validateValidations checks the job's validations without a database:
// names, expectations, and each SQL with PostgreSQL's parser.
func (j *Job) validateValidations() error {
	seen := map[string]bool{}
	for i, v := range j.Validate {
		field := fmt.Sprintf("validate.%s", v.Name)
		switch {
		case !validationNameRE.MatchString(v.Name):
			return &rewind.ValidationError{Field: fmt.Sprintf("validate item %d name", i+1), Value: v.Name,
				Reason: "must be 1 to 100 letters, digits, '.', '_' or '-'"}
		case seen[v.Name]:
			return &rewind.ValidationError{Field: field, Value: v.Name, Reason: "is given twice; names identify validations in reports"}
		case strings.TrimSpace(v.SQL) == "":
			return &rewind.ValidationError{Field: field + ".sql", Reason: "is required: one SELECT"}
		}
		seen[v.Name] = true
		if reason := v.Expect.check(); reason != "" {
			return &rewind.ValidationError{Field: field + ".expect", Reason: reason}
		}
		names, _, err := parseQuery(field+".sql", v.SQL)
		if err != nil {
			return err
		}
		if err := j.declared(field+".sql", v.SQL, names, nil); err != nil {
			return err
		}
	}
	return nil
}

// parseQuery checks that sql is exactly one query that reads: a SELECT
// (WITH, VALUES, UNION…) without a data-modifying WITH, INTO or a locking
// clause, calling no session-changing function. It returns the @names it
// binds and the query without a trailing semicolon and comments, to be
// wrapped in the runner's own SQL.
func parseQuery(field, sql string) ([]string, string, error) {
	b, err := bindSites(sql)
	if err != nil {
		return nil, "", sqlTextError(field, sql, err, 0)
	}
	tree, err := parseSQL(b.sql)
	if err != nil {
		return nil, "", sqlTextError(field, sql, err, 0)
	}
	stmts, _ := tree["stmts"].([]any)
	if len(stmts) != 1 {
		return nil, "", exprError(field, sql, fmt.Sprintf("must be exactly one query, not %d statements", len(stmts)))
	}
	stmt, _ := stmts[0].(map[string]any)
	if kind, _ := pgparse.Node(stmt["stmt"]); kind != "SelectStmt" {
		return nil, "", exprError(field, sql, "must be one SELECT: a validation reads, it never writes")
	}
	var refused string
	pgparse.Walk(stmt["stmt"], func(kind string, body map[string]any) {
		switch {
		case refused != "":
		case writeKinds[kind]:
			refused = "has a data-modifying part (" + strings.TrimSuffix(kind, "Stmt") + "): a validation reads, it never writes"
		case kind == "SelectStmt" && body["intoClause"] != nil:
			refused = "has INTO, which creates a table: a validation reads, it never writes"
		case kind == "SelectStmt" && body["lockingClause"] != nil:
			refused = "locks rows (FOR UPDATE/SHARE): a validation reads without locking"
		}
	})
	if refused != "" {
		return nil, "", exprError(field, sql, refused)
	}
	if err := sessionFuncError(field, sql, stmt["stmt"]); err != nil {
		return nil, "", err
	}
	toks, err := pgparse.Scan(sql)
	if err != nil {
		return nil, "", sqlTextError(field, sql, parserError(err), 0)
	}
	end := 0
	for _, t := range toks {
		if text := sql[t.Start:t.End]; text != ";" && !strings.HasPrefix(text, "--") && !strings.HasPrefix(text, "/*") {
			end = t.End
		}
	}
	return b.names, sql[:end], nil
}

// querySQL is a validation's query as the runner wraps it; v was checked
// (Job.validate).
func (v Validation) querySQL() string {
	_, q, err := parseQuery("", v.SQL)
	if err != nil {
		return v.SQL
	}
	return q
}

// prepareValidations has PostgreSQL check each validation's query
// (EXPLAIN, read-only, which runs nothing), so that one that cannot run
// is refused before a run writes anything.
func prepareValidations(ctx context.Context, db querier, p *prepared) error {
	for _, v := range p.job.Validate {
		field := "validate." + v.Name + ".sql"
		if _, err := explainText(ctx, db, v.querySQL(), p.args); hasSideEffects(err) {
			return &rewind.ValidationError{Field: field, Value: v.SQL, Reason: "writes or advances a sequence " +
				"(a function declared STABLE or IMMUTABLE that does): a validation must only read"}
		} else if err != nil {
			return validationSQLError(field, v.SQL, p, err)
		}
	}
	return nil
}

func validationSQLError(field, sql string, p *prepared, err error) error {
	if t, ok := p.src.(*Table); ok {
		return t.sqlError(field, sql, err)
	}
	return &rewind.ValidationError{Field: field, Value: sql, Reason: p.job.Params.redactor()(err.Error())}
}

// ValidationResult is the outcome of one validation.
type ValidationResult struct {
	Name   string `json:"name"`
	Expect string `json:"expect"`
	Passed bool   `json:"passed"`
	// Got is what the query returned: its value as text, or its number
	// of rows.
	Got string `json:"got"`
	// Rows are the first rows the query returned when it was to return
	// a number of rows (each row's columns as text), for a report to name
	// the keys still wrong; RowCount is how many it returned.
	Rows     [][]string `json:"rows,omitempty"`
	RowCount int64      `json:"row_count,omitempty"`
	// Reason says why it failed, when the value alone does not.
	Reason string `json:"reason,omitempty"`
}

// ValidateReport is the outcome of a job's validations.
type ValidateReport struct {
	Job     string             `json:"job"`
	Version string             `json:"version"`
	RunID   string             `json:"run_id,omitempty"`
	Results []ValidationResult `json:"results"`
	Passed  int                `json:"passed"`
	Failed  int                `json:"failed"`
}

// OK reports whether every validation passed.
func (v *ValidateReport) OK() bool { return v.Failed == 0 }

// summary says which validations failed, in a sentence.
func (v *ValidateReport) summary() string {
	if v.OK() {
		return fmt.Sprintf("%d of %d validations passed", v.Passed, len(v.Results))
	}
	var failed []string
	for _, r := range v.Results {
		if !r.Passed {
			s := fmt.Sprintf("%s (expected %s, got %s", r.Name, r.Expect, r.Got)
			if r.Reason != "" {
				s += ": " + r.Reason
			}
			failed = append(failed, s+")")
		}
	}
	return fmt.Sprintf("%d of %d validations failed: %s", v.Failed, len(v.Results), strings.Join(failed, "; "))
}

// Validate runs job's validations against the target database, each in a
// read-only transaction that is rolled back, and reports each one's
// outcome. When runID names a run (of the same job), the outcome is
// recorded as a run.validated audit entry; nothing else is written.
// A validation that fails is reported, not returned as an error.
func (r *Runner) Validate(ctx context.Context, job *Job, runID string) (*ValidateReport, error) {
	if len(job.Validate) == 0 {
		return nil, &rewind.ValidationError{Field: "validate", Value: job.Name,
			Reason: "the job has no validations: add a validate: block (a list of name, sql and expect)"}
	}
	var run *Run
	if runID != "" {
		var err error
		if run, err = r.ledger.loadRun(ctx, runID); err != nil {
			return nil, err
		}
		if run.JobName != job.Name {
			return nil, &rewind.ValidationError{Field: "job", Value: job.Name,
				Reason: fmt.Sprintf("run %s belongs to job %s", run.ID, run.JobName)}
		}
	}
	p, err := r.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	if run != nil {
		if err := checkRecorded(run, p); err != nil {
			return nil, err
		}
	}
	rep, err := r.runValidations(ctx, p)
	if err != nil || run == nil {
		return rep, err
	}
	rep.RunID = run.ID
	e := r.entry(job, "run.validated", run.ID, validationAttrs(rep),
		map[string]int64{"validations": int64(len(rep.Results)), "failed": int64(rep.Failed)})
	return rep, r.ledger.appendAudit(ctx, e)
}

func validationAttrs(rep *ValidateReport) map[string]string {
	attrs := map[string]string{"outcome": "passed"}
	if !rep.OK() {
		attrs["outcome"] = "failed"
	}
	for _, v := range rep.Results {
		if v.Passed {
			attrs["validation."+v.Name] = "passed"
		} else {
			attrs["validation."+v.Name] = fmt.Sprintf("failed: expected %s, got %s", v.Expect, v.Got)
		}
	}
	return attrs
}

// runValidations runs p's validations, each in a read-only transaction
// that is rolled back. A query PostgreSQL refuses (a division by zero, a
// statement timeout) fails its validation, naming the error; a lost
// connection is returned as an error.
func (r *Runner) runValidations(ctx context.Context, p *prepared) (*ValidateReport, error) {
	rep := &ValidateReport{Job: p.job.Name, Version: p.job.Version, Results: []ValidationResult{}}
	mask := p.job.Params.redactor()
	for _, v := range p.job.Validate {
		res, err := runValidation(ctx, r.cfg.DB, v, p.args)
		if err != nil {
			if Classify(err) == Transient || ctx.Err() != nil {
				return nil, fmt.Errorf("run validation %s: %w", v.Name, err)
			}
			res = ValidationResult{Name: v.Name, Expect: v.Expect.String(), Got: "an error", Reason: mask(err.Error())}
		}
		res.Got, res.Reason = mask(res.Got), mask(res.Reason)
		for _, row := range res.Rows {
			for i := range row {
				row[i] = mask(row[i])
			}
		}
		if res.Passed {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// sampleRows is how many rows a report shows of a query that was to
// return a number of rows.
const sampleRows = 10

func runValidation(ctx context.Context, db querier, v Validation, args pgx.NamedArgs) (ValidationResult, error) {
	res := ValidationResult{Name: v.Name, Expect: v.Expect.String()}
	limit := int64(2)
	if v.Expect.Rows != nil {
		limit = max(*v.Expect.Rows+1, sampleRows)
	}
	var cols int
	var rows [][]any
	var count int64
	sql := v.querySQL()
	err := readOnly(ctx, db, func(tx querier) error {
		// On lines of its own: a trailing comment ends with its line.
		q := fmt.Sprintf("SELECT * FROM (\n%s\n) _rw_q LIMIT %d", sql, limit)
		rs, err := tx.Query(ctx, q, bindArgs(with(args)))
		if err != nil {
			return err
		}
		defer rs.Close()
		cols = len(rs.FieldDescriptions())
		for rs.Next() {
			vals, err := rs.Values()
			if err != nil {
				return err
			}
			rows = append(rows, vals)
		}
		if err := rs.Err(); err != nil {
			return err
		}
		count = int64(len(rows))
		if count == limit && v.Expect.Rows != nil {
			return tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM (\n%s\n) _rw_q", sql), bindArgs(with(args))).Scan(&count)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if e := v.Expect; e.Rows != nil {
		res.Passed, res.RowCount = count == *e.Rows, count
		res.Got = fmt.Sprintf("%d row(s)", count)
		for _, row := range rows[:min(len(rows), sampleRows)] {
			texts := make([]string, len(row))
			for i, x := range row {
				texts[i] = valueText(x)
			}
			res.Rows = append(res.Rows, texts)
		}
		return res, nil
	}
	switch {
	case len(rows) != 1:
		res.Got = fmt.Sprintf("%d row(s)", count)
		if len(rows) > 1 {
			res.Got = "more than one row"
		}
		res.Reason = "the query must return exactly one row of one column"
		return res, nil
	case cols != 1:
		res.Got = fmt.Sprintf("%d columns", cols)
		res.Reason = "the query must return exactly one row of one column"
		return res, nil
	}
	res.Passed, res.Got, res.Reason = v.Expect.matches(rows[0][0])
	return res, nil
}

// matches compares x, a query's one value, with e.
func (e Expect) matches(x any) (ok bool, got, reason string) {
	got = valueText(x)
	if x == nil {
		got = "NULL"
	}
	switch {
	case e.Null:
		return x == nil, got, ""
	case x == nil:
		return false, got, ""
	case e.Text != nil:
		return got == *e.Text, got, ""
	case e.Bool != nil:
		b, isBool := x.(bool)
		if !isBool {
			return false, got, "not a boolean"
		}
		return b == *e.Bool, got, ""
	}
	n, isNum := ratOf(x)
	if !isNum {
		return false, got, "not a number"
	}
	cmp := func(s *string) int {
		d, _ := decimal(*s)
		return n.Cmp(d)
	}
	switch {
	case e.Number != nil:
		return cmp(e.Number) == 0, got, ""
	case e.Min != nil && cmp(e.Min) < 0:
		return false, got, "below the minimum " + *e.Min
	case e.Max != nil && cmp(e.Max) > 0:
		return false, got, "above the maximum " + *e.Max
	}
	return true, got, ""
}

// ratOf reads a value of a numeric column exactly.
func ratOf(x any) (*big.Rat, bool) {
	switch v := x.(type) {
	case int64:
		return new(big.Rat).SetInt64(v), true
	case int32:
		return new(big.Rat).SetInt64(int64(v)), true
	case int16:
		return new(big.Rat).SetInt64(int64(v)), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false
		}
		return new(big.Rat).SetFloat64(v), true
	case float32:
		return ratOf(float64(v))
	case pgtype.Numeric:
		if !v.Valid || v.NaN || v.InfinityModifier != pgtype.Finite || v.Int == nil {
			return nil, false
		}
		r := new(big.Rat).SetInt(v.Int)
		exp := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(v.Exp))), nil))
		if v.Exp >= 0 {
			return r.Mul(r, exp), true
		}
		return r.Quo(r, exp), true
	}
	return nil, false
}

func abs(n int32) int32 {
	if n < 0 {
		return -n
	}
	return n
}

// CanaryError is a canary whose validations failed: the run stopped after
// its canary's rows, and waits for Runner.Promote or Cancel. It matches
// ErrCanaryFailed.
type CanaryError struct {
	RunID  string
	Report *CanaryReport
}

func (e *CanaryError) Error() string {
	return fmt.Sprintf("backfill: run %s stopped after its canary (%d rows in %d chunk(s)): %s. Nothing beyond the canary "+
		"was written. Look at the rows (rewind backfill status %s, rewind backfill validate %s); then continue the run "+
		"with 'rewind backfill promote %s', or cancel it ('rewind backfill cancel %s') and fix the job",
		e.RunID, e.Report.Rows, e.Report.Chunks, e.Report.Validations.summary(), e.RunID, e.RunID, e.RunID, e.RunID)
}

// Is makes errors.Is(err, ErrCanaryFailed) true.
func (e *CanaryError) Is(target error) bool { return target == ErrCanaryFailed }
