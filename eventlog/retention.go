package eventlog

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Removed describes a segment that retention deleted.
type Removed struct {
	Segment        string `json:"segment"`
	FirstPosition  uint64 `json:"first_position"`
	LastPosition   uint64 `json:"last_position"`
	Bytes          int64  `json:"bytes"`
	NewestRecordAt time.Time
}

// retentionCandidates lists the oldest sealed segments beyond MaxAge or
// MaxBytes whose last position is at most limit. Called with l.mu held.
func (l *Log) retentionCandidates(now int64, limit uint64) []*segment {
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	var drop []*segment
	for len(drop) < len(l.segs)-1 {
		s := l.segs[len(drop)]
		tooOld := l.cfg.MaxAge > 0 && s.lastTs < now-int64(l.cfg.MaxAge)
		tooBig := l.cfg.MaxBytes > 0 && total > l.cfg.MaxBytes
		// A segment is only removed once the flusher has sealed it on
		// disk: until then it is still being written.
		if !s.durable || !tooOld && !tooBig || s.last > limit {
			break
		}
		drop = append(drop, s)
		total -= s.size
	}
	return drop
}

// ApplyRetention drops whole sealed segments beyond MaxAge or MaxBytes,
// oldest first; the active segment is never dropped, nor a segment ending
// after what Config.RetentionLimit allows. It returns what it
// removed; First reports the new first available position. Readers still
// reading a removed segment finish with it undisturbed.
func (l *Log) ApplyRetention() ([]Removed, error) {
	if l.cfg.MaxAge == 0 && l.cfg.MaxBytes == 0 {
		return nil, nil
	}
	// One pass at a time: a pass decides, records the new start, then
	// removes; no other pass may remove meanwhile.
	l.retainMu.Lock()
	defer l.retainMu.Unlock()
	now := l.cfg.Now().UnixNano()
	limit := ^uint64(0)
	if l.cfg.RetentionLimit != nil {
		// Asked without Log.mu: the callback may take its own locks.
		l.mu.Lock()
		want := l.retentionCandidates(now, limit)
		l.mu.Unlock()
		if len(want) == 0 {
			return nil, nil
		}
		limit = l.cfg.RetentionLimit(want[len(want)-1].last)
	}
	l.mu.Lock()
	drop := l.retentionCandidates(now, limit)
	if len(drop) == 0 {
		l.mu.Unlock()
		return nil, nil
	}
	start := l.segs[len(drop)].base
	l.mu.Unlock()
	// The new start is on disk before any segment goes: a segment missing
	// before it is one retention removed, one missing after it is lost.
	if err := l.moveStart(start); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.segs = append([]*segment(nil), l.segs[len(drop):]...)
	l.publishSegments()
	l.first.Store(l.segs[0].base)
	l.mu.Unlock()

	removed := make([]Removed, 0, len(drop))
	var errs []error
	for _, s := range drop {
		s.removed.Store(true)
		for _, p := range []string{s.path, strings.TrimSuffix(s.path, segmentExt) + indexExt} {
			if err := l.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			}
		}
		// Oldest first, each made durable before the next: a crash can
		// never leave a newer segment removed and an older one back.
		if err := l.fs.SyncDir(l.dir); err != nil {
			errs = append(errs, fmt.Errorf("sync directory %s: %w", l.dir, err))
		}
		r := Removed{Segment: s.name(), FirstPosition: s.base, LastPosition: s.last, Bytes: s.size,
			NewestRecordAt: time.Unix(0, s.lastTs).UTC()}
		removed = append(removed, r)
		l.cfg.Logger.Info("eventlog: retention removed a segment", "segment", r.Segment,
			"first_position", r.FirstPosition, "last_position", r.LastPosition, "bytes", r.Bytes,
			"first_available_position", l.First())
		s.release()
	}
	return removed, errors.Join(errs...)
}
