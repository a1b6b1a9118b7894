// Package config loads the server's configuration with one precedence
// everywhere: command-line flags over REWIND_* environment variables over
// the YAML config file over defaults. The file's unknown keys are
// rejected, so a misspelt setting is an error rather than ignored.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// Server is the configuration of `rewind serve`, as written in the YAML
// file. Every key is also a flag (with '-' for '_') and an environment
// variable (REWIND_ and the key in upper case).
type Server struct {
	Addr                     string        `yaml:"addr"`
	DataDir                  string        `yaml:"data_dir"`
	Durability               string        `yaml:"durability"`
	SyncInterval             time.Duration `yaml:"sync_interval"`
	NoAuth                   bool          `yaml:"no_auth"`
	AdminToken               string        `yaml:"admin_token"`
	TLSCert                  string        `yaml:"tls_cert"`
	TLSKey                   string        `yaml:"tls_key"`
	TLSClientCA              string        `yaml:"tls_client_ca"`
	MaxRequestBytes          int           `yaml:"max_request_bytes"`
	MaxInflightAppendBytes   int           `yaml:"max_inflight_append_bytes"`
	MaxBatchEvents           int           `yaml:"max_batch_events"`
	MaxEventBytes            int           `yaml:"max_event_bytes"`
	RPCTimeout               time.Duration `yaml:"rpc_timeout"`
	ReadHeaderTimeout        time.Duration `yaml:"read_header_timeout"`
	MaxSubscriptionsPerToken int           `yaml:"max_subscriptions_per_token"`
	ShutdownTimeout          time.Duration `yaml:"shutdown_timeout"`
	OTLPEndpoint             string        `yaml:"otlp_endpoint"`
	LogLevel                 string        `yaml:"log_level"`
}

// Defaults returns the default configuration.
func Defaults() Server {
	return Server{
		Addr: server.DefaultAddr, DataDir: "./rewind-data", Durability: "sync", SyncInterval: 100 * time.Millisecond,
		MaxRequestBytes: 32 << 20, MaxInflightAppendBytes: server.DefaultMaxInflightAppendBytes, MaxBatchEvents: 10_000, MaxEventBytes: 1 << 20, RPCTimeout: 30 * time.Second,
		ReadHeaderTimeout: 10 * time.Second, MaxSubscriptionsPerToken: 64, ShutdownTimeout: 30 * time.Second,
		LogLevel: "info",
	}
}

// setting describes one key.
type setting struct {
	key    string // YAML key; the flag is the key with '-' for '_'
	help   string
	secret bool
	get    func(*Server) any
	set    func(*Server, string) error
}

func str(p func(*Server) *string) (func(*Server) any, func(*Server, string) error) {
	return func(s *Server) any { return *p(s) }, func(s *Server, v string) error { *p(s) = v; return nil }
}

func integer(key string, p func(*Server) *int) (func(*Server) any, func(*Server, string) error) {
	return func(s *Server) any { return *p(s) }, func(s *Server, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return &rewind.ValidationError{Field: key, Value: v, Reason: "must be a whole number"}
		}
		*p(s) = n
		return nil
	}
}

func duration(key string, p func(*Server) *time.Duration) (func(*Server) any, func(*Server, string) error) {
	return func(s *Server) any { return p(s).String() }, func(s *Server, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return &rewind.ValidationError{Field: key, Value: v, Reason: `must be a duration such as "30s" or "2m"`}
		}
		*p(s) = d
		return nil
	}
}

func boolean(key string, p func(*Server) *bool) (func(*Server) any, func(*Server, string) error) {
	return func(s *Server) any { return *p(s) }, func(s *Server, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return &rewind.ValidationError{Field: key, Value: v, Reason: "must be true or false"}
		}
		*p(s) = b
		return nil
	}
}

func mk(key, help string, secret bool, get func(*Server) any, set func(*Server, string) error) setting {
	return setting{key: key, help: help, secret: secret, get: get, set: set}
}

