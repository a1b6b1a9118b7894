package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/propagation"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// requestInfo follows one HTTP request through the middleware, the
// interceptors and the handler.
type requestInfo struct {
	id       string
	route    *route // nil for a path the server does not serve
	token    *auth.Token
	body     *requestBody    // once the request is let through to its handler
	code     string          // result code once known
	observed bool            // the interceptors saw the RPC (it was decoded)
	revoked  <-chan struct{} // long-lived RPCs: closed when token is revoked
	now      func() time.Time
}

type requestKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(requestKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// tokenFrom returns the token of the request in ctx.
func tokenFrom(ctx context.Context) *auth.Token { return infoFrom(ctx).token }

// withRequest gives every request an id (the caller's X-Request-Id when it
// is sane), echoes it in the response, and records each RPC's outcome in
// the metrics and the log once it is done.
func (s *Server) withRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{id: requestID(r.Header.Get("X-Request-Id")), route: routes[r.URL.Path]}
		w.Header().Set("X-Request-Id", ri.id)
		sw := &statusWriter{ResponseWriter: w, r: r, ri: ri}
		dw := newDetailWriter(sw, r)
		next.ServeHTTP(dw, r.WithContext(context.WithValue(r.Context(), requestKey{}, ri)))
		dw.finish()

		procedure := r.URL.Path
		if ri.route == nil { // a label per path anyone can make up would grow without bound
			procedure = "unknown"
		}
		code := ri.code
		if !ri.observed {
			code = codeFromResponse(sw)
		}
		s.metrics.observeRPC(procedure, code, time.Since(start))
		level := slog.LevelDebug
		if code != "ok" {
			level = slog.LevelInfo
		}
		if s.log.Enabled(r.Context(), level) {
			attrs := []slog.Attr{slog.String("request_id", ri.id), slog.String("procedure", procedure),
				slog.String("code", code), slog.Duration("duration", time.Since(start)),
				slog.String("peer", r.RemoteAddr), slog.String("protocol", r.Header.Get("Content-Type"))}
			if ri.token != nil {
				attrs = append(attrs, slog.String("token", ri.token.Name))
			}
			s.log.LogAttrs(r.Context(), level, "rpc", attrs...)
		}
	})
}

func requestID(given string) string {
	if len(given) > 0 && len(given) <= 64 && !strings.ContainsFunc(given, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return given
	}
	// A random process prefix and a counter: unique, and no getrandom call
	// per request.
	return requestPrefix + strconv.FormatUint(requestSeq.Add(1), 36)
}

var (
	requestPrefix = func() string {
		var b [6]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
	requestSeq atomic.Uint64
)

// codeFromResponse reads the result code of an RPC that failed before the
// interceptors ran (an undecodable or oversized request): from the gRPC
// status, or from the HTTP status of the Connect protocol.
func codeFromResponse(sw *statusWriter) string {
	h := sw.Header()
	for _, k := range []string{"Grpc-Status", http.TrailerPrefix + "Grpc-Status"} {
		if v := h.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err == nil && n == 0 {
				return "ok"
			}
			if err == nil && n > 0 && n <= 16 {
				return connect.Code(n).String()
			}
		}
	}
	switch sw.status {
	case 0, http.StatusOK:
		return "ok"
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed:
		return connect.CodeInvalidArgument.String()
	case http.StatusNotFound:
		return connect.CodeUnimplemented.String()
	case http.StatusRequestTimeout:
		return connect.CodeDeadlineExceeded.String()
	case http.StatusTooManyRequests, http.StatusRequestEntityTooLarge:
		return connect.CodeResourceExhausted.String()
	}
	return "http_" + strconv.Itoa(sw.status)
}

// statusWriter remembers the HTTP status. It keeps flushing and the
// response controller working. Before the status goes out it makes sure
// that an early answer does not wait for the rest of the request:
//
//   - an answer sent before an HTTP/1.x request's body was read in full
//     (a request refused on its headers) closes the connection, and the
//     unread rest of the body is not waited for (see ignoreBody);
//   - a body that did not arrive in time is answered with 408 Request
//     Timeout, not the Connect protocol's 504 for a missed deadline: the
//     client was late, not the server.
type statusWriter struct {
	http.ResponseWriter
	r      *http.Request
	ri     *requestInfo
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(code) // superfluous: net/http logs it
		return
	}
	if code == http.StatusGatewayTimeout && w.ri.body != nil && w.ri.body.timedOut.Load() {
		code = http.StatusRequestTimeout
	}
	w.status = code
	if w.bodyPending() {
		ignoreBody(w.ResponseWriter, w.r)
	}
	w.ResponseWriter.WriteHeader(code)
}

// bodyPending reports whether an HTTP/1.x request's body has not been read
// to its end.
func (w *statusWriter) bodyPending() bool {
	if w.r.ProtoMajor != 1 || w.r.ContentLength == 0 {
		return false
	}
	return w.ri.body == nil || !w.ri.body.done()
}

