package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/replay/mask"
	"github.com/rewindhq/rewind/replay/template"
	"github.com/rewindhq/rewind/store"
)

// templateFlags are the flags replay plan and replay run share.
type templateFlags struct {
	params  []string
	keyFile string
	jsonOut bool
}

func (f *templateFlags) add(a *app, cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.params, "param", "p", nil, "template parameter name=value (repeatable); typed by the template")
	cmd.Flags().StringVar(&f.keyFile, "mask-key-file", "",
		"file holding the key of the template's hash masking (at least 16 bytes; a final newline is not part of it); else $REWIND_MASK_KEY")
	a.jsonFlag(cmd, &f.jsonOut)
}

// templateLoaded is a template with its parameters bound and its masker.
type templateLoaded struct {
	t      *template.Template
	spec   *template.Spec
	masker *mask.Masker
}

// load reads the template, binds the parameters, checks the target against
// the source store, and builds the masker. Every mistake is an error of
// invalid input (exit 2), found before anything is read or written.
func (a *app) loadTemplate(path string, f *templateFlags) (*templateLoaded, error) {
	for i, kv := range f.params {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, &rewind.ValidationError{Field: fmt.Sprintf("--param (the %s one)", ordinal(i+1)),
				Reason: "must be name=value, such as -p since=2026-11-01T00:00:00Z (the value given is not shown: it may be a secret)"}
		}
	}
	if err := template.CheckPath(path); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, notFound("replay template %s does not exist; give the path of a template file (see docs/replay.md)", path)
	}
	t, err := template.Load(path)
	if err != nil {
		return nil, err
	}
	sp, err := t.Resolve(f.params)
	if err != nil {
		return nil, err
	}
	// The source is a directory only without --server and --store: a
	// PostgreSQL store's --data-dir (its default) is not the source.
	if sp.Target.Kind == "store" && a.server == "" && a.storeURL == "" {
		if same, err := overlaps(a.dataDir, sp.Target.DataDir); err != nil {
			return nil, err
		} else if same {
			shown := sp.Target.DataDir
			if sp.Secret("target") {
				shown = template.Masked
			}
			return nil, &template.Error{Path: t.Path, Line: t.Line("target.data_dir"), Key: "target.data_dir", Value: shown,
				Reason: fmt.Sprintf("is the source store (--data-dir %s), or inside it, or holds it: a replay never writes into the store it reads", a.dataDir)}
		}
	}
	if sp.Target.Kind == "store" {
		if reason := unusableDir(sp.Target.DataDir); reason != "" {
			shown := sp.Target.DataDir
			if sp.Secret("target") {
				shown = template.Masked
			}
			return nil, &template.Error{Path: t.Path, Line: t.Line("target.data_dir"), Key: "target.data_dir", Value: shown,
				Reason: reason}
		}
	}
	l := &templateLoaded{t: t, spec: sp}
	if sp.Masking {
		key, err := maskKey(f.keyFile, sp.Mask.HasHash())
		if err != nil {
			return nil, err
		}
		if l.masker, err = mask.New(sp.Mask, key); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// unusableDir says why dir cannot be a store's data directory, found
// before a run is recorded: a symbolic link that leads nowhere (dangling,
// or a loop) or anything but a directory where it is. A path that does
// not exist is fine: the store creates it.
func unusableDir(dir string) string {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return "is not a directory (" + fi.Mode().Type().String() + "): give the data directory of an embedded store, or a path to create"
	case err == nil:
		return ""
	case errors.Is(err, syscall.ELOOP):
		return "is a symbolic link loop (or passes through one): give a directory, or a path to create"
	case errors.Is(err, fs.ErrNotExist):
		// Missing, which the store creates, unless a symbolic link on the
		// way points nowhere: creating it would fail with "file exists".
		for p := dir; ; p = filepath.Dir(p) {
			if li, lerr := os.Lstat(p); lerr == nil {
				if li.Mode()&fs.ModeSymlink != 0 {
					return "is, or passes through, a dangling symbolic link (" + p + " points to nothing): give a directory, or a path to create"
				}
				return ""
			}
			if filepath.Dir(p) == p {
				return ""
			}
		}
	case errors.Is(err, syscall.ENOTDIR):
		return "passes through a file that is not a directory: give a directory, or a path to create"
	}
	return "cannot be used: " + errText(err)
}

