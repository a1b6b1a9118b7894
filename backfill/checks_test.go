package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// wroteNothing fails the test if the job left anything behind: the ledger's
// schema, a changed item, a row in victims (when the test made that table).
func (b *bundle) wroteNothing(t *testing.T, sumBefore string) {
	t.Helper()
	if n := b.scalar(t, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rewind'"); n != 0 {
		t.Error("a refused job created the ledger's schema")
	}
	if sum := b.db.Checksum(t, "items", "id"); sum != sumBefore {
		t.Error("a refused job changed rows of items")
	}
	if b.scalar(t, "SELECT count(*) FROM pg_tables WHERE tablename = 'victims'") == 1 {
		if n := b.scalar(t, "SELECT count(*) FROM victims"); n != 3 {
			t.Errorf("a refused job changed victims: %d rows left of 3", n)
		}
	}
}

// refused applies job and wants a validation error on field whose message
// mentions want, and nothing written.
func (b *bundle) refused(t *testing.T, job *backfill.Job, field, want string) {
	t.Helper()
	before := b.db.Checksum(t, "items", "id")
	_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
	var ve *rewind.ValidationError
	if !errors.As(err, &ve) || ve.Field != field || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply = %v, want a validation error on %q mentioning %q", err, field, want)
	}
	b.wroteNothing(t, before)
}

// Issue 11: an @parameter the job did not declare was bound as NULL, so a
// typo in a set expression set a column to NULL on every row.
func TestUndeclaredParameterIsAnError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, field string
		job         func(*backfill.Job)
	}{
		{"set", "set.note", func(j *backfill.Job) { j.Set = map[string]string{"note": "@notee"} }},
		{"where", "where", func(j *backfill.Job) { j.Source.(*backfill.Table).Where = "note <> @notee" }},
		{"statement", "statement", func(j *backfill.Job) {
			j.Set, j.Statement = nil, "UPDATE items SET note = @notee WHERE id BETWEEN @lo AND @hi"
		}},
		{"operator without a space", "set.note", func(j *backfill.Job) { j.Set = map[string]string{"note": "note||@notee"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 20)
			b.db.Exec(t, "ALTER TABLE items ADD note text DEFAULT 'kept'")
			job := &backfill.Job{Name: "notes", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
				Set: map[string]string{"note": "@note"}, Params: backfill.Params{"note": {Type: "text", Value: "new", Text: "new"}}}
			tt.job(job)
			b.refused(t, job, tt.field, "@notee")
		})
	}
	// A declared parameter without a value binds NULL, as declared.
	b := setup(t, 20)
	b.db.Exec(t, "ALTER TABLE items ADD note text DEFAULT 'kept'")
	job := &backfill.Job{Name: "notes", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Set: map[string]string{"note": "@note"}, Params: backfill.Params{"note": {Type: "text"}}}
	b.apply(t, job, backfill.ApplyOptions{})
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE note IS NULL"); n != 20 {
		t.Fatalf("%d rows set to the declared NULL, want 20", n)
	}
}

