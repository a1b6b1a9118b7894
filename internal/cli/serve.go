package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/server"
)

// loadServerConfig applies flags > REWIND_* environment > --config file >
// defaults.
func (a *app) loadServerConfig(cmd *cobra.Command, path string) (config.Server, config.Source, error) {
	return config.Load(path, os.Environ(), cmd.Flags())
}

func (a *app) serveCmd() *cobra.Command {
	var (
		path    string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the store over gRPC and HTTP/JSON on one port",
		Long: `Serve the embedded store in --data-dir, or the PostgreSQL store of --store
(made by 'rewind migrate'; tokens stay in --data-dir), over rewind's API: gRPC (h2c or TLS),
gRPC-Web and Connect's HTTP/JSON on one port, plus /metrics, /healthz and /readyz.

Settings come from flags, then REWIND_* environment variables, then the YAML file
of --config, then defaults; 'rewind config print' shows the effective ones.

The first start creates an admin token and prints its secret once (or takes it
from REWIND_ADMIN_TOKEN). Create tokens for services with 'rewind token create'.
Authentication can only be turned off (--no-auth) on a loopback address.

SIGTERM or SIGINT shuts down gracefully: no new connections, subscriptions end
with a status that says where to resume, in-flight appends finish, the store is
fsynced and the data directory released; the exit status is then 0.`,
		Example: `  rewind serve
  rewind serve --store postgres://rewind@db:5432/events
  rewind serve --addr 0.0.0.0:7070 --tls-cert cert.pem --tls-key key.pem
  REWIND_ADMIN_TOKEN=$(openssl rand -hex 24) rewind serve --config rewind.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := a.loadServerConfig(cmd, path)
			if err != nil {
				return err
			}
			sc, err := cfg.ServerConfig()
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
				return invalidFlag("log-level", cfg.LogLevel, "must be debug, info, warn or error")
			}
			sc.Logger = slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			storeLoc := ""
			if cfg.Store != "" {
				ps, err := pgstore.Open(cmd.Context(), cfg.Store, pgstore.Config{Schema: cfg.StoreSchema,
					MaxBatchEvents: cfg.MaxBatchEvents, MaxEventSize: int(cfg.MaxEventBytes), Logger: sc.Logger})
				if err != nil {
					return err
				}
				sc.Backend = ps
				storeLoc = ps.Location()
			}
			srv, err := server.New(sc)
			if err != nil {
				if sc.Backend != nil {
					sc.Backend.Close()
				}
				return err
			}
			if err := a.announce(srv, sc.DataDir, storeLoc, jsonOut); err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "YAML config file")
	bindEnv(cmd.Flags(), "config", "REWIND_CONFIG")
	config.AddFlags(cmd.Flags(), "data_dir", "store", "store_schema")
	config.BoolVar(cmd.Flags(), &jsonOut, "json", false, `once serving, print {"url", "data_dir", "admin_secret"} as one line of JSON`)
	cmd.PreRun = func(*cobra.Command, []string) { a.jsonOut = jsonOut }
	return cmd
}

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the server's configuration",
	}
	var (
		path    string
		jsonOut bool
	)
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective server configuration, secrets redacted",
		Long: `Print the configuration 'rewind serve' would run with, given the same flags,
environment and --config file, with where each value came from. Secrets are
redacted. The keys are those of the YAML file; each is also a flag (--key-name)
and an environment variable (REWIND_KEY_NAME).`,
		Example: `  rewind config print --config rewind.yaml --addr 0.0.0.0:7070`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, src, err := a.loadServerConfig(cmd, path)
			if err != nil {
				return err
			}
			kvs := cfg.Redacted()
			if jsonOut {
				out := map[string]any{}
				sources := map[string]string{}
				for _, kv := range kvs {
					out[kv.Key] = kv.Value
					sources[kv.Key] = src[kv.Key]
				}
				return a.printJSON(map[string]any{"config": out, "sources": sources})
			}
			for _, kv := range kvs {
				b, _ := yaml.Marshal(map[string]any{kv.Key: kv.Value})
				a.printf("%-44s # %s\n", strings.TrimSpace(string(b)), src[kv.Key])
			}
			return nil
		},
	}
	print.Flags().StringVar(&path, "config", "", "YAML config file")
	bindEnv(print.Flags(), "config", "REWIND_CONFIG")
	config.AddFlags(print.Flags(), "data_dir", "store", "store_schema")
	a.jsonFlag(print, &jsonOut)
	cmd.AddCommand(print)
	return cmd
}

// announce prints where srv serves and, on the first start, the admin
// secret. A secret nobody saw would lock the operator out: when it cannot
// be written (standard output closed or full), the start fails and the
// admin token it created is removed again.
func (a *app) announce(srv *server.Server, dataDir, storeLoc string, jsonOut bool) error {
	secret := srv.AdminSecret()
	var b bytes.Buffer
	if jsonOut {
		out := map[string]string{"url": srv.URL(), "data_dir": dataDir}
		if storeLoc != "" {
			out["store"] = storeLoc
		}
		if secret != "" {
			out["admin_secret"] = secret
		}
		j, err := json.Marshal(out)
		if err != nil {
			return err
		}
		b.Write(append(j, '\n'))
	} else {
		if secret != "" {
			fmt.Fprintf(&b, "rewind: created the admin token; this is the only time its secret is shown:\n\n  %s\n\n"+
				"Use it as --token (or REWIND_TOKEN) to create tokens for services with 'rewind token create'.\n", secret)
		}
		serving := dataDir
		if storeLoc != "" {
			serving = storeLoc + " (tokens in " + dataDir + ")"
		}
		fmt.Fprintf(&b, "rewind: serving %s on %s\n", serving, srv.URL())
	}
	err := discarded(a.stdout, secret)
	if err == nil {
		_, err = a.stdout.Write(b.Bytes())
	}
	if f, ok := a.stdout.(interface{ Sync() error }); ok && err == nil && secret != "" {
		// A file or a device such as /dev/full may fail only here;
		// a pipe or terminal cannot sync, and says so, which is fine.
		if serr := f.Sync(); serr != nil && !errors.Is(serr, syscall.EINVAL) && !errors.Is(serr, syscall.ENOTSUP) {
			err = serr
		}
	}
	if err == nil {
		return nil
	}
	if cerr := srv.Close(); cerr != nil {
		return fmt.Errorf("write the start message to standard output: %w (closing the server: %v)", err, cerr)
	}
	if secret == "" {
		return fmt.Errorf("write the start message to standard output: %w", err)
	}
	tokens, terr := auth.Open(dataDir)
	removed := false
	if terr == nil {
		removed, terr = tokens.Unbootstrap(secret)
		tokens.Close()
	}
	if terr != nil || !removed {
		return fmt.Errorf("could not show the new admin token's secret on standard output: %w; the token was left "+
			"in %s and could not be removed (%v): revoke the token named \"admin\" offline with 'rewind token revoke "+
			"admin' and create another", err, dataDir, terr)
	}
	return fmt.Errorf("could not show the new admin token's secret on standard output: %w; the server did not "+
		"start and the token was removed, so nobody is locked out: start again with standard output on a "+
		"terminal or file, or give the secret with REWIND_ADMIN_TOKEN", err)
}

// errDiscarded is the error of a secret that would be written where nobody
// can read it.
var errDiscarded = errors.New("standard output is " + os.DevNull + " (or was closed, which the Go runtime turns into " +
	os.DevNull + ")")

// discarded returns errDiscarded when there is a secret to show and out is
// the null device.
func discarded(out io.Writer, secret string) error {
	f, ok := out.(*os.File)
	if secret == "" || !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	null, err := os.Stat(os.DevNull)
	if err == nil && os.SameFile(fi, null) {
		return errDiscarded
	}
	return nil
}
