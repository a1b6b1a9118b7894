package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/projection"
	"github.com/rewindhq/rewind/store"
)

// Server serves one embedded store over the API. Create it with New, run
// it with Run. Past opening it, the server only uses the store through the
// rewind.Store contract and its optional capabilities.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store rewind.Store
	// groups is the consumer engine while this server runs the store's
	// groups: always for the embedded store; for a shared backend, while
	// election says this server owns them (nil otherwise).
	groups   atomic.Pointer[consumer.Engine]
	election *election
	tokens   *auth.Store
	metrics  *metrics
	registry *prometheus.Registry
	// projections is the pool of Config.ProjectionsDSN, or nil.
	projections *pgxpool.Pool
	subs        *subscriptions
	tracing     *tracing
	ln          net.Listener
	http        *http.Server

	inflight    inflight
	budget      appendBudget
	health      *grpchealth.StaticChecker
	adminSecret string
	draining    atomic.Bool
	failedSeen  atomic.Bool // the store's failure was logged and turned health to NOT_SERVING
	// stopSubs ends every subscription when the server starts to shut down.
	stopSubs context.Context
	endSubs  context.CancelFunc
}

// New opens the store and the tokens in cfg.DataDir, binds the listen
// address and, on the first start, creates the admin token, after all else
// succeeded. Nothing is served until Run.
func New(cfg Config) (_ *Server, err error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: c, log: c.Logger, registry: prometheus.NewRegistry()}
	s.stopSubs, s.endSubs = context.WithCancel(context.Background())
	s.metrics = newMetrics(s.registry)
	defer func() {
		if err != nil {
			if s.ln != nil {
				s.ln.Close()
			}
			s.closeResources()
		}
	}()
	if c.Backend != nil {
		s.store = c.Backend
	} else {
		sc := c.Store
		sc.Logger = cmpOr(sc.Logger, c.Logger)
		prev := sc.Log.OnFlush
		sc.Log.OnFlush = func(fi eventlog.FlushInfo) {
			s.metrics.observeFlush(fi)
			if prev != nil {
				prev(fi)
			}
		}
		st, err := store.Open(c.DataDir, sc)
		if err != nil {
			return nil, err
		}
		s.store = st
	}
	el, shared := s.store.(groupsElector)
	if !shared {
		e, err := consumer.Open(context.Background(), s.store, consumer.Config{Logger: c.Logger})
		if err != nil {
			return nil, fmt.Errorf("open the consumer groups: %w", err)
		}
		s.groups.Store(e)
	}
	if s.tokens, err = auth.Open(c.DataDir); err != nil {
		return nil, err
	}
	s.tokens.SetClock(c.Now)
	s.subs = newSubscriptions(s.store, c.MaxSubscriptionsPerToken)
	s.budget.max = c.MaxInflightAppendBytes
	s.registry.MustRegister(s.subs, newStoreCollector(s), newGroupCollector(&s.groups), prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rewind_requests_in_flight",
		Help: "API requests being served (streams included)."}, func() float64 { return float64(s.inflight.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rewind_append_inflight_bytes",
			Help: "Bytes of the appends in progress, counted against max_inflight_append_bytes."},
			func() float64 { return float64(s.budget.used.Load()) }))
	if s.tracing, err = newTracing(c.OTLPEndpoint); err != nil {
		return nil, err
	}
	if c.ProjectionsDSN != "" {
		pc, err := pgxpool.ParseConfig(c.ProjectionsDSN)
		if err != nil {
			return nil, &rewind.ValidationError{Field: "projections_dsn", Reason: "is not a PostgreSQL connection string: " + err.Error()}
		}
		pc.MaxConns = 2
		if s.projections, err = pgxpool.NewWithConfig(context.Background(), pc); err != nil {
			return nil, err
		}
		s.registry.MustRegister(projection.Collector(s.projections, s.log))
	}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if s.ln, err = net.Listen("tcp", c.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	// The admin token is created last, once everything that can fail has
	// succeeded: a start that fails (a port taken, a bad TLS file) leaves
	// no token whose secret nobody saw, which would lock the operator out.
	if s.adminSecret, err = s.tokens.Bootstrap(c.AdminToken); err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          HTTP2MaxConcurrentStreams,
			MaxReadFrameSize:              HTTP2MaxReadFrameSize,
			MaxReceiveBufferPerStream:     HTTP2MaxReceiveBufferPerStream,
			MaxReceiveBufferPerConnection: HTTP2MaxReceiveBufferPerConnection,
			MaxDecoderHeaderTableSize:     HTTP2HeaderTableSize,
			MaxEncoderHeaderTableSize:     HTTP2HeaderTableSize,
			SendPingTimeout:               HTTP2SendPingTimeout,
			PingTimeout:                   HTTP2PingTimeout,
			WriteByteTimeout:              HTTP2WriteByteTimeout,
		},
		ErrorLog:    slog.NewLogLogger(c.Logger.Handler(), slog.LevelWarn),
		TLSConfig:   tlsCfg,
		ConnContext: withConn,
	}
	s.http.Protocols = new(http.Protocols)
	s.http.Protocols.SetHTTP1(true)
	if tlsCfg != nil {
		s.http.Protocols.SetHTTP2(true)
	} else {
		s.http.Protocols.SetUnencryptedHTTP2(true) // h2c, for gRPC without TLS
	}
	if shared {
		s.startElection(el)
	}
	return s, nil
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"}}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("read TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA %s holds no PEM certificate", c.TLSClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the base URL clients use, such as http://127.0.0.1:7070.
func (s *Server) URL() string {
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// AdminSecret returns the secret of the admin token created by this start,
// or "" when tokens already existed or REWIND_ADMIN_TOKEN gave it. Show it
// once: it is not stored.
func (s *Server) AdminSecret() string { return s.adminSecret }

// Store returns the served store.
func (s *Server) Store() rewind.Store { return s.store }

// Handler returns the server's HTTP handler: the API services, /metrics,
// /healthz and /readyz.
func (s *Server) Handler() http.Handler {
	opts := []connect.HandlerOption{
		connect.WithCodec(strictJSON{name: "json"}),
		connect.WithCodec(strictJSON{name: "json; charset=utf-8"}),
		connect.WithCodec(strictProto{}),
		connect.WithReadMaxBytes(s.cfg.MaxRequestBytes),
		connect.WithCompressMinBytes(1 << 10),
		connect.WithInterceptors(s.interceptors()...),
	}
	rpcs := map[string]http.Handler{}
	path, h := rewindv1connect.NewEventStoreServiceHandler(&eventStore{s}, opts...)
	rpcs[path] = h
	path, h = rewindv1connect.NewTokenServiceHandler(&tokenService{s}, opts...)
	rpcs[path] = h
	errw := connect.NewErrorWriter()
	path, h = rewindv1connect.NewConsumerGroupServiceHandler(&groupService{s}, opts...)
	rpcs[path] = s.groupsRoute(h, errw)
	s.addGRPCServices(rpcs, opts)
	api := s.withRequest(routeErrors(s.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := infoFrom(r.Context())
		rt := ri.route // routeErrors let only known procedures through
		rc := http.NewResponseController(w)
		p := protocolOf(r)
		if err := checkProtocol(rt, p, r); err != nil {
			errw.Write(w, r, err)
			return
		}
		// The RPC's deadline starts once its request is decoded: bound the
		// reading of the request too, so that a client trickling it cannot
		// hold a handler (and shutdown) for ever. A client's shorter
		// deadline bounds it instead. A stream's deadline ends with its
		// first message.
		limit := readLimit{timeout: s.cfg.RPCTimeout, whose: "the server's rpc_timeout"}
		if d, header, ok := clientTimeout(p, r.Header); ok && d < limit.timeout {
			limit = readLimit{timeout: d, whose: "the client's deadline, " + header}
		}
		_ = rc.SetReadDeadline(time.Now().Add(limit.timeout))
		ri.body = newRequestBody(r, rc, limit, s.cfg.MaxRequestBytes, rt, p)
		r.Body = ri.body
		defer ri.body.finish()
		lr := &liveRequest{body: ri.body, streaming: rt.streaming(), conn: connFrom(r.Context())}
		s.inflight.add(lr)
		defer s.inflight.remove(lr)
		if rt.foreign && rt.streaming() {
			// Health watches and reflection end with the server, as
			// subscriptions do.
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			defer context.AfterFunc(s.stopSubs, cancel)()
			r = r.WithContext(ctx)
		}
		rpcs[rt.service].ServeHTTP(w, r)
	}))))

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", s.readyz)
	// API paths are dispatched without the mux's pattern matching, which
	// showed in profiles of small appends. Every other path is the API's
	// to refuse, with an error that says what is served.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics", "/healthz", "/readyz":
			ignoreBody(w, r) // a probe reads none
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				writeJSONError(w, http.StatusMethodNotAllowed, connect.CodeInvalidArgument,
					fmt.Sprintf("rewind: %s cannot be called with %s: use GET", r.URL.Path, r.Method))
				return
			}
			mux.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// Run serves until ctx ends, then shuts down gracefully: it turns /readyz
