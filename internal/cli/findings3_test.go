package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsageErrorsExit2 runs the usage mistakes the outside tester found
// exiting 0 or 1, or reporting the wrong mistake (issue 10, second round,
// item 3): each exits 2 with a message that says what is wrong, and with
// --json the message holds no usage text.
func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"completion", "bash", "extra"}, `unknown command "extra"`},
		{[]string{"completion", "bogus"}, `unknown command "bogus"`},
		{[]string{"help", "bogus"}, `no help topic "bogus"`},
		{[]string{"help", "token", "bogus"}, `no help topic "token bogus"`},
		{[]string{"token", "bogus", "--json"}, `unknown command "bogus" for "rewind token"`},
		{[]string{"bench", "bogus", "--json"}, `unknown command "bogus" for "rewind bench"`},
		{[]string{"audit", "bogus", "--json"}, `unknown command "bogus" for "rewind audit"`},
		{[]string{"backfill", "bogus", "--json"}, `unknown command "bogus" for "rewind backfill"`},
		{[]string{"--server", "http://127.0.0.1:1/sub/path", "stat", "--json"}, "no path"},
		{[]string{"read", "--limit", "x", "--json"}, "--limit"},
	} {
		code, out, errOut := exe(t, cleanEnv(), "", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
			continue
		}
		checkMessage(t, errOut)
		if tc.args[len(tc.args)-1] != "--json" {
			continue
		}
		c, msg := jsonError(t, out)
		if c != "invalid_argument" || !strings.Contains(msg, tc.want) || strings.Contains(msg, "usage:") ||
			strings.Contains(msg, "\n") {
			t.Errorf("%v: JSON error %s %q; want invalid_argument, %q and no usage text", tc.args, c, msg, tc.want)
		}
	}
	// The usage hint stays on stderr.
	if _, _, errOut := exe(t, cleanEnv(), "", "bogus"); !strings.Contains(errOut, "see 'rewind --help'") {
		t.Errorf("stderr %q has no usage hint", errOut)
	}
}

// TestCorruptTokenFile: a damaged tokens.json is corruption (exit 5),
// naming the file and what to do, not an internal error with a decoder's
// message.
func TestCorruptTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokens.json"), []byte("{bad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "token", "list", "--json")
	if code != 5 {
		t.Fatalf("exit %d, want 5: %s", code, errOut)
	}
	c, msg := jsonError(t, out)
	if c != "corruption" || !strings.Contains(msg, filepath.Join(dir, "tokens.json")) || !strings.Contains(msg, "backup") {
		t.Errorf("JSON error %s %q; want corruption naming the file and what to do", c, msg)
	}
}

