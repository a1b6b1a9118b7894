package backfill

import (
	"strings"
	"testing"
)

// PostgreSQL before 13 has no pg_current_snapshot(), which the one-pass
// statement reads its snapshot's xmin from: its chunks take the join
// (the other reasons are tested against the database in images_test.go).
// The version decides before anything else.
func TestOnePassNeedsPostgreSQL13(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		f    onePassFacts
		want string
	}{
		{onePassFacts{version: 120017}, "PostgreSQL 12 has no pg_current_snapshot()"},
		{onePassFacts{version: 90624, trigger: "BEFORE trigger t on x"}, "PostgreSQL 9.6 has no pg_current_snapshot()"},
		{onePassFacts{version: 130000}, ""},
		{onePassFacts{version: 150020}, ""},
		{onePassFacts{version: 150020, volatileSet: true}, "volatile"},
	} {
		got := c.f.joinOnly()
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
}
