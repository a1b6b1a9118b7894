package backfill_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/backfill"
)

// countZeros increments n of the rows where it is 0: countJob made
// idempotent, so that verify finds no row still to change.
func countZeros(chunk int) *backfill.Job {
	j := countJob(chunk)
	j.Source.(*backfill.Table).Where = "n = 0"
	return j
}

// sumText is a query's one text value.
func (b *bundle) sumText(t *testing.T, sql string, args ...any) string {
	t.Helper()
	var s *string
	if err := b.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil || s == nil {
		t.Fatalf("%s: %v (%v)", sql, err, s)
	}
	return *s
}

// A set job's checksums hash each key and set column by its type's
// extended hash function, seeded with the column's position, and combine
// them by XOR (docs/backfill.md, Checksums): the checkpoints hold what
// that SQL sums to, and the run records that it hashes so.
func TestSetJobChecksumsHashEachColumn(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	res := b.apply(t, countZeros(100), backfill.ApplyOptions{})
	if res.Run.Session["checksum"] != "columns" {
		t.Fatalf("run session %v: want checksum columns", res.Run.Session)
	}
	in := b.sumText(t, "SELECT sum(input_checksum::numeric)::text FROM rewind.backfill_chunks WHERE run_id = $1", res.Run.ID)
	out := b.sumText(t, "SELECT sum(output_checksum::numeric)::text FROM rewind.backfill_chunks WHERE run_id = $1", res.Run.ID)
	wantIn := b.sumText(t, "SELECT sum(coalesce(hashint8extended(id, 1), 1) # coalesce(hashint4extended(n - 1, 2), 2))::text FROM items")
	wantOut := b.sumText(t, "SELECT sum(coalesce(hashint8extended(id, 1), 1) # coalesce(hashint4extended(n, 2), 2))::text FROM items")
	if in != wantIn || out != wantOut {
		t.Fatalf("checksums over the chunks: input %s, output %s; the per-column hashes sum to %s and %s", in, out, wantIn, wantOut)
	}
	rep, err := b.runner.Verify(context.Background(), res.Run.ID, countZeros(100), backfill.VerifyOptions{})
	if err != nil || !rep.Clean() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	// Types without a function of their own are hashed by value: bytea
	// and boolean as one-column rows, money as numeric; json by its text.
	b.db.Exec(t, `CREATE TABLE odd (id bigint PRIMARY KEY, b bytea, j json, mo money, ok boolean)`)
	b.db.Exec(t, `INSERT INTO odd SELECT g, decode(md5(g::text), 'hex'), json_build_object('g', g), g, g % 3 = 0 FROM generate_series(1, 300) g`)
	job := &backfill.Job{Name: "odd", Version: "1", ChunkSize: 100, Source: &backfill.Table{Name: "odd", Key: []string{"id"}},
		Set: map[string]string{"b": "b || '\\x01'::bytea", "j": "json_build_object('h', id)", "mo": "mo * 2", "ok": "NOT ok"}}
	res = b.apply(t, job, backfill.ApplyOptions{})
	out = b.sumText(t, "SELECT sum(output_checksum::numeric)::text FROM rewind.backfill_chunks WHERE run_id = $1", res.Run.ID)
	wantOut = b.sumText(t, `SELECT sum(coalesce(hashint8extended(id, 1), 1) # coalesce(hash_record_extended(ROW(b), 2), 2) #
		coalesce(hashtextextended(j::text, 3), 3) # coalesce(hash_numeric_extended(mo::numeric, 4), 4) #
		coalesce(hash_record_extended(ROW(ok), 5), 5))::text FROM odd`)
	if out != wantOut {
		t.Fatalf("output checksums of bytea, json, money and boolean columns: %s; the documented hashes sum to %s", out, wantOut)
	}
}

