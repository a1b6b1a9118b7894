package audit_test

import (
	"fmt"
	"strings"
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

// The URL forms with one slash (what filepath.Clean makes of postgres://
// inside a path) are masked as the two-slash ones are, by MaskDSN and by
// MaskText; so are keyword/value passwords wherever they stand.
func TestMaskOneSlashURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres:/user:pw1234@host/db":                                          "postgres:/user:***@host/db",
		"postgresql:/user:pw1234@host:5432/db?x=1":                               "postgresql:/user:***@host:5432/db?x=1",
		"/srv/postgres:/user:pw1234@host/db":                                     "/srv/postgres:/user:***@host/db",
		"postgres:/user@host/db?password=pw1234":                                 "postgres:/user@host/db?password=***",
		"postgres://user:pw1234@host/db":                                         "postgres://user:***@host/db",
		"/srv/host=h password=pw1234 dbname=d":                                   "/srv/host=h password=*** dbname=d",
		"file:/no/userinfo/here":                                                 "file:/no/userinfo/here",
		"store /srv/postgres:/u:pw1234@h/db and more":                            "store /srv/postgres:/u:***@h/db and more",
		"open /p/postgres:/u:pw1234@h/db: not found, and postgresql:/v:pw5678@g": "open /p/postgres:/u:***@h/db: not found, and postgresql:/v:***@g",
	} {
		if got := audit.MaskText(in); got != want {
			t.Errorf("MaskText(%q)\n = %q\nwant %q", in, got, want)
		}
		if strings.Count(in, ":/") == 1 && !strings.Contains(in, " and ") {
			if got := audit.MaskDSN(in); got != want && got != "***" {
				t.Errorf("MaskDSN(%q)\n = %q\nwant %q", in, got, want)
			}
		}
	}
	e := audit.MaskEntry(audit.Entry{Subject: "postgres:/u:pw1234@h", Attrs: map[string]string{"a": "x postgres:/u:pw1234@h"},
		Message: "password=pw1234", Origin: audit.Origin{Actor: "postgres:/u:pw1234@h", Command: "-p d=postgres:/u:pw1234@h"}})
	if s := fmt.Sprint(e); strings.Contains(s, "pw1234") {
		t.Errorf("MaskEntry left a password: %s", s)
	}
}

// A keyword password inside a quoted value of a message (as a template
// error quotes what it refuses) is masked up to the closing quote, which
// stays, with what follows it; a quote inside a password is still masked.
func TestMaskTextKeywordPasswordStopsAtTheClosingQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`window.to "password=PWbb6": must be a position`: `window.to "password=***": must be a position`,
		`window.to "password=PWbb6"`:                     `window.to "password=***"`,
		`got "host=h password=PWbb6", want more`:         `got "host=h password=***", want more`,
		`(password=PWbb6")`:                              `(password=***")`,
		`host=h password=ab"cdefgh dbname=d`:             `host=h password=*** dbname=d`,
		`"host=h password=ab\"cdefgh dbname=d"`:          `"host=h password=*** dbname=d"`,
		`password='quoted pass' after`:                   `password=*** after`,
	} {
		if got := audit.MaskText(in); got != want {
			t.Errorf("MaskText(%q)\n = %q\nwant %q", in, got, want)
		}
	}
	if got := audit.MaskDSN(`host=h password=ab"cdefgh dbname=d`); strings.Contains(got, "cdefgh") {
		t.Errorf("MaskDSN leaves part of a password with a quote: %q", got)
	}
}

// Keyword masking replaces the password's value only: the keyword keeps
// its case and the spacing around '=' stays as written.
func TestMaskKeywordPasswordKeepsTheText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"host=h PASSWORD = hunter22 dbname=d":    "host=h PASSWORD = *** dbname=d",
		"host=h Password=hunter22":               "host=h Password=***",
		"host=h SSLPassword= 'a b' dbname=d":     "host=h SSLPassword= *** dbname=d",
		"connect: password =hunter22 refused":    "connect: password =*** refused",
		"host=h password=hunter22 sslpassword=x": "host=h password=*** sslpassword=***",
	} {
		if got := audit.MaskText(in); got != want {
			t.Errorf("MaskText(%q)\n = %q\nwant %q", in, got, want)
		}
		if got := audit.MaskDSN(in); got != want {
			t.Errorf("MaskDSN(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

// A URL with userinfo and no slashes after its scheme's colon
// (postgres:u:PW@h, as a DSN is sometimes mistyped) has its password
// masked too; text with colons and no such userinfo is left alone.
func TestMaskSlashlessURLUserinfo(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres:u:PW1234@h":                        "postgres:u:***@h",
		"postgresql:user:PW1234@host:5432/db?x=1":    "postgresql:user:***@host:5432/db?x=1",
		"postgres::PW1234@h":                         "postgres::***@h",
		"postgres:u:P@ss:w0rd@h/db":                  "postgres:u:***@h/db",
		"open postgres:u:PW1234@h/db: refused":       "open postgres:u:***@h/db: refused",
		"--dsn=postgres:u:PW1234@h":                  "--dsn=postgres:u:***@h",
		"dest=/srv/postgres:u:PW1234@h":              "dest=/srv/postgres:u:***@h",
		"at 2026-12-01T06:11:43Z by ops@example.com": "at 2026-12-01T06:11:43Z by ops@example.com",
		"error: user:alice@example.com":              "error: user:alice@example.com",
		"mailto:bob@example.com":                     "mailto:bob@example.com",
		"no connection string here: a@b:c":           "no connection string here: a@b:c",
		"ratio 3:4:5@2x":                             "ratio 3:4:5@2x",
	} {
		if got := audit.MaskText(in); got != want {
			t.Errorf("MaskText(%q)\n = %q\nwant %q", in, got, want)
		}
		if got := audit.MaskDSN(in); got != want {
			t.Errorf("MaskDSN(%q)\n = %q\nwant %q", in, got, want)
		}
	}
	if got := audit.MaskArgs([]string{"rewind", "--dsn", "postgres:u:PW1234@h", "-p", "dest=postgres:u:PW1234@h"}, nil); strings.Contains(got, "PW1234") {
		t.Errorf("MaskArgs leaves a slashless URL's password: %q", got)
	}
}
