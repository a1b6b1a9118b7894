package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/config"
)

// TestFailedFirstStartKeepsNoAdminToken starts `rewind serve` on a new
// data directory in ways that fail (the port taken, a TLS file missing):
// no admin token whose secret nobody saw may be left behind, and the next
// good start then creates one and prints its secret. A token can also be
// created offline on the data directory while no server holds it.
func TestFailedFirstStartKeepsNoAdminToken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	for name, args := range map[string][]string{
		"port taken":      {"--addr", taken.Addr().String()},
		"TLS file absent": {"--addr", "127.0.0.1:0", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			code, out, errOut := exe(t, cleanEnv(), "", append([]string{"serve", "--data-dir", dir}, args...)...)
			if code == 0 {
				t.Fatalf("serve succeeded: %s %s", out, errOut)
			}
			if strings.Contains(out, "rwd_") {
				t.Fatalf("a failed start printed a secret: %q", out)
			}
			code, out, errOut = exe(t, cleanEnv(), "", "--data-dir", dir, "token", "list", "--all", "--json")
			var toks []tokenOut
			if code == 0 && (json.Unmarshal([]byte(out), &toks) != nil || len(toks) != 0) {
				t.Fatalf("a failed start left tokens whose secret nobody saw: %s", out)
			}
			if code != 0 && code != 3 {
				t.Fatalf("token list: %d %s", code, errOut)
			}
		})
	}
	t.Run("offline recovery", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		startServerIn(t, dir) // its admin secret is "lost"
		if code, _, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "token", "create", "--name", "ops",
			"--allow", "admin:*"); code != 6 {
			t.Fatalf("token create on a served data directory: %d %s", code, errOut)
		}
	})
	t.Run("offline recovery after stop", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		code, _, errOut := exe(t, cleanEnv(), "", "serve", "--data-dir", dir, "--addr", taken.Addr().String())
		if code == 0 {
			t.Fatalf("serve: %s", errOut)
		}
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "token", "create", "--name", "ops", "--allow", "admin:*", "--json")
		var tok tokenOut
		if code != 0 || json.Unmarshal([]byte(out), &tok) != nil || !strings.HasPrefix(tok.Secret, "rwd_") {
			t.Fatalf("offline token create: %d %q %s", code, out, errOut)
		}
	})
}

