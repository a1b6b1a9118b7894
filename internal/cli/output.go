package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
)

// jsonFlag adds --json to cmd.
func (a *app) jsonFlag(cmd *cobra.Command, p *bool) {
	config.BoolVar(cmd.Flags(), p, "json", false, "print the result as JSON")
	cmd.PreRun = chainPreRun(cmd.PreRun, func(*cobra.Command, []string) { a.jsonOut = *p })
}

func chainPreRun(prev, next func(*cobra.Command, []string)) func(*cobra.Command, []string) {
	return func(cmd *cobra.Command, args []string) {
		if prev != nil {
			prev(cmd, args)
		}
		next(cmd, args)
	}
}

func (a *app) printf(format string, args ...any) { fmt.Fprintf(a.stdout, format, args...) }

// printJSON writes v as one line of JSON.
func (a *app) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = a.stdout.Write(b)
	return err
}

// cliError is an error with its own exit status and code, for failures the
// rewind package has no sentinel for (usage errors, failed verification).
type cliError struct {
	code   rewind.Code
	status int
	msg    string
	hint   string // how to call the command, after msg on stderr and apart from it in JSON
	quiet  bool   // the command already printed its JSON result
}

func (e *cliError) Error() string { return e.msg }

// usageError is a mistake in how a command was called: an unknown command
// or flag, a wrong number of arguments, a bad flag value. Exit status 2.
func usageError(cmd *cobra.Command, err error) error {
	use := cmd.UseLine()
	if cmd.HasAvailableSubCommands() {
		use = cmd.CommandPath() + " COMMAND [flags]"
	}
	return &cliError{code: rewind.CodeInvalidArgument, status: 2, msg: trimPrefix(err.Error()),
		hint: fmt.Sprintf("usage: %s\nsee '%s --help'", use, cmd.CommandPath())}
}

func invalidFlag(flag, value, reason string) error {
	return &rewind.ValidationError{Field: "--" + flag, Value: value, Reason: reason}
}

// notFound is an error for something named on the command line that does
// not exist. Exit status 3.
func notFound(format string, args ...any) error {
	return &cliError{code: rewind.CodeNotFound, status: 3, msg: fmt.Sprintf(format, args...)}
}

// exitStatuses gives the exit status of every error code. The README's
// table documents it (TestREADMEExitStatuses keeps the two in step).
var exitStatuses = []struct {
	status int
	codes  []rewind.Code
}{
	{0, []rewind.Code{rewind.CodeOK}},
	{1, []rewind.Code{rewind.CodeInternal}},
	{2, []rewind.Code{rewind.CodeInvalidArgument, rewind.CodeLimitExceeded, rewind.CodeTruncated}},
	{3, []rewind.Code{rewind.CodeNotFound}},
	{4, []rewind.Code{rewind.CodeWrongExpectedVersion, rewind.CodeIdempotencyConflict, rewind.CodeAlreadyExists}},
	{5, []rewind.Code{rewind.CodeCorruption, codeCheckFailed}},
	{6, []rewind.Code{rewind.CodeLocked}},
	{7, []rewind.Code{rewind.CodeUnauthenticated}},
	{8, []rewind.Code{rewind.CodePermissionDenied}},
	{9, []rewind.Code{rewind.CodeClosed}},
	{10, []rewind.Code{rewind.CodeFailed}},
	{11, []rewind.Code{rewind.CodeOutcomeUnknown}},
	{12, []rewind.Code{rewind.CodeEpochChanged}},
	{13, []rewind.Code{codeThrottled}},
	{14, []rewind.Code{rewind.CodeFailedPrecondition}},
	{130, []rewind.Code{rewind.CodeCanceled}},
}

// exitStatus returns the exit status of code; 1 for a code it does not know.
func exitStatus(code rewind.Code) int {
	for _, s := range exitStatuses {
		for _, c := range s.codes {
			if c == code {
				return s.status
			}
		}
	}
	return 1
}

// classify returns err's code, exit status and message for the user.
func (a *app) classify(err error) (rewind.Code, int, string) {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code, ce.status, trimPrefix(ce.msg)
	}
	if code, ok := throttleError(err); ok {
		return code, exitStatus(code), trimPrefix(err.Error())
	}
	flag := a.dsnFlag()
	if ff := (*fromFlag)(nil); errors.As(err, &ff) {
		flag = ff.flag
	}
	if code, msg, ok := pgError(err, flag); ok {
		return code, exitStatus(code), msg
	}
	code, msg := rewind.CodeOf(err), trimPrefix(err.Error())
	var op *net.OpError
	switch {
	case code == rewind.CodeInternal && errors.Is(err, fs.ErrNotExist):
		code = rewind.CodeNotFound
	case a.server != "" && errors.As(err, &op) && op.Op == "dial":
		// The server could not be reached at all: say which one, and how
		// to point at another.
		code = rewind.CodeClosed
		msg = fmt.Sprintf("cannot reach the server at %s: %v; check that it runs and that --server (or REWIND_SERVER) "+
			"names it", a.server, op.Err)
	}
	return code, exitStatus(code), msg
}

// report prints err, as JSON on stdout when the command had --json, and
// returns the exit status.
func (a *app) report(err error) int {
	if err == nil {
		return 0
	}
	code, status, msg := a.classify(err)
	msg = a.maskPasswords(msg)
	var ce *cliError
	errors.As(err, &ce)
	if a.jsonOut && (ce == nil || !ce.quiet) {
		e := map[string]any{"code": code, "message": msg}
		if ce != nil && ce.hint != "" {
			e["hint"] = ce.hint
		}
		line := map[string]any{"error": e}
		if status != 130 { // not interrupted
			a.printJSON(line)
		} else {
			// Interrupted: the output may be a pipe nobody reads any more
			// (that may be why the user interrupted); the line is written
			// if it goes within a second, and the command ends either way.
			wrote := make(chan struct{})
			go func() { a.printJSON(line); close(wrote) }()
			select {
			case <-wrote:
			case <-time.After(time.Second):
			}
		}
	}
	if ce != nil && ce.hint != "" {
		msg += "\n" + ce.hint
	}
	fmt.Fprintf(a.stderr, "rewind: %s\n", msg)
	return status
}

// trimPrefix removes the "rewind: " that rewind's errors start with (the
// CLI prints its own), also where one error wraps another that has it
// ("auth: rewind: …" becomes "auth: …"), so that no message repeats it.
func trimPrefix(s string) string {
	for {
		t, ok := strings.CutPrefix(s, "rewind: ")
		if !ok {
			break
		}
		s = t
	}
	for strings.Contains(s, ": rewind: ") {
		s = strings.ReplaceAll(s, ": rewind: ", ": ")
	}
	return s
}