// maskKey reads the hashing key from --mask-key-file or $REWIND_MASK_KEY.
func maskKey(file string, needed bool) ([]byte, error) {
	var key []byte
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, invalidFlag("mask-key-file", file, "cannot be read: "+errText(err))
		}
		// One final newline, as an editor ends a line (\n, or \r\n), is
		// not part of the key; any other byte, a lone final \r too, is.
		if k, ok := strings.CutSuffix(string(b), "\n"); ok {
			b = []byte(strings.TrimSuffix(k, "\r"))
		}
		key = b
	default:
		key = []byte(os.Getenv("REWIND_MASK_KEY"))
	}
	if needed && len(key) < mask.MinKeyLen {
		return nil, &rewind.ValidationError{Field: "mask key", Reason: fmt.Sprintf("the template hashes fields for a target "+
			"that is not production: give a key of at least %d bytes with --mask-key-file FILE or $REWIND_MASK_KEY "+
			"(the same key gives the same hashes, run after run; got %d bytes)", mask.MinKeyLen, len(key))}
	}
	return key, nil
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// overlaps reports whether two directories are the same, or one lies in
// the other, after following symbolic links (of the part of b that exists).
func overlaps(a, b string) (bool, error) {
	ra, err := realPath(a)
	if err != nil {
		return false, err
	}
	rb, err := realPath(b)
	if err != nil {
		return false, err
	}
	inside := func(x, y string) bool { return x == y || strings.HasPrefix(x, strings.TrimSuffix(y, "/")+"/") }
	if inside(ra, rb) || inside(rb, ra) {
		return true, nil
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb), nil
}

// realPath is the absolute path with symbolic links followed, for the
// longest leading part of p that exists.
func realPath(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...), nil
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

