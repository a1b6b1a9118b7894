// Package config holds the configuration of the rewind binary: the typed
// values its flags, environment variables and config file share (sizes
// with units, durations, numbers, each refused with a message that says
// what it must be), and the layered configuration of `rewind serve`, with
// one precedence everywhere: command-line flags over REWIND_* environment
// variables over the YAML config file over defaults. The layering is
// koanf's; the defaults are the constants of the packages that own them
// (server.Default…, store.Default…, eventlog.Default…). The file's unknown
// keys are rejected, so a misspelt setting is an error rather than ignored.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// DefaultLogLevel is the log level of `rewind serve`.
const DefaultLogLevel = "info"

// Server is the configuration of `rewind serve`, as written in the YAML
// file. Every key is also a flag (with '-' for '_') and an environment
// variable (REWIND_ and the key in upper case).
type Server struct {
	Addr                     string
	DataDir                  string
	Store                    string
	StoreSchema              string
	Durability               string
	SyncInterval             time.Duration
	NoAuth                   bool
	AdminToken               string
	TLSCert                  string
	TLSKey                   string
	TLSClientCA              string
	MaxRequestBytes          Size
	MaxInflightAppendBytes   Size
	MaxBatchEvents           int
	MaxEventBytes            Size
	RPCTimeout               time.Duration
	ReadHeaderTimeout        time.Duration
	MaxSubscriptionsPerToken int
	ShutdownTimeout          time.Duration
	DrainDelay               time.Duration
	SlowSubscriberTimeout    time.Duration
	OTLPEndpoint             string
	ProjectionsDSN           string
	AdvertiseURL             string
	LogLevel                 string
}

// Defaults returns the default configuration.
func Defaults() Server {
	return Server{
		Addr: server.DefaultAddr, DataDir: server.DefaultDataDir, StoreSchema: pgstore.DefaultSchema, Durability: eventlog.DefaultDurability.String(),
		SyncInterval: eventlog.DefaultSyncInterval, MaxRequestBytes: server.DefaultMaxRequestBytes,
		MaxInflightAppendBytes: server.DefaultMaxInflightAppendBytes, MaxBatchEvents: store.DefaultMaxBatchEvents,
		MaxEventBytes: store.DefaultMaxEventSize, RPCTimeout: server.DefaultRPCTimeout,
		ReadHeaderTimeout:        server.DefaultReadHeaderTimeout,
		MaxSubscriptionsPerToken: server.DefaultMaxSubscriptionsPerToken, ShutdownTimeout: server.DefaultShutdownTimeout,
		DrainDelay: server.DefaultDrainDelay, SlowSubscriberTimeout: server.DefaultSlowSubscriberTimeout,
		LogLevel: DefaultLogLevel,
	}
}

// setting is one key: its help and a function that registers its typed
// flag on a flag set, bound to a field of a Server.
type setting struct {
	key    string // YAML key; the flag is the key with '-' for '_'
	help   string
	secret bool
	bind   func(fs *pflag.FlagSet, c *Server, name, help string)
}

func str(p func(*Server) *string) func(*pflag.FlagSet, *Server, string, string) {
	return func(fs *pflag.FlagSet, c *Server, name, help string) { fs.StringVar(p(c), name, *p(c), help) }
}

func integer(p func(*Server) *int) func(*pflag.FlagSet, *Server, string, string) {
	return func(fs *pflag.FlagSet, c *Server, name, help string) { IntVar(fs, p(c), name, *p(c), help) }
}

func duration(p func(*Server) *time.Duration) func(*pflag.FlagSet, *Server, string, string) {
	return func(fs *pflag.FlagSet, c *Server, name, help string) { fs.DurationVar(p(c), name, *p(c), help) }
}

func boolean(p func(*Server) *bool) func(*pflag.FlagSet, *Server, string, string) {
	return func(fs *pflag.FlagSet, c *Server, name, help string) { BoolVar(fs, p(c), name, *p(c), help) }
}

