package cli

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// runQuickstart runs scripts/quickstart.sh with env and TMPDIR set to a
// fresh directory, and returns its exit error, its output, and what it
// left in TMPDIR.
func runQuickstart(t *testing.T, env []string) (error, string, []os.DirEntry) {
	t.Helper()
	tmp := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "quickstart.sh"))
	cmd.Env = append(env, "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	left, rerr := os.ReadDir(tmp)
	if rerr != nil {
		t.Fatal(rerr)
	}
	return err, string(out), left
}

// TestQuickstart runs the walk-through whatever the caller's REWIND_*
// variables hold: a server that is down, or one that is up (which it must
// not touch), and a data directory it must not touch either. It cleans up
// after itself, also when it fails.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	url, admin := startServer(t)
	untouched := t.TempDir()
	for name, env := range map[string][]string{
		"server down": cleanEnv("REWIND_SERVER=http://127.0.0.1:1", "REWIND_TOKEN=bogus", "REWIND_DATA_DIR="+untouched,
			"REWIND_LOG_LEVEL=loud", "REWIND_CONFIG=/nonexistent.yaml"),
		"server running": cleanEnv("REWIND_SERVER="+url, "REWIND_TOKEN="+admin),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err, out, left := runQuickstart(t, env)
			if err != nil || !strings.Contains(out, "ok: every checksum matches") || !strings.Contains(out, "exit status 4") {
				t.Fatalf("quickstart: %v\n%s", err, out)
			}
			if len(left) != 0 {
				t.Fatalf("quickstart left %v in TMPDIR", left)
			}
		})
	}
	if entries, _ := os.ReadDir(untouched); len(entries) != 0 {
		t.Errorf("quickstart wrote to REWIND_DATA_DIR: %v", entries)
	}
	code, out, errOut := exe(t, cleanEnv(), "", "--server", url, "--token", admin, "stat", "--json")
	var st storeStat
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.LastPosition != 0 {
		t.Errorf("quickstart appended to the running server: %d %q %s", code, out, errOut)
	}

	t.Run("failure", func(t *testing.T) {
		t.Parallel()
		fake := t.TempDir() // a go that fails: the build step fails after the temporary directory exists
		os.WriteFile(filepath.Join(fake, "go"), []byte("#!/bin/sh\necho 'go: broken on purpose' >&2\nexit 3\n"), 0o755)
		var env []string
		for _, kv := range cleanEnv() {
			if p, ok := strings.CutPrefix(kv, "PATH="); ok {
				kv = "PATH=" + fake + string(os.PathListSeparator) + p
			}
			env = append(env, kv)
		}
		err, out, left := runQuickstart(t, env)
		if err == nil || !strings.Contains(out, "broken on purpose") {
			t.Fatalf("quickstart with a broken go: %v\n%s", err, out)
		}
		if len(left) != 0 {
			t.Fatalf("a failed quickstart left %v in TMPDIR", left)
		}
	})
}

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
