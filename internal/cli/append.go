package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/store"
)

func (a *app) appendCmd() *cobra.Command {
	var (
		typ, data, id, expected, contentType string
		metadata                             []string
		batch                                int
		jsonOut                              bool
	)
	cmd := &cobra.Command{
		Use:   "append STREAM",
		Short: "Append events to a stream",
		Long: `Append events to a stream, atomically per batch.

With --type, appends one event whose body is --data and does not read standard
input; if standard input holds data (a non-empty file, or a pipe with bytes
already waiting) it says so on stderr. Without --type, reads events as JSON
lines from standard input, one object per line:

  {"type":"OrderPlaced","data":{"order":1},"id":"<uuid, optional>","metadata":{"actor":"ana"}}

Fields: type (required), data (a JSON value) or data_base64, id (a UUID: give one
to make retries safe, since an append whose ids are all recorded already writes
nothing), schema_version, content_type, metadata, occurred_at (RFC 3339).
Every line is read and checked before the first is appended, so a bad line
anywhere appends nothing; the input is held in memory meanwhile, up to 256MiB
(lines up to 64MiB each). Lines are then appended in batches of --batch events;
each batch is atomic. The expected version applies to the first batch; later
batches expect the version the previous one left.`,
		Example: `  rewind append orders-1 --type OrderPlaced --data '{"total":12}' --expected-version no-stream
  printf '%s\n' '{"type":"A","data":1}' '{"type":"B","data":2}' | rewind append orders-2`,
		Args: exactArgs(1, "STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			stream := args[0]
			ev, err := parseExpectedVersion(expected)
			if err != nil {
				return err
			}
			if batch < 1 {
				return invalidFlag("batch", fmt.Sprint(batch), "must be at least 1")
			}
			meta, err := parseMetadata(metadata)
			if err != nil {
				return err
			}
			var single *rewind.Event
			if typ != "" && pendingInput(a.stdin) {
				// A warning, not a refusal: a shell loop reading a file
				// ("while read …; do rewind append … --type T; done < f")
				// gives every command that file as its standard input.
				fmt.Fprintln(a.stderr, "rewind: warning: standard input holds data that --type leaves unread: "+
					"with --type, append appends the one event of the flags; leave --type out to append the "+
					"JSON lines of standard input")
			}
			if typ != "" {
				e, err := singleEvent(typ, data, id, contentType, meta)
				if err != nil {
					return err
				}
				single = &e
			} else if data != "" || id != "" || len(metadata) > 0 || contentType != "" {
				return invalidFlag("type", "", "is required with --data, --id, --metadata and --content-type; "+
					"without them, events are read as JSON lines from standard input")
			}
			var lines []rewind.Event
			if single == nil {
				// Every line is read and checked before the store is
				// opened (and a data directory created): a bad line
				// anywhere appends nothing. Reading standard input ends
				// with Ctrl-C even while it waits for a line.
				in := bufio.NewReaderSize(ctxReader{cmd.Context(), a.stdin}, 64<<10)
				if err := requireInput(in); err != nil {
					return err
				}
				maxSize := store.DefaultMaxEventSize // a server checks its own limit
				if a.server != "" {
					maxSize = 0
				}
				if lines, err = readEventLines(in, stream, maxSize); err != nil {
					return err
				}
			}
			s, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			var total rewind.AppendResult
			n := 0
			appendBatch := func(events []rewind.Event) error {
				res, err := s.Append(cmd.Context(), stream, ev, events...)
				if err != nil {
					if n > 0 {
						return fmt.Errorf("%w (the first %d events were appended, up to version %d)", err, n, total.LastVersion)
					}
					return err
				}
				if n == 0 {
					total = res
				}
				total.LastPosition, total.LastVersion, total.Duplicate = res.LastPosition, res.LastVersion, total.Duplicate && res.Duplicate
				n += len(events)
				ev = rewind.Exactly(res.LastVersion)
				return nil
			}
			if single != nil {
				err = appendBatch([]rewind.Event{*single})
			}
			for len(lines) > 0 && err == nil {
				k := min(batch, len(lines))
				err = appendBatch(lines[:k])
				lines = lines[k:]
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return a.printJSON(map[string]any{
					"stream": stream, "events": n, "duplicate": total.Duplicate,
					"first_position": total.FirstPosition, "last_position": total.LastPosition,
					"first_version": total.FirstVersion, "last_version": total.LastVersion,
				})
			}
			verb := "appended"
			if total.Duplicate {
				verb = "already recorded (idempotent retry, nothing written):"
			}
			noun := "events"
			if n == 1 {
				noun = "event"
			}
			a.printf("%s %d %s to %s: versions %d-%d, positions %d-%d\n", verb, n, noun, stream,
				total.FirstVersion, total.LastVersion, total.FirstPosition, total.LastPosition)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "event type of a single event (then the body is --data)")
	f.StringVar(&data, "data", "", "body of the single event: JSON unless --content-type says otherwise")
	allowEmpty(f, "data", "an empty body, as when --data is left out")
	f.StringVar(&id, "id", "", "event id (UUID) of the single event, for safe retries; generated if absent")
	f.StringVar(&contentType, "content-type", "", "content type of the single event (default "+rewind.DefaultContentType+")")
	emptyReason(f, "type", "must not be empty; leave --type out to read events as JSON lines from standard input")
	emptyReason(f, "content-type", "must not be empty; leave --content-type out for "+rewind.DefaultContentType)
	f.StringArrayVar(&metadata, "metadata", nil, "metadata key=value of the single event (repeatable)")
	f.StringVar(&expected, "expected-version", "any", "append only if the stream is in this state: any, no-stream, stream-exists or a version")
	config.IntVar(f, &batch, "batch", 1000, "events per atomic append when reading standard input")
	atLeast(f, 1, "batch")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

func singleEvent(typ, data, id, contentType string, meta map[string]string) (rewind.Event, error) {
	e := rewind.Event{Type: typ, ContentType: contentType, Metadata: meta, Data: []byte(data)}
	if id != "" {
		u, err := uuid.Parse(id)
		switch {
		case err != nil:
			return e, invalidFlag("id", id, "must be a UUID such as 0190b5a4-6c4e-7f2a-9d3e-1a2b3c4d5e6f")
		case u == uuid.Nil:
			return e, invalidFlag("id", id, nilIDReason)
		}
		e.ID = u
	}
	if data != "" && isJSON(contentType) && !json.Valid([]byte(data)) {
		return e, invalidFlag("data", data, "is not valid JSON; quote strings ('\"text\"') or set --content-type")
	}
	return e, nil
}

func parseMetadata(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, invalidFlag("metadata", kv, "must be key=value")
		}
		if _, dup := m[k]; dup {
			return nil, invalidFlag("metadata", kv, fmt.Sprintf("repeats the key %q; give each key once", k))
		}
		m[k] = v
	}
	return m, nil
}

