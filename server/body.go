package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// requestBody reads an API request's body for connect-go, so that what
// goes wrong while reading it is the client's error with a message that
// says what to fix, never an "unknown" or "internal" server error:
//
//   - a body that stops arriving fails with DeadlineExceeded once the read
//     deadline (rpc_timeout) passes, and says so without the socket
//     addresses a network error prints;
//   - a malformed or truncated body (broken chunked encoding, fewer bytes
//     than Content-Length) fails with InvalidArgument;
//   - in the enveloped protocols (gRPC, gRPC-Web, Connect streaming) it
//     checks the framing as the bytes pass: a truncated envelope, unknown
//     flags, a compressed message without an encoding, and a unary request
//     with no message or more than one fail with InvalidArgument.
//
// It also ends the read deadline once the request is complete: at the end
// of the body, or, for a bidirectional stream, once its first message has
// arrived (later messages may come whenever the client has them).
type requestBody struct {
	src   io.ReadCloser
	rc    *http.ResponseController
	limit readLimit
	// framed: the body is a sequence of envelopes (flags byte, 4-byte
	// big-endian length, message).
	framed bool
	// one: the procedure takes exactly one message; bidi: it is a
	// bidirectional stream.
	one, bidi bool
	// compressed: the request names a content coding, so envelopes may
	// carry the compressed flag.
	compressed bool
	// maxMessage is max_request_bytes; length is the body's
	// Content-Length, -1 when unknown, and read the bytes read so far.
	maxMessage   uint32
	length, read int64

	prefix    [5]byte
	prefixN   int    // bytes of the current envelope's prefix seen
	remaining uint32 // bytes of the current message still to come
	declared  uint32 // length the current envelope declared
	messages  int
	err       error

	eof      atomic.Bool // the body was read to its end
	complete atomic.Bool // the request is complete: at its end, or a stream's first message came
	timedOut atomic.Bool // the body did not arrive before the read deadline
	shutdown atomic.Bool // the server cut the read short: it is shutting down

	// mu orders the deadlines set from other goroutines (a stream's
	// receiver, shutdown) with the end of the handler, after which the
	// response controller must not be used.
	mu          sync.Mutex
	handlerDone bool
}

// readLimit is the time a request has to arrive, and whose limit it is,
// for the message of a body that did not.
type readLimit struct {
	timeout time.Duration
	whose   string
}

// newRequestBody wraps r's body, whose read deadline rc has set to limit.
// rt and p give the procedure and the protocol.
func newRequestBody(r *http.Request, rc *http.ResponseController, limit readLimit, maxMessage int,
	rt *route, p protocol) *requestBody {
	b := &requestBody{src: r.Body, rc: rc, limit: limit, framed: p.framed(), one: rt.oneMessage(),
		bidi: rt.stream == connect.StreamTypeBidi, compressed: p.compressed(r), maxMessage: uint32(maxMessage),
		length: r.ContentLength}
	if r.Body == nil || r.Body == http.NoBody {
		b.src = http.NoBody
	}
	return b
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.src.Read(p)
	b.read += int64(n)
	if b.framed {
		if k, ferr := b.scan(p[:n]); ferr != nil {
			b.err = ferr
			return k, ferr
		}
	}
	switch {
	case err == io.EOF:
		if b.framed {
			if ferr := b.atEOF(); ferr != nil {
				b.err = ferr
				return n, ferr
			}
		}
		b.eof.Store(true)
		b.release()
	case err != nil:
		b.err = b.readError(err)
		return n, b.err
	}
	return n, err
}

func (b *requestBody) Close() error { return b.src.Close() }

// done reports whether the body was read to its end.
func (b *requestBody) done() bool { return b.eof.Load() }

// release lifts the read deadline once the request is complete, so that a
// stream, or the check for a closed connection that follows a complete
// body, is not cut by it.
func (b *requestBody) release() {
	if !b.complete.Swap(true) {
		b.control(func(rc *http.ResponseController) { rc.SetReadDeadline(time.Time{}) })
	}
}

