package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// eventJSON is an event as the CLI reads and prints it. `rewind read
// --json` prints the fields append accepts, so its output can be appended
// elsewhere; position, version and recorded_at are ignored on input.
type eventJSON struct {
	Position      rewind.Position   `json:"position,omitempty"`
	Stream        string            `json:"stream,omitempty"`
	Version       uint64            `json:"version,omitempty"`
	ID            string            `json:"id,omitempty"`
	Type          string            `json:"type"`
	SchemaVersion uint32            `json:"schema_version,omitempty"`
	ContentType   string            `json:"content_type,omitempty"`
	Data          json.RawMessage   `json:"data,omitempty"`
	DataBase64    []byte            `json:"data_base64,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	OccurredAt    *time.Time        `json:"occurred_at,omitempty"`
	RecordedAt    *time.Time        `json:"recorded_at,omitempty"`
}

func toJSON(e *rewind.RecordedEvent) eventJSON {
	j := eventJSON{
		Position: e.Position, Stream: e.Stream, Version: e.Version, ID: e.ID.String(), Type: e.Type,
		SchemaVersion: e.SchemaVersion, ContentType: e.ContentType, Metadata: e.Metadata,
	}
	if isJSON(e.ContentType) && json.Valid(e.Data) {
		j.Data = e.Data
	} else if len(e.Data) > 0 {
		j.DataBase64 = e.Data
	}
	if !e.OccurredAt.IsZero() {
		t := e.OccurredAt
		j.OccurredAt = &t
	}
	t := e.RecordedAt
	j.RecordedAt = &t
	return j
}

func isJSON(ct string) bool {
	return ct == "" || ct == rewind.DefaultContentType || strings.HasSuffix(ct, "+json")
}

// nilIDReason is why the nil UUID is refused as an event id: ids make
// retries idempotent, and the nil UUID would be the same id for every
// event of every writer that leaves its id unset by mistake.
const nilIDReason = "is the nil UUID, which is not an event id; give a unique UUID, or leave the id out to have one generated"

// toEvent converts one input line; line numbers errors for the user.
func (j *eventJSON) toEvent(stream string, line int) (rewind.Event, error) {
	bad := func(field, reason string) error {
		return &rewind.ValidationError{Field: fmt.Sprintf("line %d: %s", line, field), Reason: reason}
	}
	if j.Stream != "" && j.Stream != stream {
		return rewind.Event{}, bad("stream", fmt.Sprintf("is %q but the events are appended to %q; drop the field or append to that stream", j.Stream, stream))
	}
	e := rewind.Event{Type: j.Type, SchemaVersion: j.SchemaVersion, ContentType: j.ContentType, Metadata: j.Metadata}
	if j.ID != "" {
		id, err := uuid.Parse(j.ID)
		switch {
		case err != nil:
			return e, bad("id", "must be a UUID such as 0190b5a4-6c4e-7f2a-9d3e-1a2b3c4d5e6f")
		case id == uuid.Nil:
			return e, bad("id", nilIDReason)
		}
		e.ID = id
	}
	switch {
	case j.Data != nil && j.DataBase64 != nil:
		return e, bad("data", `give either "data" (a JSON value) or "data_base64", not both`)
	case j.Data != nil:
		if !isJSON(j.ContentType) {
			return e, bad("data", fmt.Sprintf(`content type %q is not JSON: give the body as "data_base64"`, j.ContentType))
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, j.Data); err != nil {
			return e, bad("data", "is not valid JSON: "+err.Error())
		}
		e.Data = buf.Bytes()
	default:
		e.Data = j.DataBase64
	}
	if j.OccurredAt != nil {
		e.OccurredAt = *j.OccurredAt
	}
	return e, nil
}

// readEventLines reads JSON lines from r, calling fn with each batch of up
// to batch events. Every line is checked before its batch is appended; a
// bad line stops the input with an error naming it.
func readEventLines(r io.Reader, stream string, batch int, fn func([]rewind.Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var events []rewind.Event
	line, appended := 0, false
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		if !utf8.Valid(raw) {
			return &rewind.ValidationError{Field: fmt.Sprintf("line %d", line), Reason: "is not valid UTF-8"}
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var j eventJSON
		if err := dec.Decode(&j); err != nil {
			return lineError(line, err)
		}
		if dec.More() {
			return &rewind.ValidationError{Field: fmt.Sprintf("line %d", line), Reason: "holds more than one JSON value; put one event per line"}
		}
		e, err := j.toEvent(stream, line)
		if err != nil {
			return err
		}
		events = append(events, e)
		if len(events) == batch {
			if err := fn(events); err != nil {
				return err
			}
			events = events[:0]
			appended = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	if len(events) > 0 {
		return fn(events)
	}
	if !appended {
		return noEvents
	}
	return nil
}

// printEvent prints one event as a line of text or JSON.
func (a *app) printEvent(e *rewind.RecordedEvent, asJSON bool) error {
	if asJSON {
		return a.printJSON(toJSON(e))
	}
	data := string(e.Data)
	if !isJSON(e.ContentType) || !utf8.ValidString(data) {
		data = fmt.Sprintf("<%d bytes %s>", len(e.Data), e.ContentType)
	} else if len(data) > 120 {
		data = data[:117] + "..."
	}
	a.printf("%-8d %s@%d  %s  %s  %s\n", e.Position, e.Stream, e.Version, e.Type,
		e.RecordedAt.Format(time.RFC3339Nano), data)
	return nil
}

// lineError says what is wrong with an input line that does not decode:
// for a field of the wrong type or range, which field and what it must
// be, rather than the decoder's words.
func lineError(line int, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		reason := "must be " + map[string]string{
			"uint32": "a whole number from 0 to 4294967295", "string": "a string",
			"map[string]string": `an object of strings, such as {"actor":"ana"}`,
		}[te.Type.String()]
		if reason == "must be " {
			reason = "has the wrong type"
		}
		if te.Type.Kind() == reflect.Uint32 && strings.HasPrefix(te.Value, "number") {
			reason += " (a number that large or with a fraction does not fit)"
		}
		return &rewind.ValidationError{Field: fmt.Sprintf("line %d: %s", line, te.Field), Reason: reason}
	}
	return &rewind.ValidationError{Field: fmt.Sprintf("line %d", line),
		Reason: "is not an event object: " + err.Error() + `; expected {"type": "...", "data": {...}}`}
}
