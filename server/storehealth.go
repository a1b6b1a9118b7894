package server

import (
	"context"
	"encoding/json"
	"net/http"

	"connectrpc.com/grpchealth"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rewindhq/rewind"
)

// storeHealth returns the store's health, when it reports one (the
// embedded store does). A failed store also turns grpc.health.v1.Health
// to NOT_SERVING, for its watchers.
func (s *Server) storeHealth(ctx context.Context) (rewind.Health, bool) {
	hr, ok := s.store.(rewind.HealthReporter)
	if !ok {
		return rewind.Health{}, false
	}
	h, err := hr.Health(ctx)
	if err != nil {
		return rewind.Health{}, false
	}
	if h.Failed != "" && s.failedSeen.CompareAndSwap(false, true) {
		s.log.Error("the store failed: it refuses writes until the server restarts", "failure", h.Failed)
		s.setHealth(grpchealth.StatusNotServing)
	}
	return h, true
}

// readiness is the body of /readyz: whether the server takes requests,
// and what the store's last recovery found.
type readiness struct {
	Ready bool `json:"ready"`
	// Reason says why not: "draining" or the store's failure.
	Reason string `json:"reason,omitempty"`
	rewind.Health
}

// readyz answers 200 while the server serves and its store can write, 503
// when it drains, the store failed, or cannot reach its storage for now
// (a PostgreSQL store whose database is down: ready again once it is back); the JSON body says why, with the
// store's epoch and what recovery found at its last open (cuts, damage,
// missing segments), so that an operator sees a cut beyond one log line.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := readiness{Ready: true}
	if h, ok := s.storeHealth(r.Context()); ok {
		rd.Health = h
		switch {
		case h.Failed != "":
			rd.Ready, rd.Reason = false, "store failed: "+h.Failed
		case h.Unavailable != "":
			rd.Ready, rd.Reason = false, "store unavailable: "+h.Unavailable
		}
	}
	if s.draining.Load() {
		rd.Ready, rd.Reason = false, "draining: the server is shutting down"
	}
	w.Header().Set("Content-Type", "application/json")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(rd)
}

// healthChecker is grpc.health.v1.Health's checker: the static statuses
// (SERVING, NOT_SERVING once shutdown begins), and NOT_SERVING for
// everything once the store failed, or while it cannot reach its storage.
type healthChecker struct {
	*grpchealth.StaticChecker
	s *Server
}

func (c healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	res, err := c.StaticChecker.Check(ctx, req)
	if err == nil && res.Status == grpchealth.StatusServing {
		if h, ok := c.s.storeHealth(ctx); ok && (h.Failed != "" || h.Unavailable != "") {
			res.Status = grpchealth.StatusNotServing
		}
	}
	return res, err
}

// storeCollector exports the store's health as metrics: whether it failed,
// its epoch, and what recovery found at open, by kind.
type storeCollector struct {
	s                                           *Server
	failed, unavailable, epoch, recovery, lossy *prometheus.Desc
}

func newStoreCollector(s *Server) *storeCollector {
	return &storeCollector{s: s,
		failed: prometheus.NewDesc("rewind_store_failed",
			"1 when a write or fsync of the store failed: it refuses writes until the server restarts.", nil, nil),
		unavailable: prometheus.NewDesc("rewind_store_unavailable",
			"1 while the store cannot reach its storage (a PostgreSQL store whose database is down); 0 once it can again.", nil, nil),
		epoch: prometheus.NewDesc("rewind_log_epoch",
			"The log's epoch: 1, plus one for each recovery that cut positions.", nil, nil),
		recovery: prometheus.NewDesc("rewind_recovery_events",
			"What recovery found: this open's cuts (or the last cut ever made) and every data loss recorded at this or an earlier open (the last 16), by kind: cut, damage, missing, shortened.",
			[]string{"kind"}, nil),
		lossy: prometheus.NewDesc("rewind_recovery_data_loss",
			"1 when recovery, at this or an earlier open, found that acknowledged events may be lost or unreadable; it stays 1 while the loss is recorded in the log's state file (the last 16 losses).", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.failed
	ch <- c.unavailable
	ch <- c.epoch
	ch <- c.recovery
	ch <- c.lossy
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	h, ok := c.s.storeHealth(context.Background())
	if !ok {
		return
	}
	failed, unavailable, lossy := 0.0, 0.0, 0.0
	if h.Failed != "" {
		failed = 1
	}
	if h.Unavailable != "" {
		unavailable = 1
	}
	counts := map[string]float64{"cut": 0, "damage": 0, "missing": 0, "shortened": 0}
	for _, e := range h.Recovery {
		counts[e.Kind]++
		if e.DataLoss {
			lossy = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, failed)
	ch <- prometheus.MustNewConstMetric(c.unavailable, prometheus.GaugeValue, unavailable)
	ch <- prometheus.MustNewConstMetric(c.epoch, prometheus.GaugeValue, float64(h.Epoch))
	ch <- prometheus.MustNewConstMetric(c.lossy, prometheus.GaugeValue, lossy)
	for kind, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.recovery, prometheus.GaugeValue, n, kind)
	}
}
