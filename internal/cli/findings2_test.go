package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInputAppendsNothing feeds append standard input with a bad line
// after more than one batch of good ones, locally and through a server:
// the error names the input line, and nothing is appended (issue 10,
// second round, 5a-5c).
func TestBadInputAppendsNothing(t *testing.T) {
	t.Parallel()
	good := strings.Repeat(`{"type":"T","data":{}}`+"\n", 1500)
	badType := strings.Repeat(`{"type":"T","data":{}}`+"\n", 1099) + `{"type":"a b","data":{}}` + "\n" +
		strings.Repeat(`{"type":"T","data":{}}`+"\n", 100)
	long := `{"type":"T","data":"` + strings.Repeat("x", 65<<20) + `"}` + "\n"
	id := `"id":"0190b5a4-6c4e-7f2a-9d3e-1a2b3c4d5e6f"`
	url, admin := startServer(t)
	for _, where := range []string{"local", "server"} {
		for _, tc := range []struct {
			name, stdin string
			batch       string
			want        []string
		}{
			{"garbage after 1500 lines", good + "garbage\n", "1000", []string{"line 1501", "not an event object"}},
			{"bad type on line 1100", badType, "1000", []string{"line 1100: type", "spaces"}},
			{"bad line, batch 1", `{"type":"T"}` + "\n" + `{"type":""}` + "\n", "1", []string{"line 2: type", "empty"}},
			{"array", good[:100] + "[]\n", "1", []string{"line 5", "not an event object"}},
			{"null", "null\n", "1", []string{"line 1", "not an event object"}},
			{"repeated key", `{"type":"T","type":"U"}` + "\n", "1", []string{"line 1: type", "twice"}},
			{"repeated id", "{" + id + `,"type":"T"}` + "\n{" + id + `,"type":"T"}` + "\n", "1",
				[]string{"line 2: id", "line 1"}},
			{"line too long", good[:100] + long, "1", []string{"line 5", "longer than 64MiB"}},
		} {
			t.Run(where+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				stream := "s"
				args := []string{"--data-dir", t.TempDir()}
				if where == "server" {
					stream = fmt.Sprintf("bad-%p", t)
					args = []string{"--server", url, "--token", admin}
				}
				code, _, errOut := exe(t, cleanEnv(), tc.stdin, append(args, "append", stream, "--batch", tc.batch)...)
				if code != 2 {
					t.Fatalf("exit status %d, want 2: %s", code, errOut)
				}
				for _, w := range tc.want {
					if !strings.Contains(errOut, w) {
						t.Errorf("stderr %q does not say %q", errOut, w)
					}
				}
				if strings.Contains(errOut, "cli.eventJSON") || strings.Contains(errOut, "events[") {
					t.Errorf("stderr %q speaks Go or of batch indexes", errOut)
				}
				code, out, errOut := exe(t, cleanEnv(), "", append(args, "read", stream, "--json")...)
				if code == 0 && strings.TrimSpace(out) != "" || code != 0 && code != 3 {
					t.Fatalf("bad input appended events: %d %q %s", code, out[:min(len(out), 200)], errOut)
				}
			})
		}
	}
}

// TestAppendFlagMistakes: --type ” and repeated --metadata keys are refused.
func TestAppendFlagMistakes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"empty type":        {[]string{"append", "s", "--type", ""}, "--type"},
		"repeated metadata": {[]string{"append", "s", "--type", "T", "--metadata", "k=v", "--metadata", "k=w"}, "repeats the key"},
	} {
		code, out, errOut := exe(t, cleanEnv(), `{"type":"T"}`+"\n", append([]string{"--data-dir", dir, "--json"}, tc.args...)...)
		var e struct{ Error struct{ Code string } }
		if code != 2 || !strings.Contains(errOut, tc.want) || json.Unmarshal([]byte(out), &e) != nil {
			t.Errorf("%s: %d %q %q", name, code, out, errOut)
		}
	}
	if code, out, _ := exe(t, cleanEnv(), "", "--data-dir", dir, "read", "s", "--json"); code == 0 && out != "" {
		t.Errorf("refused appends wrote %q", out)
	}
}