// Issue 11: the statement check looked for "@lo" in the text, so bounds
// inside a string literal passed it and a statement deleted every row of
// another table; nor was what a statement writes checked at all.
func TestStatementMustBindItsBoundsAndWriteOnlyTheJobsTable(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, sql, want string }{
		{"bounds in a string", "DELETE FROM items WHERE '@lo' <> '@hi'", "does not bind @lo, @hi"},
		{"bounds in a comment", "DELETE FROM items WHERE id > 0 -- @lo @hi", "does not bind @lo, @hi"},
		{"another table", "DELETE FROM victims WHERE id BETWEEN @lo AND @hi", "writes victims"},
		{"another table, bounds in a string", "DELETE FROM victims WHERE '@lo' <> '@hi'", "does not bind"},
		{"data-modifying WITH on another table", `WITH d AS (DELETE FROM victims RETURNING id)
			UPDATE items SET n = n + 1 WHERE id BETWEEN @lo AND @hi`, "writes victims"},
		{"another schema's table of the same name", "UPDATE other.items SET n = 1 WHERE id BETWEEN @lo AND @hi", "writes other.items"},
		{"two statements", "UPDATE items SET n = 1 WHERE id BETWEEN @lo AND @hi; DELETE FROM victims", "exactly one statement"},
		{"not a write", "SELECT * FROM items WHERE id BETWEEN @lo AND @hi", "UPDATE, DELETE, INSERT or MERGE"},
		{"positional parameter", "UPDATE items SET n = $1 WHERE id BETWEEN @lo AND @hi", "$1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 20)
			b.db.Exec(t, "CREATE TABLE victims (id bigint PRIMARY KEY); INSERT INTO victims VALUES (1), (2), (3)")
			b.db.Exec(t, "CREATE SCHEMA other; CREATE TABLE other.items (id bigint PRIMARY KEY, n int)")
			job := &backfill.Job{Name: "stmt", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
				Statement: tt.sql}
			b.refused(t, job, "statement", tt.want)
		})
	}
	// The same statement, written to the job's table with real bind sites
	// (and a spelling PostgreSQL's lexer reads as the operator >=@), works.
	b := setup(t, 20)
	job := &backfill.Job{Name: "stmt", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Statement: "UPDATE items SET n = n + 1 WHERE id>=@lo AND id<=@hi"}
	b.apply(t, job, backfill.ApplyOptions{})
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 20 {
		t.Fatalf("%d rows changed once, want 20", n)
	}
}

// Issue 11: a crafted quote sequence the old lexer read differently from
// PostgreSQL passed as one expression; the chunk statements then broke.
// PostgreSQL's parser refuses it. A comment at the end of a where, which
// used to be refused, is fine: the runner puts expressions on lines of
// their own.
func TestWhereIsReadByPostgreSQLsParser(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	job := countJob(100)
	job.Source.(*backfill.Table).Where = `val > 0 AND 'x' < name'a\' ) OR ( true ) --'`
	b.refused(t, job, "where", "syntax error")

	job = countJob(100)
	job.Source.(*backfill.Table).Where = "val > 0 -- every row but those with val = 0"
	res := b.apply(t, job, backfill.ApplyOptions{})
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> CASE WHEN val > 0 THEN 1 ELSE 0 END"); n != 0 || res.RowsChanged != 297 {
		t.Fatalf("%d rows changed other than once (%d changed)", n, res.RowsChanged)
	}
}

// Issue 11: a dry run evaluated set expressions and the WHERE in
// autocommit: nextval() advanced a sequence and a function's writes stayed.
func TestDryRunChangesNothingAtAll(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	b.db.Exec(t, `CREATE SEQUENCE s; CREATE TABLE side (id bigint);
		CREATE FUNCTION noisy(x bigint) RETURNS bigint LANGUAGE sql VOLATILE AS 'INSERT INTO side VALUES (x) RETURNING x'`)
	ctx := context.Background()
	sum := b.db.Checksum(t, "items", "id")
	unchanged := func(when string) {
		t.Helper()
		if n := b.scalar(t, "SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM s"); n != 1 {
			t.Errorf("%s: the sequence advanced to %d", when, n)
		}
		if n := b.scalar(t, "SELECT count(*) FROM side"); n != 0 {
			t.Errorf("%s: a function wrote %d rows", when, n)
		}
		if b.db.Checksum(t, "items", "id") != sum {
			t.Errorf("%s: items changed", when)
		}
	}
	for _, set := range []map[string]string{{"n": "nextval('s')"}, {"n": "noisy(id)"}} {
		job := &backfill.Job{Name: "seq", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: set}
		plan, err := b.runner.Plan(ctx, job, backfill.PlanOptions{})
		if err != nil {
			t.Fatalf("plan of set %v: %v", set, err)
		}
		if len(plan.Diffs) != 0 || !strings.Contains(strings.Join(plan.Notes, "\n"), "not previewed") || plan.Rows != 50 {
			t.Fatalf("plan of set %v: %d diffs, notes %q", set, len(plan.Diffs), plan.Notes)
		}
		unchanged("plan of set " + set["n"])
	}
	// A WHERE runs several times per chunk: one that writes is refused.
	job := &backfill.Job{Name: "seq", Version: "1", Set: map[string]string{"n": "1"},
		Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "noisy(id) > 0"}}
	_, err := b.runner.Plan(ctx, job, backfill.PlanOptions{})
	var ve *rewind.ValidationError
	if !errors.As(err, &ve) || ve.Field != "where" {
		t.Fatalf("plan with a writing where: %v, want a validation error on where", err)
	}
	unchanged("plan with a writing where")

	// --execute evaluates them: the sequence numbers the rows.
	job = &backfill.Job{Name: "seq", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Set: map[string]string{"n": "nextval('s')"}}
	b.apply(t, job, backfill.ApplyOptions{})
	if n := b.scalar(t, "SELECT count(DISTINCT n) FROM items WHERE n > 0"); n != 50 {
		t.Fatalf("%d rows numbered by the sequence, want 50", n)
	}
}

