package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests of this file run the real binary, built from cmd/rewind once
// per test process, as a user would: its exit status, stdout and stderr.

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// rewindBinary returns the path of a freshly built rewind binary.
func rewindBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if p := os.Getenv("REWIND_TEST_BINARY"); p != "" {
			// A binary built elsewhere, such as from main to check that a
			// test fails there.
			binary.path = p
			return
		}
		binary.dir, binary.err = os.MkdirTemp("", "rewind-cli-test-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "rewind")
		out, err := exec.Command("go", "build", "-o", binary.path, "github.com/rewindhq/rewind/cmd/rewind").CombinedOutput()
		if err != nil {
			binary.err = errors.New(err.Error() + ": " + string(out))
		}
	})
	if binary.err != nil {
		t.Fatalf("build rewind: %v", binary.err)
	}
	return binary.path
}

// removeBinary deletes the built binary; TestMain calls it.
func removeBinary() {
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
}

// cleanEnv is the test process's environment without any REWIND_*
// variable, plus extra ("KEY=value").
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REWIND_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// exe runs the binary in dir with env (see cleanEnv) and stdin, and
// returns its exit status, stdout and stderr.
func exe(t *testing.T, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(rewindBinary(t), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// checkMessage fails t if an error message repeats the "rewind: " prefix
// or shows a raw parser message instead of one a person can act on.
func checkMessage(t *testing.T, stderr string) {
	t.Helper()
	for _, bad := range []string{"rewind: rewind:", ": rewind: ", "strconv.", "invalid syntax", "value out of range",
		"parsing \"", "time: invalid duration"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr %q contains %q", stderr, bad)
		}
	}
	if strings.Count(stderr, "rewind:") > 1 && !strings.Contains(stderr, "'rewind") {
		t.Errorf("stderr %q repeats the rewind: prefix", stderr)
	}
}

// jsonError decodes the {"error":{...}} object --json prints on failure.
func jsonError(t *testing.T, stdout string) (code, message string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &e); err != nil {
		t.Fatalf("no JSON error in %q: %v", stdout, err)
	}
	return e.Error.Code, e.Error.Message
}
