package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/rewindhq/rewind"
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
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	// Defaults to 30s.
	ShutdownTimeout time.Duration
	// OTLPEndpoint, when set, exports traces of every RPC over OTLP/HTTP to
	// this endpoint (host:port, or a URL). Defaults to no tracing.
	OTLPEndpoint string
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
	case cfg.RPCTimeout < 0, cfg.ReadHeaderTimeout < 0, cfg.IdleTimeout < 0, cfg.ShutdownTimeout < 0:
		return cfg, bad("timeouts", "", "must not be negative")
	case cfg.MaxSubscriptionsPerToken < 1:
		return cfg, bad("max subscriptions per token", cfg.MaxSubscriptionsPerToken, "must be at least 1")
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return cfg, bad("tls", "", "give both --tls-cert and --tls-key, or neither")
	case cfg.TLSClientCA != "" && cfg.TLSCert == "":
		return cfg, bad("tls client ca", cfg.TLSClientCA, "client certificates need TLS: give --tls-cert and --tls-key too")
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
