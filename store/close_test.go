package store

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Found in review: Store.Close held s.mu while closing the log, whose
// retention goroutine could be waiting for s.mu in a hook of the store: a
// deadlock. Close now holds no store lock while it closes the log.
func TestCloseWhileRetentionRuns(t *testing.T) {
	for iter := 0; iter < 20; iter++ {
		dir := t.TempDir()
		cfg := Config{Logger: slog.New(slog.DiscardHandler),
			Log: eventlog.Config{SegmentSize: 64 << 10, MaxBytes: 1}}
		s, err := Open(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		data := strings.Repeat("x", 2000)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := s.Append(ctx, fmt.Sprintf("s-%d", w), rewind.Any, ev("E", data)); err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(30 * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		select {
		case err := <-done:
			close(stop)
			wg.Wait()
			if err != nil && !errors.Is(err, rewind.ErrClosed) {
				t.Logf("iter %d: close: %v", iter, err)
			}
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			for _, g := range strings.Split(string(buf[:n]), "\n\n") {
				if strings.Contains(g, "ApplyRetention") || strings.Contains(g, "Store).Close") {
					t.Log(g)
				}
			}
			close(stop)
			t.Fatalf("iter %d: Store.Close did not return in 10s (deadlock: Store.mu held while eventlog.Close waits for the retention goroutine)", iter)
		}
	}
}
