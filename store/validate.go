package store

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/rewindhq/rewind"
)

// Name rules, shared by stream names and event types: 1 to 256 bytes of
// UTF-8 without spaces or control characters, not starting with '$' (kept
// for the store's own records).
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
	for i, r := range s {
		if r == utf8.RuneError {
			return bad(fmt.Sprintf("is not valid UTF-8 at byte %d", i))
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return bad(fmt.Sprintf("must not contain spaces or control characters (found %q at byte %d)", r, i))
		}
	}
	return nil
}

const (
	maxMetadataKey   = 128
	maxContentType   = 128
	maxMetadataCount = 64
)

// validateEvent checks what the encoded size does not.
func validateEvent(i int, e *rewind.Event) error {
	field := func(f string) string { return fmt.Sprintf("events[%d].%s", i, f) }
	if err := validateName("event type", e.Type); err != nil {
		err.(*rewind.ValidationError).Field = field("type")
		return err
	}
	if len(e.ContentType) > maxContentType || !utf8.ValidString(e.ContentType) {
		return &rewind.ValidationError{Field: field("content_type"), Value: e.ContentType,
			Reason: fmt.Sprintf("must be UTF-8 of at most %d bytes", maxContentType)}
	}
	if len(e.Metadata) > maxMetadataCount {
		return &rewind.ValidationError{Field: field("metadata"),
			Reason: fmt.Sprintf("has %d entries, at most %d are allowed", len(e.Metadata), maxMetadataCount)}
	}
	for k, v := range e.Metadata {
		if k == "" || len(k) > maxMetadataKey || !utf8.ValidString(k) {
			return &rewind.ValidationError{Field: field("metadata key"), Value: k,
				Reason: fmt.Sprintf("must be non-empty UTF-8 of at most %d bytes", maxMetadataKey)}
		}
		if !utf8.ValidString(v) {
			return &rewind.ValidationError{Field: field("metadata[" + k + "]"), Reason: "must be valid UTF-8"}
		}
	}
	return nil
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
