package backfill_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/jobfile"
	"github.com/rewindhq/rewind/internal/pgtest"
)

// Issue 11 (F1): parameters were parsed by their declared type but bound
// with the type PostgreSQL inferred from where they stand, so a
// timestamptz written into a timestamp or date column lost its offset, a
// numeric into an integer column was refused or truncated, and a text
// compared with a number was silently read as a number. Each parameter
// must be bound with its declared type: the stored value is what plain
// SQL "SET c = 'value'::declared_type" stores, and what PostgreSQL
// refuses is refused before a run exists, naming the parameter.
func TestParametersAreBoundWithTheirDeclaredTypes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// A session time zone away from UTC makes a dropped offset visible.
	db.Exec(t, fmt.Sprintf("ALTER DATABASE %s SET timezone TO 'Asia/Kolkata'", db.Name))
	db.Pool.Reset()
	r, err := backfill.New(backfill.Config{DB: db.Pool, Actor: "tester", Binary: "test-binary", Command: []string{"rewind", "test"}})
	if err != nil {
		t.Fatal(err)
	}
	values := []struct{ typ, value string }{
		{"timestamptz", "2024-01-01T01:00:00+02:00"},
		{"timestamptz", "2024-03-10 23:30:00"},
		{"date", "2024-02-29"},
		{"numeric", "2.5"},
		{"numeric", "3.5"},
		{"double precision", "2.5"},
		{"bigint", "7"},
		{"integer", "-12"},
		{"text", "007"},
		{"text", "2024-01-01T01:00:00+02:00"},
		{"boolean", "true"},
		{"uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	}
	columns := []string{"timestamp", "timestamptz", "date", "integer", "bigint", "numeric(6,1)", "double precision",
		"text", "varchar(40)", "boolean", "uuid", "jsonb"}
	for i, v := range values {
		for j, col := range columns {
			name := fmt.Sprintf("m_%d_%d", i, j)
			db.Exec(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, c %s, twin %s); INSERT INTO %[1]s (id) VALUES (1)", name, col, col))
			// What plain SQL stores: an assignment of the literal cast to
			// the declared type.
			var want *string
			var plainErr error
			if _, err := db.Pool.Exec(ctx, fmt.Sprintf("UPDATE %s SET twin = '%s'::%s", name, v.value, v.typ)); err != nil {
				plainErr = err
			} else if err := db.Pool.QueryRow(ctx, "SELECT twin::text FROM "+name).Scan(&want); err != nil {
				t.Fatal(err)
			}
			file := fmt.Sprintf("name: %s\nversion: 1\ntable: %s\nkey: [id]\nset:\n  c: \"@p\"\nparams:\n  p: {type: %s}\n", name, name, v.typ)
			f, err := jobfile.Parse("job.yaml", []byte(file))
			if err != nil {
				t.Fatal(err)
			}
			job, err := f.Job([]string{"p=" + v.value})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Apply(ctx, job, backfill.ApplyOptions{})
			var got *string
			if qerr := db.Pool.QueryRow(ctx, "SELECT c::text FROM "+name).Scan(&got); qerr != nil {
				t.Fatal(qerr)
			}
			what := fmt.Sprintf("%s %q into %s", v.typ, v.value, col)
			switch {
			case plainErr != nil:
				var ve *rewind.ValidationError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), "@p") {
					t.Errorf("%s: plain SQL refuses it (%v), the runner says %v; want a validation error naming @p", what, plainErr, err)
				}
				if got != nil {
					t.Errorf("%s: refused, yet stored %q", what, *got)
				}
				var runs int64
				if qerr := db.Pool.QueryRow(ctx, "SELECT count(*) FROM rewind.backfill_runs WHERE job_name = $1", name).Scan(&runs); qerr != nil {
					var pe *pgconn.PgError
					if !errors.As(qerr, &pe) || pe.Code != "42P01" {
						t.Fatal(qerr)
					}
				}
				if runs != 0 {
					t.Errorf("%s: refused, yet a run was created", what)
				}
			case err != nil:
				t.Errorf("%s: plain SQL stores %q, the runner fails: %v", what, *want, err)
			case got == nil || *got != *want:
				t.Errorf("%s: stored %v, plain SQL stores %q", what, deref(got), *want)
			}

			// Compared in a where, the parameter is the literal too.
			var plainN int64
			plainErr = db.Pool.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE c = '%s'::%s", name, v.value, v.typ)).Scan(&plainN)
			cmp := &backfill.Job{Name: name + "_cmp", Version: "1", Source: &backfill.Table{Name: name, Key: []string{"id"}, Where: "c = @p"},
				Set: map[string]string{"twin": "twin"}, Params: job.Params}
			plan, err := r.Plan(ctx, cmp, backfill.PlanOptions{})
			switch {
			case plainErr != nil:
				var ve *rewind.ValidationError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), "@p") {
					t.Errorf("%s compared: plain SQL refuses it (%v), the runner says %v; want a validation error naming @p", what, plainErr, err)
				}
			case err != nil:
				t.Errorf("%s compared: plain SQL counts %d rows, the runner fails: %v", what, plainN, err)
			case plan.Rows != plainN:
				t.Errorf("%s compared: the runner counts %d rows, plain SQL %d", what, plan.Rows, plainN)
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *s)
}

// Issue 11 (F1): in a where, a parameter compares as its declared type:
// a text parameter compared with a number is refused (as plain SQL
// refuses it), and a timestamptz compared with a timestamp column keeps
// its offset.
func TestParametersCompareAsTheirDeclaredTypes(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	b.db.Exec(t, "ALTER TABLE items ADD at timestamp")
	b.db.Exec(t, "UPDATE items SET at = timestamp '2024-01-01 00:00:00' + id * interval '1 hour'")
	job := &backfill.Job{Name: "cmp", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "val = @v"},
		Set: map[string]string{"n": "1"}, Params: backfill.Params{"v": {Type: "text", Value: "7", Text: "7"}}}
	b.refused(t, job, "where", "@v")

	// 2024-01-01T05:00:00+02:00 is 03:00 in UTC, the session's zone: rows
	// 1, 2 and 3 are before it, not rows 1 to 4 (the wall clock).
	job = &backfill.Job{Name: "cmp", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "at <= @at"},
		Set: map[string]string{"n": "1"}, Params: backfill.Params{"at": {Type: "timestamptz", Value: "2024-01-01T05:00:00+02:00", Text: "2024-01-01T05:00:00+02:00"}}}
	b.apply(t, job, backfill.ApplyOptions{})
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 3 {
		t.Fatalf("%d rows at or before the instant, want 3", n)
	}
}

// A Go value that cannot be bound as its declared type, or an unknown
// type, is refused naming the parameter, before a run exists.
func TestGoParameterOfTheWrongTypeIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 5)
	for _, p := range []backfill.Param{
		{Type: "date", Value: struct{}{}, Text: "?"},
		{Type: "no_such_type", Value: "1", Text: "1"},
		{Type: "int; DROP TABLE items", Value: "1", Text: "1"},
		{Type: "", Value: "1", Text: "1"},
	} {
		job := &backfill.Job{Name: "typed", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
			Set: map[string]string{"n": "1"}, Params: backfill.Params{"p": p}}
		b.refused(t, job, "params.p", "")
	}
}
