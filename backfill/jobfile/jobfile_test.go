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

const good = `name: double
version: 1
table: items
key: id
where: NOT done AND id > @min
set:
  val: val * 2
  done: "true"
params:
  min: {type: bigint, default: "0"}
  cutoff: {type: timestamptz}
  token: {type: text, secret: true}
chunk: 100
`

func TestParseErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"unknown field", strings.Replace(good, "set:", "sett:", 1), `line 6: unknown field "sett"`},
		{"missing key", strings.Replace(good, "key: id\n", "", 1), "key"},
		{"missing name", strings.Replace(good, "name: double\n", "", 1), "name"},
		{"set and statement", good + "statement: UPDATE items SET n = 1 WHERE id BETWEEN @lo AND @hi\n", "statement (job file job.yaml line 14)"},
		{"bad policy", good + "on_data_error: ignore\n", "on_data_error (job file job.yaml line 14)"},
		{"bad param type", strings.Replace(good, "type: bigint", "type: bignum", 1), "params.min (job file job.yaml line 10)"},
		{"not yaml", "name: [", "job file job.yaml"},
		// Issue 11: values are checked with their types, and an error
		// names the field: 1.5 and 0 were taken as chunk sizes (0 as the
		// default), an empty file said "EOF", a wrong type named no field.
		{"fractional chunk", strings.Replace(good, "chunk: 100", "chunk: 1.5", 1), "chunk (job file job.yaml line 13): must be a whole number"},
		{"zero chunk", strings.Replace(good, "chunk: 100", "chunk: 0", 1), "chunk (job file job.yaml line 13): must be between 1 and 1,000,000"},
		{"negative chunk", strings.Replace(good, "chunk: 100", "chunk: -5", 1), "chunk (job file job.yaml line 13)"},
		{"quoted chunk", strings.Replace(good, "chunk: 100", `chunk: "100"`, 1), "chunk (job file job.yaml line 13): must be a whole number"},
		{"empty chunk", strings.Replace(good, "chunk: 100", `chunk:`, 1), "chunk (job file job.yaml line 13)"},
		{"empty file", "", "job file job.yaml: is empty"},
		{"only comments", "# a job\n\n", "job file job.yaml: is empty"},
		{"a list", "- name: x\n", "must be a mapping of fields"},
		{"name as a list", strings.Replace(good, "name: double", "name: [a, b]", 1), "name (job file job.yaml line 1): must be text, not a list"},
		{"key as a mapping", strings.Replace(good, "key: id", "key: {a: b}", 1), "key (job file job.yaml line 4): must be a column name or a list"},
		{"set as a list", strings.Replace(good, "set:\n  val: val * 2\n  done: \"true\"", "set: [val]", 1), "set (job file job.yaml line 6): must be a mapping"},
		{"set value as a list", strings.Replace(good, "val: val * 2", "val: [1]", 1), "set.val (job file job.yaml line 7): must be text"},
		{"params as a list", strings.Replace(good, "params:\n", "params: [min]\nx:\n", 1), "params (job file job.yaml line 9): must be a mapping"},
		{"param as a number", strings.Replace(good, "cutoff: {type: timestamptz}", "cutoff: 5", 1), "params.cutoff (job file job.yaml line 11): must be a mapping"},
		{"required as text", strings.Replace(good, "{type: timestamptz}", `{type: timestamptz, required: "yes"}`, 1), "params.cutoff (job file job.yaml line 11): required must be true or false"},
		{"secret as a number", strings.Replace(good, "secret: true", "secret: 1", 1), "params.token (job file job.yaml line 12): secret must be true or false"},
		{"unknown param field", strings.Replace(good, "secret: true", "hidden: true", 1), `params.token (job file job.yaml line 12): line 12: unknown field "hidden"`},
		{"field given twice", good + "name: other\n", `line 14: field "name" is given twice (first at line 1)`},
		{"bad param name", strings.Replace(good, "  cutoff:", "  cut-off:", 1), "params.cut-off"},
		{"rollback as text", good + "rollback: no\n", "rollback (job file job.yaml line 14): rollback must be true or false, not str \"no\""},
		{"rollback as a number", good + "rollback: 0\n", "rollback (job file job.yaml line 14): rollback must be true or false"},
		{"rollback empty", good + "rollback:\n", "rollback (job file job.yaml line 14): rollback must be true or false, not empty"},
		{"rollback twice", good + "rollback: false\nrollback: true\n", `line 15: field "rollback" is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := jobfile.Parse("job.yaml", []byte(tt.yaml))
			if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parse = %v, want an invalid-argument error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParams(t *testing.T) {
	t.Parallel()
	f, err := jobfile.Parse("job.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	job, err := f.Job([]string{"cutoff=2024-01-31", "token=s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Params["min"].Value != "0" || job.Params["cutoff"].Type != "timestamptz" || !job.Params["token"].Secret {
		t.Fatalf("params %+v", job.Params)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"min=ten"}, "--param min"},
		{[]string{"cutoff=yesterday"}, "is not a timestamptz"},
		{[]string{"nope=1"}, "declares no such parameter"},
		{[]string{"min"}, "must be name=value"},
		{[]string{"token=x", "min=1.5"}, "is not a bigint"},
	} {
		if _, err := f.Job(tt.args); !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Job(%q) = %v, want %q", tt.args, err, tt.want)
		}
	}
	req, _ := jobfile.Parse("job.yaml", []byte(strings.Replace(good, "{type: timestamptz}", "{type: timestamptz, required: true}", 1)))
	if _, err := req.Job(nil); err == nil || !strings.Contains(err.Error(), "--param cutoff=VALUE") {
		t.Fatalf("missing required parameter: %v", err)
	}
}

func TestFromRunRebuildsTheSameJob(t *testing.T) {
	t.Parallel()
	for _, extra := range []string{"", "rollback: true\n", "rollback: false\n"} {
		f, err := jobfile.Parse("job.yaml", []byte(strings.Replace(good, "  token: {type: text, secret: true}\n", "", 1)+extra))
		if err != nil {
			t.Fatal(err)
		}
		job, err := f.Job([]string{"cutoff=2024-01-31T10:00:00Z", "min=5"})
		if err != nil {
			t.Fatal(err)
		}
		if job.NoRollback != (extra == "rollback: false\n") {
			t.Fatalf("%q: NoRollback %v", extra, job.NoRollback)
		}
		raw, _ := json.Marshal(job.Describe())
		var d map[string]any
		json.Unmarshal(raw, &d)
		back, err := jobfile.FromRun(d)
		if err != nil {
			t.Fatal(err)
		}
		if back.Hash() != job.Hash() || back.NoRollback != job.NoRollback {
			t.Fatalf("%q: rebuilt job hashes to %s, want %s", extra, back.Hash(), job.Hash())
		}
	}
	// Keeping the images is the default: saying so does not change the
	// job hash of a job written before the field existed.
	a, _ := jobfile.Parse("job.yaml", []byte(good))
	b, _ := jobfile.Parse("job.yaml", []byte(good+"rollback: true\n"))
	ja, _ := a.Job(nil)
	jb, _ := b.Job(nil)
	if ja.Hash() != jb.Hash() {
		t.Fatal("rollback: true changed the job hash")
	}
}

func TestDatabaseErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	db.Exec(t, "CREATE TABLE items (id bigint PRIMARY KEY, val int NOT NULL, done boolean NOT NULL DEFAULT false)")
	r, err := backfill.New(backfill.Config{DB: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, from, to, want string }{
		{"unknown table", "table: items", "table: itemz", "line 3"},
		{"unknown key column", "key: id", "key: idd", "line 4"},
		{"bad where", "where: NOT done AND", "where: NOT done ANDD", "line 5"},
		{"unknown set column", "  val: val * 2", "  vall: val * 2", "line 7"},
		{"bad set expression", "  val: val * 2", "  val: val *", "line 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := jobfile.Parse("job.yaml", []byte(strings.Replace(good, tt.from, tt.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			job, err := f.Job(nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Plan(context.Background(), job, backfill.PlanOptions{})
			err = f.Annotate(err)
			if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), "job file job.yaml "+tt.want) {
				t.Fatalf("plan = %v, want the error at %s", err, tt.want)
			}
		})
	}
}

// FuzzParse: any input parses or fails with an invalid-argument error, and
// never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("key: {a: b}\nset: 3\n"))
	f.Add([]byte("params:\n  x: {type: bigint, default: nope}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := jobfile.Parse("fuzz.yaml", b)
		if err != nil {
			if !errors.Is(err, rewind.ErrInvalidArgument) {
				t.Fatalf("error %v is not an invalid-argument error", err)
			}
			return
		}
		if _, err := file.Job(nil); err != nil && !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Fatalf("Job: %v", err)
		}
	})
}

// Issue 11: an @parameter the job does not declare is an error, so a
// declared one without a value or default must be in the job, as NULL; a
// run's record rebuilds it.
func TestDeclaredParameterWithoutValueIsNull(t *testing.T) {
	t.Parallel()
	f, _ := jobfile.Parse("job.yaml", []byte(strings.Replace(good, "  token: {type: text, secret: true}\n", "", 1)))
	job, err := f.Job(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := job.Params["cutoff"]
	if !ok || p.Value != nil || p.Type != "timestamptz" {
		t.Fatalf("cutoff = %+v (present %v), want a NULL timestamptz", p, ok)
	}
	raw, _ := json.Marshal(job.Describe())
	var d map[string]any
	json.Unmarshal(raw, &d)
	back, err := jobfile.FromRun(d)
	if err != nil || back.Hash() != job.Hash() || back.Params["cutoff"].Value != nil {
		t.Fatalf("rebuilt: %v, %+v", err, back)
	}
}