// noEvents is the error of an append with nothing to append.
var noEvents = &rewind.ValidationError{Field: "standard input", Reason: `holds no events, so there is nothing to ` +
	`append; give JSON lines such as {"type":"OrderPlaced","data":{"id":1}} or use --type and --data`}

// requireInput fails with noEvents unless r holds more than white space,
// which it leaves unread.
func requireInput(r *bufio.Reader) error {
	for {
		b, err := r.ReadByte()
		switch {
		case err == io.EOF:
			return noEvents
		case err != nil:
			return fmt.Errorf("read standard input: %w", err)
		case b != ' ' && b != '\t' && b != '\n' && b != '\r':
			return r.UnreadByte()
		}
	}
}

// ctxReader is a reader that returns ctx's error once ctx ends, even while
// a read of r blocks (a terminal, a pipe nobody writes to): the read is
// abandoned, which is fine for a process about to exit.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	type result struct {
		n   int
		err error
	}
	buf := make([]byte, len(p)) // an abandoned read must not write into p later
	done := make(chan result, 1)
	go func() {
		n, err := c.r.Read(buf)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		return copy(p, buf[:res.n]), res.err
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
}

// parseExpectedVersion parses --expected-version strictly: the library
// also takes surrounding spaces and an empty string (for "any"), which on
// a command line are more likely a mistake than meant.
func parseExpectedVersion(s string) (rewind.ExpectedVersion, error) {
	if s == "" || s != strings.TrimSpace(s) {
		return 0, invalidFlag("expected-version", s, `must be "any", "no-stream", "stream-exists" or a version number`)
	}
	ev, err := rewind.ParseExpectedVersion(s)
	var ve *rewind.ValidationError
	if errors.As(err, &ve) {
		return 0, invalidFlag("expected-version", s, ve.Reason)
	}
	return ev, err
}