// TestFindingsExitStatuses runs the binary into the defects an outside
// tester found (issue 10), locally and against a server: each case's exit
// status, its message and, with --json, the JSON error on stdout. Nothing
// a refused command names may be created.
func TestFindingsExitStatuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := cleanEnv()
	local := func(args ...string) []string { return append([]string{"--data-dir", dir}, args...) }
	if code, _, errOut := exe(t, env, "", local("append", "s", "--type", "A")...); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	url, admin := startServer(t)
	remote := func(args ...string) []string { return append([]string{"--server", url, "--token", admin}, args...) }
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	empty := t.TempDir() // exists, but holds no store and no tokens
	const nilID = "00000000-0000-0000-0000-000000000000"
	nilLine := `{"type":"A","id":"` + nilID + `"}` + "\n"

	cases := []struct {
		name   string
		args   []string
		stdin  string
		status int
		code   string // the --json error code; every case runs with --json too when set
		want   []string
	}{
		// F12: the nil UUID is no event id.
		{"nil id flag", local("append", "s", "--type", "A", "--id", nilID), "", 2, "invalid_argument", []string{"nil UUID"}},
		{"nil id line", local("append", "s"), nilLine, 2, "invalid_argument", []string{"line 1: id", "nil UUID"}},
		{"nil id flag, server", remote("append", "s", "--type", "A", "--id", nilID), "", 2, "invalid_argument", []string{"nil UUID"}},
		{"nil id line, server", remote("append", "s"), nilLine, 2, "invalid_argument", []string{"nil UUID"}},
		// F13: nothing to append.
		{"empty input", local("append", "s"), "", 2, "invalid_argument", []string{"nothing to append"}},
		{"blank lines", local("append", "s"), "\n \n\t\n", 2, "invalid_argument", []string{"nothing to append"}},
		{"blank lines, server", remote("append", "s"), "\n\n", 2, "invalid_argument", []string{"nothing to append"}},
		{"empty input, no store", []string{"--data-dir", missing, "append", "s"}, "\n", 2, "invalid_argument",
			[]string{"nothing to append"}},
		// F15: usage errors as JSON.
		{"unknown flag", local("read", "--bogus"), "", 2, "invalid_argument", []string{"unknown flag: --bogus"}},
		{"bad flag value", local("read", "--limit", "abc"), "", 2, "invalid_argument", []string{"--limit", "whole number"}},
		{"wrong argument count", local("read", "a", "b"), "", 2, "invalid_argument", []string{"at most 1 argument"}},
		{"unknown command", []string{"bogus"}, "", 2, "invalid_argument", []string{`unknown command "bogus"`}},
		{"token revoke without argument", local("token", "revoke"), "", 2, "invalid_argument", []string{"ID or NAME"}},
		// F17: token commands never create a data directory.
		{"token list, no data dir", []string{"--data-dir", missing, "token", "list"}, "", 3, "not_found", []string{missing}},
		{"token create, no data dir", []string{"--data-dir", missing, "token", "create", "--name", "x", "--allow", "read:*"},
			"", 3, "not_found", []string{missing}},
		{"token revoke, no data dir", []string{"--data-dir", missing, "token", "revoke", "x"}, "", 3, "not_found", []string{missing}},
		{"token list, empty data dir", []string{"--data-dir", empty, "token", "list"}, "", 3, "not_found", []string{empty}},
		{"token revoke, empty data dir", []string{"--data-dir", empty, "token", "revoke", "x"}, "", 3, "not_found", []string{empty}},
		// F18: zero never quietly means the default.
		{"streams limit zero", local("streams", "--limit", "0"), "", 2, "invalid_argument", []string{"--limit", "at least 1"}},
		{"bench events zero", []string{"--data-dir", missing, "bench", "append", "--events", "0"}, "", 2, "invalid_argument",
			[]string{"--events", "at least 1"}},
		{"bench writers zero, server", remote("bench", "append", "--writers", "0"), "", 2, "invalid_argument",
			[]string{"--writers", "at least 1"}},
		{"config zero timeout", []string{"config", "print", "--rpc-timeout", "0"}, "", 2, "invalid_argument",
			[]string{"--rpc-timeout", "positive"}},
		{"config zero batch", []string{"config", "print", "--max-batch-events", "0"}, "", 2, "invalid_argument",
			[]string{"--max-batch-events", "at least 1"}},
		{"config off loopback without auth", []string{"config", "print", "--no-auth", "--addr", "0.0.0.0:7070"}, "", 2,
			"invalid_argument", []string{"loopback"}},
		// F19: strict values.
		{"boolean 1", local("read", "s", "--backward=1"), "", 2, "invalid_argument", []string{"true or false"}},
		{"boolean yes", local("read", "s", "--backward=yes"), "", 2, "invalid_argument", []string{"true or false"}},
		{"hexadecimal number", local("read", "--limit", "0x10"), "", 2, "invalid_argument", []string{"whole number"}},
		{"number with underscores", local("streams", "--limit", "1_000"), "", 2, "invalid_argument", []string{"whole number"}},
		{"number with a suffix", local("read", "--limit", "10abc"), "", 2, "invalid_argument", []string{"whole number"}},
		{"number with a space", local("read", "--limit", " 10"), "", 2, "invalid_argument", []string{"whole number"}},
		{"size with a bogus unit", []string{"config", "print", "--max-request-bytes", "1 M"}, "", 2, "invalid_argument",
			[]string{"unknown unit"}},
		{"size with a space before", []string{"config", "print", "--max-request-bytes", " 1MiB"}, "", 2, "invalid_argument",
			[]string{"number of bytes"}},
		{"duration without a unit", []string{"config", "print", "--rpc-timeout", "30"}, "", 2, "invalid_argument",
			[]string{"duration"}},
		{"number too large", local("read", "--from", "99999999999999999999"), "", 2, "invalid_argument", []string{"too large"}},
		// F22: verify is local-only, and says so.
		{"verify against a server", remote("verify"), "", 2, "invalid_argument", []string{"local-only"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, asJSON := range []bool{false, true} {
				args := tc.args
				if asJSON {
					args = append(append([]string{}, args...), "--json")
				}
				code, out, errOut := exe(t, env, tc.stdin, args...)
				if code != tc.status {
					t.Errorf("%v: exit status %d, want %d; stderr %q", args, code, tc.status, errOut)
				}
				for _, w := range tc.want {
					if !strings.Contains(errOut, w) {
						t.Errorf("%v: stderr %q does not say %q", args, errOut, w)
					}
				}
				checkMessage(t, errOut)
				if asJSON {
					var e struct {
						Error struct{ Code, Message string } `json:"error"`
					}
					if err := json.Unmarshal([]byte(out), &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
						t.Errorf("%v: stdout %q, want a JSON error with code %q", args, out, tc.code)
					}
				}
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a refused command created %s: %v", missing, err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a refused command wrote %v in %s", entries, empty)
	}
}

// TestInterruptedAppendExits130 interrupts an append waiting for its
// standard input: it must end, with the documented status 130.
func TestInterruptedAppendExits130(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(rewindBinary(t), "--data-dir", t.TempDir(), "append", "s")
	cmd.Env = cleanEnv()
	stdin, err := cmd.StdinPipe() // kept open: the append waits for a line
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("\n")) // the process runs once this is read
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("append did not end on SIGINT; stderr %q", errOut.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit status %d, want 130; stderr %q", code, errOut.String())
	}
}

// TestServeHelpShowsServeDefaults checks that `serve --help` and `config
// print --help` show the defaults serve runs with, from config.Defaults,
// for every setting they share with the global flags (--log-level's
// global default is the CLI's own, not the server's).
func TestServeHelpShowsServeDefaults(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"serve", "--help"}, {"config", "print", "--help"}} {
		code, out, errOut := exe(t, cleanEnv(), "", args...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, errOut)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "--log-level") && !strings.Contains(line, `(default "`+config.DefaultLogLevel+`")`) {
				t.Errorf("%v: %q does not show serve's default log level %q", args, line, config.DefaultLogLevel)
			}
		}
	}
}
