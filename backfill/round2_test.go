package backfill_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// poolOn opens a pool on dsn, configured by configure when not nil.
func poolOn(t *testing.T, dsn string, configure func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Issue 11, outside test round 2 (2a): with standard_conforming_strings
// off on the database, PostgreSQL read `'\' = ' || '` + a comment as a
// string followed by `OR (true`, while the parser that checked the where
// saw one false comparison and a comment: the where escaped the chunk's
// key range and the run rewrote every row, forever. The runner now
// refuses such a session, and its own pools (ConfigurePool) force the
// setting on, under which the where means what the parser saw.
func TestStandardConformingStringsOffIsRefusedOrForcedOn(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	b.db.Exec(t, "ALTER DATABASE "+b.db.Name+" SET standard_conforming_strings = off")
	job := func() *backfill.Job {
		return &backfill.Job{Name: "scs", Version: "1", ChunkSize: 5,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "'\\' = ' || '\n-- ' = '') OR (true"},
			Set:    map[string]string{"n": "n + 1"}}
	}
	ctx := context.Background()
	sum := b.db.Checksum(t, "items", "id")

	// A pool left as the database says: refused, nothing written.
	plain := poolOn(t, b.db.DSN, nil)
	cfg := b.cfg
	cfg.DB = plain
	r, err := backfill.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []func() error{
		func() error { _, err := r.Plan(ctx, job(), backfill.PlanOptions{}); return err },
		func() error { _, err := r.Apply(ctx, job(), backfill.ApplyOptions{}); return err },
	} {
		err := run()
		var se *backfill.SessionSettingsError
		if !errors.As(err, &se) || se.Setting != "standard_conforming_strings" || !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Fatalf("= %v, want a *SessionSettingsError on standard_conforming_strings (invalid argument)", err)
		}
	}
	b.wroteNothing(t, sum)

	// A configured pool: the where is the false comparison the parser saw.
	cfg.DB = poolOn(t, b.db.DSN, backfill.ConfigurePool)
	if r, err = backfill.New(cfg); err != nil {
		t.Fatal(err)
	}
	plan, err := r.Plan(ctx, job(), backfill.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Rows != 0 {
		t.Fatalf("plan counts %d rows, want 0 (the where is always false)", plan.Rows)
	}
	res, err := r.Apply(ctx, job(), backfill.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.RowsChanged != 0 || b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0") != 0 {
		t.Fatalf("apply changed %d rows, want 0", res.RowsChanged)
	}

	// A backslash before a quote is an ordinary character.
	j := job()
	j.Name, j.Source.(*backfill.Table).Where = "backslash", `val::text <> 'a\' OR id <= 3`
	if res = b.applyOn(t, r, j); res.RowsChanged != 20 {
		t.Fatalf("apply with a backslash in a string changed %d rows, want 20", res.RowsChanged)
	}
}

func (b *bundle) applyOn(t *testing.T, r *backfill.Runner, job *backfill.Job) *backfill.Result {
	t.Helper()
	res, err := r.Apply(context.Background(), job, backfill.ApplyOptions{})
	if err != nil {
		t.Fatalf("apply %s: %v", job.Name, err)
	}
	return res
}

// Issue 11, outside test round 2 (observation i): a function changing
// TimeZone for the session went unseen, and rows after the first were
// written under another time zone.
func TestTimeZoneChangeStopsTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	b.db.Exec(t, `ALTER TABLE items ADD COLUMN ts text;
		CREATE FUNCTION tz() RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('TimeZone', 'Asia/Tokyo', false); RETURN 'x'; END $$`)
	job := &backfill.Job{Name: "tz", Version: "1", ChunkSize: 5, OnDataError: backfill.Skip,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"ts": "tz()"}}
	_, err := b.runner.Apply(context.Background(), job, backfill.ApplyOptions{})
	var se *backfill.SessionChangedError
	if !errors.As(err, &se) || !strings.Contains(se.What, "TimeZone") {
		t.Fatalf("apply = %v, want the run stopped because the session's TimeZone changed", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE ts IS NOT NULL"); n != 0 {
		t.Fatalf("%d rows written by a chunk that changed the TimeZone", n)
	}
}
