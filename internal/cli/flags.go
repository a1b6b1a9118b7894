package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
)

// The shared machinery of flags and arguments: every mistake in how a
// command is called is a usage error (exit status 2) with a message that
// names the flag, the value and what it must be, never a parser's message.

// flagError is the root's flag error function: it turns pflag's errors
// into usage errors.
func flagError(cmd *cobra.Command, err error) error {
	var (
		inv *pflag.InvalidValueError
		req *pflag.ValueRequiredError
	)
	switch {
	case errors.As(err, &inv):
		err = config.ValueError(inv.GetFlag(), "--"+inv.GetFlag().Name, inv.GetValue(), inv.Unwrap())
	case errors.As(err, &req):
		err = fmt.Errorf("--%s needs a value: %s", req.GetFlag().Name, req.GetFlag().Usage)
	}
	return usageError(cmd, err)
}

// checkArgs wraps every command's argument check so that a wrong number of
// arguments, or an unknown subcommand, is a usage error; a command with
// subcommands and no action of its own prints its help. Before the
// arguments, it checks the command line's flags with checkFlags: this is
// the first step of every command after cobra has parsed its flags, before
// the environment is applied and before anything is opened or created.
func checkArgs(cmd *cobra.Command, checkFlags func(*cobra.Command) error) {
	for _, c := range cmd.Commands() {
		checkArgs(c, checkFlags)
	}
	check := cmd.Args
	if cmd.HasSubCommands() {
		check = unknownCommand
		if cmd.Flags().Lookup("json") == nil {
			// So that "rewind token bogus --json" is the unknown command
			// it is, reported as JSON, not an unknown flag.
			var jsonOut bool
			config.BoolVar(cmd.Flags(), &jsonOut, "json", false, "print errors as JSON")
			cmd.Flags().MarkHidden("json")
		}
		if cmd.Run == nil && cmd.RunE == nil {
			cmd.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
		}
	}
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if err := checkFlags(cmd); err != nil {
			return err
		}
		if check == nil {
			return nil // cobra's own default for a command without subcommands: any arguments
		}
		if err := check(cmd, args); err != nil {
			return usageError(cmd, err)
		}
		return nil
	}
}

// unknownCommand refuses any argument of a command that only has
// subcommands, suggesting the closest ones.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return errors.New(msg)
}

// helpTopic refuses a help topic that names no command.
func helpTopic(cmd *cobra.Command, args []string) error {
	found, rest, err := cmd.Root().Find(args)
	if err != nil || found == nil || len(rest) > 0 {
		return fmt.Errorf("no help topic %q: %s help lists the commands", strings.Join(args, " "), cmd.Root().Name())
	}
	return nil
}

// noArgs, maxArgs and exactArgs are cobra's argument checks with messages
// that name the arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

func maxArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return fmt.Errorf("expected at most %d argument (%s), got %d", n, names, len(args))
		}
		return nil
	}
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("expected %s, got %d argument(s)", names, len(args))
		}
		return nil
	}
}

func rangeArgs(lo, hi int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return fmt.Errorf("expected %s, got %d argument(s)", names, len(args))
		}
		return nil
	}
}

// minAnnotation holds the smallest value of a numeric flag.
const minAnnotation = "rewind_min"

// atLeast refuses values of the numeric flags names of fs below min. Zero
// is then refused where it would otherwise quietly mean "the default" of
// the code underneath, rather than zero.
func atLeast(fs *pflag.FlagSet, min int64, names ...string) {
	for _, name := range names {
		fs.SetAnnotation(name, minAnnotation, []string{strconv.FormatInt(min, 10)})
	}
}

// checkMinimums applies atLeast to the flags of cmd, whether set on the
// command line, from the environment or left at their default.
func checkMinimums(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		m := f.Annotations[minAnnotation]
		if err != nil || len(m) == 0 {
			return
		}
		min, _ := strconv.ParseInt(m[0], 10, 64)
		if n, perr := strconv.ParseInt(f.Value.String(), 10, 64); perr == nil && n < min {
			err = invalidFlag(f.Name, f.Value.String(), fmt.Sprintf("must be at least %d", min))
		}
	})
	return err
}

// envAnnotation names the environment variable a flag falls back to.
const envAnnotation = "rewind_env"

