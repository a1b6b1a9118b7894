package cli

import (
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind/internal/config"
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
		Long: `Serve the embedded store in --data-dir over rewind's API: gRPC (h2c or TLS),
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
			srv, err := server.New(sc)
			if err != nil {
				return err
			}
			if jsonOut {
				out := map[string]string{"url": srv.URL(), "data_dir": sc.DataDir}
				if secret := srv.AdminSecret(); secret != "" {
					out["admin_secret"] = secret
				}
				if err := a.printJSON(out); err != nil {
					return err
				}
			} else if secret := srv.AdminSecret(); secret != "" {
				a.printf("rewind: created the admin token; this is the only time its secret is shown:\n\n  %s\n\n"+
					"Use it as --token (or REWIND_TOKEN) to create tokens for services with 'rewind token create'.\n", secret)
			}
			if !jsonOut {
				a.printf("rewind: serving %s on %s\n", sc.DataDir, srv.URL())
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "YAML config file")
	bindEnv(cmd.Flags(), "config", "REWIND_CONFIG")
	config.AddFlags(cmd.Flags(), "data_dir")
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
	config.AddFlags(print.Flags(), "data_dir")
	a.jsonFlag(print, &jsonOut)
	cmd.AddCommand(print)
	return cmd
}
