package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
)

// jsonFlag adds --json to cmd.
func (a *app) jsonFlag(cmd *cobra.Command, p *bool) {
	cmd.Flags().BoolVar(p, "json", false, "print the result as JSON")
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
	quiet  bool // the command already printed its JSON result
}

func (e *cliError) Error() string { return e.msg }

func usageError(cmd *cobra.Command, err error) error {
	return &cliError{code: rewind.CodeInvalidArgument, status: 2,
		msg: fmt.Sprintf("%v\nsee '%s --help'", err, cmd.CommandPath())}
}

func invalidFlag(flag, value, reason string) error {
	return &rewind.ValidationError{Field: "--" + flag, Value: value, Reason: reason}
}

// Exit statuses: 0 success, 1 an internal or I/O failure, 2 invalid input,
// 3 not found, 4 a conflict (wrong expected version, idempotency), 5
// corruption found, 6 the data directory is in use, 130 interrupted.
func exitStatus(code rewind.Code) int {
	switch code {
	case rewind.CodeOK:
		return 0
	case rewind.CodeInvalidArgument, rewind.CodeLimitExceeded, rewind.CodeTruncated:
		return 2
	case rewind.CodeNotFound:
		return 3
	case rewind.CodeWrongExpectedVersion, rewind.CodeIdempotencyConflict:
		return 4
	case rewind.CodeCorruption:
		return 5
	case rewind.CodeLocked:
		return 6
	case rewind.CodeCanceled:
		return 130
	}
	return 1
}

// report prints err, as JSON on stdout when the command had --json, and
// returns the exit status.
func (a *app) report(err error) int {
	if err == nil {
		return 0
	}
	code, status := rewind.CodeOf(err), 0
	var ce *cliError
	if errors.As(err, &ce) {
		code, status = ce.code, ce.status
	}
	if status == 0 {
		status = exitStatus(code)
	}
	if a.jsonOut && (ce == nil || !ce.quiet) {
		a.printJSON(map[string]any{"error": map[string]any{"code": code, "message": err.Error()}})
	}
	fmt.Fprintf(a.stderr, "rewind: %s\n", trimPrefix(err.Error()))
	return status
}

func trimPrefix(s string) string {
	const p = "rewind: "
	for len(s) >= len(p) && s[:len(p)] == p {
		s = s[len(p):]
	}
	return s
}