// ignoreBody makes sure that an answer given without reading an HTTP/1.x
// request's body (all of it, or the rest) does not wait for it: net/http
// reads up to 256 KiB of an unread body before it sends the answer, to
// keep the connection, and a client that stalls its body would hold the
// answer, the connection and a goroutine (and so a graceful shutdown)
// indefinitely. The connection closes after the answer instead, and reads
// of the body fail at once. Call it before the status is written.
func ignoreBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 || r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	http.NewResponseController(w).SetReadDeadline(time.Now())
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routeErrors answers requests no RPC handles (an unknown path, a GET of
// an RPC that has side effects) with an API error that says what to do,
// rather than a bare status. An unknown procedure is Unimplemented, as
// gRPC tools expect (grpcurl, health probes), and 404 Not Found over
// plain HTTP.
func routeErrors(next http.Handler) http.Handler {
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := infoFrom(r.Context()).route
		if rt == nil {
			msg := fmt.Sprintf("rewind: no RPC at %s; the API's procedures are /rewind.v1.EventStoreService/METHOD, "+
				"/rewind.v1.ConsumerGroupService/METHOD and /rewind.v1.TokenService/METHOD (see docs/server.md)", r.URL.Path)
			if p := protocolOf(r); p == grpcProtocol || p == grpcWeb {
				errw.Write(w, r, apiconv.Errorf(apiconv.CodeUnimplemented, "%s", msg))
				return
			}
			writeJSONError(w, http.StatusNotFound, connect.CodeUnimplemented, msg)
			return
		}
		if r.Method != http.MethodPost && !(r.Method == http.MethodGet && rt.readOnly) {
			allow, how := "POST", "POST with a JSON or protobuf body"
			if rt.readOnly {
				allow, how = "GET, POST", "POST with a JSON or protobuf body, or GET with the message in the query"
			}
			w.Header().Set("Allow", allow)
			writeJSONError(w, http.StatusMethodNotAllowed, connect.CodeInvalidArgument,
				fmt.Sprintf("rewind: %s cannot be called with %s: use %s", r.URL.Path, r.Method, how))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeJSONError answers with an HTTP status of our choosing and an error
// body in the Connect protocol's JSON form, with its ErrorDetail.
func writeJSONError(w http.ResponseWriter, status int, code connect.Code, msg string) {
	e := wireError{}
	e["code"], _ = json.Marshal(code.String())
	e["message"], _ = json.Marshal(msg)
	e.addDetail()
	body, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// anonymous is the identity of every request when auth is off.
var anonymous = &auth.Token{ID: "-", Name: "anonymous", Scopes: []auth.Scope{{Action: auth.Admin, Pattern: "*"}}}

// authenticate checks the bearer token of every API request before its
// body is read, so that nothing reaches a handler unauthenticated. Health
// needs no token.
func (s *Server) authenticate(next http.Handler) http.Handler {
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := infoFrom(r.Context())
		switch {
		case s.cfg.NoAuth:
			ri.token = anonymous
		case ri.route.public:
		default:
			secret, err := bearer(r.Header)
			var tok *auth.Token
			if err == nil {
				tok, err = s.tokens.Authenticate(secret)
			}
			if err != nil {
				ri.code, ri.observed = connect.CodeUnauthenticated.String(), true
				errw.Write(w, r, apiconv.ToConnect(err))
				return
			}
			ri.token = tok
			if ri.route.longLived {
				ri.revoked, ri.now = s.tokens.WhenRevoked(tok.ID), s.cfg.Now
				ctx, cancel := untilRevoked(r.Context())
				defer cancel()
				r = r.WithContext(ctx)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// bearer reads the secret of the request's Authorization header: one
// header, "Bearer SECRET", the scheme in any case (RFC 9110 §11.1). A
// header without a scheme, or with another one, is refused rather than
// taken as a secret. No header at all gives "", which Authenticate
// refuses with a message that says how to send a token.
func bearer(h http.Header) (string, error) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("%w: the request has %d Authorization headers; send one: \"Authorization: Bearer TOKEN\"",
			auth.ErrUnauthenticated, len(values))
	}
	scheme, secret, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	secret = strings.TrimSpace(secret)
	if !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", fmt.Errorf("%w: the Authorization header must be \"Bearer TOKEN\" (the scheme, a space, the token)",
			auth.ErrUnauthenticated)
	}
	return secret, nil
}

// untilRevoked returns ctx, also cancelled, with an ErrUnauthenticated
// cause, when the request's token is revoked or expires. That ends the
// waits; before it acts on anything, a stream checks with checkRevoked,
// which does not depend on when this goroutine runs.
func untilRevoked(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	ri := infoFrom(ctx)
	go func() {
		var expiry <-chan time.Time
		if !ri.token.ExpiresAt.IsZero() {
			t := time.NewTimer(ri.token.ExpiresAt.Sub(ri.now()))
			defer t.Stop()
			expiry = t.C
		}
		select {
		case <-ri.revoked:
		case <-expiry:
		case <-ctx.Done():
			return
		}
		cancel(checkRevoked(ctx))
	}()
	return ctx, func() { cancel(nil) }
}

// checkRevoked fails with ErrUnauthenticated once the token of a
// long-lived request was revoked or has expired.
func checkRevoked(ctx context.Context) error {
	ri := infoFrom(ctx)
	select {
	case <-ri.revoked:
		return fmt.Errorf("%w: token %q was revoked while this stream was open; ask an admin for a new one",
			rewind.ErrUnauthenticated, ri.token.Name)
	default:
	}
	if ri.now != nil && ri.token.Expired(ri.now()) {
		return fmt.Errorf("%w: token %q expired at %s while this stream was open; ask an admin for a new one",
			rewind.ErrUnauthenticated, ri.token.Name, ri.token.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// interceptors are applied to every RPC, outermost first: tracing, then
// error mapping, logging and metrics, then deadlines.
func (s *Server) interceptors() []connect.Interceptor {
	var out []connect.Interceptor
	if tp := s.tracing.tracerProvider(); tp != nil {
		otel, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tp), otelconnect.WithoutMetrics(),
			otelconnect.WithPropagator(propagation.TraceContext{}))
		if err == nil {
			out = append(out, otel)
		}
	}
	return append(out, &observe{s}, deadline(s.cfg.RPCTimeout))
}

// observe turns handler errors into API errors (logging internal ones in
// full, since clients only see the request id) and records the result
// code for withRequest.
type observe struct{ s *Server }

func (o *observe) result(ctx context.Context, procedure string, h http.Header, err error) error {
	ri := infoFrom(ctx)
	ri.observed = true
	if err == nil {
		ri.code = "ok"
		return nil
	}
	if cause := context.Cause(ctx); errors.Is(cause, rewind.ErrUnauthenticated) {
		err = cause // the token was revoked during the stream
	}
	if derr := o.s.deadlineError(ctx, h, ri.route, err); derr != nil {
		err = derr
	}
	code := rewind.CodeOf(err)
	var ce *connect.Error
	if errors.As(err, &ce) {
		ri.code = ce.Code().String()
		return err
	}
	if code == rewind.CodeInternal {
		o.s.log.Error("rpc failed", "request_id", ri.id, "procedure", procedure, "err", err)
		cerr := apiconv.Errorf(rewind.CodeInternal,
			"rewind: internal error; the server logged it with request id %s", ri.id)
		ri.code = cerr.Code().String()
		return cerr
	}
	cerr := apiconv.ToConnect(err)
	ri.code = cerr.Code().String()
	return cerr
}

func (o *observe) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		return res, o.result(ctx, req.Spec().Procedure, req.Header(), err)
	}
}

func (o *observe) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o *observe) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return o.result(ctx, conn.Spec().Procedure, conn.RequestHeader(), next(ctx, conn))
	}
}

