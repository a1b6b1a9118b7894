// Package cli is rewind's command line: one cobra command per file, all
// sharing the conventions of this file: flags over REWIND_* environment
// variables over defaults, --json on every command that reports, errors
// with a stable code and a non-zero exit status.
package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/buildinfo"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/server"
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
	storeURL       string // --store: a PostgreSQL store instead of --data-dir
	storeSchema    string // --store-schema
	jsonOut        bool   // set by a command's --json flag, for error output
	// tailClient turns the --server client's retries off and its backoff
	// down: tail retries by itself, for --retry-for.
	tailClient bool

	// args is the command line as given, for commands that record it
	// (backfill parses it again with its own flag set, to mask secrets).
	args []string
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr}
}

func (a *app) run(ctx context.Context, args []string) int {
	return a.execute(ctx, a.rootCmd(), args)
}

// execute runs root, the command tree of a.rootCmd, with args.
func (a *app) execute(ctx context.Context, root *cobra.Command, args []string) int {
	a.args = args
	// With --json every error is JSON, also one found before the command
	// runs (an unknown flag, a bad value, a wrong number of arguments).
	a.jsonOut = wantsJSON(args)
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "required flag(s) ") {
		// cobra's check of required flags, before the command runs: a
		// usage error like any other missing piece of the command line.
		err = usageError(cmd, err)
	}
	return a.report(err)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rewind",
		Short: "Event store, event bus and replay/backfill engine",
		Long: `rewind keeps an append-only, checksummed log of immutable events and makes
history safe to use: append with optimistic concurrency, read and follow any
stream or the whole log, and verify every byte.

Data commands work on the embedded store in --data-dir, or on a server with
--server and --token. A flag given on the command line wins over its REWIND_*
environment variable, which wins over the default; an explicit --data-dir
also wins over $REWIND_SERVER. A variable set to '' counts as unset.

A flag given '' (or blanks) is refused, not taken for its default (leave it
out instead), unless its help says what '' means; so is a flag given twice,
unless its help says it is repeatable or comma separated.

Exit statuses: 0 ok, 1 internal or I/O failure, 2 invalid input or usage,
3 not found, 4 conflict, 5 corruption, 6 data directory in use,
7 unauthenticated, 8 permission denied, 9 server unavailable or unreachable,
10 store failed (disk), 11 append outcome unknown, 12 log epoch changed,
13 backfill run paused by its throttle, 14 PostgreSQL schema at another
version than this binary's (migrate it, or run a newer rewind), 130 interrupted.`,
		Version:       buildinfo.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.prepare(cmd)
		},
	}
	root.SetFlagErrorFunc(flagError)
	// --json on the root alone, so that "rewind bogus --json" is the
	// unknown command it is, reported as JSON, not an unknown flag.
	var rootJSON bool
	config.BoolVar(root.Flags(), &rootJSON, "json", false, "print errors as JSON")
	root.Flags().MarkHidden("json")
	pf := root.PersistentFlags()
	pf.StringVar(&a.dataDir, "data-dir", server.DefaultDataDir, "data directory of the embedded store")
	pf.StringVar(&a.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn or error")
	pf.StringVar(&a.server, "server", "",
		"URL of a rewind server to use instead of --data-dir, such as http://127.0.0.1:7070")
	pf.StringVar(&a.token, "token", "", "token for --server")
	pf.StringVar(&a.storeURL, "store", "",
		"PostgreSQL store to use instead of --data-dir, such as postgres://rewind@db:5432/events (see 'rewind migrate')")
	pf.StringVar(&a.storeSchema, "store-schema", pgstore.DefaultSchema, "PostgreSQL schema of --store")
	emptyReason(pf, "data-dir", "must name a directory (leave it out for ./rewind-data)")
	bindEnv(pf, "data-dir", "REWIND_DATA_DIR")
	bindEnv(pf, "log-level", "REWIND_LOG_LEVEL")
	bindEnv(pf, "server", "REWIND_SERVER")
	bindEnv(pf, "token", "REWIND_TOKEN")
	bindEnv(pf, "store", "REWIND_STORE")
	bindEnv(pf, "store-schema", "REWIND_STORE_SCHEMA")
	for _, c := range a.commands() {
		root.AddCommand(c)
	}
	// cobra adds help and completion itself when it runs; add them now so
	// that their usage errors are checked like every other command's.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Args = helpTopic
		}
	}
	checkArgs(root, func(cmd *cobra.Command) error { return checkFlags(cmd, a.args) })
	return root
}