// Issue 11: what PostgreSQL refuses in an UPDATE but not in a SELECT
// (generated columns, aggregates, window functions) and a NOT NULL
// column given NULL passed validation; the run was created and failed at
// chunk 1.
func TestValidationCatchesWhatChunkOneWouldRefuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, col, expr, want string
	}{
		{"generated column", "g", "1", "can only be updated to DEFAULT"},
		{"aggregate", "n", "count(*)", "aggregate functions are not allowed in UPDATE"},
		{"window function", "n", "row_number() OVER ()", "window functions are not allowed in UPDATE"},
		{"set-returning function", "n", "generate_series(1, 2)", "set-returning functions are not allowed in UPDATE"},
		{"NULL constant into NOT NULL", "n", "NULL::int", "NOT NULL"},
		{"NULL parameter into NOT NULL", "n", "@missing", "NOT NULL"},
		{"NULL for one row of the first chunk", "n", "CASE WHEN id = 7 THEN NULL ELSE 1 END", "key 7"},
		{"a value that fails in the first chunk", "n", "100 / (id - 7)", "division by zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 30)
			b.db.Exec(t, "ALTER TABLE items ADD g int GENERATED ALWAYS AS (val * 2) STORED")
			job := &backfill.Job{Name: "bad", Version: "1", ChunkSize: 10, Source: &backfill.Table{Name: "items", Key: []string{"id"}},
				Set: map[string]string{tt.col: tt.expr}, Params: backfill.Params{"missing": {Type: "integer"}}}
			b.refused(t, job, "set."+tt.col, tt.want)
		})
	}
	// Under the skip policy a row that fails is quarantined, not refused.
	b := setup(t, 30)
	job := &backfill.Job{Name: "skip", Version: "1", ChunkSize: 10, OnDataError: backfill.Skip,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "CASE WHEN id = 7 THEN NULL ELSE 1 END"}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsSkipped != 1 || res.RowsChanged != 29 {
		t.Fatalf("skip policy: %+v", res)
	}
}

// Issue 11: with an unreachable ledger database the runner still created
// its tables in the target before failing.
func TestUnreachableLedgerWritesNothing(t *testing.T) {
	t.Parallel()
	ledger, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	b := setup(t, 20, func(c *backfill.Config) { c.Ledger = ledger })
	sum := b.db.Checksum(t, "items", "id")
	for _, call := range []func() error{
		func() error {
			_, err := b.runner.Apply(context.Background(), countJob(10), backfill.ApplyOptions{})
			return err
		},
		func() error {
			_, err := b.runner.Plan(context.Background(), countJob(10), backfill.PlanOptions{})
			return err
		},
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "ledger") {
			t.Fatalf("with an unreachable ledger: %v, want an error naming the ledger", err)
		}
		b.wroteNothing(t, sum)
	}
}

