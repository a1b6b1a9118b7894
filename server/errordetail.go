package server

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// detailWriter makes sure that every error answer of the API carries a
// rewind.v1.ErrorDetail, whoever made the error: rewind's handlers (whose
// errors have it already), connect-go itself (a body it cannot decode or
// decompress, a message beyond max_request_bytes, a content type it does
// not take), the middleware, authentication and routing. Clients and the
// docs rely on the detail's code; checking it here, on the way out, is the
// one place no error can go around.
//
// It reads the error where each protocol puts it:
//
//   - Connect unary and plain HTTP: an error status with a JSON body. The
//     answer is held until the handler returns (an error body is small and
//     final), then written with the detail added; a bare status (connect-go
//     answers 415 without a body, in any protocol) gets a body that says
//     what to send;
//   - gRPC: the Grpc-Status-Details-Bin header (a trailers-only answer) or
//     trailer;
//   - gRPC-Web: the same, in the headers or in the trailers frame that ends
//     the body;
//   - Connect streaming: the end-of-stream frame's JSON error.
//
// The detail it adds has the code that goes with the status (apiconv's
// DetailCode): InvalidArgument is invalid_argument, ResourceExhausted
// limit_exceeded, and so on.
type detailWriter struct {
	http.ResponseWriter
	r           *http.Request
	p           protocol
	wroteHeader bool
	held        int // status of a Connect unary error held until the handler returns
	body        bytes.Buffer
	frames      frameRewriter
}

func newDetailWriter(w http.ResponseWriter, r *http.Request) *detailWriter {
	d := &detailWriter{ResponseWriter: w, r: r, p: protocolOf(r)}
	switch d.p {
	case connectStream:
		d.frames.endFlag, d.frames.fix = 0x02, connectEndStreamDetail
	case grpcWeb:
		d.frames.endFlag, d.frames.fix = 0x80, grpcWebTrailersDetail
	}
	return d
}

func (d *detailWriter) WriteHeader(code int) {
	switch {
	case d.held != 0:
		return
	case d.wroteHeader:
		d.ResponseWriter.WriteHeader(code) // superfluous: net/http logs it
		return
	case code >= 400:
		// Connect unary's errors, and the bare statuses connect-go
		// answers in any protocol (415 for a streaming content type on a
		// unary procedure).
		d.held = code
		return
	}
	d.wroteHeader = true
	grpcHeaderDetail(d.Header(), "", "")
	d.ResponseWriter.WriteHeader(code)
}

func (d *detailWriter) Write(b []byte) (int, error) {
	if d.held != 0 {
		return d.body.Write(b)
	}
	if !d.wroteHeader {
		d.WriteHeader(http.StatusOK)
	}
	if d.frames.fix != nil {
		return d.frames.write(d.ResponseWriter, b)
	}
	return d.ResponseWriter.Write(b)
}

