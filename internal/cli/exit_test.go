package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitStatuses runs the built binary into every class of error and
// checks the exit status the README documents, the message on stderr and,
// with --json, the error code on stdout.
func TestExitStatuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := cleanEnv()
	local := func(args ...string) []string { return append([]string{"--data-dir", dir}, args...) }
	if code, _, errOut := exe(t, env, "", local("append", "s", "--type", "A", "--data", "1", "--id",
		"0190b5a4-6c4e-7f2a-9d3e-1a2b3c4d5e6f")...); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := exe(t, env, "", local("token", "create", "--name", "ops", "--allow", "admin:*")...); code != 0 {
		t.Fatalf("token create: %d %s", code, errOut)
	}
	serverDir := t.TempDir()
	url, admin := startServerIn(t, serverDir)
	remote := func(token string, args ...string) []string {
		return append([]string{"--server", url, "--token", token}, args...)
	}
	code, out, errOut := exe(t, env, "", remote(admin, "token", "create", "--name", "reader", "--allow", "read:s*", "--json")...)
	var reader tokenOut
	if code != 0 || json.Unmarshal([]byte(out), &reader) != nil {
		t.Fatalf("token create: %d %q %s", code, out, errOut)
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir")

	cases := []struct {
		name   string
		args   []string
		stdin  string
		status int
		code   string // the --json error code, when the command is run with --json too
		want   []string
	}{
		// Usage errors.
		{"unknown command", []string{"bogus"}, "", 2, "", []string{`unknown command "bogus" for "rewind"`, "rewind --help"}},
		{"unknown subcommand", []string{"token", "bogus"}, "", 2, "", []string{`unknown command "bogus" for "rewind token"`}},
		{"too many arguments", local("read", "a", "b"), "", 2, "", []string{"at most 1 argument", "rewind read [STREAM]"}},
		{"missing argument", local("append"), "", 2, "", []string{"STREAM"}},
		{"extra argument", local("streams", "x"), "", 2, "", []string{"no arguments", "rewind streams"}},
		{"unknown flag", local("read", "--bogus"), "", 2, "", []string{"unknown flag: --bogus", "rewind read --help"}},
		{"flag without its value", local("read", "--limit"), "", 2, "", []string{"--limit needs a value"}},
		// Flag values.
		{"not a number", local("read", "--limit", "abc"), "", 2, "", []string{`invalid --limit "abc": must be a whole number`}},
		{"number too large", local("read", "--limit", "99999999999999999999"), "", 2, "", []string{"--limit", "too large", "largest"}},
		{"position too large", local("read", "--from", "99999999999999999999"), "", 2, "", []string{"--from", "too large"}},
		{"negative position", local("tail", "--after", "-1"), "", 2, "", []string{"--after", "0 or more"}},
		{"not a boolean", local("read", "--backward=maybe"), "", 2, "", []string{`invalid --backward "maybe": must be true or false`}},
		{"not a duration", local("config", "print", "--rpc-timeout", "soon"), "", 2, "", []string{`invalid --rpc-timeout "soon"`, "duration"}},
		{"not a size", local("config", "print", "--max-request-bytes", "lots"), "", 2, "", []string{`invalid --max-request-bytes "lots"`, "MiB"}},
		{"size too large", local("config", "print", "--max-event-bytes", "100EiB"), "", 2, "", []string{"--max-event-bytes", "too large"}},
		// Data.
		{"invalid input", local("append", "$system", "--type", "A", "--json"), "", 2, "invalid_argument", []string{"reserved"}},
		{"stream not found", local("read", "nope", "--json"), "", 3, "not_found", []string{"no events"}},
		{"data directory not found", []string{"--data-dir", missing, "stat", "--json"}, "", 3, "not_found", []string{missing}},
		{"wrong expected version", local("append", "s", "--type", "A", "--expected-version", "7", "--json"), "", 4,
			"wrong_expected_version", []string{"actual version 1"}},
		{"idempotency conflict", local("append", "s", "--type", "B", "--id", "0190b5a4-6c4e-7f2a-9d3e-1a2b3c4d5e6f", "--json"), "", 4,
			"idempotency_conflict", []string{"already recorded"}},
		{"token name taken", local("token", "create", "--name", "ops", "--allow", "read:*", "--json"), "", 4,
			"already_exists", []string{`a token named "ops" exists`}},
		{"data directory in use", []string{"--data-dir", serverDir, "read", "--json"}, "", 6, "locked", []string{serverDir, "another process"}},
		// Server.
		{"no token", []string{"--server", url, "read", "s", "--json"}, "", 7, "unauthenticated", []string{"requires a token"}},
		{"unknown token", remote("rwd_0123456789ab_nope", "read", "s", "--json"), "", 7, "unauthenticated", []string{"not known to this server"}},
		{"permission denied", remote(reader.Secret, "append", "orders-1", "--type", "A", "--json"), "", 8, "permission_denied",
			[]string{"write:orders-1"}},
		{"token name taken on the server", remote(admin, "token", "create", "--name", "reader", "--allow", "read:*", "--json"), "", 4,
			"already_exists", []string{`a token named "reader" exists`}},
		{"server unreachable", []string{"--server", "http://127.0.0.1:1", "stat", "--json"}, "", 9, "unavailable",
			[]string{"cannot reach the server at http://127.0.0.1:1", "REWIND_SERVER"}},
	}
	for _, tc := range cases {
		// Not parallel: the cases share one data directory, which one
		// process at a time may open.
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := exe(t, env, tc.stdin, tc.args...)
			if code != tc.status {
				t.Errorf("exit status %d, want %d; stderr %q", code, tc.status, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not say %q", errOut, w)
				}
			}
			checkMessage(t, errOut)
			if tc.code != "" {
				if c, msg := jsonError(t, out); c != tc.code || msg == "" {
					t.Errorf("--json error code %q (message %q), want %q", c, msg, tc.code)
				}
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a read-only command created %s: %v", missing, err)
	}
}
