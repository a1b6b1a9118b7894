package server

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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
	}
	reg.MustRegister(m.appendEvents, m.appendBytes, m.appendDuration, m.fsyncDuration, m.groupCommit, m.rpcs,
		m.rpcDuration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
