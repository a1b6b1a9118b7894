package projection

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the status of every version of every projection in
// pool's database as Prometheus metrics, read from the control tables at
// each scrape (one query, bounded by a 5 s timeout):
//
//	rewind_projection_position{name,version,state}   the checkpoint
//	rewind_projection_lag{name,version,state}        positions behind the log end its runner last saw
//	rewind_projection_rate{name,version,state}       positions per second, recently
//	rewind_projection_events_total{name,version,state}
//	rewind_projection_parked{name,version,state}     parked events
//	rewind_projection_age_seconds{name,version,state} since its runner last committed
//	rewind_projection_scrape_error                   1 when the last read failed
//
// Register it with your program's registry (prometheus.MustRegister), next
// to the runners.
func Collector(pool *pgxpool.Pool, logger *slog.Logger) prometheus.Collector {
	if logger == nil {
		logger = slog.Default()
	}
	labels := []string{"name", "version", "state"}
	d := func(name, help string, l []string) *prometheus.Desc {
		return prometheus.NewDesc("rewind_projection_"+name, help, l, nil)
	}
	return &collector{pool: pool, logger: logger,
		position: d("position", "The projection version's checkpoint: every event up to it is applied.", labels),
		lag:      d("lag", "Positions between the checkpoint and the end of the log the runner last saw.", labels),
		rate:     d("rate", "Positions per second the checkpoint advanced recently.", labels),
		events:   d("events_total", "Events applied by the handlers (parked ones not counted).", labels),
		parked:   d("parked", "Parked events of the version.", labels),
		age:      d("age_seconds", "Seconds since the version's runner last committed.", labels),
		failed:   d("scrape_error", "1 when the projections' status could not be read at this scrape.", nil),
	}
}

type collector struct {
	pool                                             *pgxpool.Pool
	logger                                           *slog.Logger
	position, lag, rate, events, parked, age, failed *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.position, c.lag, c.rate, c.events, c.parked, c.age, c.failed} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := List(ctx, c.pool, "")
	if err != nil {
		c.logger.Warn("projection metrics: read the status", "error", err)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, 0)
	now := time.Now()
	for _, s := range all {
		l := []string{s.Name, strconv.Itoa(s.Version), s.State}
		ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(s.Position), l...)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Lag), l...)
		ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, s.Rate, l...)
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(s.Events), l...)
		ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(s.Parked), l...)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(s.UpdatedAt).Seconds(), l...)
	}
}