var settings = func() []setting {
	var out []setting
	add := func(key, help string, secret bool, g func(*Server) any, s func(*Server, string) error) {
		out = append(out, mk(key, help, secret, g, s))
	}
	g, s := str(func(c *Server) *string { return &c.Addr })
	add("addr", "address to listen on; auth can be off only on loopback", false, g, s)
	g, s = str(func(c *Server) *string { return &c.DataDir })
	add("data_dir", "data directory of the store and its tokens", false, g, s)
	g, s = str(func(c *Server) *string { return &c.Durability })
	add("durability", "when an append is acknowledged: sync (fsynced), interval or none", false, g, s)
	g, s = duration("sync_interval", func(c *Server) *time.Duration { return &c.SyncInterval })
	add("sync_interval", "fsync period of the interval durability", false, g, s)
	g, s = boolean("no_auth", func(c *Server) *bool { return &c.NoAuth })
	add("no_auth", "turn authentication off (loopback addresses only)", false, g, s)
	g, s = str(func(c *Server) *string { return &c.AdminToken })
	add("admin_token", "secret of the admin token created on the first start (default: a random one, printed once)", true, g, s)
	g, s = str(func(c *Server) *string { return &c.TLSCert })
	add("tls_cert", "PEM certificate file: serve TLS", false, g, s)
	g, s = str(func(c *Server) *string { return &c.TLSKey })
	add("tls_key", "PEM private key file of --tls-cert", false, g, s)
	g, s = str(func(c *Server) *string { return &c.TLSClientCA })
	add("tls_client_ca", "PEM CA file: require client certificates signed by it (mTLS)", false, g, s)
	g, s = integer("max_request_bytes", func(c *Server) *int { return &c.MaxRequestBytes })
	add("max_request_bytes", "largest request message in bytes", false, g, s)
	g, s = integer("max_inflight_append_bytes", func(c *Server) *int { return &c.MaxInflightAppendBytes })
	add("max_inflight_append_bytes", "bytes of appends in progress on the whole server; beyond it appends are "+
		"refused with a retry hint", false, g, s)
	g, s = integer("max_batch_events", func(c *Server) *int { return &c.MaxBatchEvents })
	add("max_batch_events", "most events in one append", false, g, s)
	g, s = integer("max_event_bytes", func(c *Server) *int { return &c.MaxEventBytes })
	add("max_event_bytes", "largest encoded event in bytes", false, g, s)
	g, s = duration("rpc_timeout", func(c *Server) *time.Duration { return &c.RPCTimeout })
	add("rpc_timeout", "deadline of each unary RPC", false, g, s)
	g, s = duration("read_header_timeout", func(c *Server) *time.Duration { return &c.ReadHeaderTimeout })
	add("read_header_timeout", "time allowed to read a request's headers", false, g, s)
	g, s = integer("max_subscriptions_per_token", func(c *Server) *int { return &c.MaxSubscriptionsPerToken })
	add("max_subscriptions_per_token", "open subscriptions allowed per token", false, g, s)
	g, s = duration("shutdown_timeout", func(c *Server) *time.Duration { return &c.ShutdownTimeout })
	add("shutdown_timeout", "how long shutdown waits for in-flight requests", false, g, s)
	g, s = str(func(c *Server) *string { return &c.OTLPEndpoint })
	add("otlp_endpoint", "OTLP/HTTP endpoint (host:port or URL) to export traces to", false, g, s)
	g, s = str(func(c *Server) *string { return &c.LogLevel })
	add("log_level", "log level: debug, info, warn or error", false, g, s)
	return out
}()

// FlagName returns the flag of a YAML key.
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// EnvName returns the environment variable of a YAML key.
func EnvName(key string) string { return "REWIND_" + strings.ToUpper(key) }

