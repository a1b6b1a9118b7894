package server_test

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/server"
)

// h2Exchange sends one request over HTTP/2 (h2c) and reads the answer in
// any protocol: the gRPC status from the headers (trailers-only) or the
// trailers, or the Connect error from the body.
func h2Exchange(t *testing.T, hc *http.Client, url_, token, ctype, body string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest("POST", url_, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ctype, "application/grpc") || strings.HasPrefix(ctype, "application/grpc-web") {
		return readAnswer(t, res)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	a := answer{status: res.StatusCode, header: res.Header}
	for _, h := range []http.Header{res.Header, res.Trailer} {
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
	return a
}

// TestEveryErrorCarriesTheDetail sends a corpus of bad requests over gRPC,
// gRPC-Web, Connect streaming and Connect unary (JSON and protobuf), over
// HTTP/2, and checks that every answer is an error with rewind's
// ErrorDetail and the documented code for its status: errors made by
// connect-go (decoding, decompression, size limits, content types), by
// the middleware (authentication, routing, framing checks) and by the
// handlers alike.
func TestEveryErrorCarriesTheDetail(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{MaxRequestBytes: 4 << 10})
	_, readerSecret, err := c.CreateToken(ctx, "reader", "read:*")
	if err != nil {
		t.Fatal(err)
	}
	hc := h2c()
	big := `{"stream":"s","events":[{"type":"T","data":"` + strings.Repeat("QUFB", 2<<10) + `"}]}`
	okAppend := `{"stream":"s","events":[{"type":"T"}]}`
	type req struct {
		name, path, body string
		token            string // "" for the admin's, "-" for none
		headers          []string
		want             string
	}
	corpus := []req{
		{name: "no token", path: pAppend, body: okAppend, token: "-", want: "unauthenticated"},
		{name: "unknown token", path: pAppend, body: okAppend, token: "rwd_000000000000_" + strings.Repeat("x", 43),
			want: "unauthenticated"},
		{name: "permission denied", path: pAppend, body: okAppend, token: readerSecret, want: "permission_denied"},
		{name: "unknown method", path: "/rewind.v1.EventStoreService/Nope", body: "{}", want: "unimplemented"},
		{name: "unknown service", path: "/nope.v1.Nope/Nope", body: "{}", want: "unimplemented"},
		{name: "bad JSON", path: pAppend, body: `{"stream":`, want: "invalid_argument"},
		{name: "unknown field", path: pAppend, body: `{"stream":"s","nope":1}`, want: "invalid_argument"},
		{name: "bad stream name", path: pAppend, body: `{"stream":"a b","events":[{"type":"T"}]}`,
			want: "invalid_argument"},
		{name: "message too large", path: pAppend, body: big, want: "resource_exhausted"},
		{name: "not gzip", path: pAppend, body: okAppend, headers: []string{"$ENC: gzip"}, want: "invalid_argument"},
		{name: "unknown coding", path: pAppend, body: okAppend, headers: []string{"$ENC: br"}, want: "invalid_argument"},
		{name: "missing stream", path: pReadStream, body: `{"stream":"nope"}`, want: "not_found"},
		{name: "page too large", path: pReadAll, body: `{"limit":1000000}`, want: "resource_exhausted"},
		{name: "reflection without token", path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
			body: "{}", token: "-", want: "unauthenticated"},
		{name: "subscription bad filter", path: pSubscribe, body: `{"filter":{"types":["a b"]}}`,
			want: "invalid_argument"},
	}
	protocols := []struct {
		name, ctype, enc string
		framed           bool
	}{
		{"grpc", "application/grpc+json", "Grpc-Encoding", true},
		{"grpc-web", "application/grpc-web+json", "Grpc-Encoding", true},
		{"connect", "application/json", "Content-Encoding", false},
		{"connect-stream", "application/connect+json", "Connect-Content-Encoding", true},
	}
	for _, p := range protocols {
		for _, r := range corpus {
			streaming := r.path == pSubscribe
			if streaming && p.name == "connect" || !streaming && p.name == "connect-stream" {
				continue // each procedure in the protocols that can call it
			}
			t.Run(p.name+"/"+r.name, func(t *testing.T) {
				t.Parallel()
				body := r.body
				flags := byte(0)
				var headers []string
				for _, h := range r.headers {
					headers = append(headers, strings.ReplaceAll(h, "$ENC", p.enc))
					flags = 1
				}
				if p.framed {
					body = env(flags, body)
				}
				token := b.admin
				switch r.token {
				case "-":
					token = ""
				case "":
				default:
					token = r.token
				}
				a := h2Exchange(t, hc, b.url+r.path, token, p.ctype, body, headers...)
				if a.code != r.want {
					t.Fatalf("%d %s: %s; want code %s", a.status, a.code, a.message, r.want)
				}
				checkDetail(t, a)
				if a.status >= 500 {
					t.Errorf("status %d for a client's mistake", a.status)
				}
				t.Logf("%d %s: %s", a.status, a.code, a.message)
			})
		}
	}
}

// TestMalformedEnvelopesAreInvalidArgument sends envelopes whose prefix
// lies (a length beyond the body, beyond any limit, unknown flags, a
// prefix cut short) over gRPC, gRPC-Web and Connect streaming: each is the
// client's mistake, InvalidArgument with a message that says the envelope
// is malformed, never ResourceExhausted or a server error.
func TestMalformedEnvelopesAreInvalidArgument(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{MaxRequestBytes: 4 << 10})
	hc := h2c()
	msg := `{"epoch":"0"}` // a ReadAllRequest and a SubscribeRequest alike
	cases := map[string]string{
		"length beyond the body":         envLen(0, uint32(len(msg)+100), msg),
		"length beyond max request size": envLen(0, 1<<30, msg),
		"length of 4 GiB":                envLen(0, 0xffffffff, msg),
		"unknown flags":                  env(0x40, msg),
		"trailer flag":                   env(0x80, msg),
		"truncated prefix":               "\x00\x00\x01",
		"no message":                     "",
		"two messages":                   env(0, msg) + env(0, msg),
	}
	for _, p := range []struct{ name, path, ctype string }{
		{"grpc", pReadAll, "application/grpc+json"},
		{"grpc-web", pReadAll, "application/grpc-web+json"},
		{"connect-stream", pSubscribe, "application/connect+json"},
	} {
		for name, body := range cases {
			t.Run(p.name+"/"+name, func(t *testing.T) {
				t.Parallel()
				a := h2Exchange(t, hc, b.url+p.path, b.admin, p.ctype, body)
				if a.code != "invalid_argument" || !strings.Contains(a.message, "malformed") {
					t.Fatalf("%d %s: %s; want invalid_argument saying the envelope is malformed", a.status, a.code,
						a.message)
				}
				checkDetail(t, a)
			})
		}
		if p.name != "connect-stream" { // a subscription taken would stream on
			t.Run(p.name+"/GZIP in capitals", func(t *testing.T) {
				t.Parallel()
				a := h2Exchange(t, hc, b.url+p.path, b.admin, p.ctype, env(1, gzipped(msg)), "Grpc-Encoding: GZIP")
				if a.code != "ok" {
					t.Fatalf("%d %s: %s; want the request taken", a.status, a.code, a.message)
				}
			})
		}
		t.Run(p.name+"/zero timeout", func(t *testing.T) {
			t.Parallel()
			h := "Grpc-Timeout: 0S"
			if p.name == "connect-stream" {
				h = "Connect-Timeout-Ms: 0"
			}
			a := h2Exchange(t, hc, b.url+p.path, b.admin, p.ctype, env(0, msg), h)
			if a.code != "invalid_argument" {
				t.Fatalf("%d %s: %s; want invalid_argument", a.status, a.code, a.message)
			}
			checkDetail(t, a)
		})
		// Over HTTP/1.1 with a Content-Length, as gRPC-Web and Connect
		// clients in browsers send them.
		if p.name == "grpc" {
			continue
		}
		for name, body := range cases {
			t.Run(p.name+"/http1/"+name, func(t *testing.T) {
				t.Parallel()
				a, _ := exchange(t, strings.TrimPrefix(b.url, "http://"), b.admin, post(p.path, p.ctype, body), false)
				if a.code != "invalid_argument" || !strings.Contains(a.message, "malformed") {
					t.Fatalf("%d %s: %s; want invalid_argument saying the envelope is malformed", a.status, a.code,
						a.message)
				}
				checkDetail(t, a)
			})
		}
	}
}