// Columns of every kind of type hash: a base type's own function, a
// domain's base type's, and as text those whose function is declared for
// another type (boolean, date), polymorphic ones (arrays, enums) and
// types without one (json); NULLs too; arrays and composites of types
// without equality (json[], point[], a composite with json and point
// fields), which the rollback compares as text. Each one-pass chunk proves its
// UPDATE wrote the values its images computed by comparing such hashes,
// so a hash that differed between the read and the write would fail the
// run; verify and the rollback agree with the chunks.
func TestSetJobChecksumsOfEveryKindOfColumn(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := context.Background()
	b.db.Exec(t, `CREATE DOMAIN posint AS int CHECK (VALUE > 0)`)
	b.db.Exec(t, `CREATE DOMAIN posint2 AS posint`)
	b.db.Exec(t, `CREATE TYPE mood AS ENUM ('calm', 'glad')`)
	b.db.Exec(t, `CREATE TYPE jp AS (j json, p point)`)
	b.db.Exec(t, `CREATE TABLE wide (k varchar(20) NOT NULL, k2 date NOT NULL, b boolean, v varchar(10), num numeric(10,2),
		p posint2, arr int[], j json, jb jsonb, u uuid, ts timestamptz, m mood, f float8, c "char", by bytea, mo money, d date,
		ja json[], pa point[], cj jp, PRIMARY KEY (k, k2))`)
	b.db.Exec(t, `INSERT INTO wide SELECT 'k' || g, date '2020-01-01' + g, g % 2 = 0, 'v' || g, g / 7.0, g, ARRAY[g, NULL],
		json_build_object('g', g), jsonb_build_object('g', g), md5(g::text)::uuid, timestamptz '2020-03-29 00:30:00+00' + g * interval '1 hour',
		'calm', g * 0.1, 'x', decode(md5(g::text), 'hex'), g * 1.25, date '2020-01-01' + g, ARRAY[json_build_object('g', g)],
		ARRAY[point(g, g)], ROW(json_build_object('g', g), point(g, 0))::jp FROM generate_series(1, 250) g`)
	b.db.Exec(t, `INSERT INTO wide (k, k2) SELECT 'null' || g, date '2021-01-01' + g FROM generate_series(1, 50) g`)
	// The table's text under the pinned settings, whatever the database's.
	canon := poolOn(t, b.db.DSN, backfill.ConfigurePool)
	sum := func() string {
		var s string
		if err := canon.QueryRow(ctx, "SELECT md5(string_agg(w::text, E'\\n' ORDER BY k, k2)) FROM wide w").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := sum()
	job := &backfill.Job{Name: "wide", Version: "1", ChunkSize: 40,
		Source: &backfill.Table{Name: "wide", Key: []string{"k", "k2"}, Where: "m IS DISTINCT FROM 'glad'"},
		Set: map[string]string{"b": "NOT b", "v": "v || 'x'", "num": "num + 1", "p": "p + 1", "arr": "arr || 1",
			"j": "json_build_object('x', k)", "jb": "jb || '{\"y\": 2}'", "u": "md5(k || 'u')::uuid", "ts": "ts + interval '1 day'",
			"m": "'glad'", "f": "f * 2", "c": "'y'", "by": "by || '\\x00'::bytea", "mo": "mo + 1::money", "d": "d + 1",
			"ja": "ja || json_build_object('h', 1)", "pa": "pa || point(0, 0)", "cj": "ROW(json_build_object('k', k), point(1, 1))::jp"}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsChanged != 300 {
		t.Fatalf("changed %d rows, want 300", res.RowsChanged)
	}
	rep, err := b.runner.Verify(ctx, res.Run.ID, job, backfill.VerifyOptions{})
	if err != nil || !rep.Clean() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	// Settings that change how values print change no checksum: bytea
	// and money are hashed by value, and the CLI's pool pins the rest.
	b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET bytea_output = 'escape'")
	b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET lc_monetary = 'C.utf8'")
	cfg := b.cfg
	cfg.DB = poolOn(t, b.db.DSN, backfill.ConfigurePool)
	other, err := backfill.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := other.Verify(ctx, res.Run.ID, job, backfill.VerifyOptions{}); err != nil || !rep.Clean() {
		t.Fatalf("verify under bytea_output = escape and another lc_monetary: %+v, %v", rep, err)
	}
	// A row changed since is found by the checksum of the chunk that wrote it.
	b.db.Exec(t, `UPDATE wide SET num = num + 100 WHERE k = 'k7'`)
	rep, err = other.Verify(ctx, res.Run.ID, job, backfill.VerifyOptions{})
	if err != nil || rep.Clean() {
		t.Fatalf("verify after a row changed: %+v, %v", rep, err)
	}
	b.db.Exec(t, `UPDATE wide SET num = num - 100 WHERE k = 'k7'`)
	if out, err := other.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{}); err != nil || out.Restored != 300 {
		t.Fatalf("rollback: %+v, %v; want 300 rows restored", out, err)
	}
	if after := sum(); after != before {
		t.Fatalf("the rollback did not restore the table: %s, was %s", after, before)
	}
}

// earlierVersionRun is a run of countZeros(100) over 1,000 rows that a
// version before per-column checksums started and that stopped after 3
// chunks, with a runner of this version on the same database.
func earlierVersionRun(t *testing.T) (*bundle, *backfill.Result, *backfill.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := setup(t, 1000, backfill.LegacyChecksums, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			if p.Chunks == 3 {
				cancel()
			}
		}
	})
	res, err := b.runner.Apply(ctx, countZeros(100), backfill.ApplyOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted apply: %+v, %v", res, err)
	}
	if _, ok := res.Run.Session["checksum"]; ok {
		t.Fatalf("a run of the earlier version recorded %v", res.Run.Session)
	}
	cfg := b.cfg
	cfg.Progress = nil
	r, err := backfill.New(cfg) // this version
	if err != nil {
		t.Fatal(err)
	}
	return b, res, r
}

