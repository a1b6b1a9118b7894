package eventlog

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// Found in review: an fsync failure outside the flusher (the interval
// syncer, Sync) set the log's failure but left the pending group waiting
// forever, and Sync blocked on it. The failure now fails every waiting
// append. The test calls what syncActive calls when fdatasync fails.
func TestFsyncFailureFailsWaitingAppends(t *testing.T) {
	t.Parallel()
	var block atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	l, err := Open(t.TempDir(), Config{Durability: Interval, SyncInterval: time.Hour,
		OnFlush: func(FlushInfo) {
			if block.Load() {
				block.Store(false)
				entered <- struct{}{}
				<-release
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	block.Store(true)
	a0, _ := l.Append([]Entry{{Kind: 1, Payload: []byte("a")}})
	<-entered
	a1, err := l.Append([]Entry{{Kind: 1, Payload: []byte("b")}}) // pending
	if err != nil {
		t.Fatal(err)
	}
	l.fail(errors.New("simulated fdatasync EIO"), nil) // what syncActive does when fdatasync fails
	close(release)
	// The group being acknowledged when the fsync failed has its own
	// outcome; it must simply not hang.
	a0.Wait(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a1.Wait(ctx); !errors.Is(err, rewind.ErrFailed) {
		t.Errorf("the pending append after an fsync failure: %v, want ErrFailed", err)
	}
	syncDone := make(chan error, 1)
	go func() { syncDone <- l.Sync() }()
	select {
	case err := <-syncDone:
		if err == nil {
			t.Error("Sync after an fsync failure returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Sync blocks after an fsync failure")
	}
	if _, err := l.Append([]Entry{{Kind: 1, Payload: []byte("c")}}); !errors.Is(err, rewind.ErrFailed) {
		t.Errorf("append after the failure: %v, want ErrFailed", err)
	}
	l.Close()
}
