package backfill_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/internal/pgtest"
)

// loginRole creates a login role named after the test's database, with
// the rights a runner needs on items and on the ledger's schema (once it
// exists), and drops it when the test ends. It returns the role's name
// and a runner connected as it.
func loginRole(t *testing.T, b *bundle, suffix string) (string, *backfill.Runner) {
	t.Helper()
	role := b.db.Name + "_" + suffix
	admin := pgtest.AdminDSN()
	b.db.Exec(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		// The database is dropped after this cleanup; drop what the role owns first.
		b.db.Exec(t, "DROP OWNED BY "+role)
		conn, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Errorf("drop role %s: %v", role, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	b.db.Exec(t, "GRANT ALL ON items TO "+role+"; GRANT USAGE, CREATE ON SCHEMA public TO "+role+
		"; GRANT CREATE ON DATABASE "+b.db.Name+" TO "+role)
	u, err := url.Parse(b.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	cfg := b.cfg
	cfg.DB = poolOn(t, u.String(), backfill.ConfigurePool)
	r, err := backfill.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return role, r
}

func grantLedger(t *testing.T, b *bundle, role string) {
	t.Helper()
	b.db.Exec(t, "GRANT USAGE ON SCHEMA rewind TO "+role+"; GRANT ALL ON ALL TABLES IN SCHEMA rewind TO "+role+
		"; GRANT ALL ON ALL SEQUENCES IN SCHEMA rewind TO "+role)
}

// Issue 11, outside test round 4, R1: the run recorded search_path as the
// text `"$user", public`; a resume as another role passed the check (the
// text is the same) but $user named that role's schema, so f() was
// another function for the rest of the run. The run records its role and
// the schemas its search_path resolved to, and a resume as another role
// is refused before it writes.
func TestResumeAsAnotherRoleIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	role, other := loginRole(t, b, "op")
	b.db.Exec(t, `CREATE FUNCTION public.f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1';
		CREATE SCHEMA `+role+` AUTHORIZATION `+role+`;
		CREATE FUNCTION `+role+`.f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 2';
		ALTER FUNCTION `+role+`.f() OWNER TO `+role+`;
		ALTER TABLE items ADD CONSTRAINT cc CHECK (id <> 8 OR n < 1) NOT VALID`)
	job := func() *backfill.Job {
		return &backfill.Job{Name: "role", Version: "1", ChunkSize: 5,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "f()"}}
	}
	_, err := b.runner.Apply(context.Background(), job(), backfill.ApplyOptions{})
	var re *backfill.RunError
	if !errors.As(err, &re) {
		t.Fatalf("apply = %v, want the run to fail at id 8", err)
	}
	b.db.Exec(t, "ALTER TABLE items DROP CONSTRAINT cc")
	grantLedger(t, b, role)
	for name, try := range map[string]func() error{
		"resume": func() error {
			_, err := other.Resume(context.Background(), re.RunID, job(), backfill.ApplyOptions{})
			return err
		},
		"takeover": func() error { _, err := other.Apply(context.Background(), job(), backfill.ApplyOptions{}); return err },
	} {
		err := try()
		var se *backfill.RunSettingsError
		if !errors.As(err, &se) || se.Setting != "role" || !errors.Is(err, rewind.ErrWrongExpectedVersion) ||
			!strings.Contains(err.Error(), role) || !strings.Contains(err.Error(), "postgres") {
			t.Fatalf("%s as %s: %v, want a *RunSettingsError on the role naming both roles", name, role, err)
		}
		if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 5 {
			t.Fatalf("%s as another role wrote: %d rows changed, want 5", name, n)
		}
	}
	if _, err := b.runner.Resume(context.Background(), re.RunID, job(), backfill.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != 20 {
		t.Fatalf("%d of 20 rows hold public.f()", n)
	}
}

// The same role whose search_path resolves to other schemas than at the
// run's start ("$user" named no schema then, and does now) is refused too.
func TestResumeWithAnotherResolvedSearchPathIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	b.db.Exec(t, `CREATE FUNCTION public.f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1';
		ALTER TABLE items ADD CONSTRAINT cc CHECK (id <> 8 OR n < 1) NOT VALID`)
	job := &backfill.Job{Name: "schemas", Version: "1", ChunkSize: 5,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"n": "f()"}}
	_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
	var re *backfill.RunError
	if !errors.As(err, &re) {
		t.Fatalf("apply = %v, want the run to fail at id 8", err)
	}
	b.db.Exec(t, `ALTER TABLE items DROP CONSTRAINT cc; CREATE SCHEMA postgres;
		CREATE FUNCTION postgres.f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 2'`)
	_, err = b.runner.Resume(context.Background(), re.RunID, job, backfill.ApplyOptions{})
	var se *backfill.RunSettingsError
	if !errors.As(err, &se) || se.Setting != "schemas" || !strings.Contains(err.Error(), "postgres, public") {
		t.Fatalf("resume = %v, want a *RunSettingsError on the resolved schemas", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 5 {
		t.Fatalf("the refused resume wrote: %d rows changed, want 5", n)
	}
}

// R2: a role that row-level security limits to some of the table's rows
// sees only those: a run (or a resume) under it finished with the other
// rows never changed. Such a session is refused before anything is
// written.
func TestRoleSubjectToRowLevelSecurityIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	role, limited := loginRole(t, b, "rls")
	b.db.Exec(t, `ALTER TABLE items ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON items TO `+role+` USING (id <= 10)`)
	sum := b.db.Checksum(t, "items", "id")
	_, err := limited.Apply(context.Background(), countJob(5), backfill.ApplyOptions{})
	var ve *rewind.ValidationError
	if !errors.As(err, &ve) || ve.Field != "table" || !strings.Contains(ve.Reason, "row-level security") ||
		!strings.Contains(ve.Reason, role) {
		t.Fatalf("apply as %s = %v, want a validation error on the table naming row-level security and the role", role, err)
	}
	if _, err := limited.Plan(context.Background(), countJob(5), backfill.PlanOptions{}); !errors.As(err, &ve) ||
		!strings.Contains(ve.Reason, "row-level security") {
		t.Fatalf("dry run as %s = %v, want refused", role, err)
	}
	b.wroteNothing(t, sum)
	// The owner is not subject to it: the run goes through every row.
	res := b.apply(t, countJob(5), backfill.ApplyOptions{})
	if res.RowsChanged != 20 {
		t.Fatalf("the owner's run changed %d rows, want 20", res.RowsChanged)
	}
}

// R3: a trigger copied the secret into another table, whose failing check
// quoted it in the error's DETAIL in that table's column types, which
// masking does not know. A job with a secret parameter keeps no error
// DETAIL: the quarantine and the ledger hold the message, the SQLSTATE
// and the constraint, and a note that the row's contents are withheld.
func TestErrorDetailIsWithheldWhenTheJobHasSecrets(t *testing.T) {
	t.Parallel()
	for _, policy := range []backfill.Policy{backfill.Skip, backfill.Halt} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			b := setup(t, 20)
			b.db.Exec(t, `ALTER TABLE items ADD COLUMN pid bigint, ADD COLUMN ts timestamptz;
				CREATE TABLE logt (id bigint, v numeric(14,2), w timestamp, CONSTRAINT neg CHECK (v < 0));
				CREATE FUNCTION copy() RETURNS trigger LANGUAGE plpgsql AS
					'BEGIN IF new.id = 8 THEN INSERT INTO logt VALUES (new.id, new.pid, new.ts); END IF; RETURN new; END';
				CREATE TRIGGER copy AFTER UPDATE ON items FOR EACH ROW EXECUTE FUNCTION copy()`)
			job := &backfill.Job{Name: "detail", Version: "1", ChunkSize: 5, OnDataError: policy,
				Source: &backfill.Table{Name: "items", Key: []string{"id"}},
				Set:    map[string]string{"pid": "@bi", "ts": "@ts"},
				Params: backfill.Params{
					"bi": {Type: "bigint", Value: "0031415926", Text: "0031415926", Secret: true},
					"ts": {Type: "timestamptz", Value: "2031-07-19T01:02:03+05:00", Text: "2031-07-19T01:02:03+05:00", Secret: true},
				}}
			_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
			if policy == backfill.Skip && err != nil {
				t.Fatal(err)
			}
			var re *backfill.RunError
			if policy == backfill.Halt && !errors.As(err, &re) {
				t.Fatalf("apply = %v, want the run to fail at id 8", err)
			}
			var stored string
			if err := b.db.Pool.QueryRow(context.Background(), `SELECT concat_ws(E'\n',
				(SELECT string_agg(q::text, E'\n') FROM rewind.backfill_quarantine q),
				(SELECT string_agg(r::text, E'\n') FROM rewind.backfill_runs r),
				(SELECT string_agg(t::text, E'\n') FROM rewind.audit_log t))`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stored, "violates check constraint") || !strings.Contains(stored, backfill.DetailWithheld) {
				t.Fatalf("the failure is not recorded with its detail withheld:\n%s", stored)
			}
			printed := ""
			if err != nil {
				printed = err.Error()
			}
			for _, secret := range []string{"31415926", "20:02:03", "Failing row"} {
				if strings.Contains(stored, secret) || strings.Contains(printed, secret) {
					t.Errorf("%q is stored or printed:\n%s\n%s", secret, stored, printed)
				}
			}
		})
	}
}
