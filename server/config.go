package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/store"
)

// Defaults of Config, used by the library, the flags and the config file
// of `rewind serve` alike.
const (
	// DefaultAddr is where the server listens unless told otherwise:
	// loopback only, so that nothing is exposed by accident.
	DefaultAddr = "127.0.0.1:7070"
	// DefaultDataDir is the data directory of the server and of the CLI.
	DefaultDataDir                  = "./rewind-data"
	DefaultMaxRequestBytes          = 32 << 20
	DefaultRPCTimeout               = 30 * time.Second
	DefaultReadHeaderTimeout        = 10 * time.Second
	DefaultIdleTimeout              = 2 * time.Minute
	DefaultMaxSubscriptionsPerToken = 64
	DefaultShutdownTimeout          = 30 * time.Second
	// DefaultSlowSubscriberTimeout is how long one subscription message may
	// wait for its client to read it.
	DefaultSlowSubscriberTimeout = time.Minute
	// DefaultDrainDelay is no delay: a process that is not behind a load
	// balancer stops at once.
	DefaultDrainDelay = 0
)

// Limits of the HTTP layer: they apply before rewind's code sees a
// request, and are set explicitly rather than left to net/http's
// defaults, which may change from one Go release to the next.
// docs/server.md lists each.
const (
	// MaxHeaderBytes bounds a request's headers (HTTP/1.1: the request
	// line and headers, with net/http's slack of 4 KiB; HTTP/2: the
	// SETTINGS_MAX_HEADER_LIST_SIZE advertised, this plus 320 bytes).
	MaxHeaderBytes = 64 << 10
	// HTTP2MaxConcurrentStreams is the streams (RPCs) one HTTP/2
	// connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
	HTTP2MaxConcurrentStreams = 250
	// HTTP2MaxReadFrameSize is the largest HTTP/2 frame the server reads
	// (SETTINGS_MAX_FRAME_SIZE).
	HTTP2MaxReadFrameSize = 1 << 20
	// HTTP2MaxReceiveBufferPerStream and HTTP2MaxReceiveBufferPerConnection
	// are the flow-control windows the server grants a client for request
	// data: what it buffers of a request ahead of the handler reading it,
	// per stream and per connection.
	HTTP2MaxReceiveBufferPerStream     = 1 << 20
	HTTP2MaxReceiveBufferPerConnection = 1 << 20
	// HTTP2HeaderTableSize bounds HPACK's dynamic tables, decoding and
	// encoding (SETTINGS_HEADER_TABLE_SIZE).
	HTTP2HeaderTableSize = 4 << 10
	// HTTP2SendPingTimeout: an HTTP/2 connection on which nothing arrived
	// for this long is pinged, and closed if the answer does not come
	// within HTTP2PingTimeout, so that a vanished client does not hold its
	// subscriptions open.
	HTTP2SendPingTimeout = time.Minute
	HTTP2PingTimeout     = 15 * time.Second
	// HTTP2WriteByteTimeout closes an HTTP/2 connection on which the
	// server has had bytes to write, and could write none, for this long:
	// a client that stopped reading its socket altogether.
	HTTP2WriteByteTimeout = time.Minute
)

