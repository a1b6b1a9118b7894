package audit_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
)

// TestPlainTextRefusesInvisibleCharacters: what an actor (and every text a
// writer checks) may hold is decided by Unicode categories and properties,
// not by a list of known offenders: controls (C0, DEL, C1), format
// characters, private use, line and paragraph separators, and the default
// ignorable code points (a combining grapheme joiner, the Hangul fillers,
// variation selectors), which a terminal shows as nothing. Visible text in
// any script, with spaces, is accepted.
func TestPlainTextRefusesInvisibleCharacters(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		s    string
	}{
		{"newline", "eve\n 999 forged"},
		{"escape", "\x1b[31mred"},
		{"tab", "a\tb"},
		{"DEL", "ev\x7fil"},
		{"C1 next line", "ev\u0085il"},
		{"C1 CSI", "ev\u009b31mil"},
		{"right-to-left override", "ev\u202eil"},
		{"zero width space", "ev\u200bil"},
		{"zero width joiner", "ev\u200dil"},
		{"byte order mark", "\ufeffeve"},
		{"tag character", "eve\U000E0041"},
		{"line separator", "a\u2028b"},
		{"paragraph separator", "a\u2029b"},
		{"private use", "eve\ue000"},
		{"combining grapheme joiner", "ev\u034fe"},
		{"Hangul filler", "\u3164"},
		{"Hangul choseong filler", "eve\u115f"},
		{"halfwidth Hangul filler", "eve\uffa0"},
		{"variation selector", "eve\ufe0f"},
		{"Braille blank", "a\u2800b"},
		{"musical null notehead", "a\U0001D159b"},
		{"Mongolian free variation selector", "eve\u180b"},
		{"invalid UTF-8", "bad\xffutf8"},
	} {
		if audit.PlainText(c.s) {
			t.Errorf("%s: PlainText(%q) = true", c.name, c.s)
		}
		err := audit.CheckActor(c.s)
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != "actor" {
			t.Errorf("%s: CheckActor(%q) = %v, want a validation error naming the actor", c.name, c.s, err)
		}
	}
	for _, s := range []string{"", "alice", "alice smith", "alice — fenêtre", "Jürgen", "李雷", "O'Brien", "ops@example.com",
		"שלום", "مرحبا", "🙂", "a=b \"c\" \\d"} {
		if !audit.PlainText(s) || audit.CheckActor(s) != nil {
			t.Errorf("PlainText(%q) = false, CheckActor = %v: visible text refused", s, audit.CheckActor(s))
		}
	}
}

// TestQuote: Quote writes any string as a Go string literal that is plain
// text (one line, every character visible) and reads back, with
// strconv.Unquote, as the string: it escapes what strconv.Quote does and
// also the invisible characters strconv.Quote counts as printable.
func TestQuote(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]string{
		"plain":          `"plain"`,
		"a b":            `"a b"`,
		"eve\n 999":      `"eve\n 999"`,
		"\x1b[31m\a":     `"\x1b[31m\a"`,
		"ev\x7fil":       `"ev\x7fil"`,
		"ev\u0085il":     `"ev\u0085il"`,
		"ev\u202eil":     `"ev\u202eil"`,
		"ev\u034fe":      `"ev\u034fe"`,
		"\u3164":         `"\u3164"`,
		"a\u2800b":       `"a\u2800b"`,
		"eve\U000E0041":  `"eve\U000e0041"`,
		"q\"b\\":         `"q\"b\\"`,
		"bad\xffutf8":    `"bad\xffutf8"`,
		"fenêtre — 李雷":   `"fenêtre — 李雷"`,
		"nbsp\u00a0here": `"nbsp\u00a0here"`,
	} {
		if got := audit.Quote(s); got != want {
			t.Errorf("Quote(%q) = %s, want %s", s, got, want)
		}
	}
}

