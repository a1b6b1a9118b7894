package eventlog

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Found in review: retention removed a segment that an append had rolled
// (sealed in memory) before the flusher had sealed it on disk; the seal
// then failed on the closed file and the log could reopen empty. Retention
// now waits for the seal on disk.
func TestRetentionWaitsForTheSealOnDisk(t *testing.T) {
	dir := t.TempDir()
	var block atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	cfg := Config{SegmentSize: 64 << 10, MaxBytes: 1, RetentionInterval: time.Hour,
		OnFlush: func(FlushInfo) {
			if block.Load() {
				block.Store(false)
				entered <- struct{}{}
				<-release
			}
		}}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 1000)
	for i := range payload {
		payload[i] = 'x'
	}
	ctx := context.Background()
	// Fill segment 1 nearly to the end.
	for l.Stats().Bytes+2*1028 < 64<<10 {
		a, err := l.Append([]Entry{{Kind: 1, Payload: payload}})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// g0: the flusher writes it and blocks in OnFlush.
	block.Store(true)
	a0, err := l.Append([]Entry{{Kind: 1, Payload: payload}})
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	// g1 (pending): this append does not fit and rolls segment 1.
	big := make([]byte, 4000)
	for i := range big {
		big[i] = 'y'
	}
	a1, err := l.Append([]Entry{{Kind: 1, Payload: big}})
	if err != nil {
		t.Fatal(err)
	}
	lastBefore := a1.First
	removed, err := l.ApplyRetention()
	t.Logf("retention removed %+v err=%v (First now %d)", removed, err, l.First())
	close(release)
	if err := a0.Wait(ctx); err != nil {
		t.Fatalf("g0: %v", err)
	}
	err1 := a1.Wait(ctx)
	t.Logf("g1 wait: %v", err1)
	_, err2 := l.Append([]Entry{{Kind: 1, Payload: payload}})
	t.Logf("later append: %v", err2)
	l.Close()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Logf("file %s", e.Name())
	}
	l2, err := Open(dir, Config{SegmentSize: 64 << 10})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer l2.Close()
	t.Logf("after reopen: First=%d Last=%d (appended up to %d before)", l2.First(), l2.Last(), lastBefore)
	if err1 != nil || l2.Last() < lastBefore {
		t.Errorf("retention raced the seal: g1 err=%v, reopened log Last=%d < %d", err1, l2.Last(), lastBefore)
	}
}
