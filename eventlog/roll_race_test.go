package eventlog

import (
	"context"
	"sync"
	"testing"
)

// Readers of the active segment's last records while appends roll it over:
// a roll marks the index entry of the segment's last record as its last,
// and readers hold snapshots of that index, so the roll must not write
// into the array they read (the race detector saw it under CI, in
// TestStorePowerCuts). Run with -race.
func TestRollDoesNotWriteAnIndexReadersHold(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), Config{SegmentSize: 64 << 10, IndexInterval: 64})
	defer l.Close()
	payload := make([]byte, 4000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if last := l.Last(); last > 0 {
					if _, err := l.Read(last); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	for range 250 { // about 15 rolls
		a, err := l.Append([]Entry{{Payload: payload}})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
