package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fullDisk mounts a 64KiB tmpfs, makes dir in it and fills the rest, and
// returns dir. Mounting needs root (CAP_SYS_ADMIN): without it the test
// is skipped, as no unprivileged way gives a full filesystem.
func fullDisk(t *testing.T) string {
	t.Helper()
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run this test (as root): cannot mount a small tmpfs: %v", err)
		}
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dir := filepath.Join(mnt, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	return dir
}

// TestFullDiskIsStoreFailed: creating a store or a token on a full disk is
// the store's disk failing, exit 10, not an internal error (issue 10,
// second round, 6: a first start on a full disk exited 1).
func TestFullDiskIsStoreFailed(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"serve":        {"serve", "--addr", "127.0.0.1:0"},
		"append":       {"append", "s", "--type", "T", "--json"},
		"token create": {"token", "create", "--name", "a", "--allow", "read:*", "--json"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := fullDisk(t)
			code, _, errOut := exe(t, cleanEnv(), "", append([]string{"--data-dir", dir}, args...)...)
			if code != 10 || !strings.Contains(errOut, "no space left on device") ||
				!strings.Contains(errOut, "free disk space") {
				t.Errorf("exit %d, stderr %q; want 10, the cause and what to do", code, errOut)
			}
		})
	}
}
