package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
