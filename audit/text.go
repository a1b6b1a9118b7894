package audit

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rewindhq/rewind"
)

// PlainText reports whether s prints as itself on one line: valid UTF-8
// without a control character (a newline could forge a line of a listing
// such as `rewind audit log`, an escape sequence drive the reader's
// terminal), a line or paragraph separator, or a format character (a
// zero-width space hides text, a right-to-left override makes it read
// backwards). What an actor, a reason and a template's text must be.
func PlainText(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unplain) < 0
}

func unplain(c rune) bool {
	return unicode.IsControl(c) || unicode.In(c, unicode.Cf, unicode.Zl, unicode.Zp)
}

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
