package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// TestBadInputCorpus sends malformed and out-of-bounds requests over a real
// listener. Each must get a 4xx status with a message, and leave the log
// unchanged.
func TestBadInputCorpus(t *testing.T) {
	t.Parallel()
	s, _, b := setup(t, server.Config{MaxRequestBytes: 64 << 10,
		Store: store.Config{MaxEventSize: 8 << 10, MaxBatchEvents: 100}})
	okBody := `{"stream":"s","events":[{"type":"T"}]}`
	proto1, _ := proto.Marshal(&rewindv1.AppendRequest{Stream: "s", Events: []*rewindv1.Event{{Type: "T"}}})
	unknownProto := protowire.AppendTag(append([]byte(nil), proto1...), 99, protowire.VarintType)
	unknownProto = protowire.AppendVarint(unknownProto, 1)
	var many strings.Builder
	many.WriteString(`{"stream":"s","events":[`)
	for i := range 101 {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`{"type":"T"}`)
	}
	many.WriteString("]}")

	cases := []struct {
		name, method, ctype, body string
		verb                      string // HTTP method; POST by default
	}{
		{name: "malformed JSON", method: "Append", body: `{"stream":`},
		{name: "JSON array", method: "Append", body: `[1,2]`},
		{name: "unknown JSON field", method: "Append", body: `{"stream":"s","expected_verison":"3","events":[{"type":"T"}]}`},
		{name: "unknown nested JSON field", method: "Append", body: `{"stream":"s","events":[{"type":"T","dta":"x"}]}`},
		{name: "malformed protobuf", method: "Append", ctype: "application/proto", body: "\xff\xff\xff\xff\x0f"},
		{name: "unknown protobuf field", method: "Append", ctype: "application/proto", body: string(unknownProto)},
		{name: "oversized request", method: "Append", body: `{"stream":"s","events":[{"type":"T","data":"` +
			strings.Repeat("QUFB", 30<<10) + `"}]}`},
		{name: "oversized event", method: "Append", body: `{"stream":"s","events":[{"type":"T","data":"` +
			strings.Repeat("QUFB", 4<<10) + `"}]}`},
		{name: "too many events", method: "Append", body: many.String()},
		{name: "no events", method: "Append", body: `{"stream":"s"}`},
		{name: "empty stream name", method: "Append", body: `{"stream":"","events":[{"type":"T"}]}`},
		{name: "reserved stream name", method: "Append", body: `{"stream":"$all","events":[{"type":"T"}]}`},
		{name: "stream name with space", method: "Append", body: `{"stream":"a b","events":[{"type":"T"}]}`},
		{name: "long stream name", method: "Append", body: `{"stream":"` + strings.Repeat("s", 300) + `","events":[{"type":"T"}]}`},
		{name: "empty event type", method: "Append", body: `{"stream":"s","events":[{"type":""}]}`},
		{name: "bad event id", method: "Append", body: `{"stream":"s","events":[{"id":"not-a-uuid","type":"T"}]}`},
		{name: "nil event id", method: "Append", body: `{"stream":"s","events":[{"id":"00000000-0000-0000-0000-000000000000","type":"T"}]}`},
		{name: "nil event id as URN", method: "Append", body: `{"stream":"s","events":[{"id":"urn:uuid:00000000000000000000000000000000","type":"T"}]}`},
		{name: "zero-width space in stream name", method: "Append", body: `{"stream":"s\u200b","events":[{"type":"T"}]}`},
		{name: "bidi override in stream name", method: "ReadStream", body: `{"stream":"\u202es"}`},
		{name: "CRLF in content type", method: "Append", body: `{"stream":"s","events":[{"type":"T","contentType":"a/b\r\nX: y"}]}`},
		{name: "LF in metadata key", method: "Append", body: `{"stream":"s","events":[{"type":"T","metadata":{"a\nb":"v"}}]}`},
		{name: "CRLF in metadata value", method: "Append", body: `{"stream":"s","events":[{"type":"T","metadata":{"k":"v\r\nX: y"}}]}`},
		{name: "unknown expected state", method: "Append", body: `{"stream":"s","expectedState":7,"events":[{"type":"T"}]}`},
		{name: "huge expected version", method: "Append", body: `{"stream":"s","expectedVersion":"18446744073709551615","events":[{"type":"T"}]}`},
		{name: "negative expected version", method: "Append", body: `{"stream":"s","expectedVersion":"-1","events":[{"type":"T"}]}`},
		{name: "bad base64 data", method: "Append", body: `{"stream":"s","events":[{"type":"T","data":"%%%"}]}`},
		{name: "bad timestamp", method: "Append", body: `{"stream":"s","events":[{"type":"T","occurredAt":"yesterday"}]}`},
		{name: "negative position", method: "ReadAll", body: `{"fromPosition":"-1"}`},
		{name: "huge position", method: "ReadAll", body: `{"fromPosition":"18446744073709551615"}`},
		{name: "position and time", method: "ReadAll", body: `{"fromPosition":"1","fromTime":"2024-01-01T00:00:00Z"}`},
		{name: "huge page", method: "ReadAll", body: `{"limit":1000000}`},
		{name: "bad filter type", method: "ReadAll", body: `{"filter":{"types":["a b"]}}`},
		{name: "negative version", method: "ReadStream", body: `{"stream":"s","fromVersion":"-5"}`},
		{name: "string for a number", method: "ReadStream", body: `{"stream":"s","limit":"many"}`},
		{name: "missing stream", method: "ReadStream", body: `{"stream":"nope"}`},
		{name: "delete with no-stream", method: "DeleteStream", body: `{"stream":"s","expectedState":"EXPECTED_STATE_NO_STREAM"}`},
		{name: "wrong content type", method: "Append", ctype: "text/plain", body: okBody},
		{name: "form content type", method: "Append", ctype: "application/x-www-form-urlencoded", body: "stream=s"},
		{name: "GET of a mutating RPC", method: "Append", verb: "GET"},
		{name: "unknown RPC", method: "Nope", body: `{}`},
		{name: "invalid scope", method: "/rewind.v1.TokenService/CreateToken", body: `{"name":"x","scopes":["root"]}`},
		{name: "invalid token name", method: "/rewind.v1.TokenService/CreateToken", body: `{"name":"a b","scopes":["read:*"]}`},
	}
	// One valid event first, so reads have something and "missing" is real.
	do(t, b, "POST", "Append", "", okBody, 200)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			last := lastPosition(t, s)
			verb := c.verb
			if verb == "" {
				verb = "POST"
			}
			status, body := do(t, b, verb, c.method, c.ctype, c.body, 0)
			if status < 400 || status > 499 {
				t.Fatalf("status %d, want 4xx; body %s", status, body)
			}
			if got := lastPosition(t, s); got != last {
				t.Fatalf("the log changed: last position %d -> %d", last, got)
			}
			if c.ctype == "" || c.ctype == "application/proto" {
				var e struct{ Code, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Code == "" || len(e.Message) < 10 {
					t.Fatalf("error body %q has no code and message (%v)", body, err)
				}
				t.Logf("%d %s: %s", status, e.Code, e.Message)
			}
		})
	}
}

