package server

import (
	"encoding/base64"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// protocol is the RPC protocol of a request, told by its content type as
// connect-go tells it.
type protocol int

const (
	connectUnary  protocol = iota // application/json or application/proto, or a GET
	connectStream                 // application/connect+json or +proto
	grpcProtocol                  // application/grpc[+proto|+json]
	grpcWeb                       // application/grpc-web[+proto|+json]
)

func protocolOf(r *http.Request) protocol {
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return grpcWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return grpcProtocol
	case strings.HasPrefix(ct, "application/connect+"):
		return connectStream
	}
	return connectUnary
}

// framed reports whether the body is a sequence of enveloped messages.
func (p protocol) framed() bool { return p != connectUnary }

// codingHeader is the header that names the content coding of the
// request's messages.
func (p protocol) codingHeader() string {
	switch p {
	case connectStream:
		return "Connect-Content-Encoding"
	case grpcProtocol, grpcWeb:
		return "Grpc-Encoding"
	}
	return "Content-Encoding"
}

// compressed reports whether the request names a content coding.
func (p protocol) compressed(r *http.Request) bool {
	c := r.Header.Get(p.codingHeader())
	return c != "" && c != "identity"
}

// checkProtocol refuses, with an error that says what to fix, what
// connect-go would otherwise answer with a server error, a bare status or
// a vague message: a bidirectional stream over HTTP/1.1, zero or malformed
// timeouts, content codings it does not support, and GET requests without
// a readable message. Content codings are case-insensitive (RFC 9110): it
// writes them in lower case, as connect-go expects them.
func checkProtocol(rt *route, p protocol, r *http.Request) error {
	if rt.stream == connect.StreamTypeBidi && r.ProtoMajor < 2 {
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: %s is a bidirectional stream and needs HTTP/2 "+
			"(gRPC, or Connect over h2c or TLS); this request came over HTTP/%d.%d", r.URL.Path, r.ProtoMajor,
			r.ProtoMinor)
	}
	if err := checkTimeout(p, r.Header); err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		return checkGet(r)
	}
	name := p.codingHeader()
	if v, ok := r.Header[name]; ok {
		coding, err := contentCoding(name, v)
		if err != nil {
			return err
		}
		r.Header.Set(name, coding)
	}
	return nil
}

// contentCoding reads the one content coding a request may name: gzip or
// identity, in any case.
func contentCoding(name string, values []string) (string, error) {
	v := strings.ToLower(strings.TrimSpace(strings.Join(values, ",")))
	switch v {
	case "gzip", "identity", "":
		return v, nil
	}
	if strings.Contains(v, ",") {
		return "", apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: %s %q names more than one content coding; "+
			"compress the body once, with gzip, or not at all", name, v)
	}
	return "", apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: %s %q is not supported: send the body "+
		"uncompressed, or compressed with gzip (%s: gzip)", name, v, name)
}

// checkTimeout checks the timeout header of the request's protocol: a
// timeout of zero has passed before the request arrived, and is refused
// rather than answered as a deadline the server missed.
func checkTimeout(p protocol, h http.Header) error {
	if p == grpcProtocol || p == grpcWeb {
		v, ok := h["Grpc-Timeout"]
		if !ok {
			return nil
		}
		t := strings.Join(v, ",")
		if n := len(t) - 1; n < 1 || n > 8 || !digits(t[:n]) || !strings.ContainsRune("HMSmun", rune(t[n])) {
			return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: Grpc-Timeout %q must be 1 to 8 digits and a "+
				"unit (H, M, S, m, u or n), such as 30S", t)
		}
		if strings.Trim(t[:len(t)-1], "0") == "" {
			return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: Grpc-Timeout %q has passed before the "+
				"request arrived: send a positive timeout, or none for the server's own", t)
		}
		return nil
	}
	v, ok := h["Connect-Timeout-Ms"]
	if !ok {
		return nil
	}
	t := strings.Join(v, ",")
	if len(t) < 1 || len(t) > 10 || !digits(t) {
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: Connect-Timeout-Ms %q must be a whole number of "+
			"milliseconds of at most 10 digits, such as 30000", t)
	}
	if n, _ := strconv.ParseInt(t, 10, 64); n == 0 {
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: Connect-Timeout-Ms 0 has passed before the "+
			"request arrived: send a positive timeout, or none for the server's own")
	}
	return nil
}

// clientTimeout returns the timeout a request's header gives, checked by
// checkTimeout, and that header's name and value; ok is false without one.
// A timeout beyond what a time.Duration holds is the longest it holds.
func clientTimeout(p protocol, h http.Header) (d time.Duration, header string, ok bool) {
	name, unit := "Connect-Timeout-Ms", time.Millisecond
	if p == grpcProtocol || p == grpcWeb {
		name = "Grpc-Timeout"
	}
	v := strings.Join(h[name], ",")
	if v == "" {
		return 0, "", false
	}
	n := v
	if name == "Grpc-Timeout" {
		n = v[:len(v)-1]
		unit = map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond,
			'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	}
	k, err := strconv.ParseInt(n, 10, 64)
	if err != nil || unit == 0 {
		return 0, "", false
	}
	if k > math.MaxInt64/int64(unit) {
		return math.MaxInt64, name + ": " + v, true
	}
	return time.Duration(k) * unit, name + ": " + v, true
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// getUsage is how a GET request carries its message.
const getUsage = "a GET request carries its message in the query: ?encoding=json&message=URL-ENCODED-JSON, or " +
	"?encoding=proto&base64=1&message=BASE64URL-PROTOBUF"

// checkGet checks the query of a GET request: its encoding, its message
// and, when the message is base64, that it decodes.
func checkGet(r *http.Request) error {
	if r.ContentLength != 0 {
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: a GET request must not have a body; %s, or use POST",
			getUsage)
	}
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	for _, k := range []string{"encoding", "message", "base64", "compression", "connect"} {
		if n := len(q[k]); n > 1 {
			return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: the query names %s %d times; give it once. %s",
				k, n, getUsage)
		}
	}
	switch enc := q.Get("encoding"); {
	case !q.Has("encoding"), !q.Has("message"):
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: %s", getUsage)
	case enc != "json" && enc != "proto":
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: encoding %q is not supported; %s", enc, getUsage)
	}
	switch q.Get("base64") {
	case "", "0":
	case "1":
		msg := q.Get("message")
		enc := base64.URLEncoding
		if len(msg)%4 != 0 {
			enc = base64.RawURLEncoding
		}
		if _, err := enc.DecodeString(msg); err != nil {
			return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: with base64=1 the message must be URL-safe "+
				"base64 (RFC 4648 §5, padding optional): %v", err)
		}
	default:
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: base64 %q must be 1 (the message is base64) "+
			"or 0, or be left out", q.Get("base64"))
	}
	if q.Has("compression") {
		coding, err := contentCoding("compression", q["compression"])
		if err != nil {
			return err
		}
		q.Set("compression", coding)
		r.URL.RawQuery = q.Encode()
	}
	return nil
}

func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: the query string is not URL-encoded: %v; %s",
			err, getUsage)
	}
	return q, nil
}