// prepare runs before every command: environment variables for the flags
// the command line left unset, the choice between --server and
// --data-dir, and the logger.
func (a *app) prepare(cmd *cobra.Command) error {
	if err := applyEnv(cmd, os.LookupEnv); err != nil {
		return err
	}
	if err := checkMinimums(cmd); err != nil {
		return err
	}
	fs := cmd.Flags()
	if a.dataDir == "" {
		return &rewind.ValidationError{Field: flagSource(cmd, "data-dir"), Value: a.dataDir,
			Reason: "must name a directory (leave it out for ./rewind-data)"}
	}
	if dir, srv := fs.Lookup("data-dir"), fs.Lookup("server"); dir.Changed && srv.Changed {
		return usageError(cmd, errors.New("give --server or --data-dir, not both: "+
			"a command works on a server or on a data directory"))
	} else if dir.Changed {
		a.server = "" // an explicit --data-dir wins over $REWIND_SERVER
	}
	if st, srv := fs.Lookup("store"), fs.Lookup("server"); st.Changed && srv.Changed {
		return usageError(cmd, errors.New("give --server or --store, not both: "+
			"a command works on a server or on a PostgreSQL store"))
	} else if st.Changed {
		a.server = "" // an explicit --store wins over $REWIND_SERVER
	} else if srv.Changed || fs.Lookup("data-dir").Changed {
		a.storeURL = "" // and an explicit --server or --data-dir over $REWIND_STORE
	}
	return a.setLogger(cmd)
}

// commands lists the subcommands; each file adds its own here.
func (a *app) commands() []*cobra.Command {
	return []*cobra.Command{
		a.appendCmd(),
		a.readCmd(),
		a.tailCmd(),
		a.replayCmd(),
		a.streamsCmd(),
		a.statCmd(),
		a.deleteCmd(),
		a.verifyCmd(),
		a.benchCmd(),
		a.serveCmd(),
		a.migrateCmd(),
		a.copyCmd(),
		a.tokenCmd(),
		a.configCmd(),
		a.versionCmd(),
		a.backfillCmd(),
		a.auditCmd(),
		a.projectionsCmd(),
		a.groupsCmd(),
		a.consumeCmd(),
	}
}

func (a *app) setLogger(cmd *cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return &rewind.ValidationError{Field: flagSource(cmd, "log-level"), Value: a.logLevel,
			Reason: "must be debug, info, warn or error"}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level})))
	return nil
}

func (a *app) versionCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and VCS revision of this binary",
		Args:  noArgs,
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

// wantsJSON reports whether args, as given, ask for --json: the last
// --json, --json=true or --json=false before a "--" decides.
func wantsJSON(args []string) bool {
	want := false
	for _, arg := range args {
		switch arg {
		case "--":
			return want
		case "--json", "--json=true":
			want = true
		case "--json=false":
			want = false
		}
	}
	return want
}

// flagSource names where the value of the flag name came from: the flag,
// or the environment variable applyEnv set it from.
func flagSource(cmd *cobra.Command, name string) string {
	f := cmd.Flags().Lookup(name)
	if f != nil && !f.Changed {
		if env := f.Annotations[envAnnotation]; len(env) > 0 && os.Getenv(env[0]) != "" {
			return env[0]
		}
	}
	return "--" + name
}
