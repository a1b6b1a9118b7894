package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/internal/bench"
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

// TestEmptyOrZeroIsNoDefault: an explicit 0 or empty value is refused, not
// silently taken for the default (issue 10, second round, 1e and 1g), and
// bench's --size range is true: its largest value runs, one more is
// refused before anything runs.
func TestEmptyOrZeroIsNoDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, _, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "append", "s", "--type", "T"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	max := strconv.Itoa(bench.MaxSize())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "append", "--data-dir", filepath.Join(dir, "b0"), "--size", "0", "--events", "10",
			"--durability", "none"}, "--size"},
		{[]string{"bench", "append", "--data-dir", filepath.Join(dir, "b1"), "--size", "1MiB", "--events", "10",
			"--durability", "none"}, "from 1 to " + max},
		{[]string{"--data-dir", dir, "append", "s", "--type", "T", "--content-type", ""}, "--content-type"},
		{[]string{"--data-dir", dir, "read", "--from-time", ""}, "--from-time"},
	} {
		code, _, errOut := exe(t, cleanEnv(), "", append(tc.args, "--json")...)
		if code != 2 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "must") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	code, out, errOut := exe(t, cleanEnv(), "", "bench", "append", "--data-dir", filepath.Join(dir, "bmax"),
		"--size", max, "--events", "2", "--durability", "none", "--json")
	if code != 0 || !strings.Contains(out, `"size":`+max) {
		t.Errorf("bench append --size %s: exit %d %q %s", max, code, out, errOut)
	}
	// Nothing was appended by the refused append.
	if code, out, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "read", "s", "--json"); code != 0 ||
		strings.Count(out, "\n") != 1 {
		t.Errorf("read s: %d %q %s", code, out, errOut)
	}
}

// TestTooLargeDuration: a duration past what Go can hold is called too
// large, not badly written (issue 10, second round, 1c).
func TestTooLargeDuration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"config", "print", "--rpc-timeout=99999999999h"},
		{"--data-dir", dir, "token", "create", "--name", "a", "--allow", "read", "--ttl", "99999999999h"},
		{"--data-dir", dir, "read", "--from-time", "99999999999h"},
	} {
		code, _, errOut := exe(t, cleanEnv(), "", args...)
		if code != 2 || !strings.Contains(errOut, "too large") || !strings.Contains(errOut, "2562047h") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and too large", args, code, errOut)
		}
		checkMessage(t, errOut)
	}
	if code, _, errOut := exe(t, cleanEnv(), "", "config", "print", "--rpc-timeout=10x"); code != 2 ||
		!strings.Contains(errOut, "with its unit") {
		t.Errorf("--rpc-timeout=10x: %d %q", code, errOut)
	}
}

// TestAppendTypeWithInput: append --type does not read standard input, and
// says so on stderr when it holds data (issue 10, second round, 5c).
func TestAppendTypeWithInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, []byte(`{"type":"A"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(rewindBinary(t), "--data-dir", dir, "append", "s", "--type", "T")
	cmd.Env, cmd.Stdin = cleanEnv(), f
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "warning: standard input holds data that --type leaves unread") {
		t.Errorf("append --type < file: %v %q; want it appended with a warning", err, out)
	}
	// Without data on standard input, no warning.
	if code, _, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "append", "s", "--type", "T"); code != 0 ||
		errOut != "" {
		t.Errorf("append --type: %d %q", code, errOut)
	}
	code, out2, _ := exe(t, cleanEnv(), "", "--data-dir", dir, "read", "s", "--json")
	if code != 0 || strings.Count(out2, `"type":"T"`) != 2 || strings.Contains(out2, `"type":"A"`) {
		t.Errorf("read: %d %q", code, out2)
	}
}
