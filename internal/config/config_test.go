package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/rewindhq/rewind"
)

func TestPrecedenceFlagsOverEnvOverFileOverDefaults(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rewind.yaml")
	os.WriteFile(path, []byte("addr: 127.0.0.1:9000\nrpc_timeout: 5s\nmax_batch_events: 50\nadmin_token: file-secret\n"), 0o600)
	env := map[string]string{"REWIND_RPC_TIMEOUT": "7s", "REWIND_MAX_BATCH_EVENTS": "60"}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--max-batch-events", "70"}); err != nil {
		t.Fatal(err)
	}
	cfg, src, err := Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, fs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9000" || cfg.RPCTimeout != 7*time.Second || cfg.MaxBatchEvents != 70 ||
		cfg.ShutdownTimeout != 30*time.Second {
		t.Fatalf("effective config %+v", cfg)
	}
	if src["addr"] != "file "+path || src["rpc_timeout"] != "env REWIND_RPC_TIMEOUT" ||
		src["max_batch_events"] != "flag --max-batch-events" || src["shutdown_timeout"] != "default" {
		t.Fatalf("sources %v", src)
	}
	for _, kv := range cfg.Redacted() {
		if kv.Key == "admin_token" && kv.Value != "[redacted]" {
			t.Fatalf("admin token printed: %v", kv.Value)
		}
	}
}

func TestFileRejectsUnknownKeysAndBadValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown key": "adr: 127.0.0.1:1\n",
		"bad type":    "max_batch_events: lots\n",
		"not yaml":    "addr: [\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(path, []byte(body), 0o600)
		if _, _, err := Load(path, func(string) (string, bool) { return "", false }, nil); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, _, err := Load(empty, func(string) (string, bool) { return "", false }, nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
	if _, _, err := Load("", func(k string) (string, bool) { return "soon", k == "REWIND_RPC_TIMEOUT" }, nil); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Errorf("bad environment value: %v", err)
	}
}
