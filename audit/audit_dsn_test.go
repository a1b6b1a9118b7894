package audit_test

import (
	"testing"

	"github.com/rewindhq/rewind/audit"
)

// MaskText masks each connection string of a message on its own: the text
// around and between them stays as it was.
func TestMaskTextMasksEachURLOnItsOwn(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"open postgres://u:pw1234@h:5432/db: refused (see postgres://user@host:5432/db)":   "open postgres://u:***@h:5432/db: refused (see postgres://user@host:5432/db)",
		"cannot parse `postgres://u:xxxxx@h:99999/db`: invalid port, was postgres://a:b@c": "cannot parse `postgres://u:***@h:99999/db`: invalid port, was postgres://a:***@c",
		"host=h password=hunter22 dbname=d: refused":                                       "host=h password=*** dbname=d: refused",
		"no connection string here: a@b:c":                                                 "no connection string here: a@b:c",
	} {
		if got := audit.MaskText(in); got != want {
			t.Errorf("MaskText(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}
