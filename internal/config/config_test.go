package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// TestPrecedenceOfEveryLayer sets one key of each type in every
// combination of the file, the environment and the flags, and checks that
// the highest layer wins: flags > environment > file > defaults.
func TestPrecedenceOfEveryLayer(t *testing.T) {
	t.Parallel()
	keys := []struct {
		key                  string
		file, env, flag, def string // the values each layer gives, and the default as printed
	}{
		{"addr", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003", server.DefaultAddr},
		{"rpc_timeout", "5s", "6s", "7s", "30s"},
		{"max_batch_events", "50", "60", "70", "10000"},
		{"max_request_bytes", "1MiB", "2MiB", "3MiB", "32MiB"},
		{"no_auth", "true", "false", "true", "false"},
	}
	for _, k := range keys {
		for mask := range 8 {
			inFile, inEnv, inFlag := mask&1 != 0, mask&2 != 0, mask&4 != 0
			name := fmt.Sprintf("%s/file=%t,env=%t,flag=%t", k.key, inFile, inEnv, inFlag)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				path := ""
				if inFile {
					path = filepath.Join(t.TempDir(), "rewind.yaml")
					os.WriteFile(path, []byte(k.key+": "+k.file+"\n"), 0o600)
				}
				var environ []string
				if inEnv {
					environ = append(environ, EnvName(k.key)+"="+k.env)
				}
				fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
				AddFlags(fs)
				var args []string
				if inFlag {
					args = append(args, "--"+FlagName(k.key)+"="+k.flag)
				}
				if err := fs.Parse(args); err != nil {
					t.Fatal(err)
				}
				cfg, src, err := Load(path, environ, fs)
				if err != nil {
					t.Fatal(err)
				}
				want, wantSrc := k.def, "default"
				switch {
				case inFlag:
					want, wantSrc = k.flag, "flag --"+FlagName(k.key)
				case inEnv:
					want, wantSrc = k.env, "env "+EnvName(k.key)
				case inFile:
					want, wantSrc = k.file, "file "+path+":1"
				}
				got := ""
				for _, kv := range cfg.Redacted() {
					if kv.Key == k.key {
						got = fmt.Sprint(kv.Value)
					}
				}
				if got != want || src[k.key] != wantSrc {
					t.Fatalf("%s = %q from %q, want %q from %q", k.key, got, src[k.key], want, wantSrc)
				}
			})
		}
	}
}

func TestDefaultsAreTheLibrarys(t *testing.T) {
	t.Parallel()
	cfg, src, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if sc.MaxRequestBytes != server.DefaultMaxRequestBytes || sc.Store.MaxEventSize != store.DefaultMaxEventSize ||
		sc.Store.MaxBatchEvents != store.DefaultMaxBatchEvents || sc.RPCTimeout != server.DefaultRPCTimeout ||
		sc.DataDir != server.DefaultDataDir || sc.Addr != server.DefaultAddr {
		t.Fatalf("defaults differ from the library's: %+v", sc)
	}
	for key, s := range src {
		if s != "default" {
			t.Errorf("%s comes from %s with no file, environment or flag", key, s)
		}
	}
	for _, kv := range cfg.Redacted() {
		if kv.Key == "admin_token" && kv.Value != "" {
			t.Errorf("empty admin token printed as %v", kv.Value)
		}
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	t.Parallel()
	cfg, _, err := Load("", []string{"REWIND_ADMIN_TOKEN=do-not-print-0123456789abcdef"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range cfg.Redacted() {
		if kv.Key == "admin_token" && kv.Value != "[redacted]" {
			t.Fatalf("admin token printed: %v", kv.Value)
		}
	}
}

func TestSizes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "1MiB": 1 << 20, "1 MiB": 1 << 20, "1mib": 1 << 20, "64KiB": 64 << 10, "64MB": 64_000_000,
		"1GiB": 1 << 30, "0": 0, "1.5MiB": 3 << 19,
	} {
		var z Size
		if err := z.Set(in); err != nil || int64(z) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, z, err, want)
		}
		var back Size
		if err := back.Set(z.String()); err != nil || back != z {
			t.Errorf("%q prints as %q, which parses as %d (%v)", in, z.String(), back, err)
		}
	}
	for in, reason := range map[string]string{"lots": "a number of bytes", "1 parsec": "unknown unit",
		"-1": "a number of bytes", "100EiB": "too large", "9EiB": "too large", " 1MiB": "a number of bytes",
		"1MiB ": "a number of bytes", "1M": "unknown unit", "1  MiB": "a number of bytes", "1e3": "a number of bytes",
		"0x10": "a number of bytes", "1.5": "whole number of bytes", "1_000": "a number of bytes", "+1": "a number of bytes"} {
		var z Size
		err := z.Set(in)
		if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), reason) {
			t.Errorf("Set(%q): %v, want an invalid argument saying %q", in, err, reason)
		}
	}
}