// TestOperationalPathsRefuseWithTheDetail checks the paths beside the
// API: a wrong method on /healthz, /readyz or /metrics, and a path no one
// serves, are answered like API errors, with a message and the detail.
func TestOperationalPathsRefuseWithTheDetail(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{})
	addr := strings.TrimPrefix(b.url, "http://")
	for _, c := range []hostileCase{
		{name: "POST /healthz", raw: post("/healthz", "application/json", "{}")},
		{name: "DELETE /readyz", raw: head("DELETE", "/readyz")},
		{name: "PUT /metrics", raw: post("/metrics", "text/plain", "x")},
		{name: "GET /metricsx", raw: head("GET", "/metricsx"), want: "unimplemented"},
		{name: "GET /healthz/", raw: head("GET", "/healthz/"), want: "unimplemented"},
		{name: "GET /", raw: head("GET", "/"), want: "unimplemented"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, _ := exchange(t, addr, b.admin, c.raw, false)
			c.check(t, a)
		})
	}
	if status, body := get(t, b.url+"/healthz"); status != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz: %d %q", status, body)
	}
}

// TestStreamsFirstMessageHasADeadline opens streams over HTTP/2 whose
// first message never comes: each is answered DeadlineExceeded once
// rpc_timeout passes, with the detail, instead of holding its handler.
func TestStreamsFirstMessageHasADeadline(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{RPCTimeout: 300 * time.Millisecond})
	for _, p := range []struct{ name, path, ctype string }{
		{"grpc append stream", pAppendStream, "application/grpc+json"},
		{"connect append stream", pAppendStream, "application/connect+json"},
		{"grpc subscribe", pSubscribe, "application/grpc+json"},
	} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe()
			defer pw.Close()
			req, _ := http.NewRequest("POST", b.url+p.path, pr)
			req.Header.Set("Content-Type", p.ctype)
			req.Header.Set("Authorization", "Bearer "+b.admin)
			res, err := h2c().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var a answer
			if strings.HasPrefix(p.ctype, "application/grpc") {
				defer res.Body.Close()
				io.Copy(io.Discard, res.Body)
				for _, h := range []http.Header{res.Header, res.Trailer} {
					if s := h.Get("Grpc-Status"); s != "" {
						n, _ := strconv.Atoi(s)
						a.code = connect.Code(n).String()
						a.message, _ = url.PathUnescape(h.Get("Grpc-Message"))
						a.detail = grpcDetail(t, h.Get("Grpc-Status-Details-Bin"))
					}
				}
			} else {
				a = readAnswer(t, res)
			}
			if a.code != "deadline_exceeded" || !strings.Contains(a.message, "first message") &&
				!strings.Contains(a.message, "request body") {
				t.Fatalf("%s: %s; want deadline_exceeded saying the first message did not come", a.code, a.message)
			}
			checkDetail(t, a)
		})
	}
}

