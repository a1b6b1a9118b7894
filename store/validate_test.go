package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// TestValidationRefusesInvisibleAndInjectedCharacters appends names,
// content types and metadata that could hide what they are or break a
// header or log line. Each must be refused with an invalid argument that
// names the field, and write nothing; the plain ones next to them pass.
func TestValidationRefusesInvisibleAndInjectedCharacters(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	type c struct {
		name, stream string
		ev           rewind.Event
		field        string // "" when the append must succeed
	}
	plain := rewind.Event{Type: "T"}
	with := func(f func(*rewind.Event)) rewind.Event { e := plain; f(&e); return e }
	for _, c := range []c{
		{"plain", "orders-1", plain, ""},
		{"non-ASCII letters", "commandes-été-✓", plain, ""},
		{"zero-width space in stream", "orders\u200b-1", plain, "stream name"},
		{"zero-width joiner in stream", "orders\u200d1", plain, "stream name"},
		{"right-to-left override in stream", "orders-\u202e1-sredro", plain, "stream name"},
		{"right-to-left isolate in stream", "a\u2067b", plain, "stream name"},
		{"left-to-right mark in stream", "a\u200eb", plain, "stream name"},
		{"byte order mark in stream", "\ufefforders-1", plain, "stream name"},
		{"soft hyphen in stream", "or\u00adders", plain, "stream name"},
		{"variation selector in stream", "a\ufe0fb", plain, "stream name"},
		{"Hangul filler in stream", "a\u3164b", plain, "stream name"},
		{"word joiner in event type", "s", with(func(e *rewind.Event) { e.Type = "Placed\u2060" }), "events[0].type"},
		{"content type", "s", with(func(e *rewind.Event) { e.ContentType = "application/json; charset=utf-8" }), ""},
		{"CRLF in content type", "s", with(func(e *rewind.Event) { e.ContentType = "text/plain\r\nX-Evil: 1" }),
			"events[0].content_type"},
		{"NUL in content type", "s", with(func(e *rewind.Event) { e.ContentType = "text/plain\x00" }),
			"events[0].content_type"},
		{"non-ASCII content type", "s", with(func(e *rewind.Event) { e.ContentType = "text/plaín" }),
			"events[0].content_type"},
		{"metadata", "s", with(func(e *rewind.Event) {
			e.Metadata = map[string]string{"correlation-id": "c-1", "$source": "été\tx", "note": "a b"}
		}), ""},
		{"LF in metadata key", "s", with(func(e *rewind.Event) { e.Metadata = map[string]string{"a\nb": "v"} }),
			"events[0].metadata key"},
		{"space in metadata key", "s", with(func(e *rewind.Event) { e.Metadata = map[string]string{"a b": "v"} }),
			"events[0].metadata key"},
		{"bidi override in metadata key", "s", with(func(e *rewind.Event) {
			e.Metadata = map[string]string{"user\u202e": "v"}
		}), "events[0].metadata key"},
		{"CRLF in metadata value", "s", with(func(e *rewind.Event) {
			e.Metadata = map[string]string{"k": "v\r\nSet-Cookie: x=1"}
		}), "events[0].metadata[k]"},
		{"escape in metadata value", "s", with(func(e *rewind.Event) { e.Metadata = map[string]string{"k": "\x1b[31mred"} }),
			"events[0].metadata[k]"},
		{"C1 control in metadata value", "s", with(func(e *rewind.Event) { e.Metadata = map[string]string{"k": "a\u0085b"} }),
			"events[0].metadata[k]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			last := s.Log().Last()
			_, err := s.Append(ctx, c.stream, rewind.Any, c.ev)
			if c.field == "" {
				if err != nil {
					t.Fatalf("append refused: %v", err)
				}
				return
			}
			var ve *rewind.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, rewind.ErrInvalidArgument) || ve.Field != c.field {
				t.Fatalf("append: %v, want an invalid %s", err, c.field)
			}
			if strings.ContainsAny(err.Error(), "\r\n\x00\x1b") {
				t.Fatalf("the message carries the control characters it refused: %q", err)
			}
			if got := s.Log().Last(); got != last {
				t.Fatalf("a refused append wrote: last %d -> %d", last, got)
			}
		})
	}
}

// TestEncodedSize: EncodedSize, which counts without encoding, is the
// length of the envelope an append writes, across the lengths where a
// varint takes another byte.
func TestEncodedSize(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200)
	md := map[string]string{"k": "v", long: long, "": strings.Repeat("y", 20_000)}
	for _, c := range []struct {
		stream string
		e      rewind.Event
	}{
		{"s", rewind.Event{Type: "T"}},
		{long, rewind.Event{ID: uuid.New(), Type: long, Data: []byte(long), ContentType: rewind.DefaultContentType}},
		{"orders-1", rewind.Event{Type: "Placed", SchemaVersion: 1 << 31, ContentType: "text/plain", Metadata: md,
			OccurredAt: time.Unix(5, 6), Data: make([]byte, 1<<20)}},
	} {
		if got, want := EncodedSize(c.stream, &c.e), len(encodeEnvelope(nil, c.stream, c.e.ID, true, &c.e)); got != want {
			t.Errorf("EncodedSize(%.10q, type %.10q) = %d, the envelope has %d bytes", c.stream, c.e.Type, got, want)
		}
	}
}
