package server_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/server"
)

// The raw-HTTP client of these tests writes requests byte by byte to a TCP
// connection, so that it can send what no well-behaved client library
// would: stalled and malformed bodies, broken envelopes, odd headers. No
// test asserts how fast the server answers; "answered" means before
// answerDeadline, far beyond any timeout the servers under test use, so
// that only a hang reaches it.
const answerDeadline = time.Minute

// Procedures the corpus calls.
const (
	pAppend       = "/rewind.v1.EventStoreService/Append"
	pReadAll      = "/rewind.v1.EventStoreService/ReadAll"
	pReadStream   = "/rewind.v1.EventStoreService/ReadStream"
	pSubscribe    = "/rewind.v1.EventStoreService/Subscribe"
	pAppendStream = "/rewind.v1.EventStoreService/AppendStream"
	pHealth       = "/rewind.v1.EventStoreService/Health"
)

// head returns a request line and headers, ending with the empty line. It
// adds Host and the admin token ($TOKEN) unless a header names its own
// Authorization, or "-auth" asks for none.
func head(method, path string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: rewind\r\n", method, path)
	auth := true
	for _, h := range headers {
		switch {
		case h == "-auth":
			auth = false
			continue
		case strings.HasPrefix(strings.ToLower(h), "authorization:"):
			auth = false
		}
		b.WriteString(h + "\r\n")
	}
	if auth {
		b.WriteString("Authorization: Bearer $TOKEN\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// post is a complete POST with a Content-Length.
func post(path, ctype, body string, headers ...string) string {
	return head("POST", path, append([]string{"Content-Type: " + ctype,
		"Content-Length: " + strconv.Itoa(len(body))}, headers...)...) + body
}

// env frames payload as one Connect / gRPC envelope.
func env(flags byte, payload string) string {
	return envLen(flags, uint32(len(payload)), payload)
}

// envLen frames payload with a declared length that may be a lie.
func envLen(flags byte, declared uint32, payload string) string {
	var p [5]byte
	p[0] = flags
	binary.BigEndian.PutUint32(p[1:], declared)
	return string(p[:]) + payload
}

func gzipped(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

// answer is what the server said, whatever the protocol.
type answer struct {
	status        int
	code, message string
	header        http.Header
	// detail is the rewind.v1.ErrorDetail of an error answer, nil when it
	// has none.
	detail *rewindv1.ErrorDetail
}

// clientErrors are the codes that tell a client it made a mistake (or ran
// out of time or quota); "unimplemented" is only right for unknown methods
// and is asked for by name.
var clientErrors = map[string]bool{
	"invalid_argument": true, "not_found": true, "already_exists": true, "permission_denied": true,
	"resource_exhausted": true, "failed_precondition": true, "aborted": true, "out_of_range": true,
	"unauthenticated": true, "deadline_exceeded": true,
}

// socketAddr matches an IP address with a port, as a Go network error
// prints it ("read tcp 127.0.0.1:7070->127.0.0.1:51234: i/o timeout").
var socketAddr = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+|\[[0-9a-fA-F:]+\]:\d+`)

// exchange sends raw (with $TOKEN replaced) on a new connection and reads
// the answer. With stall the connection stays open after raw, sending
// nothing more. It also reports whether the server then closed the
// connection (instead of keeping it open for a body that never comes).
func exchange(t *testing.T, addr, token, raw string, stall bool) (answer, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, strings.ReplaceAll(raw, "$TOKEN", token)); err != nil {
		t.Fatal(err)
	}
	if !stall {
		conn.(*net.TCPConn).CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(answerDeadline))
	br := bufio.NewReader(conn)
	var req *http.Request
	if strings.HasPrefix(raw, "HEAD ") {
		req = &http.Request{Method: "HEAD"}
	}
	res, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("no answer before the deadline (a hang): %v", err)
	}
	a := readAnswer(t, res)
	if !stall {
		return a, true
	}
	// The body was never sent in full: the server must not keep the
	// connection waiting for it.
	_, err = br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return a, false
	}
	return a, err != nil
}

func readAnswer(t *testing.T, res *http.Response) answer {
	t.Helper()
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	a := answer{status: res.StatusCode, header: res.Header}
	ct := res.Header.Get("Content-Type")
	grpcStatus := func(h http.Header) {
		if s := h.Get("Grpc-Status"); s != "" {
			n, _ := strconv.Atoi(s)
			a.code = connect.Code(n).String()
			if n == 0 {
				a.code = "ok"
			}
			a.message, _ = url.PathUnescape(h.Get("Grpc-Message"))
			a.detail = grpcDetail(t, h.Get("Grpc-Status-Details-Bin"))
		}
	}
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		grpcStatus(res.Header)
		for r := bytes.NewReader(body); r.Len() >= 5; {
			var p [5]byte
			io.ReadFull(r, p[:])
			msg := make([]byte, binary.BigEndian.Uint32(p[1:]))
			io.ReadFull(r, msg)
			if p[0]&0x80 != 0 {
				tr, _ := http.ReadResponse(bufio.NewReader(io.MultiReader(
					strings.NewReader("HTTP/1.1 200 OK\r\n"), bytes.NewReader(msg), strings.NewReader("\r\n"))), nil)
				if tr != nil {
					grpcStatus(tr.Header)
				}
			}
		}
	case strings.HasPrefix(ct, "application/connect+"):
		for r := bytes.NewReader(body); r.Len() >= 5; {
			var p [5]byte
			io.ReadFull(r, p[:])
			msg := make([]byte, binary.BigEndian.Uint32(p[1:]))
			io.ReadFull(r, msg)
			if p[0]&0x02 != 0 {
				var end struct{ Error wireError }
				json.Unmarshal(msg, &end)
				a.code, a.message, a.detail = end.Error.Code, end.Error.Message, end.Error.detail(t)
				if a.code == "" {
					a.code = "ok"
				}
			}
		}
	default:
		var e wireError
		if json.Unmarshal(body, &e) == nil && e.Code != "" {
			a.code, a.message, a.detail = e.Code, e.Message, e.detail(t)
		} else {
			a.message = strings.TrimSpace(string(body))
		}
	}
	return a
}

// wireError is an error in the Connect protocol's JSON form.
type wireError struct {
	Code, Message string
	Details       []struct{ Type, Value string }
}

// detail returns e's rewind.v1.ErrorDetail, or nil.
func (e wireError) detail(t *testing.T) *rewindv1.ErrorDetail {
	t.Helper()
	for _, d := range e.Details {
		if d.Type != "rewind.v1.ErrorDetail" {
			continue
		}
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		if err != nil {
			t.Fatalf("detail %q is not base64: %v", d.Value, err)
		}
		var ed rewindv1.ErrorDetail
		if err := proto.Unmarshal(b, &ed); err != nil {
			t.Fatalf("detail %q: %v", d.Value, err)
		}
		return &ed
	}
	return nil
}

// grpcDetail returns the rewind.v1.ErrorDetail of a gRPC
// Grpc-Status-Details-Bin value, or nil.
func grpcDetail(t *testing.T, bin string) *rewindv1.ErrorDetail {
	t.Helper()
	if bin == "" {
		return nil
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(bin, "="))
	if err != nil {
		t.Fatalf("Grpc-Status-Details-Bin %q is not base64: %v", bin, err)
	}
	var st spb.Status
	if err := proto.Unmarshal(b, &st); err != nil {
		t.Fatalf("Grpc-Status-Details-Bin: %v", err)
	}
	for _, d := range st.GetDetails() {
		var ed rewindv1.ErrorDetail
		if d.MessageIs(&ed) && d.UnmarshalTo(&ed) == nil {
			return &ed
		}
	}
	return nil
}

// documentedCodes are the codes of rewind.v1.ErrorDetail that docs/server.md
// lists, by the gRPC / Connect code each goes with.
var documentedCodes = map[string][]string{
	"invalid_argument":    {"invalid_argument"},
	"resource_exhausted":  {"limit_exceeded"},
	"deadline_exceeded":   {"deadline_exceeded"},
	"aborted":             {"wrong_expected_version"},
	"already_exists":      {"idempotency_conflict", "already_exists"},
	"not_found":           {"not_found"},
	"unimplemented":       {"unimplemented"},
	"out_of_range":        {"out_of_range"},
	"unauthenticated":     {"unauthenticated"},
	"permission_denied":   {"permission_denied"},
	"unavailable":         {"unavailable"},
	"data_loss":           {"corruption"},
	"failed_precondition": {"failed", "epoch_changed"},
	"unknown":             {"outcome_unknown", "internal"},
	"canceled":            {"canceled"},
	"internal":            {"internal"},
}

// checkDetail asserts that an error answer carries rewind's ErrorDetail
// with a documented code that goes with its status code.
func checkDetail(t *testing.T, a answer) {
	t.Helper()
	switch {
	case a.detail == nil:
		t.Errorf("%d %s: %s: the answer carries no rewind.v1.ErrorDetail", a.status, a.code, a.message)
	case !slices.Contains(documentedCodes[a.code], a.detail.GetCode()):
		t.Errorf("%d %s: %s: the detail's code %q is not the documented one for %s (%v)", a.status, a.code,
			a.message, a.detail.GetCode(), a.code, documentedCodes[a.code])
	}
}

// hostileCase is one request of the corpus.
type hostileCase struct {
	name  string
	raw   string // request bytes; $TOKEN is the admin secret
	stall bool   // after raw, keep the connection open and send nothing
	want  string // the code the answer must have; "" accepts any client error
	// netHTTP: net/http refuses the request before the server sees it, with
	// its own terse "400 Bad Request" (documented as a known limit).
	netHTTP bool
}

// check asserts that a is a client error with a message that says what to
// fix and gives away no socket address.
func (c hostileCase) check(t *testing.T, a answer) {
	t.Helper()
	streamed := strings.HasPrefix(a.header.Get("Content-Type"), "application/grpc") ||
		strings.HasPrefix(a.header.Get("Content-Type"), "application/connect+")
	switch {
	case a.status >= 500:
		t.Errorf("status %d (a server error for the client's mistake): %s %s", a.status, a.code, a.message)
	case !streamed && a.status < 400:
		t.Errorf("status %d, want 4xx: %s %s", a.status, a.code, a.message)
	case c.netHTTP:
		if a.status < 400 || a.status > 499 || a.message == "" {
			t.Errorf("status %d, body %q; want a 4xx with a body", a.status, a.message)
		}
		return
	case strings.HasPrefix(c.raw, "HEAD "):
		if a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") == "" {
			t.Errorf("HEAD: status %d, Allow %q; want 405 and the methods allowed", a.status, a.header.Get("Allow"))
		}
		return // a HEAD answer has no body
	case c.want != "" && a.code != c.want:
		t.Errorf("code %q, want %q: %s", a.code, c.want, a.message)
	case c.want == "" && !clientErrors[a.code] && !(a.code == "" && !streamed):
		t.Errorf("code %q is not a client error: %s", a.code, a.message)
	case len(a.message) < 20:
		t.Errorf("status %d, code %q: the message %q does not say what to fix", a.status, a.code, a.message)
	case socketAddr.MatchString(a.message):
		t.Errorf("the message gives away a socket address: %s", a.message)
	default:
		checkDetail(t, a)
	}
	t.Logf("%d %s: %s", a.status, a.code, a.message)
}

// TestHostileRequestsRefusedBeforeTheBody sends requests the server must
// refuse on their headers alone, each with a body that stops arriving
// halfway. The answer must come at once (RPCTimeout is ten minutes, so
// waiting for the body shows as a hang) and the connection must then be
// closed, not held open for the rest of the body.
func TestHostileRequestsRefusedBeforeTheBody(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{RPCTimeout: 10 * time.Minute})
	addr := strings.TrimPrefix(b.url, "http://")
	half := `{"stream":"s","events":[` // of a body declared 100 bytes long
	const clen = "Content-Length: 100"
	for _, c := range []hostileCase{
		{name: "no token", raw: head("POST", pAppend, "-auth", "Content-Type: application/json", clen) + half,
			want: "unauthenticated"},
		{name: "unknown token", raw: head("POST", pAppend, "Authorization: Bearer rwd_000000000000_"+
			strings.Repeat("x", 43), "Content-Type: application/json", clen) + half, want: "unauthenticated"},
		{name: "basic auth", raw: head("POST", pAppend, "Authorization: Basic YWRtaW46YWRtaW4=",
			"Content-Type: application/json", clen) + half, want: "unauthenticated"},
		{name: "chunked without token", raw: head("POST", pAppend, "-auth", "Content-Type: application/json",
			"Transfer-Encoding: chunked") + "40\r\n" + half, want: "unauthenticated"},
		{name: "unknown route", raw: head("POST", "/rewind.v1.EventStoreService/Nope",
			"Content-Type: application/json", clen) + half, want: "unimplemented"},
		{name: "unknown service", raw: head("POST", "/grpc.nope.v1.Nope/Nope",
			"Content-Type: application/json", clen) + half, want: "unimplemented"},
		{name: "wrong content type", raw: head("POST", pAppend, "Content-Type: text/plain", clen) + half},
		{name: "no content type", raw: head("POST", pAppend, clen) + half},
		{name: "bidi stream over HTTP/1.1", raw: head("POST", pAppendStream, "Content-Type: application/connect+json",
			clen) + half},
		{name: "PUT", raw: head("PUT", pAppend, "Content-Type: application/json", clen) + half},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.stall = true
			a, closed := exchange(t, addr, b.admin, c.raw, true)
			c.check(t, a)
			if !closed {
				t.Errorf("the connection stays open after the refusal, waiting for a body that never comes")
			}
		})
	}
}

// TestHostileRequestsStalled sends requests the server accepts and then
// starves: it must answer with a client error once the RPC deadline
// passes, saying what happened without giving away socket addresses. A
// stream's first message has the same deadline.
func TestHostileRequestsStalled(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{RPCTimeout: 500 * time.Millisecond})
	addr := strings.TrimPrefix(b.url, "http://")
	half := `{"stream":"s","events":[`
	sub := env(0, `{"afterPosition":"0"}`)
	for _, c := range []hostileCase{
		{name: "unary body stalls", raw: head("POST", pAppend, "Content-Type: application/json",
			"Content-Length: 100") + half},
		{name: "unary body never starts", raw: head("POST", pAppend, "Content-Type: application/json",
			"Content-Length: 100")},
		{name: "chunked body stalls", raw: head("POST", pAppend, "Content-Type: application/json",
			"Transfer-Encoding: chunked") + "40\r\n" + half},
		{name: "subscription request never starts", raw: head("POST", pSubscribe,
			"Content-Type: application/connect+json", "Content-Length: "+strconv.Itoa(len(sub)))},
		{name: "subscription envelope stalls", raw: head("POST", pSubscribe,
			"Content-Type: application/connect+json", "Content-Length: "+strconv.Itoa(len(sub))) + sub[:8]},
		{name: "subscription chunked stalls", raw: head("POST", pSubscribe,
			"Content-Type: application/connect+json", "Transfer-Encoding: chunked") + "3\r\n" + sub[:3] + "\r\n"},
		{name: "grpc-web envelope stalls", raw: head("POST", pReadAll, "Content-Type: application/grpc-web+json",
			"Content-Length: 40") + envLen(0, 35, "{")},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, _ := exchange(t, addr, b.admin, c.raw, true)
			c.check(t, a)
		})
	}
}

// TestHostileRequestsMalformed sends complete requests that are malformed
// below the level of the API's messages: query strings, chunked encoding,
// envelopes, timeouts, compression and headers. Each must be a client
// error with a message, and write nothing.
func TestHostileRequestsMalformed(t *testing.T) {
	t.Parallel()
	s, _, b := setup(t, server.Config{})
	addr := strings.TrimPrefix(b.url, "http://")
	okJSON := `{"stream":"s","events":[{"type":"T"}]}`
	readAll := `{"fromPosition":"1"}`
	get := func(query string, headers ...string) string {
		return head("GET", pReadAll+"?"+query, headers...)
	}
	grpcWeb := func(path, body string, headers ...string) string {
		return post(path, "application/grpc-web+json", body, headers...)
	}
	connectStream := func(body string, headers ...string) string {
		return post(pSubscribe, "application/connect+json", body, headers...)
	}
	cases := []hostileCase{
		// GET with the message in the query string.
		{name: "GET bad percent-encoding", raw: get("encoding=json&message=%ZZ")},
		{name: "GET message not JSON", raw: get("encoding=json&message=%7Bnope")},
		{name: "GET unknown encoding", raw: get("encoding=xml&message=%7B%7D")},
		{name: "GET no encoding", raw: get("message=%7B%7D")},
		{name: "GET no message", raw: get("encoding=json")},
		{name: "GET bad base64 message", raw: get("encoding=json&base64=1&message=!!!!")},
		{name: "GET compressed message not gzip", raw: get("encoding=json&compression=gzip&message=%7B%7D")},
		{name: "GET unknown compression", raw: get("encoding=json&compression=br&message=%7B%7D")},
		{name: "GET unknown connect version", raw: get("encoding=json&connect=v9&message=%7B%7D")},
		{name: "GET base64 neither 0 nor 1", raw: get("encoding=json&base64=2&message=%7B%7D")},
		{name: "GET encoding twice", raw: get("encoding=json&encoding=xml&message=%7B%7D")},
		{name: "GET message twice", raw: get("encoding=json&message=%7B%7D&message=%7Bnope")},
		{name: "GET base64 twice", raw: get("encoding=json&base64=0&base64=1&message=%7B%7D")},
		{name: "GET with a body", raw: head("GET", pReadAll+"?encoding=json&message=%7B%7D",
			"Content-Length: 2") + "{}"},
		{name: "HEAD", raw: head("HEAD", pReadAll+"?encoding=json&message=%7B%7D")},
		{name: "DELETE", raw: head("DELETE", pAppend)},

		// Chunked bodies.
		{name: "chunk size not hex", raw: head("POST", pAppend, "Content-Type: application/json",
			"Transfer-Encoding: chunked") + "zz\r\n" + okJSON + "\r\n0\r\n\r\n"},
		{name: "chunk shorter than its size", raw: head("POST", pAppend, "Content-Type: application/json",
			"Transfer-Encoding: chunked") + "ff\r\n" + okJSON},
		{name: "chunk without CRLF", raw: head("POST", pAppend, "Content-Type: application/json",
			"Transfer-Encoding: chunked") + fmt.Sprintf("%x\r\n%sXX0\r\n\r\n", len(okJSON), okJSON)},
		{name: "body shorter than Content-Length", raw: head("POST", pAppend, "Content-Type: application/json",
			"Content-Length: 500") + okJSON},

		// Connect streaming envelopes (Subscribe).
		{name: "connect stream: no message", raw: connectStream("")},
		{name: "connect stream: two messages", raw: connectStream(env(0, "{}") + env(0, "{}"))},
		{name: "connect stream: truncated prefix", raw: connectStream("\x00\x00\x00")},
		{name: "connect stream: truncated message", raw: connectStream(envLen(0, 100, "{}"))},
		{name: "connect stream: end-stream flag", raw: connectStream(env(2, "{}"))},
		{name: "connect stream: unknown flags", raw: connectStream(env(0x40, "{}"))},
		{name: "connect stream: compressed without encoding", raw: connectStream(env(1, "{}"))},
		{name: "connect stream: not gzip", raw: connectStream(env(1, "{}"), "Connect-Content-Encoding: gzip")},
		{name: "connect stream: unknown encoding", raw: connectStream(env(1, "{}"), "Connect-Content-Encoding: zstd")},
		{name: "connect stream: zero timeout", raw: connectStream(env(0, "{}"), "Connect-Timeout-Ms: 0")},
		{name: "connect stream: bad timeout", raw: connectStream(env(0, "{}"), "Connect-Timeout-Ms: soon")},

		// gRPC-Web envelopes (unary ReadAll).
		{name: "grpc-web: no message", raw: grpcWeb(pReadAll, "")},
		{name: "grpc-web: two messages", raw: grpcWeb(pReadAll, env(0, readAll)+env(0, readAll))},
		{name: "grpc-web: truncated prefix", raw: grpcWeb(pReadAll, "\x00\x00")},
		{name: "grpc-web: truncated message", raw: grpcWeb(pReadAll, envLen(0, 64, readAll))},
		{name: "grpc-web: trailer flag", raw: grpcWeb(pReadAll, env(0x80, readAll))},
		{name: "grpc-web: compressed without encoding", raw: grpcWeb(pReadAll, env(1, readAll))},
		{name: "grpc-web: not gzip", raw: grpcWeb(pReadAll, env(1, readAll), "Grpc-Encoding: gzip")},
		{name: "grpc-web: unknown encoding", raw: grpcWeb(pReadAll, env(1, readAll), "Grpc-Encoding: br")},
		{name: "grpc-web: zero timeout", raw: grpcWeb(pReadAll, env(0, readAll), "Grpc-Timeout: 0S")},
		{name: "grpc-web: bad timeout unit", raw: grpcWeb(pReadAll, env(0, readAll), "Grpc-Timeout: 5x")},
		{name: "grpc-web: long timeout", raw: grpcWeb(pReadAll, env(0, readAll), "Grpc-Timeout: 999999999S")},
		{name: "grpc-web: unknown method", raw: grpcWeb("/rewind.v1.EventStoreService/Nope", env(0, "{}")),
			want: "unimplemented"},
		{name: "grpc-web: reflection without token", raw: grpcWeb("/grpc.reflection.v1.ServerReflection/"+
			"ServerReflectionInfo", env(0, "{}"), "-auth"), want: "unauthenticated"},

		// Connect unary: timeouts and compression.
		{name: "zero timeout", raw: post(pAppend, "application/json", okJSON, "Connect-Timeout-Ms: 0")},
		{name: "negative timeout", raw: post(pAppend, "application/json", okJSON, "Connect-Timeout-Ms: -5")},
		{name: "timeout not a number", raw: post(pAppend, "application/json", okJSON, "Connect-Timeout-Ms: 1e3")},
		{name: "timeout too long", raw: post(pAppend, "application/json", okJSON, "Connect-Timeout-Ms: 99999999999")},
		{name: "unknown content encoding", raw: post(pAppend, "application/json", okJSON, "Content-Encoding: br")},
		{name: "content encoding not gzip", raw: post(pAppend, "application/json", okJSON, "Content-Encoding: gzip")},
		{name: "two content encodings", raw: post(pAppend, "application/json", gzipped(gzipped(okJSON)),
			"Content-Encoding: gzip, gzip")},
		{name: "unknown charset", raw: post(pAppend, "application/json; charset=latin1", okJSON)},
		{name: "streaming content type on a unary RPC", raw: post(pReadAll, "application/connect+json",
			env(0, readAll))},

		// Header tricks.
		{name: "token without scheme", raw: head("POST", pReadAll, "Authorization: $TOKEN",
			"Content-Type: application/json", "Content-Length: 2") + "{}", want: "unauthenticated"},
		{name: "token with unknown scheme", raw: head("POST", pReadAll, "Authorization: Token $TOKEN",
			"Content-Type: application/json", "Content-Length: 2") + "{}", want: "unauthenticated"},
		{name: "two Authorization headers", raw: head("POST", pReadAll, "Authorization: Bearer $TOKEN",
			"Authorization: Bearer nope", "Content-Type: application/json", "Content-Length: 2") + "{}",
			want: "unauthenticated"},
		{name: "Bearer without token", raw: head("POST", pReadAll, "Authorization: Bearer",
			"Content-Type: application/json", "Content-Length: 2") + "{}", want: "unauthenticated"},

		{name: "Bearer in lower case", raw: head("POST", pAppend, "Authorization: bearer $TOKEN",
			"Content-Type: application/json", "Content-Length: 12") + `{"stream":""`},
		{name: "Content-Length and chunked", raw: head("POST", pAppend, "Content-Type: application/json",
			"Content-Length: 5", "Transfer-Encoding: chunked") + "5\r\n{}{}{\r\n0\r\n\r\n"},
		{name: "two Content-Lengths", raw: head("POST", pAppend, "Content-Type: application/json",
			"Content-Length: 2", "Content-Length: 3") + "{}", netHTTP: true},
		{name: "control character in a header", raw: head("POST", pAppend, "Content-Type: application/json",
			"X-Evil: a\x01b", "Content-Length: 2") + "{}", netHTTP: true},
		{name: "header too large", raw: head("POST", pAppend, "Content-Type: application/json",
			"X-Big: "+strings.Repeat("x", 70<<10), "Content-Length: 2") + "{}", netHTTP: true},
		{name: "request id with a line break", raw: head("POST", pAppend, "Content-Type: application/json",
			"X-Request-Id: a\rb", "Content-Length: 2") + "{}", netHTTP: true},

		// Messages the codec cannot read.
		{name: "JSON twice", raw: post(pAppend, "application/json", okJSON+okJSON)},
		{name: "bytes not base64", raw: post(pAppend, "application/json",
			`{"stream":"s","events":[{"type":"T","data":"%%%"}]}`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			last := lastPosition(t, s)
			a, _ := exchange(t, addr, b.admin, c.raw, false)
			c.check(t, a)
			if got := lastPosition(t, s); got != last {
				t.Errorf("the log changed: last position %d -> %d", last, got)
			}
		})
	}
}

// TestShutdownCutsStalledClients starts a graceful shutdown while clients
// stall: one never finishes an append's body, one never sends its
// subscription request, one subscribes and reads nothing. Shutdown must
// not wait out its timeout (ten minutes here) for them: it ends before
// answerDeadline, and the clients whose requests were not taken are told
// the server is shutting down.
func TestShutdownCutsStalledClients(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{RPCTimeout: 10 * time.Minute, ShutdownTimeout: 10 * time.Minute})
	addr := strings.TrimPrefix(b.url, "http://")
	// Enough data that a subscriber reading nothing fills every buffer on
	// the way and blocks the server's writes.
	big := strings.Repeat("x", 512<<10)
	for range 32 {
		if _, err := c.Append(ctx, "big", rewind.Any, ev("Big", big)); err != nil {
			t.Fatal(err)
		}
	}
	dial := func(raw string) net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		if _, err := io.WriteString(conn, strings.ReplaceAll(raw, "$TOKEN", b.admin)); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	sub := env(0, `{"afterPosition":"0"}`)
	stalledAppend := dial(head("POST", pAppend, "Content-Type: application/json", "Content-Length: 100") + `{"str`)
	stalledSub := dial(head("POST", pSubscribe, "Content-Type: application/connect+json",
		"Content-Length: "+strconv.Itoa(len(sub))))
	deafSub := dial(post(pSubscribe, "application/connect+json", sub))
	// The deaf subscriber reads the start of its answer, then nothing.
	deafSub.SetReadDeadline(time.Now().Add(answerDeadline))
	if _, err := io.ReadFull(deafSub, make([]byte, 12)); err != nil {
		t.Fatalf("the subscription did not start: %v", err)
	}
	// The stalled requests are in the server's hands once it counts them.
	waitFor(t, func() bool { return strings.Contains(scrape(t, b.url), `rewind_requests_in_flight 3`) })

	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(answerDeadline):
		t.Fatal("shutdown waits for stalled clients")
	}
	for name, conn := range map[string]net.Conn{"append": stalledAppend, "subscription": stalledSub} {
		conn.SetReadDeadline(time.Now().Add(answerDeadline))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("the stalled %s got no answer: %v", name, err)
		}
		a := readAnswer(t, res)
		if a.code != "unavailable" || !strings.Contains(a.message, "shutting down") {
			t.Errorf("the stalled %s got %d %s: %s; want unavailable, shutting down", name, a.status, a.code, a.message)
		}
	}
}

// waitFor polls cond until it holds, failing the test if it does not
// before answerDeadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(answerDeadline); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the condition did not come true before the deadline")
		}
	}
}

// scrape returns the server's metrics.
func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestProbesDoNotWaitForABody sends /healthz, /readyz and /metrics
// requests, allowed methods and refused ones, whose body stops arriving.
// The probes read no body: the answer must come at once and the connection
// must then be closed, so that neither the connection nor a graceful
// shutdown waits for the rest (net/http would otherwise read up to 256 KiB
// of it before answering).
func TestProbesDoNotWaitForABody(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{RPCTimeout: 10 * time.Minute, ShutdownTimeout: 10 * time.Minute})
	addr := strings.TrimPrefix(b.url, "http://")
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		for _, method := range []string{"GET", "HEAD", "POST", "DELETE"} {
			for body, headers := range map[string][]string{
				"length":  {"-auth", "Content-Length: 1000"},
				"chunked": {"-auth", "Transfer-Encoding: chunked"},
			} {
				t.Run(path+" "+method+" "+body, func(t *testing.T) {
					t.Parallel()
					raw := head(method, path, headers...) + "40\r\nab"
					a, closed := exchange(t, addr, b.admin, raw, true)
					want := http.StatusOK
					if method != "GET" && method != "HEAD" {
						want = http.StatusMethodNotAllowed
					}
					if a.status != want {
						t.Errorf("status %d, want %d: %s", a.status, want, a.message)
					}
					if !closed {
						t.Errorf("the connection stays open after the answer, waiting for a body that never comes")
					}
				})
			}
		}
	}
}

// TestShutdownDoesNotWaitForAStalledProbe starts a graceful shutdown while
// a probe's body stalls and its client reads nothing: shutdown must end
// before answerDeadline, not wait out its timeout (twice that).
func TestShutdownDoesNotWaitForAStalledProbe(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{ShutdownTimeout: 2 * answerDeadline})
	addr := strings.TrimPrefix(b.url, "http://")
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, head("POST", path, "-auth", "Content-Length: 1000")+"ab"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // let the server take the requests (it cannot be observed)
	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(answerDeadline):
		t.Fatal("shutdown waits for stalled probes")
	}
}