// control calls f with the response controller unless the handler is done.
func (b *requestBody) control(f func(*http.ResponseController)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.handlerDone {
		f(b.rc)
	}
}

// finish marks the end of the handler: the response controller is not used
// from then on.
func (b *requestBody) finish() {
	b.mu.Lock()
	b.handlerDone = true
	b.mu.Unlock()
}

// scan follows the envelopes in data, returning the bytes that precede a
// framing error with the error. An error found on an envelope's prefix
// holds back the prefix's last byte, so that connect-go's read of the
// prefix fails with it (io.ReadFull drops the error of a read that fills
// its buffer).
func (b *requestBody) scan(data []byte) (int, error) {
	for i := 0; i < len(data); {
		if b.remaining > 0 {
			k := min(uint32(len(data)-i), b.remaining)
			b.remaining -= k
			i += int(k)
			if b.remaining == 0 {
				b.messageDone()
			}
			continue
		}
		if b.prefixN == 0 && b.one && b.messages > 0 {
			return i, framingError("the request has more than one message; this RPC takes exactly one")
		}
		b.prefix[b.prefixN] = data[i]
		b.prefixN++
		i++
		if b.prefixN < len(b.prefix) {
			continue
		}
		b.prefixN = 0
		flags := b.prefix[0]
		switch {
		case flags&^1 != 0:
			return i - 1, framingError(fmt.Sprintf("envelope flags 0x%02x are not those of a request message: "+
				"0 for a plain message, 1 for a compressed one", flags))
		case flags == 1 && !b.compressed:
			return i - 1, framingError("a message is marked compressed, but the request names no content coding " +
				"(Grpc-Encoding or Connect-Content-Encoding: gzip)")
		}
		b.declared = binary.BigEndian.Uint32(b.prefix[1:])
		if b.maxMessage > 0 && b.declared > b.maxMessage {
			return i - 1, b.oversized(len(data) - i)
		}
		b.remaining = b.declared
		if b.remaining == 0 {
			b.messageDone()
		}
	}
	return len(data), nil
}

// oversized tells an envelope that declares more than max_request_bytes
// from one whose body ends before its declared length: the first is a
// message too large (ResourceExhausted), the second a malformed envelope
// (InvalidArgument), as connect-go, which only sees the declared length,
// cannot tell. With a Content-Length it is told at once; without one the
// body is read (and dropped) up to the declared length, as connect-go
// would, within the read deadline. have is the message's bytes already
// read.
func (b *requestBody) oversized(have int) error {
	left := int64(b.declared) - int64(have)
	if b.length >= 0 {
		if b.length-b.read < left {
			return framingError(fmt.Sprintf("an envelope declares a message of %d bytes, but the body ends %d "+
				"bytes after its prefix", b.declared, int64(have)+b.length-b.read))
		}
	} else {
		n, err := io.CopyN(io.Discard, b.src, left)
		b.read += n
		switch {
		case errors.Is(err, io.EOF):
			return framingError(fmt.Sprintf("an envelope declares a message of %d bytes, but the body ends %d "+
				"bytes after its prefix", b.declared, int64(have)+n))
		case err != nil:
			return b.readError(err)
		}
	}
	return apiconv.ToConnect(&rewind.LimitError{Limit: "bytes of a request message (max_request_bytes)",
		Max: int64(b.maxMessage), Got: int64(b.declared), Hint: "send smaller messages: split the append into several"})
}

func (b *requestBody) messageDone() {
	b.messages++
	if b.bidi && b.messages == 1 {
		b.release() // the stream is open: later messages come when the client has them
	}
}

// atEOF checks that the body did not end inside an envelope, and that a
// unary request had its message.
func (b *requestBody) atEOF() error {
	switch {
	case b.prefixN > 0:
		return framingError(fmt.Sprintf("the body ended inside an envelope's 5-byte prefix (%d bytes of it came)",
			b.prefixN))
	case b.remaining > 0:
		return framingError(fmt.Sprintf("the body ended %d bytes into a message whose envelope declared %d bytes",
			b.declared-b.remaining, b.declared))
	case b.one && b.messages == 0:
		return framingError("the request has no message; this RPC takes exactly one")
	}
	return nil
}

