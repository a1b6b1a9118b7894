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
	if job.Params["min"].Value != int64(0) || job.Params["cutoff"].Type != "timestamptz" || !job.Params["token"].Secret {
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
	f, _ := jobfile.Parse("job.yaml", []byte(strings.Replace(good, "  token: {type: text, secret: true}\n", "", 1)))
	job, err := f.Job([]string{"cutoff=2024-01-31T10:00:00Z", "min=5"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(job.Describe())
	var d map[string]any
	json.Unmarshal(raw, &d)
	back, err := jobfile.FromRun(d)
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash() != job.Hash() {
		t.Fatalf("rebuilt job hashes to %s, want %s", back.Hash(), job.Hash())
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
