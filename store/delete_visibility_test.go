package store

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Found in review: a soft delete was visible to readers before its record
// was acknowledged, so a crash could take back a delete readers had seen.
func TestDeleteHiddenUntilAcknowledged(t *testing.T) {
	var block atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	cfg := Config{Logger: slog.New(slog.DiscardHandler), Log: eventlog.Config{OnFlush: func(eventlog.FlushInfo) {
		if block.Load() {
			block.Store(false)
			entered <- struct{}{}
			<-release
		}
	}}}
	s, _ := setup(t, cfg)
	if _, err := s.Append(ctx, "acct-1", rewind.NoStream, ev("Opened", `{}`)); err != nil {
		t.Fatal(err)
	}
	block.Store(true)
	done := make(chan error, 1)
	go func() { _, err := s.DeleteStream(ctx, "acct-1", rewind.Any); done <- err }()
	<-entered // the tombstone is written but not yet acknowledged or visible
	last := s.Log().Last()
	_, err := s.ReadStream(ctx, "acct-1", rewind.ReadStreamOptions{})
	info, _ := s.StreamInfo(ctx, "acct-1")
	close(release)
	<-done
	if errors.Is(err, rewind.ErrStreamNotFound) || info.Deleted {
		t.Errorf("with Last=%d (tombstone not visible), ReadStream=%v, StreamInfo.Deleted=%v", last, err, info.Deleted)
	}
}
