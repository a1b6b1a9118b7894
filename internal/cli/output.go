package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
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

// printJSON writes v as one line of JSON, every character that is not
// plain text written as a \u escape (jsonEscape).
func (a *app) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(jsonEscape(b), '\n')
	_, err = a.stdout.Write(b)
	return err
}

// jsonEscape writes each character of encoded JSON that audit.PlainRune
// refuses as a \u escape (a pair of them past U+FFFF), which decodes to
// the same string: json.Marshal escapes only controls below U+0020 (and
// U+2028, U+2029), and leaves DEL, the C1 controls, a right-to-left
// override or a zero-width space to reach the terminal of whoever reads
// the output. Such characters stand only inside strings: JSON's own
// syntax is ASCII, and json.Marshal writes valid UTF-8.
func jsonEscape(b []byte) []byte {
	i := slices.IndexFunc(b, func(c byte) bool { return c >= utf8.RuneSelf-1 }) // DEL and every multi-byte character
	if i < 0 {
		return b
	}
	out := append(make([]byte, 0, len(b)+16), b[:i]...)
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case audit.PlainRune(r) && (r != utf8.RuneError || n > 1):
			out = append(out, b[i:i+n]...)
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, hi, lo)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
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
	// Lines as the message has them, but no character that is not plain
	// text: an error quoting an actor with a combining grapheme joiner or
	// a path with an escape sequence shows it as a Go escape.
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		lines[i] = audit.Escape(l)
	}
	fmt.Fprintf(a.stderr, "rewind: %s\n", strings.Join(lines, "\n"))
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