// and gRPC health unready, ends subscriptions with an Unavailable status
// that says where to resume, keeps serving other requests for DrainDelay,
// stops accepting connections, waits for in-flight requests (appends
// included) up to ShutdownTimeout, fsyncs and closes the store, releasing
// the data directory. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	durability := ""
	if d, ok := s.store.(rewind.Describer); ok {
		if info, err := d.Describe(ctx); err == nil {
			durability = info.Durability
		}
	}
	s.log.Info("rewind server listening", "addr", s.ln.Addr().String(), "url", s.URL(),
		"data_dir", s.cfg.DataDir, "durability", durability, "auth", !s.cfg.NoAuth)
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.http.TLSConfig != nil {
			err = s.http.ServeTLS(s.ln, "", "")
		} else {
			err = s.http.Serve(s.ln)
		}
		errc <- err
	}()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("serve: %w", serveErr)
	}
	return errors.Join(serveErr, s.shutdown())
}

func (s *Server) shutdown() error {
	s.log.Info("rewind server shutting down: draining requests")
	// Unready first, while the listener still accepts: probes see 503
	// "draining" and NOT_SERVING for DrainDelay before connections are
	// refused.
	s.draining.Store(true)
	s.setHealth(grpchealth.StatusNotServing)
	s.endSubs()
	if s.cfg.DrainDelay > 0 {
		s.log.Info("draining: /readyz is 503 until the listener closes", "drain_delay", s.cfg.DrainDelay)
		time.Sleep(s.cfg.DrainDelay)
	}
	// Requests waiting on a client that stalls (a body that does not
	// come, a stream nobody reads) are cut now rather than waited for.
	s.inflight.cutAll()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("in-flight requests did not finish in time; closing their connections", "err", err)
		s.http.Close()
	}
	s.subs.wait(ctx)
	errs = append(errs, s.closeResources())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("rewind server stopped: store fsynced and closed")
	return nil
}

// Close releases everything without serving; for a Server whose Run was
// never called.
func (s *Server) Close() error {
	if s.ln != nil {
		s.ln.Close()
	}
	return s.closeResources()
}

// closeResources closes the store first: its final fsync and the release
// of the data directory must not wait behind a slow trace collector. Spans
// get ShutdownTimeout to flush.
func (s *Server) closeResources() error {
	var errs []error
	// Before the store: the groups' last commits go to it.
	if s.election != nil {
		s.stopElection()
	} else if e := s.groups.Load(); e != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		errs = append(errs, e.Close(ctx))
		cancel()
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.tokens != nil {
		errs = append(errs, s.tokens.Close())
	}
	if s.projections != nil {
		s.projections.Close()
	}
	if s.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		if err := s.tracing.shutdown(ctx); err != nil {
			s.log.Warn("could not flush the last trace spans", "err", err)
		}
	}
	return errors.Join(errs...)
}
