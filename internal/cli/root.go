// Package cli is rewind's command line: one cobra command per file, all
// sharing the conventions of this file: flags over REWIND_* environment
// variables over defaults, --json on every command that reports, errors
// with a stable code and a non-zero exit status.
package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind/internal/buildinfo"
)

// Main runs the command line with args and returns the exit status.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := newApp(os.Stdin, os.Stdout, os.Stderr)
	return a.run(ctx, args)
}

// app holds what every command shares.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	dataDir        string
	logLevel       string
	server, token  string // --server and --token: use a server instead of --data-dir
	jsonOut        bool   // set by a command's --json flag, for error output

	// args is the command line as given, for commands that record it
	// (backfill parses it again with its own flag set, to mask secrets).
	args []string
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr}
}

func (a *app) run(ctx context.Context, args []string) int {
	a.args = args
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(ctx)
	return a.report(err)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rewind",
		Short: "Event store, event bus and replay/backfill engine",
		Long: `rewind keeps an append-only, checksummed log of immutable events and makes
history safe to use: append with optimistic concurrency, read and follow any
stream or the whole log, and verify every byte.

Data lives in --data-dir (or $REWIND_DATA_DIR, or ./rewind-data).`,
		Version:       buildinfo.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.setLogger()
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(cmd, err)
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.dataDir, "data-dir", envOr("REWIND_DATA_DIR", "./rewind-data"),
		"data directory of the embedded store ($REWIND_DATA_DIR)")
	pf.StringVar(&a.logLevel, "log-level", envOr("REWIND_LOG_LEVEL", "warn"),
		"log level on stderr: debug, info, warn or error ($REWIND_LOG_LEVEL)")
	pf.StringVar(&a.server, "server", os.Getenv("REWIND_SERVER"),
		"URL of a rewind server to use instead of --data-dir, such as http://127.0.0.1:7070 ($REWIND_SERVER)")
	pf.StringVar(&a.token, "token", os.Getenv("REWIND_TOKEN"), "token for --server ($REWIND_TOKEN)")
	for _, c := range a.commands() {
		root.AddCommand(c)
	}
	return root
}

// commands lists the subcommands; each file adds its own here.
func (a *app) commands() []*cobra.Command {
	return []*cobra.Command{
		a.appendCmd(),
		a.readCmd(),
		a.tailCmd(),
		a.streamsCmd(),
		a.statCmd(),
		a.deleteCmd(),
		a.verifyCmd(),
		a.benchCmd(),
		a.serveCmd(),
		a.tokenCmd(),
		a.configCmd(),
		a.versionCmd(),
		a.backfillCmd(),
		a.auditCmd(),
	}
}

func (a *app) setLogger() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return invalidFlag("log-level", a.logLevel, "must be debug, info, warn or error")
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level})))
	return nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func (a *app) versionCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and VCS revision of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := buildinfo.Get()
			if jsonOut {
				return a.printJSON(info)
			}
			a.printf("rewind %s, built with %s\n", info, info.GoVersion)
			return nil
		},
	}
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}
