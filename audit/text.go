package audit

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rewindhq/rewind"
)

// PlainText reports whether s prints as itself on one line, every
// character of it visible: valid UTF-8 without a character PlainRune
// refuses. What an actor, a reason, a template's text and each argument of
// a recorded command line must be.
func PlainText(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unplain) < 0
}

// PlainRune reports whether r may stand in plain text. It refuses, by
// Unicode category and property rather than by a list of known offenders:
// control characters (Cc: C0, DEL and C1; a newline could forge a line of
// a listing such as `rewind audit log`, an escape sequence drive the
// reader's terminal), format characters (Cf: a zero-width space hides
// text, a right-to-left override makes it read backwards), private-use
// characters (Co: a font draws them as it likes), surrogates (Cs), line
// and paragraph separators (Zl, Zp), and the default ignorable code points
// (Other_Default_Ignorable_Code_Point and Variation_Selector: a combining
// grapheme joiner, the Hangul fillers, variation selectors), which a
// terminal shows as nothing.
func PlainRune(r rune) bool { return !unplain(r) }

func unplain(c rune) bool {
	return unicode.In(c, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs, unicode.Zl, unicode.Zp,
		unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) || blank(c)
}

// blank reports the symbols that are neither format characters nor
// default ignorable, yet are drawn as nothing: the Braille blank (U+2800,
// a symbol, So) and the musical null notehead (U+1D159). Found by an
// outside tester: `a⠀b` printed as "a b", unquoted.
func blank(c rune) bool { return c == 0x2800 || c == 0x1D159 }

// CheckText refuses a text to record that is not one line of plain text
// (PlainText), with a *rewind.ValidationError naming field and the first
// character that is not. Invalid UTF-8 is refused too: PostgreSQL refuses
// it, after the work it was to record.
func CheckText(field, s string) error {
	if !utf8.ValidString(s) {
		return &rewind.ValidationError{Field: field, Value: s, Reason: "is not valid UTF-8"}
	}
	if i := strings.IndexFunc(s, unplain); i >= 0 {
		c, _ := utf8.DecodeRuneInString(s[i:])
		return &rewind.ValidationError{Field: field, Value: s,
			Reason: fmt.Sprintf("holds the character %U, which is not plain text: give one line of plain text", c)}
	}
	return nil
}

// CheckActor refuses an actor that is not one line of plain text: backfill
// runs and controls, and replay runs, record the actor in every entry and
// print it in status lines. The empty actor (the operating-system user) is
// accepted.
func CheckActor(actor string) error { return CheckText("actor", actor) }

// CheckCommand refuses a command line to record (args, as CurrentOrigin
// takes them) with an argument that is not one line of plain text. The
// *rewind.ValidationError names the argument by its position (from 1) and
// the flag it gives, written --name=value or as the value after --name,
// but never shows it: it may be a secret that masking would have hidden.
func CheckCommand(args []string) error {
	for i, a := range args {
		reason := notPlain(a)
		if reason == "" {
			continue
		}
		field := fmt.Sprintf("command-line argument %d", i+1)
		if name, _, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
			field = name + " (" + field + ")"
		} else if i > 0 && strings.HasPrefix(args[i-1], "-") && !strings.Contains(args[i-1], "=") {
			field = args[i-1] + " (" + field + ")"
		}
		if !PlainText(field) { // the flag's own name
			field = fmt.Sprintf("command-line argument %d", i+1)
		}
		return &rewind.ValidationError{Field: field,
			Reason: reason + ": the command line is recorded in the audit ledger; give each argument as one line of plain text"}
	}
	return nil
}

// CheckOrigin refuses an origin with a text that is not one line of plain
// text: every entry records its actor, host, build and command line. The
// command line, which may hold what masking hid, is not shown.
func CheckOrigin(o Origin) error {
	if err := CheckActor(o.Actor); err != nil {
		return err
	}
	for _, f := range []struct{ name, s string }{{"host", o.Host}, {"version", o.Version}, {"revision", o.Revision}} {
		if err := CheckText(f.name, f.s); err != nil {
			return err
		}
	}
	if reason := notPlain(o.Command); reason != "" {
		return &rewind.ValidationError{Field: "command",
			Reason: reason + ": the command line is recorded in the audit ledger; give each argument as one line of plain text"}
	}
	return nil
}

// notPlain says why s is not plain text, or "" when it is.
func notPlain(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if i := strings.IndexFunc(s, unplain); i >= 0 {
		c, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Sprintf("holds the character %U, which is not plain text", c)
	}
	return ""
}

// Quote returns s as a double-quoted Go string literal that is plain text
// and that strconv.Unquote reads back as s: it escapes what strconv.Quote
// escapes (controls, invalid UTF-8, characters Go does not count as
// printable, such as a no-break space) and also every character PlainRune
// refuses that strconv.Quote would leave as it is (a combining grapheme
// joiner, a Hangul filler). Everything else, in any script, stays as it is.
func Quote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == utf8.RuneError && n == 1, !strconv.IsPrint(r), unplain(r):
			b = appendEscape(b, s[i:i+n])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(append(b, '"'))
}

// Escape returns s with every character PlainRune refuses, and every
// byte that is not UTF-8, written as a Go escape (\n, \x1b, \u202e,
// \xff); the rest, quotes and backslashes too, stays as it is. For a
// message that already quotes what it shows, such as an error's.
func Escape(s string) string {
	if PlainText(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || unplain(r) {
			b = appendEscape(b, s[i:i+n])
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

// appendEscape appends the Go escape of c, one character or one byte
// that is not UTF-8, as strconv.Quote writes it.
func appendEscape(b []byte, c string) []byte {
	r, n := utf8.DecodeRuneInString(c)
	switch {
	case r == utf8.RuneError && n == 1:
		return fmt.Appendf(b, `\x%02x`, c[0])
	case r < utf8.RuneSelf:
		q := strconv.QuoteRune(r) // '\n', '\x1b': the escape between the quotes
		return append(b, q[1:len(q)-1]...)
	case r < 0x10000:
		return fmt.Appendf(b, `\u%04x`, r)
	default:
		return fmt.Appendf(b, `\U%08x`, r)
	}
}