// TestClientKeepsTheMessageOfDetailsWithoutData checks that an error whose
// detail carries only its code (one connect-go made, such as a message
// beyond max_request_bytes) reaches a client's caller with its message,
// and its code, not as an empty typed error.
func TestClientKeepsTheMessageOfDetailsWithoutData(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{MaxRequestBytes: 4 << 10})
	for _, protocol := range []string{"grpc", "grpcweb", "connect"} {
		c, err := client.New(b.url, client.Config{Token: b.admin, Protocol: protocol, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Append(ctx, "s", rewind.Any, ev("Big", strings.Repeat("x", 8<<10)))
		if !errors.Is(err, rewind.ErrLimitExceeded) || !strings.Contains(err.Error(), "4096") ||
			strings.Contains(err.Error(), "limit of 0") {
			t.Errorf("%s: append beyond max_request_bytes: %v; want limit exceeded with a message", protocol, err)
		}
		t.Logf("%s: %v", protocol, err)
	}
}

// TestCompressedEndOfStreamCarriesTheDetail asks for compressed answers
// and provokes a Connect stream error over 1 KiB, which connect-go
// compresses: the end-of-stream message must still carry the detail.
func TestCompressedEndOfStreamCarriesTheDetail(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{})
	field := strings.Repeat("x", 2<<10)
	a := h2Exchange(t, h2c(), b.url+pSubscribe, b.admin, "application/connect+json", env(0, `{"`+field+`":1}`),
		"Connect-Accept-Encoding: gzip")
	if a.code != "invalid_argument" {
		t.Fatalf("%d %q: %.200s; want invalid_argument", a.status, a.code, a.message)
	}
	checkDetail(t, a)
}

// TestClientDeadlineIsDeadlineExceeded calls with a client deadline that
// passes before the call ends: a unary RPC whose deadline (a nanosecond)
// has passed when its handler runs, and subscriptions on an empty log,
// which wait for events until theirs passes. The answer must be
// DeadlineExceeded with the documented detail code and a message that says
// which deadline passed and what to do, not Go's "context deadline
// exceeded".
func TestClientDeadlineIsDeadlineExceeded(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatal(err)
	}
	hc := h2c()
	for _, r := range []struct {
		name, path, ctype, header string
	}{
		{"grpc unary", pReadStream, "application/grpc+json", "Grpc-Timeout: 1n"},
		{"grpc-web unary", pReadStream, "application/grpc-web+json", "Grpc-Timeout: 1n"},
		{"grpc subscription", pSubscribe, "application/grpc+json", "Grpc-Timeout: 300m"},
		{"connect subscription", pSubscribe, "application/connect+json", "Connect-Timeout-Ms: 300"},
	} {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			body := env(0, `{"stream":"s"}`)
			if r.path == pSubscribe {
				body = env(0, `{"afterPosition":"1"}`)
			}
			a := h2Exchange(t, hc, b.url+r.path, b.admin, r.ctype, body, r.header)
			if a.code != "deadline_exceeded" {
				t.Fatalf("%d %s: %s; want deadline_exceeded", a.status, a.code, a.message)
			}
			checkDetail(t, a)
			if !strings.HasPrefix(a.message, "rewind: ") || !strings.Contains(a.message, strings.Split(r.header, ":")[0]) {
				t.Errorf("the message %q does not say which deadline passed", a.message)
			}
			t.Logf("%d %s: %s", a.status, a.code, a.message)
		})
	}
}