func (a *app) replayPlanCmd() *cobra.Command {
	var tf templateFlags
	cmd := &cobra.Command{
		Use:   "plan TEMPLATE.yaml",
		Short: "Plan a replay template: the resolved window, counts, digest, masking and checks; nothing is written",
		Long: `Read the template, bind its parameters (-p name=value), resolve its window against the
log and read it once, without pacing: print the window as positions, the events in it
(by type), their digest, the target, how many events and values would be masked, and
each check's outcome. Nothing is written and nothing is recorded.

Exit 0 when every check holds, 5 when one does not, 2 for a template, parameter, window,
filter or target that is wrong — an empty prefix, a checks.types key that is no event type,
a pacing speed or rate outside 0.000001..1000000000000, a data_dir that is a dangling
symbolic link or a loop — (the error names the key and its line; it is found before the
store is opened) or an event the masking cannot handle. See docs/replay.md.`,
		Example: `  rewind replay plan rebuild-orders.yaml -p since=2026-11-01T00:00:00Z
  rewind replay plan verify-day.yaml --json`,
		Args: exactArgs(1, "TEMPLATE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := a.loadTemplate(args[0], &tf)
			if err != nil {
				return err
			}
			s, err := a.openExisting(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := l.t.Plan(cmd.Context(), s, l.spec, l.masker)
			if err != nil {
				return a.hideSecrets(l.spec, err)
			}
			return a.printTemplateReport(rep, tf.jsonOut, "")
		},
	}
	tf.add(a, cmd)
	cmd.PreRun = func(*cobra.Command, []string) { a.jsonOut = tf.jsonOut }
	return cmd
}

func (a *app) replayRunCmd() *cobra.Command {
	var tf templateFlags
	var execute bool
	var ledgerDSN, actor string
	var connectTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "run TEMPLATE.yaml",
		Short: "Run a replay template with --execute (recorded in the audit ledger); without it, plan",
		Long: `Without --execute, plan the template (as 'rewind replay plan'): nothing is written.

With --execute, run it and record the run in the audit ledger of --ledger-dsn
($REWIND_LEDGER_DSN), which is required: replay.run.started before anything is read
(a ledger that cannot be written stops the run there), then replay.run.finished or
replay.run.failed, with the actor (--actor, $REWIND_ACTOR, else the OS user), the build,
the template's name, version and SHA-256, the parameters (secret ones as ***), the
target, the resolved window, the events, their digest, and whether the target received
masked data. The password of a connection string is masked in every field and message
recorded or printed (postgres://, postgres:/ as in a cleaned path, password=). A
template, parameter or filter that is wrong exits 2 with nothing recorded, and so does an
actor, a parameter value, a data_dir, a template path or any argument of the command line
(the source --data-dir too) that is not one line of plain text (a newline, a tab, a
terminal escape sequence, a format or invisible character: recorded, it could forge or
hide a line of 'rewind audit log'). The run reads the window once to plan and check it: a check that fails
(exit 5) or an event that cannot be masked (exit 2) ends the run with nothing written.
It then replays the same positions, paced, into the target; the report's written
counts the events new in the target, already_present those it held already (a
second run writes nothing new).

Masking: the template's mask rules apply to every target that writes unless the
template says production: true; a verify target writes nothing. Hash rules need a key of
at least 16 bytes (--mask-key-file or $REWIND_MASK_KEY). See docs/replay.md.`,
		Example: `  rewind replay run rebuild-orders.yaml -p since=2026-11-01T00:00:00Z --execute --ledger-dsn "$LEDGER"
  REWIND_MASK_KEY=… rewind replay run staging-copy.yaml --execute`,
		Args: exactArgs(1, "TEMPLATE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			l, err := a.loadTemplate(args[0], &tf)
			if err != nil {
				return err
			}
			if !execute {
				s, err := a.openExisting(ctx)
				if err != nil {
					return err
				}
				defer s.Close()
				rep, err := l.t.Plan(ctx, s, l.spec, l.masker)
				if err != nil {
					return a.hideSecrets(l.spec, err)
				}
				return a.printTemplateReport(rep, tf.jsonOut, "nothing was written: add --execute to run it")
			}
			if ledgerDSN == "" {
				return invalidFlag("ledger-dsn", "", "is required with --execute (or set REWIND_LEDGER_DSN): every replay run is "+
					"recorded in the audit ledger, which lives in PostgreSQL")
			}
			if connectTimeout <= 0 {
				return invalidFlag("connect-timeout", connectTimeout.String(), "must be positive, such as 10s")
			}
			// The checks backfill makes of its actor and command line,
			// before the store is opened and the ledger connected to:
			// nothing is recorded. The command line holds the source
			// --data-dir, which the template's checks do not see.
			if err := audit.CheckActor(actor); err != nil {
				return err
			}
			secret := map[string]bool{}
			for _, n := range l.t.SecretParams() {
				secret[n] = true
			}
			command := a.recordedCommand(cmd, func(p string) bool { return secret[p] })
			if err := checkRecorded(command); err != nil {
				return err
			}
			s, err := a.openExisting(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			pg := pgFlags{connectTimeout: connectTimeout, lockTimeout: 5 * time.Second}
			pool, err := pg.pool(ctx, "ledger-dsn", ledgerDSN)
			if err != nil {
				return err
			}
			defer pool.Close()
			const ledgerFlag = "--ledger-dsn (or $REWIND_LEDGER_DSN)"
			ledger, err := auditpg.New(pool, auditpg.Config{})
			if err != nil {
				return &fromFlag{flag: ledgerFlag, err: err}
			}
			if err := ledger.Setup(ctx); err != nil {
				return &fromFlag{flag: ledgerFlag, err: err}
			}
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			rep, err := l.t.Execute(ctx, s, l.spec, template.RunOptions{
				Ledger: ledger, RunID: id.String(), Masker: l.masker,
				Origin: audit.CurrentOrigin(actor, command, l.t.SecretParams()),
				OpenTarget: func() (rewind.Store, error) {
					return store.Open(l.spec.Target.DataDir, store.Config{})
				},
				CreateGroup: func(ctx context.Context, cfg consumer.GroupConfig) (consumer.GroupInfo, error) {
					return a.createGroupIn(ctx, s, cfg)
				},
			})
			if errors.Is(err, template.ErrCheckFailed) {
				// The report, then exit 5 with the run's own message.
				rep.RunID = id.String()
				if perr := a.printTemplateReport(rep, tf.jsonOut, ""); perr != nil && !errors.As(perr, new(*cliError)) {
					return perr
				}
				return checkFailed(err.Error()+" (run "+id.String()+", recorded as replay.run.failed)", tf.jsonOut)
			}
			if err != nil {
				return a.hideSecrets(l.spec, err)
			}
			return a.printTemplateReport(rep, tf.jsonOut, "")
		},
	}
	tf.add(a, cmd)
	config.BoolVar(cmd.Flags(), &execute, "execute", false, "run the template and record it; without it, only plan")
	cmd.Flags().StringVar(&ledgerDSN, "ledger-dsn", "", "PostgreSQL database of the audit ledger that records the run")
	cmd.Flags().StringVar(&actor, "actor", "", "who runs this, for the audit ledger (one line of plain text); defaults to the OS user")
	bindEnv(cmd.Flags(), "ledger-dsn", "REWIND_LEDGER_DSN")
	bindEnv(cmd.Flags(), "actor", "REWIND_ACTOR")
	cmd.Flags().DurationVar(&connectTimeout, "connect-timeout", 10*time.Second,
		"give up connecting to the ledger's database after this long, unless its connection string sets connect_timeout")
	cmd.PreRun = func(*cobra.Command, []string) { a.jsonOut = tf.jsonOut }
	return cmd
}

// hideSecrets returns err as the user sees it (its code, exit status and
// message) with every secret parameter's value hidden from the message:
// the errors of the engine, the server and the operating system repeat
// the names and paths they were given.
func (a *app) hideSecrets(sp *template.Spec, err error) error {
	if err == nil {
		return nil
	}
	code, status, msg := a.classify(err)
	var ce *cliError
	errors.As(err, &ce)
	if hidden := sp.Hide(msg); hidden != msg || ce != nil {
		out := &cliError{code: code, status: status, msg: hidden}
		if ce != nil {
			out.hint, out.quiet = sp.Hide(ce.hint), ce.quiet
		}
		return out
	}
	return err
}

// createGroupIn creates a group in the server's engine with --server, else
// in an engine over the embedded store s for the length of the call.
func (a *app) createGroupIn(ctx context.Context, s rewind.Store, cfg consumer.GroupConfig) (consumer.GroupInfo, error) {
	if a.server != "" {
		c, err := a.newClient()
		if err != nil {
			return consumer.GroupInfo{}, err
		}
		defer c.Close()
		return c.CreateGroup(ctx, cfg)
	}
	release, err := ownGroups(ctx, s)
	if err != nil {
		return consumer.GroupInfo{}, err
	}
	defer release()
	e, err := consumer.Open(ctx, s, consumer.Config{})
	if err != nil {
		return consumer.GroupInfo{}, err
	}
	in, err := e.CreateGroup(ctx, cfg)
	if cerr := e.Close(context.WithoutCancel(ctx)); err == nil && cerr != nil {
		return in, cerr
	}
	return in, err
}

// printTemplateReport prints a plan or a run; a plan whose checks fail
// is an error (exit 5) after the report.
func (a *app) printTemplateReport(rep *template.Report, jsonOut bool, note string) error {
	rep = rep.Shown() // every printed field, its DSN passwords masked
	var err error
	if !rep.ChecksPassed() {
		err = checkFailed("replay template "+rep.Template+": a check failed (see above); a run would write nothing", false)
	}
	if jsonOut {
		if perr := a.printJSON(rep); perr != nil {
			return perr
		}
		if err != nil {
			return checkFailed(err.Error(), true)
		}
		return nil
	}
	verb := "plan"
	if rep.RunID != "" {
		verb = "run " + rep.RunID
	}
	// Every text field through printable, whatever checked it before: no
	// value can forge a line of the report or drive the terminal.
	a.printf("replay template %s version %s (sha256 %s): %s\n", printable(rep.Template), printable(rep.Version), rep.Hash[:min(12, len(rep.Hash))], verb)
	for _, k := range slices.Sorted(maps.Keys(rep.Params)) {
		a.printf("  param %s = %s\n", printable(k), printable(rep.Params[k]))
	}
	w := rep.Window
	if w.From > w.To {
		a.printf("  window: empty (it resolves to %d..%d)\n", w.From, w.To)
	} else {
		a.printf("  window: %d..%d, %d events (first %d, last %d)\n", w.From, w.To, w.Events, w.FirstPosition, w.LastPosition)
	}
	for _, t := range slices.Sorted(maps.Keys(rep.Types)) {
		a.printf("    %-30s %d\n", printable(t), rep.Types[t])
	}
	a.printf("  digest: %s\n", printable(w.Digest))
	prod := ""
	if rep.Production {
		prod = " (production)"
	}
	a.printf("  target: %s%s\n", printable(rep.Target), prod)
	if rep.Masking {
		a.printf("  masking: %d events, %d values masked, hashed or dropped", rep.MaskedEvents, rep.MaskedValues)
		if rep.MaskKeyID != "" {
			a.printf(" (hash key id %s)", printable(rep.MaskKeyID))
		}
		a.printf("\n")
	} else {
		a.printf("  masking: none\n")
	}
	for _, c := range rep.Checks {
		status := "ok"
		if !c.OK {
			status = "FAILED"
		}
		a.printf("  check %s: want %s, got %s: %s\n", printable(c.Name), printable(c.Want), printable(c.Got), status)
	}
	switch {
	case rep.Group != nil:
		a.printf("  created group %s: events %d..%d, then complete (rewind consume %s)\n", printable(rep.Group.Config.Name),
			rep.Window.From, rep.Group.End, printable(rep.Group.Config.Name))
	case rep.Executed:
		a.printf("  written: %d events (%d already present in the target)\n", rep.Written, rep.AlreadyPresent)
	}
	if note != "" {
		a.printf("%s\n", note)
	}
	return err
}