func size(p func(*Server) *Size) func(*pflag.FlagSet, *Server, string, string) {
	return func(fs *pflag.FlagSet, c *Server, name, help string) { fs.Var(p(c), name, help) }
}

var settings = []setting{
	{"addr", "address to listen on, host:port; authentication can be off only on a loopback address", false,
		str(func(c *Server) *string { return &c.Addr })},
	{"data_dir", "data directory of the store and its tokens", false, str(func(c *Server) *string { return &c.DataDir })},
	{"store", "PostgreSQL store to serve instead of the embedded one (postgres://user@host:5432/db); tokens stay in data_dir",
		true, str(func(c *Server) *string { return &c.Store })},
	{"store_schema", "PostgreSQL schema of --store", false, str(func(c *Server) *string { return &c.StoreSchema })},
	{"durability", "when an append is acknowledged: sync (fsynced), interval (fsynced every --sync-interval) or none", false,
		str(func(c *Server) *string { return &c.Durability })},
	{"sync_interval", "fsync period of the interval durability (a duration: 100ms, 1s)", false,
		duration(func(c *Server) *time.Duration { return &c.SyncInterval })},
	{"no_auth", "turn authentication off (loopback addresses only)", false, boolean(func(c *Server) *bool { return &c.NoAuth })},
	{"admin_token", "secret of the admin token created on the first start (default: a random one, printed once)", true,
		str(func(c *Server) *string { return &c.AdminToken })},
	{"tls_cert", "PEM certificate file: serve TLS", false, str(func(c *Server) *string { return &c.TLSCert })},
	{"tls_key", "PEM private key file of --tls-cert", false, str(func(c *Server) *string { return &c.TLSKey })},
	{"tls_client_ca", "PEM CA file: require client certificates signed by it (mTLS)", false,
		str(func(c *Server) *string { return &c.TLSClientCA })},
	{"max_request_bytes", "largest request message, in bytes or with a unit (64KiB, 32MiB)", false,
		size(func(c *Server) *Size { return &c.MaxRequestBytes })},
	{"max_inflight_append_bytes", "bytes of appends in progress on the whole server, in bytes or with a unit (256MiB); " +
		"beyond it appends are refused with a retry hint", false,
		size(func(c *Server) *Size { return &c.MaxInflightAppendBytes })},
	{"max_batch_events", "most events in one append (events)", false, integer(func(c *Server) *int { return &c.MaxBatchEvents })},
	{"max_event_bytes", "largest encoded event, in bytes or with a unit (1MiB)", false,
		size(func(c *Server) *Size { return &c.MaxEventBytes })},
	{"rpc_timeout", "deadline of each unary RPC, reading its request included (a duration: 30s, 2m)", false,
		duration(func(c *Server) *time.Duration { return &c.RPCTimeout })},
	{"read_header_timeout", "time allowed to read a request's headers (a duration)", false,
		duration(func(c *Server) *time.Duration { return &c.ReadHeaderTimeout })},
	{"max_subscriptions_per_token", "open subscriptions allowed per token (subscriptions)", false,
		integer(func(c *Server) *int { return &c.MaxSubscriptionsPerToken })},
	{"shutdown_timeout", "how long shutdown waits for in-flight requests (a duration)", false,
		duration(func(c *Server) *time.Duration { return &c.ShutdownTimeout })},
	{"drain_delay", "how long a graceful stop keeps serving with /readyz at 503 before the listener closes (a duration)",
		false, duration(func(c *Server) *time.Duration { return &c.DrainDelay })},
	{"slow_subscriber_timeout", "how long one subscription message may wait for its client to read it; a " +
		"subscriber slower than that is ended with resource_exhausted (a duration)", false,
		duration(func(c *Server) *time.Duration { return &c.SlowSubscriberTimeout })},
	{"otlp_endpoint", "OTLP/HTTP endpoint (host:port or URL) to export traces to", false,
		str(func(c *Server) *string { return &c.OTLPEndpoint })},
	{"advertise_url", "URL at which the other servers of one PostgreSQL --store reach this one, to forward it " +
		"consumer group requests while it runs the groups (default: http(s)://ADDR)", false,
		str(func(c *Server) *string { return &c.AdvertiseURL })},
	{"projections_dsn", "PostgreSQL connection string of the projections (package projection) whose status /metrics " +
		"exports as rewind_projection_* (default: none)", true, str(func(c *Server) *string { return &c.ProjectionsDSN })},
	{"log_level", "log level: debug, info, warn or error", false, str(func(c *Server) *string { return &c.LogLevel })},
}

