package store

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Every append follows a snapshot covering the whole log, so a rolled
// segment is immediately a permitted retention candidate; the log's own
// retention ticker then races the flusher's seal of it.
func TestRetentionRacingRolls(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Logger: slog.New(slog.DiscardHandler),
		Log: eventlog.Config{SegmentSize: 64 << 10, MaxBytes: 1, RetentionInterval: time.Millisecond}}
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("x", 3000)
	for i := 0; i < 200; i++ { // the race showed within 25 appends
		if _, err := s.ApplyRetention(ctx); err != nil {
			t.Fatalf("append %d: retention: %v", i, err)
		}
		if _, err := s.Append(ctx, "a", rewind.Any, ev("E", data)); err != nil {
			t.Logf("segments on disk: first=%d last=%d", s.log.First(), s.log.Last())
			s.Close()
			s2, err2 := Open(dir, cfg)
			if err2 != nil {
				t.Fatalf("append %d: append failed: %v; reopen failed: %v", i, err, err2)
			}
			t.Fatalf("append %d: append failed: %v; after reopen First=%d Last=%d", i, err, s2.log.First(), s2.log.Last())
		}
	}
	s.Close()
}