// TestClientDeadlineBoundsTheBody sends requests with a client deadline far
// shorter than the server's rpc_timeout (ten minutes here) and a body that
// stalls: the client's deadline wins, so the answer is a deadline error
// naming the client's timeout header, not a wait of rpc_timeout (which
// answerDeadline, a minute, shows as a hang).
func TestClientDeadlineBoundsTheBody(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{RPCTimeout: 10 * time.Minute})
	addr := strings.TrimPrefix(b.url, "http://")
	sub := env(0, `{"afterPosition":"0"}`)
	for _, c := range []struct {
		name, raw, header string
	}{
		{"connect unary", head("POST", pReadStream, "Content-Type: application/json", "Connect-Timeout-Ms: 300",
			"Content-Length: 100") + `{"str`, "Connect-Timeout-Ms"},
		{"connect chunked", head("POST", pReadStream, "Content-Type: application/json", "Connect-Timeout-Ms: 300",
			"Transfer-Encoding: chunked") + "40\r\n" + `{"str`, "Connect-Timeout-Ms"},
		{"connect subscription", head("POST", pSubscribe, "Content-Type: application/connect+json",
			"Connect-Timeout-Ms: 300", "Content-Length: "+strconv.Itoa(len(sub))) + sub[:8], "Connect-Timeout-Ms"},
		{"grpc-web unary", head("POST", pReadAll, "Content-Type: application/grpc-web+json", "Grpc-Timeout: 300m",
			"Content-Length: 40") + envLen(0, 35, "{"), "Grpc-Timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, _ := exchange(t, addr, b.admin, c.raw, true)
			hc := hostileCase{raw: c.raw, want: "deadline_exceeded"}
			hc.check(t, a)
			if !strings.Contains(a.message, c.header) {
				t.Errorf("the message %q does not name the client's deadline (%s)", a.message, c.header)
			}
		})
	}
}