// bindEnv makes flag name of fs fall back to the environment variable env
// when the command line does not set it (flags > environment > defaults),
// and says so in its help. The flag's default stays the real default, so
// that --help never shows a value taken from the environment (a token).
func bindEnv(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	f.Usage += " ($" + env + ")"
	fs.SetAnnotation(name, envAnnotation, []string{env})
}

// applyEnv sets the flags of cmd that the command line left unset from
// their environment variables.
func applyEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		env := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(env) == 0 {
			return
		}
		v, ok := lookup(env[0])
		if !ok || v == "" {
			return // an empty variable counts as unset, as in a shell's ${VAR:-default}
		}
		if strings.TrimSpace(v) == "" && len(f.Annotations[allowEmptyAnnotation]) == 0 {
			err = &rewind.ValidationError{Field: env[0], Value: v,
				Reason: "is blank: unset it (or set it to '') for the default of --" + f.Name + ", or give a value"}
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = config.ValueError(f, env[0], v, serr)
		}
	})
	return err
}

// Empty values and repeated flags. A value written out must mean what it
// says. An empty value ('' or blanks) is most often a shell variable that
// was never set (--end "$END"), and taking it for "no value" would, say,
// create a group without an end; so every flag refuses it, unless
// allowEmpty marks it as taking '' (its help then says what '' means). A
// flag given twice is refused rather than letting the last one win, unless
// it takes a list (its values add up, such as --type A --type B).

const (
	allowEmptyAnnotation  = "rewind_allow_empty"
	emptyReasonAnnotation = "rewind_empty_reason"
)

// allowEmpty marks flag name of fs as taking an empty value, which means
// what meaning says ("an empty body"); the help says so.
func allowEmpty(fs *pflag.FlagSet, name, meaning string) {
	fs.Lookup(name).Usage += "; '' is " + meaning
	fs.SetAnnotation(name, allowEmptyAnnotation, []string{meaning})
}

// emptyReason gives the refusal of an empty value for flag name of fs a
// better reason than the generic "give a value or leave it out", such as
// what leaving it out does.
func emptyReason(fs *pflag.FlagSet, name, reason string) {
	fs.SetAnnotation(name, emptyReasonAnnotation, []string{reason})
}

// repeatable reports whether f takes a list, so that giving it again adds
// to the list.
func repeatable(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array")
}

// checkFlags refuses, on the command line args as cobra parsed it for cmd,
// a flag set to an empty value and a single-valued flag given twice. It
// sees the command line only, not the values the environment fills in.
func checkFlags(cmd *cobra.Command, args []string) error {
	if cmd.DisableFlagParsing || args == nil {
		return nil
	}
	_, flagArgs, err := cmd.Root().Find(args)
	if err != nil {
		return nil // cobra has already reported it
	}
	// A flag set of the same flags, parsed again with a callback instead
	// of Value.Set: it sees every occurrence of every flag, as given,
	// and changes no value.
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.AddFlagSet(cmd.Flags())
	seen := map[string]bool{}
	var bad error
	fs.ParseAll(flagArgs, func(f *pflag.Flag, value string) error {
		if seen[f.Name] && !repeatable(f) {
			// Without the values: a --dsn or --token may hold a secret.
			bad = fmt.Errorf("--%s is given twice: give it once", f.Name)
		} else {
			bad = emptyValue(f, value)
			seen[f.Name] = true
		}
		return bad
	})
	if bad != nil {
		return usageError(cmd, bad)
	}
	return nil
}

// emptyValue refuses value for the flag f when it is empty or blank and f
// does not take that, and an empty item of a comma-separated list.
func emptyValue(f *pflag.Flag, value string) error {
	name, source := f.Name, "--"+f.Name
	if len(f.Annotations[allowEmptyAnnotation]) > 0 {
		return nil
	}
	if strings.TrimSpace(value) != "" {
		if f.Value.Type() == "stringSlice" && slices.ContainsFunc(strings.Split(value, ","),
			func(s string) bool { return strings.TrimSpace(s) == "" }) {
			return &rewind.ValidationError{Field: source, Value: value,
				Reason: "has an empty item: give the items separated by commas, such as a,b"}
		}
		return nil
	}
	reason := fmt.Sprintf("must not be empty; give a value or leave --%s out (--%s: %s)", name, name, f.Usage)
	if r := f.Annotations[emptyReasonAnnotation]; len(r) > 0 {
		reason = r[0]
	}
	return &rewind.ValidationError{Field: source, Value: value, Reason: reason}
}
