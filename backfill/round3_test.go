package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

// Issue 11, outside test round 3 (A, B, C, D and session_replication_role):
// how the server reads SQL text and prints values depends on session
// settings a database, a role or a DSN can set. A pool left as the database
// says is refused; a pool configured with ConfigurePool starts with the
// settings the runner's checks and checkpoints assume.
func TestSessionSettingsArePinnedOrRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ setting, value string }{
		{"client_encoding", "SJIS"},
		{"client_encoding", "LATIN1"},
		{"DateStyle", "SQL, DMY"},
		{"IntervalStyle", "sql_standard"},
		{"extra_float_digits", "0"},
		{"bytea_output", "escape"},
		{"session_replication_role", "replica"},
	} {
		t.Run(c.setting+"="+c.value, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 20)
			b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET "+c.setting+" = '"+c.value+"'")
			sum := b.db.Checksum(t, "items", "id")
			cfg := b.cfg
			cfg.DB = poolOn(t, b.db.DSN, nil)
			r, err := backfill.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Apply(context.Background(), countJob(5), backfill.ApplyOptions{})
			var se *backfill.SessionSettingsError
			if !errors.As(err, &se) || !errors.Is(err, rewind.ErrInvalidArgument) {
				t.Fatalf("apply on a session with %s = %s: %v, want a *SessionSettingsError", c.setting, c.value, err)
			}
			b.wroteNothing(t, sum)
			if c.setting == "session_replication_role" {
				// Not pinned (only a superuser may set it): refused either way.
				cfg.DB = poolOn(t, b.db.DSN, backfill.ConfigurePool)
				r, _ = backfill.New(cfg)
				if _, err := r.Apply(context.Background(), countJob(5), backfill.ApplyOptions{}); !errors.As(err, &se) {
					t.Fatalf("apply on a configured pool with session_replication_role = replica: %v, want refused", err)
				}
				b.wroteNothing(t, sum)
			}
		})
	}
}

// A: under SJIS the server read the last byte of さ and the backslash as
// one character, so the string ended early and `OR (true` escaped the
// chunk's key range. B: under LATIN1 the actor was stored garbled and
// verify then reported tampering.
func TestClientEncodingIsUTF8(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	b.db.Exec(t, "ALTER TABLE items ADD COLUMN email text")
	for _, enc := range []string{"SJIS", "LATIN1"} {
		b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET client_encoding = '"+enc+"'")
		cfg := b.cfg
		cfg.DB, cfg.Actor = poolOn(t, b.db.DSN, backfill.ConfigurePool), "Jürgen"
		r, err := backfill.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		job := countJob(5)
		job.Name = "enc-" + enc
		job.Source.(*backfill.Table).Where = "email = E'さ\\') OR (true --'"
		res, err := r.Apply(context.Background(), job, backfill.ApplyOptions{})
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if res.RowsChanged != 0 || b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0") != 0 {
			t.Fatalf("%s: the where escaped its string: %d rows changed", enc, res.RowsChanged)
		}
		if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs WHERE actor = 'Jürgen' AND job_name = $1", job.Name); n != 1 {
			t.Fatalf("%s: the actor is not stored as given", enc)
		}
		l, _ := auditpg.New(cfg.DB, auditpg.Config{})
		if _, err := l.Verify(context.Background()); err != nil {
			t.Fatalf("%s: verify: %v", enc, err)
		}
	}
}

