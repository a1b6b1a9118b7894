package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

func TestValidateReportsEachAssertion(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	b.db.Exec(t, "CREATE SEQUENCE s")
	job := doubleJob()
	job.Params = backfill.Params{"limit": {Type: "bigint", Value: "150", Text: "150"}}
	v := func(name, sql string, e backfill.Expect) backfill.Validation {
		return backfill.Validation{Name: name, SQL: sql, Expect: e}
	}
	job.Validate = []backfill.Validation{
		v("count", "SELECT count(*) FROM items WHERE id <= @limit;", backfill.Expect{Number: ptr("150")}),
		v("count_wrong", "SELECT count(*) FROM items", backfill.Expect{Number: ptr("299")}),
		v("numeric", "SELECT avg(val)::numeric(10,2) FROM items WHERE id <= 4 -- a comment", backfill.Expect{Number: ptr("2.50")}),
		v("bool", "SELECT bool_and(NOT done) FROM items", backfill.Expect{Bool: ptr(true)}),
		v("text", "SELECT 'a' || 'b'", backfill.Expect{Text: ptr("ab")}),
		v("null", "SELECT max(val) FROM items WHERE false", backfill.Expect{Null: true}),
		v("bounds", "SELECT max(val) FROM items", backfill.Expect{Min: ptr("1"), Max: ptr("90")}),
		v("rows", "SELECT id, val FROM items WHERE val = 96 ORDER BY id", backfill.Expect{Rows: ptr(int64(0))}),
		v("rows_ok", "SELECT id FROM items WHERE val > 1000", backfill.Expect{Rows: ptr(int64(0))}),
		v("two_rows", "SELECT id FROM items WHERE id < 3", backfill.Expect{Number: ptr("1")}),
		v("division", "SELECT 1 / (count(*) - count(*)) FROM items", backfill.Expect{Number: ptr("1")}),
		v("writes", "SELECT nextval('s')", backfill.Expect{Number: ptr("1")}),
	}
	rep, err := b.runner.Validate(ctx, job, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]backfill.ValidationResult{}
	for _, r := range rep.Results {
		got[r.Name] = r
	}
	for name, want := range map[string]struct {
		passed    bool
		got, more string
	}{
		"count": {true, "150", ""}, "count_wrong": {false, "300", ""}, "numeric": {true, "2.50", ""},
		"bool": {true, "true", ""}, "text": {true, "ab", ""}, "null": {true, "NULL", ""},
		"bounds": {false, "96", "above the maximum 90"}, "rows": {false, "3 row(s)", ""}, "rows_ok": {true, "0 row(s)", ""},
		"two_rows": {false, "more than one row", "exactly one row"}, "division": {false, "an error", "division by zero"},
		"writes": {false, "an error", "read-only transaction"},
	} {
		r := got[name]
		if r.Passed != want.passed || r.Got != want.got || !strings.Contains(r.Reason, want.more) {
			t.Errorf("%s: %+v, want passed %v, got %q, reason with %q", name, r, want.passed, want.got, want.more)
		}
	}
	if r := got["rows"]; len(r.Rows) != 3 || strings.Join(r.Rows[0], ",") != "96,96" {
		t.Errorf("rows of the failing rows validation: %v", r.Rows)
	}
	if rep.Passed != 6 || rep.Failed != 6 || rep.OK() {
		t.Errorf("report %d passed, %d failed", rep.Passed, rep.Failed)
	}
	if n := b.scalar(t, "SELECT last_value FROM s"); n != 1 || b.scalar(t, "SELECT count(*) FROM s WHERE is_called") != 0 {
		t.Error("a validation advanced a sequence")
	}
	// With a run, the outcome is recorded.
	id := b.apply(t, doubleJob(), backfill.ApplyOptions{}).Run.ID
	job3 := doubleJob()
	job3.Validate = []backfill.Validation{v("all_done", "SELECT count(*) FROM items WHERE NOT done", backfill.Expect{Number: ptr("0")})}
	rep, err = b.runner.Validate(ctx, job3, id[:8])
	if err != nil || !rep.OK() || rep.RunID != id {
		t.Fatalf("validate a run: %+v, %v", rep, err)
	}
	if e := b.lastEntry(t, id, "run.validated"); e["outcome"] != "passed" || e["validation.all_done"] != "passed" {
		t.Fatalf("run.validated entry %v", e)
	}
}