// deadlineError explains a deadline that passed while an RPC ran, or
// returns nil when err is not that: which deadline it was (the client's,
// from its timeout header, or the server's rpc_timeout) and what to do,
// rather than Go's bare "context deadline exceeded". ctx carries the
// client's deadline only: rpc_timeout is set inside it.
func (s *Server) deadlineError(ctx context.Context, h http.Header, rt *route, err error) error {
	if errors.As(err, new(*connect.Error)) || !errors.Is(err, context.DeadlineExceeded) {
		return nil // not a deadline, or one already explained (a body that did not arrive)
	}
	if ctx.Err() == nil {
		return apiconv.Errorf(apiconv.CodeDeadlineExceeded, "rewind: the call did not finish within the server's "+
			"rpc_timeout (%s): ask for less at a time (a smaller limit)", s.cfg.RPCTimeout)
	}
	given := "its deadline"
	for _, k := range []string{"Grpc-Timeout", "Connect-Timeout-Ms"} {
		if v := h.Get(k); v != "" {
			given = k + ": " + v
		}
	}
	switch {
	case rt == routes[rewindv1connect.EventStoreServiceSubscribeProcedure]:
		return apiconv.Errorf(apiconv.CodeDeadlineExceeded, "rewind: the subscription ended at the deadline the "+
			"client set (%s): resume after the position of the last message received; to stay live, subscribe "+
			"without a deadline", given)
	case rt.streaming():
		return apiconv.Errorf(apiconv.CodeDeadlineExceeded, "rewind: the stream ended at the deadline the client "+
			"set (%s): open it with a longer deadline, or none", given)
	}
	return apiconv.Errorf(apiconv.CodeDeadlineExceeded, "rewind: the call did not finish within the deadline the "+
		"client set (%s): allow it more time, or ask for less at a time (a smaller limit)", given)
}

// deadline bounds every unary RPC; a client may ask for less.
func deadline(d time.Duration) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, req)
		}
	})
}
