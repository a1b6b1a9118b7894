package rewind

import (
	"strings"
	"testing"
)

// An EpochError for a log that ends before a position read in it, in the
// same epoch (no recovery cut it: a PostgreSQL store, a restored backup),
// says so instead of speaking of a recovery cut; one with a cut names it.
func TestEpochErrorMessages(t *testing.T) {
	lost := (&EpochError{After: 90, Epoch: 1, Current: 1, CutAt: 51}).Error()
	if strings.Contains(lost, "recovery cut") || !strings.Contains(lost, "ends at position 50") ||
		!strings.Contains(lost, "resume from 50") {
		t.Errorf("positions lost without a cut: %q", lost)
	}
	cut := (&EpochError{After: 90, Epoch: 1, Current: 2, CutAt: 80}).Error()
	if !strings.Contains(cut, "recovery cut the log at position 80") {
		t.Errorf("a recovery cut: %q", cut)
	}
	other := (&EpochError{After: 90, Epoch: 5, Current: 1}).Error()
	if !strings.Contains(other, "not the log") {
		t.Errorf("a newer epoch: %q", other)
	}
}