func TestBadValidationsAreRefusedBeforeAnythingIsWritten(t *testing.T) {
	t.Parallel()
	b := setup(t, 100)
	ctx := context.Background()
	zero := backfill.Expect{Number: ptr("0")}
	for _, tt := range []struct {
		name string
		v    []backfill.Validation
		want string
	}{
		{"bad name", []backfill.Validation{{Name: "no spaces", SQL: "SELECT 1", Expect: zero}}, "validate item 1 name"},
		{"same name twice", []backfill.Validation{{Name: "a", SQL: "SELECT 1", Expect: zero}, {Name: "a", SQL: "SELECT 1", Expect: zero}}, "given twice"},
		{"no sql", []backfill.Validation{{Name: "a", SQL: " ", Expect: zero}}, "validate.a.sql"},
		{"no expectation", []backfill.Validation{{Name: "a", SQL: "SELECT 1"}}, "validate.a.expect"},
		{"two expectations", []backfill.Validation{{Name: "a", SQL: "SELECT 1", Expect: backfill.Expect{Number: ptr("1"), Null: true}}}, "give one of"},
		{"not a number", []backfill.Validation{{Name: "a", SQL: "SELECT 1", Expect: backfill.Expect{Max: ptr("ten")}}}, "not a decimal number"},
		{"min above max", []backfill.Validation{{Name: "a", SQL: "SELECT 1", Expect: backfill.Expect{Min: ptr("5"), Max: ptr("1")}}}, "above max"},
		{"negative rows", []backfill.Validation{{Name: "a", SQL: "SELECT 1", Expect: backfill.Expect{Rows: ptr(int64(-1))}}}, "0 or more"},
		{"update", []backfill.Validation{{Name: "a", SQL: "UPDATE items SET n = 1", Expect: zero}}, "one SELECT"},
		{"writing with", []backfill.Validation{{Name: "a", SQL: "WITH d AS (DELETE FROM items RETURNING 1) SELECT count(*) FROM d", Expect: zero}}, "data-modifying part (Delete)"},
		{"select into", []backfill.Validation{{Name: "a", SQL: "SELECT 1 INTO t2", Expect: zero}}, "INTO"},
		{"for update", []backfill.Validation{{Name: "a", SQL: "SELECT id FROM items FOR UPDATE", Expect: zero}}, "locks rows"},
		{"session change", []backfill.Validation{{Name: "a", SQL: "SELECT set_config('search_path', 'x', false)", Expect: zero}}, "set_config"},
		{"two statements", []backfill.Validation{{Name: "a", SQL: "SELECT 1; SELECT 2", Expect: zero}}, "exactly one query"},
		{"undeclared parameter", []backfill.Validation{{Name: "a", SQL: "SELECT count(*) FROM items WHERE id > @x", Expect: zero}}, "uses @x"},
		{"syntax", []backfill.Validation{{Name: "a", SQL: "SELECT count(* FROM items", Expect: zero}}, "syntax error"},
		{"unknown column", []backfill.Validation{{Name: "a", SQL: "SELECT count(nope) FROM items", Expect: zero}}, `column "nope" does not exist`},
	} {
		job := doubleJob()
		job.Validate = tt.v
		_, err := b.runner.Apply(ctx, job, backfill.ApplyOptions{})
		if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an invalid argument with %q", tt.name, err, tt.want)
		}
	}
	var schemas int64
	b.db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'").Scan(&schemas)
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE done"); n != 0 || schemas != 0 {
		t.Fatalf("bad validations wrote: %d rows, %d schemas", n, schemas)
	}
	if _, err := b.runner.Validate(ctx, doubleJob(), ""); !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), "no validations") {
		t.Fatalf("validate of a job without validations = %v", err)
	}
	if _, err := b.runner.Validate(ctx, countOnce(100), "ffffffff"); !errors.Is(err, backfill.ErrRunNotFound) {
		t.Fatalf("validate of an unknown run = %v", err)
	}
}

// Validations are not part of the job hash: changing them does not make a
// run's job another job.
func TestValidationsAreNotPartOfTheJobHash(t *testing.T) {
	t.Parallel()
	if countJob(100).Hash() != countOnce(100).Hash() {
		t.Fatal("a validation changed the job hash")
	}
	d := countOnce(100).Describe()
	if _, ok := d["validate"]; !ok {
		t.Fatal("the run's record would not hold the validations")
	}
}
