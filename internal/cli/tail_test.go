package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is `rewind` run in a child process (this test binary, re-executed
// as the command line).
type child struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at its end
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
	status int
}

type lockedWriter struct{ c *child }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.stderr.Write(b)
}

func startChild(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(rewindBinary(t), args...), lines: make(chan string, 1000), done: make(chan struct{})}
	c.cmd.Env = env
	c.cmd.Stderr = lockedWriter{c}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		err := c.cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			c.status = -1
		} else {
			c.status = c.cmd.ProcessState.ExitCode()
		}
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

func (c *child) errOut() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// line waits for the next line of stdout.
func (c *child) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("the command ended without output; stderr: %s", c.errOut())
		}
		return l
	case <-time.After(time.Minute):
		t.Fatalf("no output after a minute; stderr: %s", c.errOut())
	}
	return ""
}

// wait waits for the exit status.
func (c *child) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
		return c.status
	case <-time.After(within):
		t.Fatalf("still running after %s; stderr: %s", within, c.errOut())
	}
	return 0
}

// tailLine decodes a line of tail --json.
func tailLine(t *testing.T, l string) (pos, epoch uint64) {
	t.Helper()
	var e struct{ Position, Epoch uint64 }
	if err := json.Unmarshal([]byte(l), &e); err != nil {
		t.Fatalf("tail --json printed %q: %v", l, err)
	}
	return e.Position, e.Epoch
}

// tail runs until interrupted: SIGINT and SIGTERM end it with exit status
// 130, as the README's table says, and it says where to resume.
func TestTailInterruptedExits130(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, _, errOut := run(t, dir, "", "append", "s", "--type", "A", "--data", "1"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		c := startChild(t, cleanEnv(), "--data-dir", dir, "tail", "--from-start", "--json")
		if pos, epoch := tailLine(t, c.line(t)); pos != 1 || epoch != 1 {
			t.Fatalf("tail printed position %d epoch %d, want 1 and 1", pos, epoch)
		}
		c.cmd.Process.Signal(sig)
		if st := c.wait(t, time.Minute); st != 130 || !strings.Contains(c.errOut(), "--after 1 --epoch 1") {
			t.Fatalf("tail interrupted by %v: exit status %d, stderr %q; want 130 and where to resume", sig, st, c.errOut())
		}
	}
}