// FuzzQuote: whatever the string, Quote's result is plain text and
// unquotes to it; printable plain text (no quote or backslash) is left as
// it is. (A code point Unicode has not assigned is plain text, but Quote,
// as strconv.Quote, escapes it.)
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "plain", "eve\n 999", "\x1b]0;t\a", "\xff\xfe", "ev\u034fe\u3164\ufe0f", "\U000E0041\u202e", "\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := audit.Quote(s)
		if !audit.PlainText(q) {
			t.Fatalf("Quote(%q) = %q is not plain text", s, q)
		}
		if back, err := strconv.Unquote(q); err != nil || back != s {
			t.Fatalf("Quote(%q) = %q unquotes to %q, %v", s, q, back, err)
		}
		shown := utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool {
			return !audit.PlainRune(r) || !strconv.IsPrint(r) || r == '"' || r == '\\'
		}) < 0
		if shown && q != `"`+s+`"` {
			t.Fatalf("Quote(%q) = %q changes printable plain text", s, q)
		}
	})
}

// TestCheckCommand: a command line is recorded whole in every entry's
// origin, so each argument must be one line of plain text. The refusal
// names the flag the argument gives (with --name=value, or as the value
// after --name) and never shows the value: it may be a secret.
func TestCheckCommand(t *testing.T) {
	t.Parallel()
	forged := "\n   999  2026-12-01T06:11:43Z  replay.run.finished  forged"
	for _, c := range []struct {
		args []string
		name string
	}{
		{[]string{"rewind", "--data-dir=/srv/x" + forged, "replay", "run", "t.yaml"}, "--data-dir (command-line argument 2)"},
		{[]string{"rewind", "--data-dir", "/srv/x\u202e", "replay"}, "--data-dir (command-line argument 3)"},
		{[]string{"rewind", "backfill", "run", "job" + forged + ".yaml"}, "command-line argument 4"},
		{[]string{"rewind", "-p", "token=s3cr3t\x1b[2J"}, "-p (command-line argument 3)"},
		{[]string{"rewind", "--param=note=a\u3164b"}, "--param (command-line argument 2)"},
	} {
		err := audit.CheckCommand(c.args)
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.name || ve.Value != "" {
			t.Errorf("CheckCommand(%q) = %#v, want a validation error naming %s without the value", c.args, err, c.name)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "forged") || strings.Contains(msg, "s3cr3t") || !audit.PlainText(msg) {
			t.Errorf("CheckCommand(%q) says %q: it shows the value", c.args, msg)
		}
	}
	if err := audit.CheckCommand([]string{"rewind", "--dsn=host=h password=*** dbname=d", "-p", "dest=/srv/a b", "run", "fenêtre.yaml"}); err != nil {
		t.Errorf("a plain command line is refused: %v", err)
	}
}

// TestCheckOrigin: every text of an origin is recorded in each entry;
// one that is not plain text is refused, naming the field.
func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	good := audit.Origin{Actor: "alice", Host: "h1", Version: "v1.2.3", Revision: "abc+modified", Command: "rewind replay run t.yaml --execute"}
	if err := audit.CheckOrigin(good); err != nil {
		t.Fatalf("CheckOrigin(%+v) = %v", good, err)
	}
	for field, o := range map[string]audit.Origin{
		"actor":    {Actor: "ev\u034fe", Host: "h1"},
		"host":     {Actor: "alice", Host: "h1\n 999 forged"},
		"version":  {Actor: "alice", Host: "h1", Version: "v1\x1b[2J"},
		"revision": {Actor: "alice", Host: "h1", Revision: "r\u202e"},
		"command":  {Actor: "alice", Host: "h1", Command: "rewind --data-dir=/x\n 999 forged replay run t.yaml"},
	} {
		err := audit.CheckOrigin(o)
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != field || strings.ContainsAny(err.Error(), "\n\x1b\u202e") {
			t.Errorf("CheckOrigin(%+v) = %v, want a validation error naming %s", o, err, field)
		}
	}
}

// TestEscape: Escape writes what PlainText refuses as Go escapes and
// leaves the rest, quotes included, as it is.
func TestEscape(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]string{
		`invalid actor "alice — fenêtre"`: `invalid actor "alice — fenêtre"`,
		"invalid actor \"ad\u034fmin\"":   `invalid actor "ad\u034fmin"`,
		"a\nb\x1b[2J\x7f\u0085\u3164\xff": `a\nb\x1b[2J\x7f\u0085\u3164\xff`,
		"nbsp\u00a0stays":                 "nbsp\u00a0stays",
	} {
		if got := audit.Escape(s); got != want || !audit.PlainText(got) {
			t.Errorf("Escape(%q) = %q, want %q", s, got, want)
		}
	}
}
