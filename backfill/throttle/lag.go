package throttle

import (
	"context"
	"fmt"
	"time"
)

// ReplicationLag reads the replay lag of the target's replicas from
// pg_stat_replication on the target (the primary): the largest replay_lag
// of its streaming replicas. A target without replicas reads as idle.
// PostgreSQL reports replay_lag NULL for a replica that has caught up and
// received nothing since, which reads as no lag. Cascaded replicas do not
// show on the primary: read them with HeartbeatLag.
type ReplicationLag struct {
	// DB is the target database (the primary).
	DB Querier
	// Max and Critical lag. Max defaults to 1.5s in DefaultSpec.
	Max, Critical time.Duration
}

// Name is "replication_lag".
func (l *ReplicationLag) Name() string { return "replication_lag" }

// Read returns the largest replay lag against the thresholds.
func (l *ReplicationLag) Read(ctx context.Context) (Reading, error) {
	var lag float64
	var replicas int
	err := l.DB.QueryRow(ctx, `SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8, count(*)::int
		FROM pg_stat_replication`).Scan(&lag, &replicas)
	if err != nil {
		return Reading{}, fmt.Errorf("read pg_stat_replication: %w", err)
	}
	r := seconds(l.Max, l.Critical).level("replication lag", lag, secondsText)
	if r.Reason != "" {
		r.Reason += fmt.Sprintf(" (the slowest of %d replicas)", replicas)
	}
	return r, nil
}

func seconds(max, critical time.Duration) Threshold {
	return Threshold{Max: max.Seconds(), Critical: critical.Seconds()}
}

func secondsText(v float64) string {
	return time.Duration(v * float64(time.Second)).Round(time.Millisecond).String()
}