// A run started by an earlier version, whose set job hashed rows whole
// (hash_record_extended), is resumed and verified by this one as it
// started: every chunk's checksums are of that kind, and verify finds
// nothing.
func TestRunOfAnEarlierVersionKeepsItsChecksums(t *testing.T) {
	t.Parallel()
	b, res, r := earlierVersionRun(t)
	// Before the resume, on a ledger of the earlier version's shape as far
	// as the run goes: the run's session has no checksum.
	b.db.Exec(t, `UPDATE rewind.backfill_runs SET session = session - 'checksum' WHERE id = $1`, res.Run.ID)
	done, err := r.Resume(context.Background(), res.Run.ID, countZeros(100), backfill.ApplyOptions{})
	if err != nil || done.Run.State != backfill.Finished || done.Run.Chunks != 10 {
		t.Fatalf("resume: %+v, %v", done, err)
	}
	out := b.sumText(t, "SELECT sum(output_checksum::numeric)::text FROM rewind.backfill_chunks WHERE run_id = $1", res.Run.ID)
	want := b.sumText(t, "SELECT sum(hash_record_extended(ROW(id, n), 0))::text FROM items")
	if out != want {
		t.Fatalf("output checksums over the chunks %s; hash_record_extended sums to %s", out, want)
	}
	rep, err := r.Verify(context.Background(), res.Run.ID, countZeros(100), backfill.VerifyOptions{})
	if err != nil || !rep.Clean() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// A run whose chunks were applied by two versions (one continued the
// other's run with --allow-changed-job: its first chunks hash rows whole,
// the rest by column) verifies clean, with a note naming each chunk of the
// other version's hash; a row changed since is still found.
func TestRunContinuedByAnotherVersionVerifies(t *testing.T) {
	t.Parallel()
	b, res, r := earlierVersionRun(t)
	// As if this version had started the run: the rest hashes by column.
	b.db.Exec(t, `UPDATE rewind.backfill_runs SET session = session || '{"checksum": "columns"}' WHERE id = $1`, res.Run.ID)
	if done, err := r.Resume(context.Background(), res.Run.ID, countZeros(100), backfill.ApplyOptions{}); err != nil ||
		done.Run.Chunks != 10 {
		t.Fatalf("resume: %+v, %v", done, err)
	}
	rep, err := r.Verify(context.Background(), res.Run.ID, countZeros(100), backfill.VerifyOptions{})
	if err != nil || !rep.Clean() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	var others []string
	for _, n := range rep.Notes {
		if strings.Contains(n, "hash rows as another version") {
			others = append(others, n)
		}
	}
	if len(others) != 1 || !strings.HasPrefix(others[0], "3 chunk(s)") || !strings.HasSuffix(others[0], "chunk(s) 1, 2, 3") {
		t.Fatalf("notes %q: want one naming the 3 chunks hashed whole", rep.Notes)
	}
	b.db.Exec(t, `UPDATE items SET n = 7 WHERE id = 150`)
	rep, err = r.Verify(context.Background(), res.Run.ID, countZeros(100), backfill.VerifyOptions{})
	if err != nil || rep.Clean() || rep.Findings[0].Chunk != 2 {
		t.Fatalf("verify after a row of chunk 2 changed: %+v, %v", rep, err)
	}
}

// A set column of an array or composite holding a type without equality
// (json[], a composite with a json field) is compared as text, forward
// and back: the run writes the rows whose values differ, whatever the
// column's name sorts before, and the rollback restores them.
func TestSetJobOverContainersOfTypesWithoutEquality(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := context.Background()
	b.db.Exec(t, `CREATE TYPE aj AS (a int, j json)`)
	// xml is cast to text without a function, but not implicitly: it has
	// no equality of text's.
	b.db.Exec(t, `CREATE TYPE ax AS (x xml)`)
	b.db.Exec(t, `CREATE TYPE ajr AS RANGE (subtype = aj)`)
	// The first rows' ranges are empty and their arrays hold NULLs, which
	// compare without reaching json.
	b.db.Exec(t, `CREATE TABLE c (id bigint PRIMARY KEY, a_v aj, ja json[], ar ajr, ca aj[], a_x ax, n int NOT NULL DEFAULT 0)`)
	b.db.Exec(t, `INSERT INTO c SELECT g, ROW(g, json_build_object('g', g))::aj, ARRAY[json_build_object('g', g)],
		CASE WHEN g <= 60 THEN 'empty'::ajr ELSE ajr(ROW(g, '{}')::aj, ROW(g + 1, '{}')::aj) END,
		CASE WHEN g <= 60 THEN ARRAY[NULL::aj] ELSE ARRAY[ROW(g, '{}')::aj] END, ROW(('<g>' || g || '</g>')::xml)::ax, 0
		FROM generate_series(1, 120) g`)
	before := b.sumText(t, "SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM c")
	job := &backfill.Job{Name: "containers", Version: "1", ChunkSize: 50, Source: &backfill.Table{Name: "c", Key: []string{"id"}, Where: "n = 0"},
		Set: map[string]string{"a_v": "a_v", "ja": "ja", "ar": "ar", "ca": "ca", "a_x": "a_x", "n": "1"}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsChanged != 120 {
		t.Fatalf("changed %d rows, want 120", res.RowsChanged)
	}
	if rep, err := b.runner.Verify(ctx, res.Run.ID, job, backfill.VerifyOptions{}); err != nil || !rep.Clean() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	// Rows that already hold the values are not written again.
	xmins := b.sumText(t, "SELECT md5(string_agg(xmin::text, ',' ORDER BY id)) FROM c")
	job2 := *job
	job2.Name, job2.Source = "containers-again", &backfill.Table{Name: "c", Key: []string{"id"}}
	if again := b.apply(t, &job2, backfill.ApplyOptions{}); again.RowsChanged != 0 ||
		b.sumText(t, "SELECT md5(string_agg(xmin::text, ',' ORDER BY id)) FROM c") != xmins {
		t.Fatalf("a run over rows already holding the values changed %d rows", again.RowsChanged)
	}
	if _, out := b.rollback(t, res.Run.ID, backfill.RollbackOptions{}); out.Restored != 120 {
		t.Fatalf("rollback restored %d rows, want 120", out.Restored)
	}
	if after := b.sumText(t, "SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM c"); after != before {
		t.Fatal("the rollback did not restore the table")
	}
}

// A rollback reads the run's images back as text in its own session: in
// another TimeZone or search_path than the run's, a timestamptz or
// regclass inside a composite would print otherwise and every untouched
// row would show as a conflict. It is refused (RunSettingsError, nothing
// written), and goes through in the run's settings.
func TestRollbackRefusesAnotherTimeZoneOrSearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := context.Background()
	b.db.Exec(t, `CREATE TYPE jt AS (j json, at timestamptz, r regclass)`)
	b.db.Exec(t, `CREATE SCHEMA other`)
	b.db.Exec(t, `CREATE TABLE other.dummy (x int)`)
	b.db.Exec(t, `CREATE TABLE c (id bigint PRIMARY KEY, v jt, n int NOT NULL DEFAULT 0)`)
	b.db.Exec(t, `INSERT INTO c SELECT g, ROW(json_build_object('g', g), timestamptz '2024-03-01 13:00:00+00', 'other.dummy')::jt, 0
		FROM generate_series(1, 60) g`)
	job := &backfill.Job{Name: "tz", Version: "1", ChunkSize: 25, Source: &backfill.Table{Name: "c", Key: []string{"id"}, Where: "n = 0"},
		Set: map[string]string{"n": "1", "v": "ROW((v).j, (v).at + interval '1 day', (v).r)::jt"}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	applied := b.sumText(t, "SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM c")
	for _, opt := range []string{"-c TimeZone=Asia/Kathmandu", "-c search_path=other,public"} {
		cfg := b.cfg
		cfg.DB = poolOn(t, b.db.DSN+"&options="+strings.ReplaceAll(url.QueryEscape(opt), "+", "%20"), nil)
		r, err := backfill.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var se *backfill.RunSettingsError
		if _, err := r.PlanRollback(ctx, res.Run.ID, backfill.RollbackOptions{}); !errors.As(err, &se) {
			t.Fatalf("%s: plan = %v, want a *RunSettingsError", opt, err)
		}
		if _, err := r.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{}); !errors.As(err, &se) ||
			!strings.Contains(err.Error(), "refusing to roll it back") {
			t.Fatalf("%s: rollback = %v, want a *RunSettingsError", opt, err)
		}
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs WHERE undoes <> ''"); n != 0 ||
		b.sumText(t, "SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM c") != applied {
		t.Fatal("a refused rollback wrote")
	}
	// The same search_path resolving to other schemas (one named for the
	// role, created since) would print the regclass otherwise: refused.
	b.db.Exec(t, `CREATE SCHEMA postgres`)
	var se *backfill.RunSettingsError
	if _, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{Force: true}); !errors.As(err, &se) || se.Setting != "schemas" {
		t.Fatalf("rollback with a schema for the role created since: %v, want a *RunSettingsError on schemas", err)
	}
	b.db.Exec(t, `DROP SCHEMA postgres`)
	if _, out := b.rollback(t, res.Run.ID, backfill.RollbackOptions{}); out.Restored != 60 || out.Conflicts != 0 {
		t.Fatalf("rollback in the run's settings: %+v", out)
	}
}
