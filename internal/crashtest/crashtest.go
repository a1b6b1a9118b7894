// Package crashtest runs crash tests: a test re-executes its own test
// binary as a child process that writes to a data directory and reports
// every acknowledged write on stdout, kills it with SIGKILL at a moment of
// its choosing, and then checks the directory against what the child
// reported.
//
// A package uses it from TestMain:
//
//	func TestMain(m *testing.M) {
//		crashtest.Main(map[string]crashtest.ChildFunc{"appender": appenderChild})
//		os.Exit(m.Run())
//	}
//
// A line the child printed was printed after the write it reports was
// acknowledged, so the parent may rely on every line it received. Each
// line is written with one write(2) of less than PIPE_BUF bytes, so a kill
// never leaves half a line.
package crashtest

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Rounds is the number of kill-and-recover rounds a crash test runs.
var Rounds = flag.Int("crash.rounds", 50, "crash tests: number of kill-and-recover rounds")

// Seed makes a crash test's random choices repeatable; 0 picks one.
var Seed = flag.Uint64("crash.seed", 0, "crash tests: seed of the random choices (0: from the clock)")

const (
	envChild = "REWIND_CRASHTEST_CHILD"
	envDir   = "REWIND_CRASHTEST_DIR"
	envArg   = "REWIND_CRASHTEST_ARG"
)

// ChildFunc is the body of a child process. It writes to dir and reports
// through out until it is killed; arg is what the parent passed to Start.
// Returning an error makes the child exit with status 3 and the parent's
// test fail with the error.
type ChildFunc func(dir, arg string, out *Output) error

// Main runs the child named in the environment, if this process is a
// crash-test child, and exits. Otherwise it returns at once.
func Main(children map[string]ChildFunc) {
	name := os.Getenv(envChild)
	if name == "" {
		return
	}
	fn, ok := children[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "crashtest: unknown child %q\n", name)
		os.Exit(2)
	}
	if err := fn(os.Getenv(envDir), os.Getenv(envArg), &Output{}); err != nil {
		fmt.Fprintf(os.Stderr, "crashtest child %s: %v\n", name, err)
		os.Exit(3)
	}
	os.Exit(0)
}

// Output writes whole lines to stdout.
type Output struct {
	mu  sync.Mutex
	buf []byte
}

// Printf writes one line; a newline is added.
func (o *Output) Printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = fmt.Appendf(o.buf[:0], format, args...)
	o.buf = append(o.buf, '\n')
	if len(o.buf) > 4096 {
		panic("crashtest: line longer than PIPE_BUF")
	}
	if _, err := os.Stdout.Write(o.buf); err != nil {
		os.Exit(4) // the parent is gone
	}
}

// Child is a running child process.
type Child struct {
	t      testing.TB
	cmd    *exec.Cmd
	stderr bytes.Buffer

	mu     sync.Mutex
	lines  []string
	update chan struct{} // closed and replaced when a line arrives or the child exits
	exited bool
	done   chan struct{} // closed when stdout is drained
}

// Start starts the test binary as the child name, working in dir.
func Start(t testing.TB, name, dir, arg string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+name, envDir+"="+dir, envArg+"="+arg)
	c := &Child{t: t, cmd: cmd, update: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = &c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start crash-test child: %v", err)
	}
	go c.read(stdout)
	return c
}

func (c *Child) read(r io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 8192), 8192)
	for sc.Scan() {
		c.mu.Lock()
		c.lines = append(c.lines, sc.Text())
		close(c.update)
		c.update = make(chan struct{})
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.exited = true
	close(c.update)
	c.update = make(chan struct{})
	c.mu.Unlock()
}

// ErrExited is returned by WaitFor when the child exits before the condition holds.
var ErrExited = errors.New("crashtest: the child exited")

// WaitFor waits until cond holds for the lines received so far, the child
// exits, or timeout passes. The timeout only guards against a hung child.
func (c *Child) WaitFor(timeout time.Duration, cond func(lines []string) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, exited, ch := cond(c.lines), c.exited, c.update
		c.mu.Unlock()
		switch {
		case ok:
			return nil
		case exited:
			return ErrExited
		}
		select {
		case <-ch:
		case <-deadline.C:
			return fmt.Errorf("crashtest: condition not reached after %v", timeout)
		}
	}
}

// Kill sends SIGKILL, waits for the child and returns every line it
// printed. The test fails if the child had exited on its own with an error.
func (c *Child) Kill() []string {
	c.t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL) // fails only if it already exited, which Wait reports
	<-c.done
	err := c.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			c.t.Fatalf("crash-test child failed on its own (%v): %s", err, strings.TrimSpace(c.stderr.String()))
		}
	case err != nil:
		c.t.Fatalf("crash-test child: %v", err)
	default:
		c.t.Fatalf("crash-test child exited before it was killed: %s", strings.TrimSpace(c.stderr.String()))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines
}