func lookup(key string) (setting, bool) {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.key == key })
	if i < 0 {
		return setting{}, false
	}
	return settings[i], true
}

// FlagName returns the flag of a YAML key.
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// EnvName returns the environment variable of a YAML key.
func EnvName(key string) string { return "REWIND_" + strings.ToUpper(key) }

// keyOfFlag returns the YAML key of a flag name.
func keyOfFlag(name string) string { return strings.ReplaceAll(name, "-", "_") }

// AddFlags registers one typed flag per setting on fs, with its default,
// except the keys in skip (settings whose flag a parent command already
// defines, such as the CLI's global --data-dir and --log-level).
func AddFlags(fs *pflag.FlagSet, skip ...string) {
	d := Defaults()
	for _, s := range settings {
		if fs.Lookup(FlagName(s.key)) != nil || slices.Contains(skip, s.key) {
			continue
		}
		s.bind(fs, &d, FlagName(s.key), s.help+" ($"+EnvName(s.key)+")")
	}
}

// Source says where each effective value came from.
type Source map[string]string

// Load returns the effective configuration: the defaults, then the YAML
// file at path (if path is not empty), then the REWIND_* variables of
// environ (such as os.Environ()), then the flags of fs that were set on
// the command line, each layer overriding the ones before.
func Load(path string, environ []string, fs *pflag.FlagSet) (Server, Source, error) {
	k := koanf.New(".")
	layers := map[string]string{} // key → the last layer that set it
	layer := func(name string, p koanf.Provider, parser koanf.Parser) error {
		l := koanf.New(".")
		if err := l.Load(p, parser); err != nil {
			return err
		}
		for _, key := range l.Keys() {
			if name != "file" {
				layers[key] = name
			}
		}
		return k.Merge(l)
	}
	if path != "" {
		values, lines, err := readFile(path)
		if err != nil {
			return Server{}, nil, err
		}
		if err := layer("file", values, nil); err != nil {
			return Server{}, nil, err
		}
		for key, line := range lines {
			layers[key] = fmt.Sprintf("file %s:%d", path, line)
		}
	}
	// An empty variable counts as unset (the shell's ${VAR:-default}); a
	// blank one is most likely a mistake, refused as the CLI's flags are.
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		key := strings.ToLower(strings.TrimPrefix(name, "REWIND_"))
		if _, ok := lookup(key); ok && strings.HasPrefix(name, "REWIND_") && value != "" && strings.TrimSpace(value) == "" {
			return Server{}, nil, &rewind.ValidationError{Field: name, Value: value,
				Reason: "is blank: unset it (or set it to '') for the default, or give a value"}
		}
	}
	envKey := func(name, value string) (string, any) {
		key := strings.ToLower(strings.TrimPrefix(name, "REWIND_"))
		if _, ok := lookup(key); !ok || value == "" {
			return "", nil
		}
		return key, value
	}
	if err := layer("env", env.Provider(".", env.Opt{Prefix: "REWIND_", TransformFunc: envKey,
		EnvironFunc: func() []string { return environ }}), nil); err != nil {
		return Server{}, nil, err
	}
	if fs != nil {
		// Without a koanf instance, posflag takes only the flags set on
		// the command line: the flags' defaults are the defaults above.
		flagKey := func(f *pflag.Flag) (string, any) {
			if _, ok := lookup(keyOfFlag(f.Name)); !ok {
				return "", nil
			}
			return keyOfFlag(f.Name), f.Value.String()
		}
		if err := layer("flag", posflag.ProviderWithFlag(fs, ".", nil, flagKey), nil); err != nil {
			return Server{}, nil, err
		}
	}
	cfg, src, err := decode(k, layers, path)
	if err != nil {
		return cfg, src, err
	}
	return cfg, src, cfg.validate(src, path)
}

