package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
// subcommands and no action of its own prints its help.
func checkArgs(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		checkArgs(c)
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
	if check == nil {
		return
	}
	cmd.Args = func(cmd *cobra.Command, args []string) error {
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
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = config.ValueError(f, env[0], v, serr)
		}
	})
	return err
}