// Bad values name where they came from, once, with what they must be.
func TestBadValuesNameTheirSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, body string) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(body), 0o600)
		return path
	}
	cases := []struct {
		name, path string
		environ    []string
		want       []string
	}{
		{"unknown key", file("unknown.yaml", "adress: 127.0.0.1:1\n"), nil, []string{`"adress"`, "not a setting"}},
		{"nested key", file("nested.yaml", "addr:\n  host: x\n"), nil, []string{"addr in", "nested.yaml:2", "single value"}},
		{"bad number in the file", file("number.yaml", "max_batch_events: lots\n"), nil,
			[]string{"max_batch_events in " + dir, `"lots"`, "whole number"}},
		{"bad duration in the file", file("duration.yaml", "rpc_timeout: 30\n"), nil, []string{"rpc_timeout", "duration"}},
		{"list in the file", file("list.yaml", "addr: [a, b]\n"), nil, []string{"single value"}},
		{"null in the file", file("null.yaml", "addr:\n"), nil, []string{"addr in", "no value"}},
		{"not yaml", file("bad.yaml", "addr: [\n"), nil, []string{"config file"}},
		{"bad number in the environment", "", []string{"REWIND_MAX_BATCH_EVENTS=lots"},
			[]string{`REWIND_MAX_BATCH_EVENTS "lots"`, "whole number"}},
		{"too large in the environment", "", []string{"REWIND_MAX_BATCH_EVENTS=99999999999999999999"},
			[]string{"REWIND_MAX_BATCH_EVENTS", "too large"}},
		{"bad size in the environment", "", []string{"REWIND_MAX_EVENT_BYTES=big"}, []string{"REWIND_MAX_EVENT_BYTES", "MiB"}},
		{"bad boolean in the environment", "", []string{"REWIND_NO_AUTH=maybe"}, []string{"REWIND_NO_AUTH", "true or false"}},
		{"lenient boolean in the environment", "", []string{"REWIND_NO_AUTH=1"}, []string{"REWIND_NO_AUTH", "true or false"}},
		{"hexadecimal number in the environment", "", []string{"REWIND_MAX_BATCH_EVENTS=0x10"},
			[]string{"REWIND_MAX_BATCH_EVENTS", "whole number"}},
		{"zero duration in the environment", "", []string{"REWIND_RPC_TIMEOUT=0"}, []string{"REWIND_RPC_TIMEOUT", "positive"}},
		{"negative duration in the environment", "", []string{"REWIND_SHUTDOWN_TIMEOUT=-1s"},
			[]string{"REWIND_SHUTDOWN_TIMEOUT", "positive"}},
		{"zero slow subscriber timeout", "", []string{"REWIND_SLOW_SUBSCRIBER_TIMEOUT=0s"},
			[]string{"REWIND_SLOW_SUBSCRIBER_TIMEOUT", "positive"}},
		{"negative drain delay", "", []string{"REWIND_DRAIN_DELAY=-1s"}, []string{"REWIND_DRAIN_DELAY", "0 (no delay)"}},
		{"zero in the file", file("zero.yaml", "max_batch_events: 0\n"), nil, []string{"max_batch_events in " + dir, "at least 1"}},
		{"zero size in the file", file("zerosize.yaml", "max_request_bytes: 0\n"), nil, []string{"max_request_bytes in", "at least"}},
		{"bad durability in the environment", "", []string{"REWIND_DURABILITY=sometimes"},
			[]string{"REWIND_DURABILITY", "sync, interval or none"}},
		{"bad log level in the file", file("level.yaml", "log_level: loud\n"), nil, []string{"log_level in", "debug, info"}},
		{"advertise url with a path", "", []string{"REWIND_ADVERTISE_URL=http://node1:7070/api"},
			[]string{"REWIND_ADVERTISE_URL", "http://HOST:PORT"}},
		{"advertise url without a scheme", file("advertise.yaml", "advertise_url: node1:7070\n"), nil,
			[]string{"advertise_url in", "http://HOST:PORT"}},
		{"no auth off loopback", "", []string{"REWIND_NO_AUTH=true", "REWIND_ADDR=0.0.0.0:7070"}, []string{"loopback"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Load(tc.path, tc.environ, nil)
			if !errors.Is(err, rewind.ErrInvalidArgument) {
				t.Fatalf("%v, want an invalid argument", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
			if strings.Count(msg, "rewind:") != 1 || strings.Contains(msg, "strconv") {
				t.Errorf("%q: a doubled prefix or a parser's message", msg)
			}
		})
	}
	empty := file("empty.yaml", "")
	if _, _, err := Load(empty, nil, nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
	if _, _, err := Load(filepath.Join(dir, "missing.yaml"), nil, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestUnrelatedEnvironmentIsIgnored(t *testing.T) {
	t.Parallel()
	cfg, src, err := Load("", []string{"REWIND_SERVER=http://x", "REWIND_TOKEN=t", "REWIND_SHUTDOWN_TIMEOUT=1m"}, nil)
	if err != nil || cfg.ShutdownTimeout != time.Minute || src["shutdown_timeout"] != "env REWIND_SHUTDOWN_TIMEOUT" {
		t.Fatalf("%+v %v %v", cfg, src, err)
	}
}

// TestEmptyAndBlankVariables: an empty REWIND_* variable counts as unset
// (the default applies); a blank one is refused naming the variable, the
// way the CLI refuses a blank flag, rather than taken as a value (a
// blank REWIND_PROJECTIONS_DSN was a connection string).
func TestEmptyAndBlankVariables(t *testing.T) {
	t.Parallel()
	cfg, src, err := Load("", []string{"REWIND_ADDR=", "REWIND_PROJECTIONS_DSN="}, nil)
	if err != nil || cfg.Addr != Defaults().Addr || src["addr"] != "default" || cfg.ProjectionsDSN != "" {
		t.Fatalf("empty: %+v %v %v", cfg, src, err)
	}
	for _, kv := range []string{"REWIND_PROJECTIONS_DSN= ", "REWIND_ADDR=\t", "REWIND_OTLP_ENDPOINT=  "} {
		name, _, _ := strings.Cut(kv, "=")
		_, _, err := Load("", []string{kv}, nil)
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != name || !strings.Contains(ve.Reason, "blank") {
			t.Errorf("%q: %v", kv, err)
		}
	}
	if _, _, err := Load("", []string{"REWIND_SERVER= ", "OTHER_ADDR= "}, nil); err != nil {
		t.Errorf("a blank variable that is no setting: %v", err)
	}
}