// AddFlags registers one flag per setting on fs, except the keys in skip
// (settings whose flag a parent command already defines, such as the
// CLI's global --data-dir and --log-level).
func AddFlags(fs *pflag.FlagSet, skip ...string) {
	d := Defaults()
	for _, s := range settings {
		if fs.Lookup(FlagName(s.key)) != nil || slices.Contains(skip, s.key) {
			continue
		}
		def := fmt.Sprint(s.get(&d))
		if s.secret {
			def = ""
		}
		fs.String(FlagName(s.key), def, s.help+" ($"+EnvName(s.key)+")")
		if _, ok := s.get(&d).(bool); ok {
			fs.Lookup(FlagName(s.key)).NoOptDefVal = "true" // --no-auth alone means true
		}
	}
}

// Source says where each effective value came from.
type Source map[string]string

// Load returns the effective configuration: defaults, then the YAML file
// at path (if path is not empty), then the environment (lookup), then the
// flags of fs that were set on the command line.
func Load(path string, lookup func(string) (string, bool), fs *pflag.FlagSet) (Server, Source, error) {
	cfg := Defaults()
	src := Source{}
	for _, s := range settings {
		src[s.key] = "default"
	}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, src, fmt.Errorf("read config file: %w", err)
		}
		var keys map[string]any
		if err := yaml.Unmarshal(raw, &keys); err != nil {
			return cfg, src, fmt.Errorf("%w: config file %s: %v", rewind.ErrInvalidArgument, path, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
			return cfg, src, fmt.Errorf("%w: config file %s: %v (the keys are listed by 'rewind config print')",
				rewind.ErrInvalidArgument, path, err)
		}
		for k := range keys {
			src[k] = "file " + path
		}
	}
	for _, s := range settings {
		if v, ok := lookup(EnvName(s.key)); ok && v != "" {
			if err := s.set(&cfg, v); err != nil {
				return cfg, src, fmt.Errorf("%s: %w", EnvName(s.key), err)
			}
			src[s.key] = "env " + EnvName(s.key)
		}
	}
	if fs != nil {
		for _, s := range settings {
			f := fs.Lookup(FlagName(s.key))
			if f == nil || !f.Changed {
				continue
			}
			if err := s.set(&cfg, f.Value.String()); err != nil {
				return cfg, src, fmt.Errorf("--%s: %w", FlagName(s.key), err)
			}
			src[s.key] = "flag --" + FlagName(s.key)
		}
	}
	return cfg, src, nil
}

// Redacted returns the configuration as ordered key/value pairs with
// secrets replaced, for printing.
func (c Server) Redacted() []KV {
	out := make([]KV, 0, len(settings))
	for _, s := range settings {
		v := s.get(&c)
		if s.secret && v != "" {
			v = "[redacted]"
		}
		out = append(out, KV{Key: s.key, Value: v})
	}
	return out
}

// KV is one printed setting.
type KV struct {
	Key   string
	Value any
}

// ServerConfig converts the configuration for server.New.
func (c Server) ServerConfig() (server.Config, error) {
	d, err := eventlog.ParseDurability(c.Durability)
	if err != nil {
		return server.Config{}, err
	}
	return server.Config{
		Addr: c.Addr, DataDir: c.DataDir, NoAuth: c.NoAuth, AdminToken: c.AdminToken,
		TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSClientCA: c.TLSClientCA,
		MaxRequestBytes: c.MaxRequestBytes, MaxInflightAppendBytes: int64(c.MaxInflightAppendBytes),
		RPCTimeout: c.RPCTimeout, ReadHeaderTimeout: c.ReadHeaderTimeout,
		MaxSubscriptionsPerToken: c.MaxSubscriptionsPerToken, ShutdownTimeout: c.ShutdownTimeout,
		OTLPEndpoint: c.OTLPEndpoint,
		Store: store.Config{Log: eventlog.Config{Durability: d, SyncInterval: c.SyncInterval},
			MaxBatchEvents: c.MaxBatchEvents, MaxEventSize: c.MaxEventBytes},
	}, nil
}
