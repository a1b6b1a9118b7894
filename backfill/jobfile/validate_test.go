package jobfile_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/jobfile"
	"github.com/rewindhq/rewind/internal/pgtest"
)

const withValidations = good + `validate:
  - name: none_left
    sql: SELECT count(*) FROM items WHERE NOT done
    expect: 0
  - name: exact
    sql: SELECT 0.1
    expect: 0.1
  - name: flag
    sql: SELECT bool_and(done) FROM items
    expect: true
  - name: word
    sql: SELECT 'x'
    expect: "x"
  - name: nothing
    sql: SELECT NULL
    expect: null
  - name: small
    sql: SELECT max(val) FROM items
    expect: {min: 1, max: 1e3}
  - name: keys
    sql: SELECT id FROM items WHERE val < 0
    expect: {rows: 0}
`

func TestValidateBlock(t *testing.T) {
	t.Parallel()
	f, err := jobfile.Parse("job.yaml", []byte(withValidations))
	if err != nil {
		t.Fatal(err)
	}
	job, err := f.Job(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := func(v string) *string { return &v }
	yes, zero := true, int64(0)
	want := []backfill.Validation{
		{Name: "none_left", SQL: "SELECT count(*) FROM items WHERE NOT done", Expect: backfill.Expect{Number: s("0")}},
		{Name: "exact", SQL: "SELECT 0.1", Expect: backfill.Expect{Number: s("0.1")}},
		{Name: "flag", SQL: "SELECT bool_and(done) FROM items", Expect: backfill.Expect{Bool: &yes}},
		{Name: "word", SQL: "SELECT 'x'", Expect: backfill.Expect{Text: s("x")}},
		{Name: "nothing", SQL: "SELECT NULL", Expect: backfill.Expect{Null: true}},
		{Name: "small", SQL: "SELECT max(val) FROM items", Expect: backfill.Expect{Min: s("1"), Max: s("1e3")}},
		{Name: "keys", SQL: "SELECT id FROM items WHERE val < 0", Expect: backfill.Expect{Rows: &zero}},
	}
	g, _ := json.Marshal(job.Validate)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("validations\n%s\nwant\n%s", g, w)
	}
	// A run records them; a job rebuilt from the run has them again.
	var d map[string]any
	b, _ := json.Marshal(job.Describe())
	json.Unmarshal(b, &d)
	back, err := jobfile.FromRun(d)
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := json.Marshal(back.Validate); string(g) != string(w) {
		t.Fatalf("validations from the run's record\n%s\nwant\n%s", g, w)
	}
}

func TestValidateBlockErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	base := good + "validate:\n  - name: a\n    sql: SELECT 1\n    expect: 1\n" // lines 14-17
	for _, tt := range []struct{ name, yaml, want string }{
		{"not a list", good + "validate: {a: 1}\n", "validate (job file job.yaml line 14): must be a list"},
		{"item not a mapping", good + "validate:\n  - SELECT 1\n", "validate item 1 (job file job.yaml line 15): must be a mapping"},
		{"unknown field", strings.Replace(base, "expect: 1", "expect: 1\n    expected: 2", 1), `validate item 1 (job file job.yaml line 15): line 18: unknown field "expected"`},
		{"field twice", strings.Replace(base, "expect: 1", "expect: 1\n    sql: SELECT 2", 1), `line 18: field "sql" is given twice`},
		{"no expect", strings.Replace(base, "    expect: 1\n", "", 1), "validate item 1 (job file job.yaml line 15): needs expect"},
		{"no sql", strings.Replace(base, "    sql: SELECT 1\n", "", 1), "needs sql"},
		{"bad name", strings.Replace(base, "name: a", "name: a b", 1), `validate item 1.name (job file job.yaml line 15): "a b" must be`},
		{"name as a list", strings.Replace(base, "name: a", "name: [a]", 1), "validate item 1.name (job file job.yaml line 15): must be text, not a list"},
		{"sql as a mapping", strings.Replace(base, "sql: SELECT 1", "sql: {a: 1}", 1), "validate.a.sql (job file job.yaml line 16): must be text, not a mapping"},
		{"empty sql", strings.Replace(base, "sql: SELECT 1", `sql: " "`, 1), "validate.a.sql (job file job.yaml line 16): is empty"},
		{"expect a list", strings.Replace(base, "expect: 1", "expect: [1]", 1), "validate.a.expect (job file job.yaml line 17): must be a value"},
		{"unknown bound", strings.Replace(base, "expect: 1", "expect: {maximum: 1}", 1), `validate.a.expect (job file job.yaml line 17): line 17: unknown field "maximum"`},
		{"bound as text", strings.Replace(base, "expect: 1", `expect: {max: "10"}`, 1), "validate.a.expect.max (job file job.yaml line 17): must be a number"},
		{"infinite bound", strings.Replace(base, "expect: 1", "expect: {max: .inf}", 1), "must be a finite decimal number"},
		{"negative rows", strings.Replace(base, "expect: 1", "expect: {rows: -1}", 1), "(job file job.yaml line 17): rows must be a whole number of rows, 0 or more"},
		{"no name", strings.Replace(base, "  - name: a\n    sql", "  - sql", 1), "validate item 1 (job file job.yaml line 15): needs name"},
		{"rows and bounds", strings.Replace(base, "expect: 1", "expect: {rows: 1, max: 2}", 1), "not both"},
		{"empty mapping", strings.Replace(base, "expect: 1", "expect: {}", 1), "is an empty mapping"},
		{"same name", base + "  - name: a\n    sql: SELECT 2\n    expect: 2\n", `validate.a (job file job.yaml line 18): name "a" is given twice`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := jobfile.Parse("job.yaml", []byte(tt.yaml))
			if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parse = %v, want an invalid-argument error mentioning %q", err, tt.want)
			}
		})
	}
}

// What the runner refuses in a validation is named with its line.
func TestValidationSQLErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	db.Exec(t, "CREATE TABLE items (id bigint PRIMARY KEY, val int NOT NULL, done boolean NOT NULL DEFAULT false)")
	r, err := backfill.New(backfill.Config{DB: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, sql, want string }{
		{"a write", "UPDATE items SET val = 1", "one SELECT"},
		{"unknown column", "SELECT count(nope) FROM items", `column "nope" does not exist`},
	} {
		f, err := jobfile.Parse("job.yaml", []byte(good+"validate:\n  - name: a\n    sql: "+tt.sql+"\n    expect: 1\n"))
		if err != nil {
			t.Fatal(err)
		}
		job, err := f.Job(nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Plan(context.Background(), job, backfill.PlanOptions{})
		err = f.Annotate(err)
		if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), "validate.a.sql (job file job.yaml line 16)") ||
			!strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: plan = %v, want the error at line 16 saying %q", tt.name, err, tt.want)
		}
	}
}