// C: checkpoint keys were stored in the session's DateStyle (01/03/2031)
// and read back in the resuming session's: 57 rows were changed twice.
func TestResumeUnderAnotherDateStyleChangesEachRowOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.db.Exec(t, `CREATE TABLE dt (k date PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO dt (k) SELECT date '2031-01-01' + g FROM generate_series(0, 70) g;
		ALTER TABLE dt ADD CONSTRAINT cc CHECK (k <> '2031-03-05' OR n < 1) NOT VALID`)
	b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET DateStyle = 'SQL, DMY'")
	job := func() *backfill.Job {
		return &backfill.Job{Name: "dates", Version: "1", ChunkSize: 5,
			Source: &backfill.Table{Name: "dt", Key: []string{"k"}}, Set: map[string]string{"n": "n + 1"}}
	}
	cfg := b.cfg
	cfg.DB = poolOn(t, b.db.DSN, backfill.ConfigurePool)
	r, _ := backfill.New(cfg)
	_, err := r.Apply(context.Background(), job(), backfill.ApplyOptions{})
	var re *backfill.RunError
	if !errors.As(err, &re) {
		t.Fatalf("apply = %v, want the run to fail at 2031-03-05", err)
	}
	b.db.Exec(t, "ALTER TABLE dt DROP CONSTRAINT cc")
	b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET DateStyle = 'SQL, MDY'")
	cfg.DB = poolOn(t, b.db.DSN, backfill.ConfigurePool)
	r, _ = backfill.New(cfg)
	if _, err := r.Resume(context.Background(), re.RunID, job(), backfill.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM dt WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}

// D: with extra_float_digits = 0 every key printed as "1", and the run
// looped over empty chunks forever.
func TestFloatKeysAreExchangedExactly(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.db.Exec(t, `CREATE TABLE ft (k float8 PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO ft (k) SELECT 1 + g * 1e-15 FROM generate_series(0, 9) g`)
	b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET extra_float_digits = 0")
	cfg := b.cfg
	cfg.DB = poolOn(t, b.db.DSN, backfill.ConfigurePool)
	r, _ := backfill.New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job := &backfill.Job{Name: "floats", Version: "1", ChunkSize: 2,
		Source: &backfill.Table{Name: "ft", Key: []string{"k"}}, Set: map[string]string{"n": "n + 1"}}
	res, err := r.Apply(ctx, job, backfill.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.RowsChanged != 10 || res.Chunks > 5 || b.scalar(t, "SELECT count(*) FROM ft WHERE n <> 1") != 0 {
		t.Fatalf("changed %d rows in %d chunks, want 10 in 5", res.RowsChanged, res.Chunks)
	}
}

// E, F: a resume under another search_path finished the run on another
// schema's table of the same name; one under another TimeZone wrote a
// second instant for a timestamptz parameter given without an offset.
// The run records both at its start, and a resume on a session that
// differs is refused before it writes anything.
func TestResumeOnAnotherSearchPathOrTimeZoneIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	b.db.Exec(t, `ALTER TABLE items ADD COLUMN ts timestamptz;
		CREATE SCHEMA s2; CREATE TABLE s2.items (LIKE public.items INCLUDING ALL); INSERT INTO s2.items SELECT * FROM public.items;
		ALTER TABLE public.items ADD CONSTRAINT cc CHECK (id <> 8 OR n < 1) NOT VALID`)
	job := func() *backfill.Job {
		return &backfill.Job{Name: "sp", Version: "1", ChunkSize: 5,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}},
			Set:    map[string]string{"n": "n + 1", "ts": "@p"},
			Params: backfill.Params{"p": {Type: "timestamptz", Value: "2031-01-01", Text: "2031-01-01"}}}
	}
	_, err := b.runner.Apply(context.Background(), job(), backfill.ApplyOptions{})
	var re *backfill.RunError
	if !errors.As(err, &re) {
		t.Fatalf("apply = %v, want the run to fail at id 8", err)
	}
	b.db.Exec(t, "ALTER TABLE public.items DROP CONSTRAINT cc")
	sum := b.db.Checksum(t, "s2.items", "id")
	for _, c := range []struct{ setting, value, want string }{
		{"search_path", "s2, public", "table"},
		{"TimeZone", "Asia/Tokyo", "time_zone"},
	} {
		cfg := b.cfg
		cfg.DB = poolOn(t, b.db.DSN, func(pc *pgxpool.Config) {
			backfill.ConfigurePool(pc)
			pc.ConnConfig.RuntimeParams[c.setting] = c.value
		})
		r, _ := backfill.New(cfg)
		_, err := r.Resume(context.Background(), re.RunID, job(), backfill.ApplyOptions{AllowChangedJob: true})
		var se *backfill.RunSettingsError
		if !errors.As(err, &se) || se.Setting != c.want || !errors.Is(err, rewind.ErrWrongExpectedVersion) {
			t.Fatalf("resume with %s = %s: %v, want a *RunSettingsError on %s", c.setting, c.value, err, c.want)
		}
		if b.db.Checksum(t, "s2.items", "id") != sum || b.scalar(t, "SELECT count(*) FROM public.items WHERE n <> 0") != 5 {
			t.Fatalf("resume with %s = %s wrote", c.setting, c.value)
		}
	}
	if _, err := b.runner.Resume(context.Background(), re.RunID, job(), backfill.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM public.items WHERE n = 1 AND ts = '2031-01-01 00:00+00'"); n != 20 {
		t.Fatalf("%d of 20 rows changed once at the run's instant", n)
	}
}