// validate refuses what would not start, naming where each value came
// from. Zero is refused where the library would take it for "the
// default": a value written out must mean what it says.
func (c Server) validate(src Source, path string) error {
	field := func(key string) string {
		switch s := src[key]; {
		case strings.HasPrefix(s, "flag "), strings.HasPrefix(s, "env "):
			return s[strings.IndexByte(s, ' ')+1:]
		case strings.HasPrefix(s, "file "):
			return key + " in " + strings.TrimPrefix(s, "file ")
		}
		return key + " (default)"
	}
	bad := func(key string, v any, reason string) error {
		return &rewind.ValidationError{Field: field(key), Value: fmt.Sprint(v), Reason: reason}
	}
	for key, d := range map[string]time.Duration{"sync_interval": c.SyncInterval, "rpc_timeout": c.RPCTimeout,
		"read_header_timeout": c.ReadHeaderTimeout, "shutdown_timeout": c.ShutdownTimeout,
		"slow_subscriber_timeout": c.SlowSubscriberTimeout} {
		if d <= 0 {
			return bad(key, d, "must be a positive duration, such as 100ms, 30s or 2m")
		}
	}
	if c.DrainDelay < 0 {
		return bad("drain_delay", c.DrainDelay, "must be 0 (no delay) or a positive duration, such as 5s")
	}
	for key, n := range map[string]int{"max_batch_events": c.MaxBatchEvents,
		"max_subscriptions_per_token": c.MaxSubscriptionsPerToken} {
		if n < 1 {
			return bad(key, n, "must be at least 1")
		}
	}
	switch {
	case c.MaxRequestBytes < 1<<10:
		return bad("max_request_bytes", c.MaxRequestBytes, "must be at least 1KiB")
	case c.MaxInflightAppendBytes < c.MaxRequestBytes:
		return bad("max_inflight_append_bytes", c.MaxInflightAppendBytes,
			fmt.Sprintf("must be at least max_request_bytes (%s)", c.MaxRequestBytes))
	case c.MaxEventBytes < 1<<10 || c.MaxEventBytes > eventlog.MaxPayload:
		return bad("max_event_bytes", c.MaxEventBytes, fmt.Sprintf("must be from 1KiB to %s", Size(eventlog.MaxPayload)))
	case c.Addr == "":
		return bad("addr", c.Addr, "must be host:port, such as 127.0.0.1:7070")
	case c.DataDir == "":
		return bad("data_dir", c.DataDir, "must name a directory")
	case c.AdminToken != "" && len(c.AdminToken) < auth.MinCustomSecret:
		return &rewind.ValidationError{Field: field("admin_token"), Reason: fmt.Sprintf("must be at least %d "+
			"characters; use a long random string, such as the output of 'openssl rand -hex 24'", auth.MinCustomSecret)}
	}
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("addr", c.Addr, "must be host:port, such as 127.0.0.1:7070 (a host may be empty: :7070)")
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return bad("addr", c.Addr, "must end in a port number from 0 to 65535")
	}
	if err := checkOTLP(c.OTLPEndpoint); err != nil {
		return bad("otlp_endpoint", c.OTLPEndpoint, err.Error())
	}
	if c.AdvertiseURL != "" {
		u, err := url.Parse(c.AdvertiseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.TrimRight(u.Path, "/") != "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return bad("advertise_url", c.AdvertiseURL, "must be http://HOST:PORT or https://HOST:PORT, with no path")
		}
	}
	if c.ProjectionsDSN != "" {
		if _, err := pgxpool.ParseConfig(c.ProjectionsDSN); err != nil {
			return &rewind.ValidationError{Field: field("projections_dsn"),
				Reason: "is not a PostgreSQL connection string (postgres://user@host:5432/db, or key=value pairs)"}
		}
	}
	if _, err := eventlog.ParseDurability(c.Durability); err != nil {
		return bad("durability", c.Durability, "must be sync, interval or none")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return bad("log_level", c.LogLevel, "must be debug, info, warn or error")
	}
	sc, err := c.ServerConfig()
	if err != nil {
		return err
	}
	if err := sc.Validate(); err != nil {
		// The server names its settings in words; name the flag,
		// variable or file line instead.
		var ve *rewind.ValidationError
		if errors.As(err, &ve) {
			if key, ok := serverFields[ve.Field]; ok {
				if key == "no_auth" {
					return &rewind.ValidationError{Field: field("no_auth") + " with " + field("addr"), Value: ve.Value,
						Reason: ve.Reason}
				}
				return &rewind.ValidationError{Field: field(key), Value: ve.Value, Reason: ve.Reason}
			}
		}
		return err
	}
	return checkTLS(c, field)
}

