package throttle_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill/throttle"
	"github.com/rewindhq/rewind/internal/pgtest"
)

func TestSpecRefusesBadValuesNamingTheField(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		spec  throttle.Spec
		field string
	}{
		{throttle.Spec{MaxRate: -1}, "max_rate"},
		{throttle.Spec{ChunkTime: time.Millisecond}, "chunk_time"},
		{throttle.Spec{MinChunk: 500, MaxChunk: 100}, "min_chunk"},
		{throttle.Spec{Lag: &throttle.LagSpec{Max: -time.Second}}, "replication_lag"},
		{throttle.Spec{Lag: &throttle.LagSpec{Max: 2 * time.Second, Critical: time.Second}}, "replication_lag"},
		{throttle.Spec{Load: &throttle.LoadSpec{}}, "load"},
		{throttle.Spec{Load: &throttle.LoadSpec{MaxActive: 10, CriticalActive: 5}}, "load"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "SELECT 1"}}}, "queries[1]"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", Max: 1}}}, "queries[1].sql"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "SELECT 1", Max: 1}, {Name: "q", SQL: "SELECT 2", Max: 1}}}, "queries[2].name"},
		{throttle.Spec{HTTP: []throttle.HTTPSpec{{Name: "h", URL: "ftp://x"}}}, "http[1].url"},
		{throttle.Spec{HTTP: []throttle.HTTPSpec{{Name: "h", URL: "http://"}}}, "http[1].url"},
		{throttle.Spec{Heartbeats: []throttle.HeartbeatSpec{{Name: "r", DSN: "postgres://x:bad port/", Table: "hb", Max: time.Second}}}, "heartbeat[1].dsn"},
		{throttle.Spec{File: &throttle.FileSpec{}}, "file"},
		{throttle.Spec{MaxRate: math.NaN()}, "max_rate"},
		{throttle.Spec{SlowFrom: 1.5}, "slow_from"},
		{throttle.Spec{SlowFrom: -0.1}, "slow_from"},
		{throttle.Spec{MaxRate: math.Inf(1)}, "max_rate"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "SELECT 1; SELECT 50", Max: 1}}}, "queries[1].sql"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "DELETE FROM t", Max: 1}}}, "queries[1].sql"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "SELECT 1", Max: math.NaN()}}}, "queries[1]"},
		// A throttle query runs on the backfill's pooled connections: one
		// that changes the session would reach the chunks after it.
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "SELECT set_config('search_path', 'evil', false)::int", Max: 1}}}, "queries[1].sql"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "WITH l AS (SELECT pg_catalog.pg_advisory_lock(1)) SELECT 0 FROM l", Max: 1}}}, "queries[1].sql"},
		{throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", SQL: "SELECT (SELECT count(*) FROM dblink('x', 'y') AS t(a int))", Max: 1}}}, "queries[1].sql"},
	} {
		err := c.spec.Validate()
		var fe *throttle.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want an error about %s", c.spec, err, c.field)
		}
	}
	ok := throttle.Spec{Queries: []throttle.QuerySpec{{Name: "q", Max: 5,
		SQL: "WITH a AS (SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active') SELECT greatest(n, 0) FROM a"}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("a query reading pg_stat_activity: %v", err)
	}
}

func TestDefaultSpecReadsLagAndLoad(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	thr, release, err := throttle.Spec{}.Build(db.Pool, throttle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	c := thr.Config()
	if len(c.Signals) != 2 || c.Signals[0].Name() != "replication_lag" || c.Signals[1].Name() != "load" {
		t.Errorf("default signals: %v", c.Signals)
	}
	if c.ChunkTime != 500*time.Millisecond || c.MaxRate != 0 {
		t.Errorf("default chunk time %s, rate %g", c.ChunkTime, c.MaxRate)
	}
	if err := thr.Wait(t.Context(), 1000); err != nil {
		t.Errorf("the default throttle on an idle test database: %v", err)
	}
	off, _, err := throttle.Spec{Off: true, MaxRate: 10}.Build(db.Pool, throttle.Config{})
	if err != nil || len(off.Config().Signals) != 0 || off.Config().MaxRate != 10 {
		t.Errorf("throttle off: %v %+v", err, off.Config())
	}
}
