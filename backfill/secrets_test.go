package backfill_test

import (
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill"
)

// A secret is masked in every form it may be printed in: as given, and
// as its type prints it once parsed, as a whole word.
func TestRedactMasksEveryRendering(t *testing.T) {
	t.Parallel()
	due := time.Date(2031, 2, 3, 0, 0, 0, 0, time.UTC)
	p := backfill.Params{
		"pin":  {Type: "bigint", Value: int64(7), Text: "007", Secret: true},
		"due":  {Type: "timestamptz", Value: due, Text: "2031-02-03", Secret: true},
		"note": {Type: "text", Value: "x7", Text: "x7"}, // not secret
	}
	for in, want := range map[string]string{
		"Failing row contains (1, 7, 2031-02-03 00:00:00+00).": "Failing row contains (1, ***, ***).",
		"pin 007 given, 17 and 1.7 and 7.5 are other numbers":  "pin *** given, 17 and 1.7 and 7.5 are other numbers",
		"n = 7.":                   "n = ***.",
		"due 2031-02-03T00:00:00Z": "due ***",
	} {
		if got := p.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