// decode sets each key that a layer set, through its typed flag, so that
// the values of every layer are parsed, and refused, alike.
func decode(k *koanf.Koanf, layers map[string]string, path string) (Server, Source, error) {
	cfg := Defaults()
	src := Source{}
	fs := pflag.NewFlagSet("config", pflag.ContinueOnError)
	for _, s := range settings {
		s.bind(fs, &cfg, FlagName(s.key), s.help)
	}
	for _, s := range settings {
		var where string
		switch l := layers[s.key]; {
		case l == "":
			src[s.key] = "default"
			continue
		case strings.HasPrefix(l, "file "):
			where, src[s.key] = s.key+" in "+strings.TrimPrefix(l, "file "), l
		case l == "env":
			where = EnvName(s.key)
			src[s.key] = "env " + where
		case l == "flag":
			where = "--" + FlagName(s.key)
			src[s.key] = "flag " + where
		}
		var text string
		switch v := k.Get(s.key).(type) {
		case nil:
			return cfg, src, &rewind.ValidationError{Field: where, Reason: "has no value"}
		case []any, map[string]any:
			return cfg, src, &rewind.ValidationError{Field: where, Value: fmt.Sprint(v), Reason: "must be a single value"}
		default:
			text = fmt.Sprint(v)
		}
		f := fs.Lookup(FlagName(s.key))
		if err := f.Value.Set(text); err != nil {
			return cfg, src, ValueError(f, where, text, err)
		}
	}
	return cfg, src, nil
}

