package pgstore

import (
	"fmt"

	"github.com/rewindhq/rewind"
)

// GapError says the log lacks a position it must hold. Positions are given
// out one after another and never taken back (see Append), so a position
// missing at or below the last committed one means a row of the events
// table was deleted behind the store's back (a superuser's DELETE, a
// partial restore): data loss. Readers of the whole log stop at it, after
// delivering what comes before, instead of passing over it. It matches
// rewind.ErrCorruption (exit status 5 in the CLI).
type GapError struct {
	Schema  string
	Missing rewind.Position // the first position missing
}

func (e *GapError) Error() string {
	return fmt.Sprintf("pgstore: data loss: the log in schema %s has no event at position %d, which was given out "+
		"(a row deleted from %s.events behind the store's back, or a partial restore?); restore the table from a "+
		"backup, or compare with another copy (rewind copy --verify-only)", e.Schema, e.Missing, e.Schema)
}

// Is makes errors.Is(err, rewind.ErrCorruption) true.
func (e *GapError) Is(target error) bool { return target == rewind.ErrCorruption }

// contiguous returns how many of evs, read after position after, follow it
// without a hole: all of them unless a position is missing.
func contiguous(evs []rewind.RecordedEvent, after int64) int {
	for i := range evs {
		if int64(evs[i].Position) != after+1+int64(i) {
			return i
		}
	}
	return len(evs)
}
