//go:build linux

package store

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// openedBy waits until this process holds a file descriptor on path.
func openedBy(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, path) {
				return
			}
		}
	}
	t.Fatalf("nothing opened %s", path)
}

// Close writes the index snapshot. It used to do so — and fsync the log
// before — holding Store.mu, so that every call needing the lock waited
// for the disk, however slow. Here the snapshot's temporary file is a FIFO
// nobody reads, so writing it blocks until the test drains it; an append
// made meanwhile must still get its answer (the store is closing) at once.
func TestCloseWritesTheSnapshotOutsideTheStoreLock(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	if _, err := s.Append(ctx, "s-1", rewind.Any, ev("T", "x")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(b.dir, snapshotName+".tmp")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	openedBy(t, fifo) // Close is writing the snapshot, and will block there

	answered := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), "s-1", rewind.Any, ev("T", "y"))
		answered <- err
	}()
	waited := false
	select {
	case err := <-answered:
		if !errors.Is(err, rewind.ErrClosed) {
			t.Errorf("append while closing: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("an append made while Close wrote the snapshot waited for the write")
		waited = true
	}
	// Let the snapshot write finish (fsync on a FIFO fails: Close says so).
	r, err := os.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	r.Close()
	if err := <-closed; err == nil || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("close with an unwritable snapshot: %v, want the snapshot's error", err)
	}
	if waited {
		<-answered
	}
}
