package store

import (
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rewindhq/rewind"
)

// Name rules, shared by stream names and event types: 1 to 256 bytes of
// UTF-8 without spaces, control characters or invisible and
// direction-changing characters (zero-width spaces and joiners, bidi
// marks, embeddings, overrides and isolates, byte order marks), not
// starting with '$' (kept for the store's own records). Invisible
// characters would let two names that print alike name two streams, and
// a bidi override make a name print as another.
const maxNameLen = 256

// ValidateStreamName reports whether name can name a stream.
func ValidateStreamName(name string) error { return validateName("stream name", name) }

// ValidateEventType reports whether typ can be an event type.
func ValidateEventType(typ string) error { return validateName("event type", typ) }

func validateName(field, s string) error {
	bad := func(reason string) error { return &rewind.ValidationError{Field: field, Value: s, Reason: reason} }
	if len(s) > 0 && len(s) <= maxNameLen && s[0] != '$' && plainASCII(s) {
		return nil
	}
	switch {
	case s == "":
		return bad("must not be empty")
	case len(s) > maxNameLen:
		return bad(fmt.Sprintf("must be at most %d bytes, got %d", maxNameLen, len(s)))
	case s[0] == '$':
		return bad(`must not start with "$", which is reserved for the store's own records`)
	}
	return checkRunes(s, bad)
}

// checkRunes applies the name rules to each character of s.
func checkRunes(s string, bad func(reason string) error) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			return bad(fmt.Sprintf("is not valid UTF-8 at byte %d", i))
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return bad(fmt.Sprintf("must not contain spaces or control characters (found %q at byte %d)", r, i))
		case invisible(r):
			return bad(fmt.Sprintf("must not contain invisible or direction-changing characters (found %U at byte %d)",
				r, i))
		}
	}
	return nil
}

// invisible reports whether r prints as nothing or changes the direction
// of the text around it: Unicode's format characters (Cf: zero-width
// space and joiners, bidi marks, embeddings, overrides and isolates, the
// byte order mark, soft hyphen) and the other default-ignorable ones
// (variation selectors, fillers).
func invisible(r rune) bool {
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		unicode.Is(unicode.Variation_Selector, r)
}

const (
	maxMetadataKey   = 128
	maxContentType   = 128
	maxMetadataCount = 64
)

// The occurred-at times an envelope can hold.
var (
	minOccurredAt = time.Unix(0, math.MinInt64)
	maxOccurredAt = time.Unix(0, math.MaxInt64)
)

// ValidateEvent reports whether e can be appended, as an append checks
// each of its events, except for the encoded size (see EncodedSize) and
// ids repeated within a batch. Its field names the event as events[0].
func ValidateEvent(e *rewind.Event) error { return validateEvent(0, e) }

// EncodedSize returns the size of e as an append to stream stores it, the
// size that Config.MaxEventSize bounds.
func EncodedSize(stream string, e *rewind.Event) int { return envelopeSize(stream, e) }

// validateEvent checks what the encoded size does not.
func validateEvent(i int, e *rewind.Event) error {
	field := func(f string) string { return fmt.Sprintf("events[%d].%s", i, f) }
	if err := validateName("event type", e.Type); err != nil {
		err.(*rewind.ValidationError).Field = field("type")
		return err
	}
	if len(e.ContentType) > maxContentType || !printableASCII(e.ContentType) {
		return &rewind.ValidationError{Field: field("content_type"), Value: e.ContentType,
			Reason: fmt.Sprintf("must be printable ASCII of at most %d bytes, such as application/json; "+
				"control characters (CR, LF) are refused", maxContentType)}
	}
	if t := e.OccurredAt; !t.IsZero() && (t.Before(minOccurredAt) || t.After(maxOccurredAt)) {
		return &rewind.ValidationError{Field: field("occurred_at"), Value: t.Format(time.RFC3339),
			Reason: "must be between 1677-09-21 and 2262-04-11, the range of Unix nanoseconds it is stored as"}
	}
	if len(e.Metadata) > maxMetadataCount {
		return &rewind.ValidationError{Field: field("metadata"),
			Reason: fmt.Sprintf("has %d entries, at most %d are allowed", len(e.Metadata), maxMetadataCount)}
	}
	for k, v := range e.Metadata {
		if err := validateMetadata(k, v); err != nil {
			err.Field = field(err.Field)
			return err
		}
	}
	return nil
}

// ValidateMetadataKey reports whether k can be a metadata key (the name
// rules, '$' allowed first), as Append checks it: a consumer group ordered
// by a metadata key nothing can carry would order nothing.
func ValidateMetadataKey(k string) error {
	if err := validateMetadata(k, ""); err != nil {
		return err
	}
	return nil
}

// validateMetadata checks one metadata entry. A key follows the name rules
// but may start with '$'; a value is UTF-8 without control characters
// other than tab, so that neither can smuggle a line break into a header,
// a log line or a terminal.
func validateMetadata(k, v string) *rewind.ValidationError {
	if k == "" || len(k) > maxMetadataKey {
		return &rewind.ValidationError{Field: "metadata key", Value: k,
			Reason: fmt.Sprintf("must be 1 to %d bytes", maxMetadataKey)}
	}
	if !plainASCII(k) {
		if err := checkRunes(k, func(reason string) error {
			return &rewind.ValidationError{Field: "metadata key", Value: k, Reason: reason}
		}); err != nil {
			return err.(*rewind.ValidationError)
		}
	}
	if printableASCII(v) {
		return nil // the common case, without decoding runes
	}
	if !utf8.ValidString(v) {
		return &rewind.ValidationError{Field: "metadata[" + k + "]", Reason: "must be valid UTF-8"}
	}
	for i, r := range v {
		if r != '\t' && unicode.IsControl(r) {
			return &rewind.ValidationError{Field: "metadata[" + k + "]",
				Reason: fmt.Sprintf("must not contain control characters such as CR or LF (found %q at byte %d)", r, i)}
		}
	}
	return nil
}

// printableASCII reports whether s holds only printable ASCII, spaces
// included.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// plainASCII reports whether s holds only printable ASCII other than space:
// the common case, checked without decoding runes.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