// G: a secret written into a column of another type is printed by that
// type in "Failing row contains (…)": bigint 0031415926 in numeric(14,2)
// as 31415926.00, a timestamptz in a timestamp column as the local time.
func TestSecretRenderedByItsColumnTypeIsMasked(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	b.db.Exec(t, `ALTER TABLE items ADD COLUMN amt numeric(14,2), ADD COLUMN tsl timestamp,
		ADD CONSTRAINT c8 CHECK (id <> 8 OR amt IS NULL)`)
	cfg := b.cfg
	cfg.DB = poolOn(t, b.db.DSN, func(pc *pgxpool.Config) {
		backfill.ConfigurePool(pc)
		pc.ConnConfig.RuntimeParams["TimeZone"] = "America/Chicago"
	})
	r, _ := backfill.New(cfg)
	job := &backfill.Job{Name: "coltypes", Version: "1", ChunkSize: 5, OnDataError: backfill.Skip,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Set:    map[string]string{"amt": "@num", "tsl": "@ts"},
		Params: backfill.Params{
			"num": {Type: "bigint", Value: "0031415926", Text: "0031415926", Secret: true},
			"ts":  {Type: "timestamptz", Value: "2031-07-19T01:02:03+05:00", Text: "2031-07-19T01:02:03+05:00", Secret: true},
		}}
	if _, err := r.Apply(context.Background(), job, backfill.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT concat_ws(E'\n',
		(SELECT string_agg(q::text, E'\n') FROM rewind.backfill_quarantine q),
		(SELECT string_agg(t::text, E'\n') FROM rewind.audit_log t))`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	// The DETAIL (the failing row) is withheld as a whole now (round 4,
	// R3); the secret must not be stored either way.
	if !strings.Contains(stored, "violates check constraint") || !strings.Contains(stored, backfill.DetailWithheld) {
		t.Fatalf("the failure is not recorded:\n%s", stored)
	}
	for _, secret := range []string{"31415926", "2031-07-18 15:02:03", "15:02:03"} {
		if strings.Contains(stored, secret) {
			t.Errorf("%q is stored:\n%s", secret, stored)
		}
	}
}

// H: a STABLE function that calls nextval() was evaluated by the planner
// when a check EXPLAINed the chunk statement outside a read-only
// transaction: each dry run advanced the sequence, then failed with an
// internal-looking error. Every check now runs read-only, and such a
// function is refused as the set expression it is, naming the fix.
func TestStableFunctionThatWritesIsRefusedWithoutAdvancingItsSequence(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	b.db.Exec(t, `CREATE SEQUENCE s; CREATE FUNCTION sf() RETURNS int STABLE LANGUAGE plpgsql AS 'BEGIN RETURN nextval(''s''); END'`)
	job := &backfill.Job{Name: "stable", Version: "1", ChunkSize: 5,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "sf()"}}
	sum := b.db.Checksum(t, "items", "id")
	for _, run := range []func() error{
		func() error { _, err := b.runner.Plan(context.Background(), job, backfill.PlanOptions{}); return err },
		func() error {
			_, err := b.runner.Plan(context.Background(), job, backfill.PlanOptions{Estimate: true})
			return err
		},
		func() error { _, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{}); return err },
	} {
		err := run()
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != "set.n" || !strings.Contains(ve.Reason, "VOLATILE") {
			t.Fatalf("= %v, want a validation error on set.n saying to declare the function VOLATILE", err)
		}
	}
	if n := b.scalar(t, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM s"); n != 0 {
		t.Fatalf("the checks advanced the sequence to %d", n)
	}
	b.wroteNothing(t, sum)
}
