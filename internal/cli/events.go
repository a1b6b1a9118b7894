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
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/store"
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

// Bounds of the events append reads from standard input, all of which it
// checks before it appends the first batch, so that a bad line anywhere
// writes nothing.
const (
	// maxInputLine bounds one input line.
	maxInputLine = 64 << 20
	// maxInput bounds the whole input, which is held in memory until
	// every line was checked.
	maxInput = 256 << 20
)

// readEventLines reads and checks every JSON line of r, and returns the
// events. A bad line stops the input with an error naming it; nothing has
// been appended then. maxEventSize, when not 0, bounds the encoded size of
// each event, as the store that takes them does.
func readEventLines(r io.Reader, stream string, maxEventSize int) ([]rewind.Event, error) {
	cr := &countingReader{r: r}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 64<<10), maxInputLine)
	var events []rewind.Event
	ids := map[uuid.UUID]int{}
	line := 0
	for sc.Scan() {
		line++
		if cr.n > maxInput {
			return nil, &rewind.ValidationError{Field: "standard input", Reason: fmt.Sprintf("is larger than %s, "+
				"the most one append reads (every line is checked before the first is appended); split it into "+
				"several appends; nothing was appended", config.Size(maxInput))}
		}
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		e, err := parseEventLine(raw, stream, line)
		if err != nil {
			return nil, err
		}
		if e.ID != (uuid.UUID{}) {
			if prev, ok := ids[e.ID]; ok {
				return nil, &rewind.ValidationError{Field: fmt.Sprintf("line %d: id", line), Value: e.ID.String(),
					Reason: fmt.Sprintf("repeats the id of line %d; every event needs its own id", prev)}
			}
			ids[e.ID] = line
		}
		if maxEventSize > 0 {
			if n := store.EncodedSize(stream, &e); n > maxEventSize {
				return nil, &rewind.LimitError{Limit: fmt.Sprintf("line %d: event size (bytes)", line),
					Max: int64(maxEventSize), Got: int64(n),
					Hint: "store large bodies elsewhere and put a reference in the event; nothing was appended"}
			}
		}
		events = append(events, e)
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return nil, &rewind.ValidationError{Field: fmt.Sprintf("line %d", line+1), Reason: fmt.Sprintf(
			"is longer than %s, the longest line append reads; nothing was appended", config.Size(maxInputLine))}
	case err != nil:
		return nil, fmt.Errorf("read standard input: %w", err)
	case len(events) == 0:
		return nil, noEvents
	}
	return events, nil
}

// parseEventLine decodes and checks one input line.
func parseEventLine(raw []byte, stream string, line int) (rewind.Event, error) {
	bad := func(reason string) error {
		return &rewind.ValidationError{Field: fmt.Sprintf("line %d", line), Reason: reason}
	}
	if !utf8.Valid(raw) {
		return rewind.Event{}, bad("is not valid UTF-8")
	}
	if raw[0] != '{' {
		return rewind.Event{}, bad(`is not an event object; expected {"type": "...", "data": {...}}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var j eventJSON
	if err := dec.Decode(&j); err != nil {
		return rewind.Event{}, lineError(line, err)
	}
	if dec.More() {
		return rewind.Event{}, bad("holds more than one JSON value; put one event per line")
	}
	if key := repeatedKey(raw); key != "" {
		return rewind.Event{}, &rewind.ValidationError{Field: fmt.Sprintf("line %d: %s", line, key),
			Reason: "is given twice; give each field once"}
	}
	e, err := j.toEvent(stream, line)
	if err != nil {
		return e, err
	}
	if err := store.ValidateEvent(&e); err != nil {
		var ve *rewind.ValidationError
		if errors.As(err, &ve) {
			return e, &rewind.ValidationError{Field: fmt.Sprintf("line %d: %s", line,
				strings.TrimPrefix(ve.Field, "events[0].")), Value: ve.Value, Reason: ve.Reason}
		}
		return e, err
	}
	return e, nil
}

// repeatedKey returns a key the JSON object raw (valid JSON) holds twice
// at its top level, or "": the decoder would keep the last silently.
func repeatedKey(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := t.(string)
		if seen[key] {
			return key
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
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
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &rewind.ValidationError{Field: fmt.Sprintf("line %d", line),
			Reason: fmt.Sprintf("is not valid JSON (%s at byte %d)", se.Error(), se.Offset)}
	}
	return &rewind.ValidationError{Field: fmt.Sprintf("line %d", line),
		Reason: `is not an event object; expected {"type": "...", "data": {...}}`}
}