func (d *detailWriter) Flush() {
	if d.held != 0 {
		return
	}
	if !d.wroteHeader {
		d.WriteHeader(http.StatusOK)
	}
	if f, ok := d.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (d *detailWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// finish completes the answer once the handler has returned: it writes a
// held error, or adds the detail to the gRPC status of a trailers-only
// answer or of the trailers.
func (d *detailWriter) finish() {
	if d.held != 0 {
		body := unaryErrorDetail(d.held, d.body.Bytes(), d.r, d.Header())
		d.Header().Del("Content-Length")
		d.Header().Set("Content-Type", "application/json")
		d.wroteHeader = true
		d.ResponseWriter.WriteHeader(d.held)
		d.ResponseWriter.Write(body)
		return
	}
	h := d.Header()
	switch {
	case !d.wroteHeader:
		grpcHeaderDetail(h, "", "")
	case strings.Contains(h.Get("Trailer"), "Grpc-Status"):
		// Trailers declared before the headers went out (connect's
		// ErrorWriter); one added now needs the prefix.
		grpcHeaderDetail(h, "", http.TrailerPrefix)
	}
	grpcHeaderDetail(h, http.TrailerPrefix, http.TrailerPrefix)
}

// detailOf returns the ErrorDetail that goes with an error of code c.
func detailOf(c connect.Code) *anypb.Any {
	a, _ := anypb.New(&rewindv1.ErrorDetail{Code: string(apiconv.DetailCode(c))})
	return a
}

// wireError is an error in the Connect protocol's JSON form, keeping any
// field rewind does not know.
type wireError map[string]json.RawMessage

type wireDetail struct {
	Type  string          `json:"type"`
	Value string          `json:"value"`
	Debug json.RawMessage `json:"debug,omitempty"`
}

// addDetail adds the ErrorDetail to e unless it has one, and reports
// whether it changed e.
func (e wireError) addDetail() bool {
	var code connect.Code
	var name string
	if json.Unmarshal(e["code"], &name) != nil || code.UnmarshalText([]byte(name)) != nil {
		code = connect.CodeUnknown
	}
	var details []wireDetail
	if raw, ok := e["details"]; ok && json.Unmarshal(raw, &details) != nil {
		return false // not ours to rewrite
	}
	for _, d := range details {
		if d.Type == detailType {
			return false
		}
	}
	a := detailOf(code)
	details = append(details, wireDetail{Type: detailType, Value: base64.RawStdEncoding.EncodeToString(a.GetValue())})
	e["details"], _ = json.Marshal(details)
	return true
}

var detailType = string((&rewindv1.ErrorDetail{}).ProtoReflect().Descriptor().FullName())

// unaryErrorDetail returns the body of a Connect unary error answer of
// the given HTTP status, with the detail. A bare status gets a message.
func unaryErrorDetail(status int, body []byte, r *http.Request, h http.Header) []byte {
	e := wireError{}
	if len(bytes.TrimSpace(body)) == 0 || json.Unmarshal(body, &e) != nil || e["code"] == nil {
		e = wireError{}
		code, msg := bareStatus(status, r, h)
		e["code"], _ = json.Marshal(code.String())
		e["message"], _ = json.Marshal(msg)
	}
	e.addDetail()
	out, err := json.Marshal(e)
	if err != nil {
		return body
	}
	return out
}

// bareStatus says what a status connect-go answers without a body means.
func bareStatus(status int, r *http.Request, h http.Header) (connect.Code, string) {
	switch status {
	case http.StatusUnsupportedMediaType:
		accepted := h.Get("Accept-Post")
		if accepted == "" {
			accepted = "application/json, application/proto, application/connect+json, application/connect+proto, " +
				"application/grpc, application/grpc+json, application/grpc-web, application/grpc-web+json"
		}
		if r.Method == http.MethodGet {
			return connect.CodeInvalidArgument, "rewind: a GET request must not have a body; " + getUsage + ", or use POST"
		}
		return connect.CodeInvalidArgument, fmt.Sprintf("rewind: content type %q is not one this server takes; "+
			"send one of: %s", r.Header.Get("Content-Type"), accepted)
	case http.StatusMethodNotAllowed:
		return connect.CodeInvalidArgument, fmt.Sprintf("rewind: %s cannot be called with %s; use %s", r.URL.Path,
			r.Method, h.Get("Allow"))
	case http.StatusHTTPVersionNotSupported:
		return connect.CodeInvalidArgument, fmt.Sprintf("rewind: %s needs HTTP/2", r.URL.Path)
	}
	code := connect.CodeUnknown
	if status < 500 {
		code = connect.CodeInvalidArgument
	}
	return code, fmt.Sprintf("rewind: %d %s", status, http.StatusText(status))
}

// grpcHeaderDetail adds the detail to the gRPC status in h, read under
// the key prefix ("" for headers and declared trailers, http.TrailerPrefix
// for trailers) and written under out.
func grpcHeaderDetail(h http.Header, prefix, out string) {
	status := h[prefix+"Grpc-Status"]
	if len(status) != 1 || status[0] == "0" {
		return
	}
	var msg string
	if m := h[prefix+"Grpc-Message"]; len(m) > 0 {
		msg = m[0]
	}
	var bin string
	if b := h[prefix+"Grpc-Status-Details-Bin"]; len(b) > 0 {
		bin = b[0]
	}
	if v, ok := grpcStatusDetail(status[0], msg, bin); ok {
		delete(h, prefix+"Grpc-Status-Details-Bin")
		h[out+"Grpc-Status-Details-Bin"] = []string{v}
	}
}

// grpcStatusDetail returns the Grpc-Status-Details-Bin value of a gRPC
// status with the detail added, and false when it has it already.
func grpcStatusDetail(status, msg, bin string) (string, bool) {
	n, err := strconv.Atoi(status)
	if err != nil || n <= 0 || n > 16 {
		return "", false
	}
	st := &spb.Status{Code: int32(n)}
	if bin != "" {
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(bin, "="))
		if err != nil || proto.Unmarshal(raw, st) != nil {
			return "", false
		}
		for _, d := range st.GetDetails() {
			if d.MessageIs((*rewindv1.ErrorDetail)(nil)) {
				return "", false
			}
		}
	} else if st.Message, err = url.PathUnescape(msg); err != nil {
		st.Message = msg
	}
	st.Details = append(st.Details, detailOf(connect.Code(n)))
	raw, err := proto.Marshal(st)
	if err != nil {
		return "", false
	}
	return base64.RawStdEncoding.EncodeToString(raw), true
}

// connectEndStreamDetail adds the detail to the error of a Connect
// end-of-stream message.
func connectEndStreamDetail(payload []byte) []byte {
	var end map[string]json.RawMessage
	if json.Unmarshal(payload, &end) != nil || end["error"] == nil {
		return payload
	}
	e := wireError{}
	if json.Unmarshal(end["error"], &e) != nil || !e.addDetail() {
		return payload
	}
	var err error
	if end["error"], err = json.Marshal(e); err != nil {
		return payload
	}
	out, err := json.Marshal(end)
	if err != nil {
		return payload
	}
	return out
}

// grpcWebTrailersDetail adds the detail to the gRPC status of a gRPC-Web
// trailers frame: header lines, "grpc-status: 3\r\n".
func grpcWebTrailersDetail(payload []byte) []byte {
	lines := strings.Split(strings.TrimRight(string(payload), "\r\n"), "\r\n")
	fields := map[string]string{}
	binAt := -1
	for i, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return payload
		}
		k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
		fields[k] = strings.TrimSpace(v)
		if k == "Grpc-Status-Details-Bin" {
			binAt = i
		}
	}
	bin, ok := grpcStatusDetail(fields["Grpc-Status"], fields["Grpc-Message"], fields["Grpc-Status-Details-Bin"])
	if !ok {
		return payload
	}
	if binAt >= 0 {
		lines[binAt] = "grpc-status-details-bin: " + bin
	} else {
		lines = append(lines, "grpc-status-details-bin: "+bin)
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// frameRewriter passes the envelopes of a streamed answer through, and
// holds its end frame (flags endFlag) until it is complete, to write it as
// fix rewrites it.
type frameRewriter struct {
	endFlag byte
	fix     func([]byte) []byte

	prefix    [5]byte
	prefixN   int
	remaining uint32
	end       bool   // the current frame is the end frame
	held      []byte // its payload so far
}

func (f *frameRewriter) write(w http.ResponseWriter, data []byte) (int, error) {
	for i := 0; i < len(data); {
		if f.remaining > 0 {
			k := min(uint32(len(data)-i), f.remaining)
			chunk := data[i : i+int(k)]
			i += int(k)
			f.remaining -= k
			if !f.end {
				if _, err := w.Write(chunk); err != nil {
					return i, err
				}
				continue
			}
			f.held = append(f.held, chunk...)
			if f.remaining == 0 {
				if err := f.writeEnd(w); err != nil {
					return i, err
				}
			}
			continue
		}
		f.prefix[f.prefixN] = data[i]
		f.prefixN++
		i++
		if f.prefixN < len(f.prefix) {
			continue
		}
		f.prefixN = 0
		f.remaining = binary.BigEndian.Uint32(f.prefix[1:])
		f.end = f.prefix[0]&f.endFlag != 0
		if f.end {
			f.held = f.held[:0]
			if f.remaining == 0 {
				if err := f.writeEnd(w); err != nil {
					return i, err
				}
			}
			continue
		}
		if _, err := w.Write(f.prefix[:]); err != nil {
			return i, err
		}
	}
	return len(data), nil
}

func (f *frameRewriter) writeEnd(w http.ResponseWriter) error {
	flags, payload := f.prefix[0], f.held
	if flags&1 != 0 {
		// connect-go compresses an end frame of 1 KiB or more; gzip is
		// the only coding the server takes. It goes out uncompressed.
		plain, err := gunzip(payload)
		if err != nil {
			return f.writeFrame(w, flags, payload)
		}
		flags, payload = flags&^1, plain
	}
	return f.writeFrame(w, flags, f.fix(payload))
}

func (f *frameRewriter) writeFrame(w http.ResponseWriter, flags byte, payload []byte) error {
	out := make([]byte, 5, 5+len(payload))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	out = append(out, payload...)
	f.end = false
	_, err := w.Write(out)
	return err
}

// gunzip decompresses an end frame, bounded: an error answer is small.
func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(io.LimitReader(zr, 1<<20))
}
