//go:build unix

package cli

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestQuickstartInterrupted sends each of SIGHUP, SIGINT and SIGTERM to the
// walk-through while it runs: it must stop, leave nothing in TMPDIR and no
// rewind process behind.
func TestQuickstartInterrupted(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "quickstart.sh"))
			cmd.Env = append(cleanEnv(), "TMPDIR="+tmp)
			// Its own process group, signalled as a whole, as a terminal
			// does on Ctrl-C or when it closes.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			for sc.Scan() && !strings.Contains(sc.Text(), "$ rewind tail") {
			}
			syscall.Kill(-cmd.Process.Pid, sig)
			go io.Copy(io.Discard, out)
			err = cmd.Wait()
			if err == nil {
				t.Fatalf("the walk-through ended well after %v", sig)
			}
			left, _ := os.ReadDir(tmp)
			if len(left) != 0 {
				t.Errorf("after %v the walk-through left %v in TMPDIR", sig, left)
			}
			procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range procs {
				if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), tmp) {
					t.Errorf("after %v a process still runs from TMPDIR: %q", sig, strings.ReplaceAll(string(b), "\x00", " "))
				}
			}
		})
	}
}
