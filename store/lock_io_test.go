package store

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Close writes the index snapshot. It used to do so — and fsync the log
// before — holding Store.mu, so that every call needing the lock waited
// for the disk, however slow. Here the snapshot's fsync is held by the
// filesystem seam until the test lets it go; an append made meanwhile must
// still get its answer (the store is closing) at once. (The test used a
// FIFO as the snapshot's temporary file before; the snapshot is written
// with pwrite, which a FIFO refuses at once, so the file was open too
// briefly to be seen, and the test failed now and then.)
func TestCloseWritesTheSnapshotOutsideTheStoreLock(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	var once sync.Once
	entered, release := make(chan struct{}), make(chan struct{})
	efs := vfs.WithErrors(vfs.NewMem(), func(op vfs.Op, path string) error {
		if armed.Load() && op == vfs.OpSync && strings.Contains(path, snapshotName) {
			once.Do(func() { close(entered) })
			<-release
			return syscall.EIO
		}
		return nil
	})
	s, err := Open("/data", Config{Log: eventlog.Config{FS: efs}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s-1", rewind.Any, ev("T", "x")); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-entered: // Close is syncing the snapshot, and will wait there
	case <-time.After(time.Minute):
		close(release)
		t.Fatal("Close never synced the index snapshot")
	}
	answered := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), "s-1", rewind.Any, ev("T", "y"))
		answered <- err
	}()
	select {
	case err := <-answered:
		if !errors.Is(err, rewind.ErrClosed) {
			t.Errorf("append while closing: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("an append made while Close wrote the snapshot waited for the write")
	}
	close(release)
	if err := <-closed; err == nil || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("close with a snapshot that cannot be synced: %v, want the snapshot's error", err)
	}
}