// Issue 11: a dry run printed secret values: PostgreSQL shows bound values
// in EXPLAIN, and the diffs showed new values computed from them.
func TestDryRunShowsNoSecret(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Value-42"
	// one connection, so that a statement the dry run prepared and left
	// behind would show in pg_prepared_statements
	b := setup(t, 30, func(c *backfill.Config) {
		pcfg := c.DB.Config()
		pcfg.MaxConns = 1
		pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		c.DB = pool
	})
	b.db.Exec(t, "ALTER TABLE items ADD note text")
	for _, job := range []*backfill.Job{
		{Name: "secret-set", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "note IS DISTINCT FROM @pin"},
			Set: map[string]string{"note": "@pin || '!'", "n": "n + 1"}},
		{Name: "secret-stmt", Version: "1", Source: &backfill.Table{Name: "items", Key: []string{"id"}},
			Statement: "UPDATE items SET note = @pin WHERE id BETWEEN @lo AND @hi AND note IS DISTINCT FROM @pin"},
	} {
		job.Params = backfill.Params{"pin": {Type: "text", Value: secret, Text: secret, Secret: true}}
		plan, err := b.runner.Plan(context.Background(), job, backfill.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(plan)
		if strings.Contains(string(out), secret) {
			t.Fatalf("%s: the plan shows the secret:\n%s", job.Name, out)
		}
		if !strings.Contains(plan.Explain, "$") || !strings.Contains(strings.Join(plan.Notes, " "), "generic plan") {
			t.Fatalf("%s: explain %q, notes %q", job.Name, plan.Explain, plan.Notes)
		}
		if len(job.Set) > 0 && (plan.Diffs[0].After["note"] != "***" || plan.Diffs[0].After["n"] != "1") {
			t.Fatalf("%s: diffs %+v", job.Name, plan.Diffs)
		}
	}
	var left int64
	if err := b.cfg.DB.QueryRow(context.Background(), "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'rewind%'").Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d prepared statements left on the connection (%v)", left, err)
	}
}

// A database error quoting a secret value (here the failing row, which
// holds it) reaches neither the returned error nor the ledger.
func TestChunkErrorsDoNotQuoteSecrets(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Value-42"
	b := setup(t, 30)
	b.db.Exec(t, "ALTER TABLE items ADD note text CHECK (length(note) < 5)")
	job := &backfill.Job{Name: "secret-fail", Version: "1", ChunkSize: 10,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Set:    map[string]string{"note": "CASE WHEN id = 15 THEN @pin ELSE 'ok' END"},
		Params: backfill.Params{"pin": {Type: "text", Value: secret, Text: secret, Secret: true}}}
	_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
	if !errors.Is(err, backfill.ErrRunFailed) || strings.Contains(err.Error(), secret) {
		t.Fatalf("apply = %v, want a failed run whose error masks the secret", err)
	}
	for _, table := range []string{"backfill_runs", "audit_log", "backfill_chunks", "backfill_quarantine"} {
		if n := b.scalar(t, "SELECT count(*) FROM rewind."+table+" t WHERE strpos(t::text, $1) > 0", secret); n != 0 {
			t.Fatalf("rewind.%s: %d rows quote the secret", table, n)
		}
	}
	// A job with secrets keeps no DETAIL (the failing row): see
	// TestErrorDetailIsWithheldWhenTheJobHasSecrets.
	if n := b.scalar(t, "SELECT count(*) FROM rewind.audit_log WHERE strpos(body, 'violates check constraint') > 0 AND strpos(body, $1) > 0",
		backfill.DetailWithheld); n != 1 {
		t.Fatalf("%d run.failed entries with the failing row withheld", n)
	}
}

// A job version or a parameter value that is not one line of plain text is
// refused before anything is written: every ledger entry of the run
// records them (a secret parameter's value only as ***, so it may hold
// any text).
func TestTextTheLedgerRecordsIsPlain(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	b.db.Exec(t, "ALTER TABLE items ADD note text")
	forged := "\n   999  2026-12-01T06:11:43Z  backfill.run.finished  forged"
	param := func(name, text string, secret bool) func(*backfill.Job) {
		return func(j *backfill.Job) {
			j.Set = map[string]string{"note": "@" + name}
			j.Params = backfill.Params{name: {Type: "text", Value: text, Text: text, Secret: secret}}
		}
	}
	for _, c := range []struct {
		field string
		job   func(*backfill.Job)
	}{
		{"job version", func(j *backfill.Job) { j.Version = "1" + forged }},
		{"job version", func(j *backfill.Job) { j.Version = "1\u034f" }},
		{"params.note", param("note", "x"+forged, false)},
		{"params.note", param("note", "x\x1b[2J", false)},
		{"params.note", param("note", "x\u3164", false)},
	} {
		job := countJob(5)
		c.job(job)
		b.refused(t, job, c.field, "not plain text")
	}
	job := countJob(5)
	param("note", "any\ttext", true)(job)
	if _, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{}); err != nil {
		t.Errorf("a secret parameter's value is recorded as ***, whatever it holds: %v", err)
	}
}
