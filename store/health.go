package store

import (
	"context"
	"fmt"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Health reports whether the store can still write and what opening it
// found: the cuts, damage and missing segments of the log, the last cut
// ever made (from the log's epochs, also when an earlier open made it), and
// a log shorter than the index snapshot said.
func (s *Store) Health(context.Context) (rewind.Health, error) {
	h := rewind.Health{Epoch: s.log.Epoch()}
	if err := s.log.Err(); err != nil {
		h.Failed = err.Error()
	}
	lossy := s.log.Durability() != eventlog.Sync
	opened := s.opened
	// Each cut began an epoch: this open's cuts are the newest epochs; with
	// none, the newest epoch still tells the last cut an earlier open made.
	epochs := s.log.Epochs()[1:]
	if n := len(s.log.Recovery()); n > 0 {
		epochs = epochs[max(len(epochs)-n, 0):]
	} else if len(epochs) > 0 {
		epochs = epochs[len(epochs)-1:]
	}
	for _, e := range epochs {
		for _, c := range e.Cuts {
			h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: "cut", At: e.At, Epoch: e.Epoch,
				Segment: c.Segment, Offset: c.Offset, Bytes: c.Bytes, FirstPosition: rewind.Position(c.FirstPosition),
				LastPosition: rewind.Position(c.LastPosition), DataLoss: lossy, Reason: c.Reason})
		}
	}
	for _, d := range s.log.Damage() {
		h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: "damage", At: opened, Segment: d.Segment,
			Offset: d.Offset, Bytes: d.End - d.Offset, FirstPosition: rewind.Position(d.FirstPosition),
			LastPosition: rewind.Position(d.LastPosition), DataLoss: !d.Header, Reason: d.String()})
	}
	for _, m := range s.log.Missing() {
		h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: "missing", At: opened,
			FirstPosition: rewind.Position(m.FirstPosition), LastPosition: rewind.Position(m.LastPosition),
			DataLoss: true, Reason: m.String()})
	}
	if sh := s.shortened; sh != nil {
		h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: "shortened", At: opened,
			FirstPosition: rewind.Position(sh.logLast + 1), LastPosition: rewind.Position(sh.snapshotPos),
			DataLoss: true, Reason: sh.String()})
	}
	return h, nil
}

// shortened records that the log ended before the position the index
// snapshot was taken at: positions the store had written are gone.
type shortened struct{ logLast, snapshotPos uint64 }

func (sh *shortened) String() string {
	s := "the log ends at position %d, but the index snapshot was taken at position %d: positions %d-%d were written and are gone"
	return fmt.Sprintf(s, sh.logLast, sh.snapshotPos, sh.logLast+1, sh.snapshotPos)
}