// TestServeSecretUnwritable starts a first serve whose standard output
// fails (a full device): the admin secret nobody saw must not stay behind,
// and the start must fail, saying why (issue 10, second round, 6).
func TestServeSecretUnwritable(t *testing.T) {
	t.Parallel()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run this test: %v", err)
		}
		t.Skip("no /dev/full on this system")
	}
	defer full.Close()
	for _, tc := range []struct {
		out  *os.File // nil: /dev/null, as for a closed standard output
		args []string
	}{{full, nil}, {full, []string{"--json"}}, {nil, nil}} {
		args := tc.args
		dir := filepath.Join(t.TempDir(), "data")
		cmd := exec.Command(rewindBinary(t), append([]string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0"}, args...)...)
		cmd.Env = cleanEnv()
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if tc.out != nil {
			cmd.Stdout = tc.out
		}
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(errOut.String(), "secret") {
				t.Fatalf("%v: serve with stdout on a full device: %v %q", args, err, errOut.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%v: serve kept running though its admin secret could not be shown; stderr %q", args, errOut.String())
		}
		code, out, errText := exe(t, cleanEnv(), "", "--data-dir", dir, "token", "list", "--all", "--json")
		var toks []tokenOut
		if code != 3 && (code != 0 || json.Unmarshal([]byte(out), &toks) != nil || len(toks) != 0) {
			t.Fatalf("%v: the unseen admin token stayed: %d %s %s", args, code, out, errText)
		}
	}
}

// TestConfigFileStrict: the config file's values are read as written and
// parsed as flags are, and an error names the file and line (issue 10,
// second round, 1a, 1b).
func TestConfigFileStrict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ line, want string }{
		{"max_batch_events: 1e3", `max_batch_events in %s:2 "1e3": must be a whole number`},
		{"max_batch_events: 0x10", `"0x10": must be a whole number`},
		{"max_batch_events: 1_000", `"1_000": must be a whole number`},
		{"max_batch_events: 1000.0", `"1000.0": must be a whole number`},
		{"max_batch_events: !!int 0x20", "YAML tag"},
		{"max_batch_events: 99999999999999999999", `"99999999999999999999": is too large`},
		{"max_event_bytes: 1e6", `max_event_bytes in %s:2 "1e6"`},
		{"max_event_bytes: 0x400", `"0x400"`},
		{"max_batch_events: 5\nmax_batch_events: 6", "set twice"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte("addr: 127.0.0.1:7070\n"+tc.line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		want := tc.want
		if strings.Contains(want, "%s") {
			want = fmt.Sprintf(want, path)
		}
		code, out, errOut := exe(t, cleanEnv(), "", "config", "print", "--config", path)
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("%q: %d %q, want exit 2 saying %q", tc.line, code, out+errOut, want)
		}
	}
}

// TestConfigPrintChecksAsServe: config print refuses what serve would,
// with exit status 2, naming the flag or variable; serve refuses a bad
// address as a usage error too (issue 10, second round, 1d, 2a, 2b).
func TestConfigPrintChecksAsServe(t *testing.T) {
	t.Parallel()
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--addr", "bogus"}, `--addr "bogus"`},
		{nil, []string{"--addr", "127.0.0.1:99999"}, "port number"},
		{[]string{"REWIND_ADMIN_TOKEN=short"}, nil, "REWIND_ADMIN_TOKEN"},
		{nil, []string{"--max-event-bytes", "1B"}, "--max-event-bytes"},
		{nil, []string{"--tls-cert", "nonexist.pem", "--tls-key", "nonexist.pem"}, "--tls-cert"},
		{nil, []string{"--tls-cert", junk, "--tls-key", junk}, "--tls-cert"},
		{nil, []string{"--otlp-endpoint", "http://[::1"}, "--otlp-endpoint"},
		{nil, []string{"--max-request-bytes=1MiB", "--max-inflight-append-bytes=512KiB"}, "--max-inflight-append-bytes"},
		{nil, []string{"--max-request-bytes=1B"}, "--max-request-bytes"},
		{[]string{"REWIND_ADDR=0.0.0.0:1", "REWIND_NO_AUTH=true"}, nil, "REWIND_NO_AUTH with REWIND_ADDR"},
		{nil, []string{"--tls-client-ca", "x"}, "--tls-client-ca"},
	} {
		for _, cmd := range [][]string{{"config", "print"}, {"serve", "--data-dir", filepath.Join(t.TempDir(), "d")}} {
			code, errOut := exeWithin(t, 20*time.Second, cleanEnv(tc.env...), append(cmd, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%v %v %v: %d %q, want exit 2 naming %q", tc.env, cmd, tc.args, code, errOut, tc.want)
			}
		}
	}
}

// exeWithin runs the binary as exe does, killing it after d (a serve that
// should have refused to start); it returns the exit status and stderr.
func exeWithin(t *testing.T, d time.Duration, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, rewindBinary(t), args...)
	cmd.Env = env
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, "still running after " + d.String() + ": " + errOut.String()
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, errOut.String()
}

// TestRequiredFlagIsUsageError: a missing required flag is exit 2 with
// code invalid_argument (issue 10, second round, 3).
func TestRequiredFlagIsUsageError(t *testing.T) {
	t.Parallel()
	code, out, errOut := exe(t, cleanEnv(), "", "--data-dir", t.TempDir(), "token", "create", "--name", "a", "--json")
	if code != 2 || !strings.Contains(out, `"invalid_argument"`) || !strings.Contains(errOut, "allow") {
		t.Fatalf("%d %q %q", code, out, errOut)
	}
}

// TestEnvErrorsNameTheVariable: a bad value from the environment is named
// by its variable, not by the flag it stands for (issue 10, second round, 1d).
func TestEnvErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	code, _, errOut := exe(t, cleanEnv("REWIND_LOG_LEVEL=bogus"), "", "--data-dir", t.TempDir(), "read")
	if code != 2 || !strings.Contains(errOut, `REWIND_LOG_LEVEL "bogus"`) {
		t.Fatalf("%d %q", code, errOut)
	}
}

// TestEmptyDataDir: --data-dir "" is refused as such, and creates nothing
// (issue 10, second round, 4).
func TestEmptyDataDir(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"read"}, {"append", "s", "--type", "T"}, {"stat"}} {
		code, _, errOut := exe(t, cleanEnv(), "", append([]string{"--data-dir", ""}, args...)...)
		if code != 2 || !strings.Contains(errOut, "--data-dir") || !strings.Contains(errOut, "must name a directory") {
			t.Errorf("%v: %d %q", args, code, errOut)
		}
	}
}
