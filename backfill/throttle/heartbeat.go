package throttle

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// HeartbeatLag reads a replica's lag from a heartbeat table: a table on
// the primary whose timestamptz column something updates every second or
// so (pg_cron, a sidecar: `UPDATE heartbeat SET at = now()`), replicated
// like any table. On the replica the lag is now minus the newest
// heartbeat. It works for cascaded replicas, which pg_stat_replication on
// the primary does not show, and measures the lag plus up to one
// heartbeat period.
type HeartbeatLag struct {
	// DB is the replica (or any database the heartbeat reaches).
	DB Querier
	// Table is the heartbeat table, may be schema-qualified; Column its
	// timestamptz column. Column defaults to "at".
	Table, Column string
	// Max and Critical lag.
	Max, Critical time.Duration
	// Label names the signal "heartbeat_lag:Label" when set, so that
	// several replicas can be watched.
	Label string
}

// Name is "heartbeat_lag", or "heartbeat_lag:Label".
func (h *HeartbeatLag) Name() string {
	if h.Label != "" {
		return "heartbeat_lag:" + h.Label
	}
	return "heartbeat_lag"
}

// Read returns the heartbeat's age against the thresholds.
func (h *HeartbeatLag) Read(ctx context.Context) (Reading, error) {
	col := h.Column
	if col == "" {
		col = "at"
	}
	table := pgx.Identifier(splitQualified(h.Table)).Sanitize()
	var age *float64
	err := h.DB.QueryRow(ctx, fmt.Sprintf("SELECT extract(epoch FROM clock_timestamp() - max(%s))::float8 FROM %s",
		pgx.Identifier{col}.Sanitize(), table)).Scan(&age)
	if err != nil {
		return Reading{}, fmt.Errorf("read heartbeat table %s: %w", h.Table, err)
	}
	if age == nil {
		return Reading{}, fmt.Errorf("heartbeat table %s has no heartbeat: update its %s column on the primary every second", h.Table, col)
	}
	// A heartbeat ahead of this clock is clock skew between the primary
	// and the replica: a little reads as no lag, but skew beyond the max
	// lag would hide a lag as large, so the lag cannot be read.
	if limit := max(h.Max, time.Second).Seconds(); *age < -limit {
		return Reading{}, fmt.Errorf("the newest heartbeat in %s is %.1fs ahead of this database's clock: the clocks "+
			"of the primary and the replica disagree by more than the lag limit, so the lag cannot be read; "+
			"synchronise them (NTP)", h.Table, -*age)
	}
	return seconds(h.Max, h.Critical).level("heartbeat lag", max(*age, 0), secondsText), nil
}

// splitQualified splits "schema.table" into its parts.
func splitQualified(name string) []string {
	for i := range len(name) {
		if name[i] == '.' {
			return []string{name[:i], name[i+1:]}
		}
	}
	return []string{name}
}