func framingError(what string) error {
	return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: malformed request body: %s (each message is "+
		"framed by a flags byte and its length as 4 big-endian bytes)", what)
}

// readError describes a failed read of the body for the client, without
// the socket addresses of network errors.
func (b *requestBody) readError(err error) error {
	var ne net.Error
	switch {
	case b.shutdown.Load():
		return apiconv.Errorf(rewind.CodeClosed, "rewind: the server is shutting down and this request's body "+
			"had not arrived; nothing was done: send the request again (to its successor)")
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		what := "the request body"
		if b.bidi {
			what = "the stream's first message"
		}
		b.timedOut.Store(true)
		return apiconv.Errorf(apiconv.CodeDeadlineExceeded, "rewind: %s did not arrive within %s "+
			"(%s); send the whole request without pausing", what, b.limit.timeout, b.limit.whose)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: the request body ended before its declared "+
			"length (Content-Length or chunk size): send the whole body")
	case errors.As(err, new(*net.OpError)):
		return apiconv.Errorf(rewind.CodeCanceled, "rewind: the connection failed while the request body was read")
	}
	// net/http's own errors, such as a malformed chunked encoding.
	return apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: the request body could not be read: %s",
		strings.TrimPrefix(err.Error(), "http: "))
}

// inflight tracks the requests being served, so that shutdown can cut
// short the ones waiting on a stalled client instead of waiting out its
// timeout for them.
type inflight struct {
	mu       sync.Mutex
	reqs     map[*liveRequest]struct{}
	stopping bool
}

type liveRequest struct {
	body      *requestBody
	streaming bool
	conn      net.Conn // the request's connection, from the server's ConnContext; nil in tests of Handler
}

// shutdownWriteGrace is how long a stream may still take to deliver its
// last message once shutdown begins, when its client is not reading.
const shutdownWriteGrace = time.Second

type connKey struct{}

// withConn is the server's ConnContext: it lets a request reach its
// connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func connFrom(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}

func (in *inflight) add(lr *liveRequest) {
	in.mu.Lock()
	if in.reqs == nil {
		in.reqs = map[*liveRequest]struct{}{}
	}
	in.reqs[lr] = struct{}{}
	stopping := in.stopping
	in.mu.Unlock()
	if stopping {
		lr.cut()
	}
}

func (in *inflight) remove(lr *liveRequest) {
	in.mu.Lock()
	delete(in.reqs, lr)
	in.mu.Unlock()
}

func (in *inflight) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.reqs)
}

// cutAll cuts every request in flight, and those that start from now on.
func (in *inflight) cutAll() {
	in.mu.Lock()
	in.stopping = true
	reqs := make([]*liveRequest, 0, len(in.reqs))
	for lr := range in.reqs {
		reqs = append(reqs, lr)
	}
	in.mu.Unlock()
	for _, lr := range reqs {
		lr.cut()
	}
}

// cut refuses a request whose body has not arrived (nothing was done with
// it yet, so the client can safely send it again), and gives a stream
// shutdownWriteGrace to deliver its last message.
//
// A stream still writing after that is blocked on a client that reads
// nothing: its connection is closed. A write deadline would do it too, but
// over HTTP/2 that resets the stream with INTERNAL_ERROR, which gRPC
// clients report as Internal; a connection that closes after the server's
// GOAWAY is Unavailable to them, which they retry. The stream's status
// cannot be sent instead: its trailers would have to follow the message
// that flow control holds back.
func (lr *liveRequest) cut() {
	lr.body.control(func(rc *http.ResponseController) {
		if !lr.body.complete.Load() {
			lr.body.shutdown.Store(true)
			rc.SetReadDeadline(time.Now())
		}
		if !lr.streaming {
			return
		}
		if lr.conn == nil {
			rc.SetWriteDeadline(time.Now().Add(shutdownWriteGrace))
			return
		}
		time.AfterFunc(shutdownWriteGrace, func() {
			lr.body.control(func(*http.ResponseController) { lr.conn.Close() })
		})
	})
}
