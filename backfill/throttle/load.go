package throttle

import (
	"context"
	"fmt"
	"time"
)

// Load reads the load on the target's cluster from pg_stat_activity: the
// backends running a statement now, those waiting for a lock, and the age
// of the oldest open transaction (which holds back vacuum and, on the
// backfill's tables, grows the bloat every chunk leaves). The reading
// sees every database of the cluster, as far as the role may see it
// (pg_read_all_stats, or a superuser, sees all); the reading's own
// backend and the backfill's own sessions (application_name starting
// with "rewind backfill", which backfill.ConfigurePool sets) are left
// out: a backfill does not throttle itself. Each part has its own thresholds; a zero threshold
// ignores that part. The Util is the highest of the parts.
type Load struct {
	DB Querier
	// Active: backends whose state is active.
	Active Threshold
	// LockWaits: backends waiting for a lock.
	LockWaits Threshold
	// XactAge: the oldest open transaction's age.
	XactAge, XactAgeCritical time.Duration
}

// Name is "load".
func (l *Load) Name() string { return "load" }

// Read returns the busiest part of the load against its thresholds.
func (l *Load) Read(ctx context.Context) (Reading, error) {
	var active, waits float64
	var age float64
	err := l.DB.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'active')::float8,
		count(*) FILTER (WHERE wait_event_type = 'Lock')::float8,
		coalesce(extract(epoch FROM clock_timestamp() - min(xact_start)), 0)::float8
		FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
		AND application_name NOT LIKE 'rewind backfill%'`).Scan(&active, &waits, &age)
	if err != nil {
		return Reading{}, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	count := func(unit string) func(float64) string {
		return func(v float64) string { return fmt.Sprintf("%g %s", v, unit) }
	}
	parts := []Reading{
		l.Active.level("load:", active, count("active backends")),
		l.LockWaits.level("load:", waits, count("backends waiting for locks")),
		seconds(l.XactAge, l.XactAgeCritical).level("load: oldest transaction", age, secondsText),
	}
	var r Reading
	for _, p := range parts {
		switch {
		case p.Critical && !r.Critical:
			r = p
		case r.Critical:
		case p.Util > r.Util:
			r.Util = p.Util
			if p.Reason != "" {
				r.Reason = p.Reason
			}
		}
	}
	return r, nil
}
