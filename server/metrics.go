package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/eventlog"
)

// metrics are the server's Prometheus metrics, served on /metrics.
type metrics struct {
	appendEvents   prometheus.Counter
	appendBytes    prometheus.Counter
	appendDuration prometheus.Histogram
	fsyncDuration  prometheus.Histogram
	groupCommit    prometheus.Histogram
	rpcs           *prometheus.CounterVec
	rpcDuration    *prometheus.HistogramVec
	consumeHeld    prometheus.Gauge
	handles        sync.Map // procedure -> *rpcHandles
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		appendEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rewind_append_events_total", Help: "Events appended (acknowledged)."}),
		appendBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rewind_append_bytes_total", Help: "Bytes of event data and metadata appended (acknowledged)."}),
		appendDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rewind_append_duration_seconds", Help: "Time from receiving an append to acknowledging it.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)}),
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rewind_fsync_duration_seconds", Help: "Time of each group commit's fsync.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16)}),
		groupCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rewind_group_commit_events", Help: "Records written by each group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rewind_rpc_requests_total", Help: "RPCs handled, by procedure and result code (ok or an error code)."},
			[]string{"procedure", "code"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rewind_rpc_duration_seconds", Help: "Time to handle an RPC (a subscription: its whole life).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 12)}, []string{"procedure"}),
		consumeHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rewind_consume_batch_bytes",
			Help: "Bytes of event data and metadata in the Consume batches being sent (one per member at most)."}),
	}
	reg.MustRegister(m.appendEvents, m.appendBytes, m.appendDuration, m.fsyncDuration, m.groupCommit, m.rpcs,
		m.rpcDuration, m.consumeHeld, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// rpcHandles caches the metric handles of one procedure's successful
// calls, the common case, so that it costs no label lookup.
type rpcHandles struct {
	ok       prometheus.Counter
	duration prometheus.Observer
}

func (m *metrics) observeRPC(procedure, code string, d time.Duration) {
	h, ok := m.handles.Load(procedure)
	if !ok {
		h, _ = m.handles.LoadOrStore(procedure, &rpcHandles{ok: m.rpcs.WithLabelValues(procedure, "ok"),
			duration: m.rpcDuration.WithLabelValues(procedure)})
	}
	hs := h.(*rpcHandles)
	if code == "ok" {
		hs.ok.Inc()
	} else {
		m.rpcs.WithLabelValues(procedure, code).Inc()
	}
	hs.duration.Observe(d.Seconds())
}

func (m *metrics) observeFlush(fi eventlog.FlushInfo) {
	m.groupCommit.Observe(float64(fi.Records))
	if fi.Sync > 0 {
		m.fsyncDuration.Observe(fi.Sync.Seconds())
	}
}

// groupCollector reports each consumer group's lag at scrape time, from
// the counters the engine keeps as the group works (consumer.GroupInfo):
// a scrape scans nothing.
type groupCollector struct {
	e                                                            *atomic.Pointer[consumer.Engine]
	pending, inFlight, oldest, redeliveries, parked, stalled, up *prometheus.Desc
}

func newGroupCollector(e *atomic.Pointer[consumer.Engine]) *groupCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("rewind_consumer_group_"+name, help, append([]string{"group"}, labels...), nil)
	}
	return &groupCollector{e: e,
		pending:      d("pending_events", "Events a group holds that are not in flight (ready, waiting for their key or a redelivery delay)."),
		inFlight:     d("in_flight_events", "Un-acked deliveries of a group."),
		oldest:       d("oldest_unacked_age_seconds", "Age (from its recording) of the oldest event a group has not finished."),
		redeliveries: d("redeliveries_total", "Redeliveries of a group since the server started."),
		parked:       d("parked_events", "Events a group has parked now."),
		stalled: d("stalled", "1 while a group cannot move, by reason: full (max pending), ack_pending_full, "+
			"parked_full, no_members, damaged or failed; 0 otherwise.", "reason"),
		up: d("members", "Members connected to a group."),
	}
}

// stalledReasons are the statuses that mean a group cannot move.
var stalledReasons = []consumer.Status{consumer.StatusFull, consumer.StatusAckPendingFull, consumer.StatusParkedFull,
	consumer.StatusNoMembers, consumer.StatusDamaged, consumer.StatusFailed}

// Describe implements prometheus.Collector.
func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.inFlight, c.oldest, c.redeliveries, c.parked, c.stalled, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e.Load()
	if e == nil {
		return // another server runs the groups, and reports them
	}
	for _, in := range e.Groups() {
		name := in.Config.Name
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{name}, labels...)...)
		}
		gauge(c.pending, float64(in.Pending))
		gauge(c.inFlight, float64(in.InFlight))
		gauge(c.oldest, in.OldestUnackedAge.Seconds())
		ch <- prometheus.MustNewConstMetric(c.redeliveries, prometheus.CounterValue, float64(in.Redeliveries), name)
		gauge(c.parked, float64(in.Parked))
		gauge(c.up, float64(in.Members))
		for _, r := range stalledReasons {
			v := 0.0
			if in.Status == r {
				v = 1
			}
			gauge(c.stalled, v, string(r))
		}
	}
}