// redactURL hides the password of a PostgreSQL URL; a key=value string,
// which may hold one anywhere, is hidden whole.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "[redacted]"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Redacted returns the configuration as ordered key/value pairs with
// secrets replaced, for printing: numbers and booleans as such, other
// values as the config file would hold them.
func (c Server) Redacted() []KV {
	fs := pflag.NewFlagSet("print", pflag.ContinueOnError)
	out := make([]KV, 0, len(settings))
	for _, s := range settings {
		s.bind(fs, &c, FlagName(s.key), s.help)
		var v any = fs.Lookup(FlagName(s.key)).Value.String()
		switch s.key {
		case "no_auth":
			v = c.NoAuth
		case "max_batch_events":
			v = c.MaxBatchEvents
		case "max_subscriptions_per_token":
			v = c.MaxSubscriptionsPerToken
		}
		switch {
		case s.key == "store" && v != "":
			v = redactURL(c.Store)
		case s.secret && v != "":
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
		MaxRequestBytes: int(c.MaxRequestBytes), MaxInflightAppendBytes: int64(c.MaxInflightAppendBytes),
		RPCTimeout: c.RPCTimeout, ReadHeaderTimeout: c.ReadHeaderTimeout,
		MaxSubscriptionsPerToken: c.MaxSubscriptionsPerToken, ShutdownTimeout: c.ShutdownTimeout,
		DrainDelay: c.DrainDelay, SlowSubscriberTimeout: c.SlowSubscriberTimeout,
		OTLPEndpoint: c.OTLPEndpoint, ProjectionsDSN: c.ProjectionsDSN, AdvertiseURL: strings.TrimRight(c.AdvertiseURL, "/"),
		Store: store.Config{Log: eventlog.Config{Durability: d, SyncInterval: c.SyncInterval},
			MaxBatchEvents: c.MaxBatchEvents, MaxEventSize: int(c.MaxEventBytes)},
	}, nil
}

// fileValues is the settings of a config file as a koanf provider: each
// value the text written in the file, so that the typed flags parse it as
// they parse a flag (YAML's own reading would take 1e3, 0x10 or 017 for
// numbers, and lose what was written).
type fileValues map[string]any

func (v fileValues) Read() (map[string]any, error) { return v, nil }
func (v fileValues) ReadBytes() ([]byte, error) {
	return nil, errors.New("config file values are read as a map")
}

// readFile reads the YAML config file at path: a mapping of known keys to
// plain values. It returns each value's text and line.
func readFile(path string) (fileValues, map[string]int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config file: %w", err)
	}
	bad := func(line int, field, value, reason string) error {
		if line > 0 {
			field += fmt.Sprintf(" in %s:%d", path, line)
		} else {
			field += " " + path
		}
		return &rewind.ValidationError{Field: field, Value: value, Reason: reason}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, nil, bad(0, "config file", "", "is not valid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
	}
	values, lines := fileValues{}, map[string]int{}
	if len(doc.Content) == 0 {
		return values, lines, nil // an empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, nil, bad(m.Line, "config file", "", "must be a mapping of settings, such as \"addr: 127.0.0.1:7070\"")
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := k.Value
		switch _, known := lookup(key); {
		case k.Kind != yaml.ScalarNode || !known:
			return nil, nil, bad(k.Line, "key", key, "is not a setting; 'rewind config print' lists the keys")
		case lines[key] != 0:
			return nil, nil, bad(k.Line, key, "", fmt.Sprintf("is set twice (also on line %d); set it once", lines[key]))
		case v.Kind != yaml.ScalarNode:
			return nil, nil, bad(v.Line, key, "", "must be a single value")
		case v.Tag == "!!null":
			return nil, nil, bad(v.Line, key, v.Value, "has no value")
		case v.Style&yaml.TaggedStyle != 0:
			return nil, nil, bad(v.Line, key, v.Value, "must be a plain value, without a YAML tag such as "+v.Tag)
		}
		values[key], lines[key] = v.Value, v.Line
	}
	return values, lines, nil
}

// serverFields maps the setting names of server.Config's errors to keys.
var serverFields = map[string]string{
	"max request bytes": "max_request_bytes", "max inflight append bytes": "max_inflight_append_bytes",
	"max subscriptions per token": "max_subscriptions_per_token", "tls": "tls_cert", "tls client ca": "tls_client_ca",
	"no auth": "no_auth",
}

// checkOTLP checks an OTLP endpoint as the server takes it: host:port, or
// an http or https URL.
func checkOTLP(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("must be host:port or an http:// or https:// URL, such as http://127.0.0.1:4318")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return errors.New("must be host:port or an http:// or https:// URL, such as 127.0.0.1:4318")
	}
	return nil
}

// checkTLS loads the TLS files as the server will, so that a missing or
// bad file is found before the start.
func checkTLS(c Server, field func(string) string) error {
	if c.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			return &rewind.ValidationError{Field: field("tls_cert") + " and " + field("tls_key"),
				Value: c.TLSCert + ", " + c.TLSKey, Reason: "must be a PEM certificate and its private key: " + err.Error()}
		}
	}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			err = errors.New("holds no PEM certificate")
		}
		if err != nil {
			return &rewind.ValidationError{Field: field("tls_client_ca"), Value: c.TLSClientCA,
				Reason: "must be a file of PEM CA certificates: " + err.Error()}
		}
	}
	return nil
}
