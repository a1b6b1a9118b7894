package store

import (
	"context"
	"fmt"

	"github.com/rewindhq/rewind"
)

// Health reports whether the store can still write and what recovery
// found: the data losses the log recorded (damage, missing segments, a log
// shorter than what was acknowledged, cuts in a mode that acknowledges
// before fsyncing), this open's and earlier opens' alike, since the bytes
// may no longer show them; and the cuts of a torn tail, this open's or
// else the last cut ever made (from the log's epochs).
func (s *Store) Health(context.Context) (rewind.Health, error) {
	h := rewind.Health{Epoch: s.log.Epoch()}
	if err := s.log.Err(); err != nil {
		h.Failed = err.Error()
	}
	losses := s.log.Losses()
	recorded := func(kind string, epoch, first, last uint64) bool {
		for _, ls := range losses {
			if ls.Kind == kind && ls.FirstPosition == first && (epoch == 0 || ls.Epoch == epoch) && (last == 0 || ls.LastPosition == last) {
				return true
			}
		}
		return false
	}
	// Each cut began an epoch: this open's cuts are the newest epochs; with
	// none, the newest epoch still tells the last cut an earlier open made.
	// A cut that may have lost acknowledged records is a recorded loss.
	epochs := s.log.Epochs()[1:]
	if n := len(s.log.Recovery()); n > 0 {
		epochs = epochs[max(len(epochs)-n, 0):]
	} else if len(epochs) > 0 {
		epochs = epochs[len(epochs)-1:]
	}
	for _, e := range epochs {
		for _, c := range e.Cuts {
			if recorded("cut", e.Epoch, c.FirstPosition, 0) || recorded("shortened", e.Epoch, c.FirstPosition, 0) {
				continue
			}
			h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: "cut", At: e.At, Epoch: e.Epoch,
				Segment: c.Segment, Offset: c.Offset, Bytes: c.Bytes, FirstPosition: rewind.Position(c.FirstPosition),
				LastPosition: rewind.Position(c.LastPosition), DataLoss: false, Reason: c.Reason})
		}
	}
	for _, ls := range losses {
		h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: ls.Kind, At: ls.At, Epoch: ls.Epoch,
			Segment: ls.Segment, Offset: ls.Offset, FirstPosition: rewind.Position(ls.FirstPosition),
			LastPosition: rewind.Position(ls.LastPosition), DataLoss: true, Reason: ls.Reason})
	}
	// What this open found and could not record (the state file's write
	// failed) is reported all the same.
	for _, d := range s.log.Damage() {
		if !recorded("damage", 0, d.FirstPosition, d.LastPosition) {
			h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: "damage", At: s.opened, Segment: d.Segment,
				Offset: d.Offset, Bytes: d.End - d.Offset, FirstPosition: rewind.Position(d.FirstPosition),
				LastPosition: rewind.Position(d.LastPosition), DataLoss: !d.Header, Reason: d.String()})
		}
	}
	for _, m := range s.log.Missing() {
		if !recorded("missing", 0, m.FirstPosition, m.LastPosition) {
			h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: "missing", At: s.opened,
				FirstPosition: rewind.Position(m.FirstPosition), LastPosition: rewind.Position(m.LastPosition),
				DataLoss: true, Reason: m.String()})
		}
	}
	return h, nil
}

// shortened describes a log that ends before the position its index
// snapshot was taken at: positions the store had written are gone.
type shortened struct{ logLast, snapshotPos uint64 }

func (sh *shortened) String() string {
	s := "the log ends at position %d, but the index snapshot was taken at position %d: positions %d-%d were written and are gone"
	return fmt.Sprintf(s, sh.logLast, sh.snapshotPos, sh.logLast+1, sh.snapshotPos)
}