// do sends one request with the admin token and returns status and body;
// want, when not 0, is the status it must have.
func do(t *testing.T, b *bundle, verb, method, ctype, body string, want int) (int, []byte) {
	t.Helper()
	if ctype == "" {
		ctype = "application/json"
	}
	path := method
	if !strings.HasPrefix(path, "/") {
		path = "/rewind.v1.EventStoreService/" + method
	}
	req, err := http.NewRequest(verb, b.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+b.admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if want != 0 && res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", verb, method, res.StatusCode, want, out)
	}
	return res.StatusCode, out
}

// FuzzAppendDecoding feeds arbitrary bodies, as JSON and as protobuf, to
// the Append handler: the server must answer 200 or a 4xx status, never
// fail inside, and write nothing unless it answered 200.
func FuzzAppendDecoding(f *testing.F) {
	f.Add([]byte(`{"stream":"s","events":[{"type":"T","data":"eA=="}]}`), false)
	f.Add([]byte(`{"stream":"s","expectedVersion":"0","events":[{"type":"T","metadata":{"k":"v"}}]}`), false)
	f.Add([]byte(`{"stream":"s","events":[{"id":"0190f6b1-7d2c-7b3e-9a4f-2c1d5e6f7a8b","type":"T"}]}`), false)
	f.Add([]byte(`{"stream":1}`), false)
	f.Add([]byte("\x0a\x01s\x22\x03\x12\x01T"), true)
	f.Add([]byte("\x0a\x01s\x18\xff\xff\xff\xff\x0f"), true)
	s, err := server.New(server.Config{Addr: "127.0.0.1:0", NoAuth: true, DataDir: f.TempDir(),
		Logger: slog.New(slog.DiscardHandler), Store: store.Config{MaxBatchEvents: 16}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte, binary bool) {
		ctype := "application/json"
		if binary {
			ctype = "application/proto"
		}
		req := httptest.NewRequest("POST", "/rewind.v1.EventStoreService/Append", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		last := lastPosition(t, s)
		h.ServeHTTP(w, req)
		switch {
		case w.Code == 200:
		case w.Code >= 400 && w.Code <= 499:
			if got := lastPosition(t, s); got != last {
				t.Fatalf("status %d but the log changed: %d -> %d", w.Code, last, got)
			}
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
}

// A client that sends its headers and then trickles the body (or stops)
// gets an answer within the RPC deadline, instead of holding a handler.
func TestRPCTimeoutCoversTheRequestBody(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{RPCTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"stream":"s","expectedVersion":"any","events":[{"type":"A","data":{}}]}`
	fmt.Fprintf(conn, "POST /rewind.v1.EventStoreService/Append HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", b.admin, len(body), body[:10])
	conn.SetReadDeadline(time.Now().Add(time.Minute)) // far beyond the RPC deadline: only a hang reaches it
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a request whose body never came: %v", err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatalf("an incomplete request got %s", res.Status)
	}
}

// TestJSONErrorsNameTheField checks that a JSON body the API refuses gets
// a message naming the field by its path and what it must hold.
func TestJSONErrorsNameTheField(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{})
	for _, c := range []struct{ method, body, want string }{
		{"Append", `{"stream":"s","events":[{"type":"T","data":"%%%"}]}`, "events[0].data must be base64"},
		{"Append", `{"stream":"s","events":[{"type":"T"},{"type":"T","occurredAt":"yesterday"}]}`,
			"events[1].occurredAt must be an RFC 3339 time"},
		{"Append", `{"stream":"s","expectedVersion":"x","events":[{"type":"T"}]}`, "expectedVersion must be a whole number"},
		{"Append", `{"stream":"s","expectedState":"SOON","events":[{"type":"T"}]}`,
			"expectedState must be one of EXPECTED_STATE_UNSPECIFIED, EXPECTED_STATE_ANY"},
		{"Append", `{"stream":"s","expectedState":"EXPECTED_STATE_ANY","expectedVersion":"1","events":[{"type":"T"}]}`,
			"expectedState and expectedVersion are alternatives"},
		{"Append", `{"stream":"s","events":[{"type":"T","dta":"x"}]}`, "events[0].dta is not a field of Event; its fields are id, type"},
		{"Append", `{"stream":1,"events":[{"type":"T"}]}`, "stream must be a JSON string"},
		{"Append", `{"stream":"s","events":{"type":"T"}}`, "events must be a JSON array"},
		{"Append", `{"stream":"s","events":[{"type":"T","metadata":{"k":1}}]}`, `events[0].metadata["k"] must be a JSON string`},
		{"Append", `{"stream":"s","events":[]}{}`, "more than one JSON value"},
		{"Append", `[1]`, "the body must be a JSON object"},
		{"ReadAll", `{"limit":-1}`, "limit must be a whole number from 0 to 4294967295"},
		{"Append", `{"stream":"s","events":[{"type":"T","occurredAt":"0000-01-01T00:00:00Z"}]}`,
			"events[0].occurredAt must be an RFC 3339 time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z"},
		{"Append", `{"stream":"s","expectedVersion":"18446744073709551616","events":[{"type":"T"}]}`,
			"expectedVersion must be a whole number from 0 to 18446744073709551615, got 18446744073709551616"},
		{"Append", `{"stream":"s","expectedVersion":"-1","events":[{"type":"T"}]}`,
			"expectedVersion must be a whole number from 0 to 18446744073709551615, got -1"},
		{"Append", `{"stream":"s","expectedVersion":1.5,"events":[{"type":"T"}]}`,
			"expectedVersion must be a whole number from 0 to 18446744073709551615, got 1.5"},
		{"ReadAll", `{"fromTime":"10000-01-01T00:00:00Z"}`, "fromTime must be an RFC 3339 time"},
		{"ReadStream", `{"stream":"s","backward":"yes"}`, "backward must be true or false"},
	} {
		status, body := do(t, b, "POST", c.method, "", c.body, 0)
		var e struct{ Code, Message string }
		json.Unmarshal(body, &e)
		if status != http.StatusBadRequest || !strings.Contains(e.Message, c.want) {
			t.Errorf("%s %s: %d %s, want 400 saying %q", c.method, c.body, status, body, c.want)
		}
	}
}

// TestPageLimitsSayWhatTheyCount checks that a page too large is refused
// with a message that names what a page counts and how to page.
func TestPageLimitsSayWhatTheyCount(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{})
	for _, c := range []struct{ method, body, want string }{
		{"ReadStream", `{"stream":"s","limit":20000}`, "events per page (limit) 20000 exceeds the limit of 10000"},
		{"ReadAll", `{"limit":20000}`, "events per page (limit) 20000 exceeds the limit of 10000; read in pages: continue from next_position"},
		{"ListStreams", `{"limit":20000}`, "streams per page (limit) 20000 exceeds the limit of 10000; list in pages"},
	} {
		status, body := do(t, b, "POST", c.method, "", c.body, 0)
		var e struct{ Message string }
		json.Unmarshal(body, &e)
		if status != http.StatusTooManyRequests || !strings.Contains(e.Message, c.want) {
			t.Errorf("%s %s: %d %s, want 429 saying %q", c.method, c.body, status, body, c.want)
		}
	}
}