// Config configures a Server. The zero value is the default configuration.
type Config struct {
	// Addr is the TCP address to listen on. Defaults to 127.0.0.1:7070.
	Addr string
	// DataDir is the embedded store's data directory; tokens live there
	// too. Defaults to ./rewind-data.
	DataDir string
	// Store configures the embedded store (durability, segment size,
	// limits). Its zero value is the store's default: fsync before ack.
	Store store.Config
	// Backend, when set, is the store served instead of the embedded one
	// in DataDir (a PostgreSQL store, say); tokens still live in DataDir.
	// The server closes it when it stops. Defaults to nil: the embedded
	// store.
	Backend rewind.Store
	// NoAuth turns authentication off. It is refused unless Addr is a
	// loopback address. Defaults to false.
	NoAuth bool
	// AdminToken is the secret of the admin token created on the first
	// start (REWIND_ADMIN_TOKEN). Defaults to a random secret, printed once.
	AdminToken string
	// TLSCert and TLSKey are PEM files; when set the server speaks TLS
	// (HTTP/1.1 and HTTP/2). Defaults to plain HTTP/1.1 and h2c.
	TLSCert, TLSKey string
	// TLSClientCA is a PEM file of CAs; when set, clients must present a
	// certificate signed by one of them (mTLS). Defaults to no client
	// certificates.
	TLSClientCA string
	// MaxRequestBytes bounds one request message. Defaults to 32 MiB.
	MaxRequestBytes int
	// MaxInflightAppendBytes bounds the bytes of the appends in progress
	// on the whole server (event data, metadata and types, and 64 bytes
	// an event), from their decoding to their acknowledgement. An append
	// that does not fit is refused with ResourceExhausted and a retry
	// hint. It must be at least MaxRequestBytes. Defaults to 256 MiB, or
	// MaxRequestBytes when that is larger.
	MaxInflightAppendBytes int64
	// RPCTimeout bounds each unary RPC (a client may ask for less).
	// Defaults to 30s.
	RPCTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers. Defaults to 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Defaults to 2m.
	IdleTimeout time.Duration
	// MaxSubscriptionsPerToken bounds the open subscriptions of one token.
	// Defaults to 64.
	MaxSubscriptionsPerToken int
	// SlowSubscriberTimeout bounds how long one message of a subscription
	// may wait for the client to read it (for HTTP/2 flow control to let
	// it through). A subscription whose message waited longer is ended,
	// once the message is through, with ResourceExhausted ("too slow")
	// and the position to resume after. Until then, the subscription
	// holds one message in server memory, never more. Defaults to 1m.
	SlowSubscriberTimeout time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	// Defaults to 30s.
	ShutdownTimeout time.Duration
	// DrainDelay is how long a graceful stop keeps the listener open and
	// serving once it has turned /readyz to 503 ("draining") and gRPC
	// health to NOT_SERVING, so that load balancers and orchestrators
	// probing readiness stop sending requests before connections are
	// refused. Subscriptions end, and new ones are refused, at once.
	// Defaults to 0 (no delay).
	DrainDelay time.Duration
	// OTLPEndpoint, when set, exports traces of every RPC over OTLP/HTTP to
	// this endpoint (host:port, or a URL). Defaults to no tracing.
	OTLPEndpoint string
	// AdvertiseURL is where the other servers of a shared backend (one
	// PostgreSQL database) reach this one, to forward it the consumer
	// group requests while it runs the groups. Defaults to the URL of the
	// listen address (which only suits servers on one host, or an Addr
	// that others can reach).
	AdvertiseURL string
	// ProjectionsDSN, when set, is the PostgreSQL database of projections
	// (package projection) whose status /metrics exports
	// (rewind_projection_*, read at each scrape). Defaults to none.
	ProjectionsDSN string
	// Logger receives JSON logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock that decides when tokens expire; for tests.
	// Defaults to time.Now.
	Now func() time.Time
}

// Validate checks c as New would, without opening anything: for `rewind
// config print`, which shows a configuration only once it would start.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxInflightAppendBytes == 0 {
		cfg.MaxInflightAppendBytes = max(DefaultMaxInflightAppendBytes, int64(cfg.MaxRequestBytes))
	}
	if cfg.RPCTimeout == 0 {
		cfg.RPCTimeout = DefaultRPCTimeout
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSubscriptionsPerToken == 0 {
		cfg.MaxSubscriptionsPerToken = DefaultMaxSubscriptionsPerToken
	}
	if cfg.SlowSubscriberTimeout == 0 {
		cfg.SlowSubscriberTimeout = DefaultSlowSubscriberTimeout
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	bad := func(field string, v any, reason string) error {
		return &rewind.ValidationError{Field: field, Value: fmt.Sprint(v), Reason: reason}
	}
	switch {
	case cfg.MaxRequestBytes < 1<<10:
		return cfg, bad("max request bytes", cfg.MaxRequestBytes, "must be at least 1 KiB")
	case cfg.MaxInflightAppendBytes < int64(cfg.MaxRequestBytes):
		return cfg, bad("max inflight append bytes", cfg.MaxInflightAppendBytes,
			fmt.Sprintf("must be at least max request bytes (%d)", cfg.MaxRequestBytes))
	case cfg.RPCTimeout < 0, cfg.ReadHeaderTimeout < 0, cfg.IdleTimeout < 0, cfg.ShutdownTimeout < 0,
		cfg.DrainDelay < 0, cfg.SlowSubscriberTimeout < 0:
		return cfg, bad("timeouts", "", "must not be negative")
	case cfg.MaxSubscriptionsPerToken < 1:
		return cfg, bad("max subscriptions per token", cfg.MaxSubscriptionsPerToken, "must be at least 1")
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return cfg, bad("tls", "", "give both --tls-cert and --tls-key, or neither")
	case cfg.TLSClientCA != "" && cfg.TLSCert == "":
		return cfg, bad("tls client ca", cfg.TLSClientCA, "client certificates need TLS: give --tls-cert and --tls-key too")
	case cfg.AdminToken != "" && len(cfg.AdminToken) < auth.MinCustomSecret:
		// Refused here, before the data directory is made; never echoed.
		return cfg, &rewind.ValidationError{Field: "REWIND_ADMIN_TOKEN",
			Reason: fmt.Sprintf("must be at least %d characters; use a long random string", auth.MinCustomSecret)}
	}
	if cfg.NoAuth && !IsLoopback(cfg.Addr) {
		return cfg, bad("no auth", cfg.Addr, "authentication can only be turned off when listening on a loopback "+
			"address such as 127.0.0.1:7070; keep auth on, or listen on loopback")
	}
	return cfg, nil
}

// IsLoopback reports whether the listen address addr only accepts
// connections from this machine. An empty host ("":7070) listens on every
// interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