// tail --epoch resumes with the epoch the events were read in: the server
// refuses a resume across an epoch change with epoch_changed (12).
func TestTailEpoch(t *testing.T) {
	t.Parallel()
	url, admin := startServer(t)
	remote := []string{"--server", url, "--token", admin}
	for range 3 {
		if code, _, errOut := run(t, "", "", append(remote, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	c := startChild(t, cleanEnv(), append(remote, "tail", "--after", "2", "--epoch", "1", "--json")...)
	if pos, epoch := tailLine(t, c.line(t)); pos != 3 || epoch != 1 {
		t.Fatalf("tail printed position %d epoch %d, want 3 and 1", pos, epoch)
	}
	c.cmd.Process.Signal(os.Interrupt)
	if st := c.wait(t, time.Minute); st != 130 {
		t.Fatalf("tail interrupted: exit status %d, stderr %q", st, c.errOut())
	}
	// Position 2 of epoch 2 was never read from this log (it is at 1).
	code, _, errOut := run(t, "", "", append(remote, "tail", "--after", "2", "--epoch", "2")...)
	if code != 12 || !strings.Contains(errOut, "epoch") {
		t.Fatalf("tail --after 2 --epoch 2 on a log in epoch 1: %d %s, want exit status 12", code, errOut)
	}
	code, _, errOut = run(t, "", "", append(remote, "tail", "--epoch", "1")...)
	if code != 2 || !strings.Contains(errOut, "--after") {
		t.Fatalf("tail --epoch without --after: %d %s, want exit status 2", code, errOut)
	}
}

// A server killed with SIGKILL under a running tail: tail reconnects when
// it comes back and goes on; when it stays away, tail exits with 9
// (unavailable) after its retries, not 1 with a protocol error.
func TestTailAgainstAKilledServer(t *testing.T) {
	t.Parallel()
	addr, dir := freeAddr(t), t.TempDir()
	const token = "adminadminadminadminadmin0123456789"
	serve := func() *child { return serveChild(t, token, addr, "--data-dir", dir) }
	kill := func(s *child) {
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.wait(t, time.Minute)
	}
	remote := []string{"--server", "http://" + addr, "--token", token}
	appendOne := func() {
		t.Helper()
		if code, _, errOut := run(t, "", "", append(remote, "append", "s", "--type", "A", "--data", "1")...); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	s := serve()
	appendOne()
	tail := startChild(t, cleanEnv(), append(remote, "tail", "--from-start", "--json", "--retry-for", "3s")...)
	if pos, _ := tailLine(t, tail.line(t)); pos != 1 {
		t.Fatalf("tail printed position %d, want 1", pos)
	}
	kill(s)
	s = serve()
	appendOne()
	if pos, _ := tailLine(t, tail.line(t)); pos != 2 {
		t.Fatalf("tail after the server's restart printed position %d, want 2", pos)
	}
	kill(s)
	if st := tail.wait(t, 2*time.Minute); st != 9 || !strings.Contains(tail.errOut(), "--after 2 --epoch 1") {
		t.Fatalf("tail with the server killed: exit status %d, stderr %q; want 9 and where to resume", st, tail.errOut())
	}
	checkGaveUpWithin(t, tail.errOut(), 5*time.Second, "--retry-for 3s")
}

// checkGaveUpWithin checks that tail said it gave up after at most max:
// when --retry-for ran out, not after the client's own retries on top (it
// once said "still unavailable after 17.695s" for --retry-for 3s). The
// bound is the promise, with room for one try.
func checkGaveUpWithin(t *testing.T, errOut string, max time.Duration, what string) {
	t.Helper()
	m := regexp.MustCompile(`still unavailable after ([0-9.]+m?s); giving up`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("tail did not say how long it retried: %q", errOut)
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d > max {
		t.Fatalf("tail %s gave up after %s (%v), want at most %s", what, m[1], err, max)
	}
}

// outageProxy stands between tail and a server: while down it takes no
// connection (and has cut those it had), and it comes back at once, at a
// moment the test chooses, which a restarted process cannot.
type outageProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newOutageProxy(t *testing.T, target string) *outageProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &outageProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			u, err := net.Dial("tcp", target)
			if p.down || err != nil {
				p.mu.Unlock()
				c.Close()
				if u != nil {
					u.Close()
				}
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

// setDown cuts every connection and refuses new ones (true), or takes
// them again (false).
func (p *outageProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// A server back shortly before --retry-for runs out is found: tail tries
// once more when it runs out. It once slept its backoff past the end and
// gave up saying "still unavailable", the server back for seconds (an
// outside test: 14 of 15 trials).
func TestTailFindsTheServerBackAtTheEndOfRetryFor(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	const token = "adminadminadminadminadmin0123456789"
	serveChild(t, token, addr, "--data-dir", t.TempDir())
	p := newOutageProxy(t, addr)
	appendOne := func() {
		t.Helper()
		if code, _, errOut := run(t, "", "", "--server", "http://"+addr, "--token", token, "append", "s", "--type", "A", "--data", "1"); code != 0 {
			t.Fatalf("append: %d %s", code, errOut)
		}
	}
	appendOne()
	tail := startChild(t, cleanEnv(), "--server", "http://"+p.ln.Addr().String(), "--token", token,
		"tail", "--from-start", "--json", "--retry-for", "3s")
	if pos, _ := tailLine(t, tail.line(t)); pos != 1 {
		t.Fatalf("tail printed position %d, want 1", pos)
	}
	p.setDown(true)
	time.Sleep(2600 * time.Millisecond)
	p.setDown(false)
	appendOne()
	if pos, _ := tailLine(t, tail.line(t)); pos != 2 {
		t.Fatalf("tail, the server back 0.4 s before --retry-for ran out, printed position %d, want 2:\n%s", pos, tail.errOut())
	}
	p.setDown(true)
	if st := tail.wait(t, 2*time.Minute); st != 9 || !strings.Contains(tail.errOut(), "--after 2 --epoch 1") {
		t.Fatalf("tail with the server gone: exit status %d, stderr %q; want 9 and where to resume", st, tail.errOut())
	}
	checkGaveUpWithin(t, tail.errOut(), 5*time.Second, "--retry-for 3s")
}

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveChild starts `rewind serve --addr addr args...` with token as its
// admin token and returns once it answers /healthz.
func serveChild(t *testing.T, token, addr string, args ...string) *child {
	t.Helper()
	s := startChild(t, cleanEnv("REWIND_ADMIN_TOKEN="+token), append([]string{"serve", "--addr", addr}, args...)...)
	for i := 0; ; i++ {
		if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
			res.Body.Close()
			return s
		}
		if i == 600 {
			t.Fatalf("the server did not start: %s", s.errOut())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
