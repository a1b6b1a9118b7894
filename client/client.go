package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// Config configures a Client. The zero value is the default configuration.
type Config struct {
	// Token is sent as "Authorization: Bearer Token". Defaults to none.
	Token string
	// Protocol is "grpc", "connect" (Connect's protocol with binary
	// protobuf) or "grpcweb". Defaults to "grpc".
	Protocol string
	// TLS configures https URLs, such as a client certificate for mTLS or
	// a private CA. Defaults to the system's roots.
	TLS *tls.Config
	// HTTPClient replaces the client's own HTTP client. Defaults to one
	// that speaks HTTP/2 (h2c for http:// URLs) and reuses its connection.
	HTTPClient *http.Client
	// MaxRetries bounds the retries of an operation that failed with a
	// transient error (the server unavailable, a broken connection).
	// Defaults to 8; -1 turns retries off.
	MaxRetries int
	// MaxBackoff caps the wait between two retries, which grows
	// exponentially from 50ms with ±50% jitter. Defaults to 2s.
	MaxBackoff time.Duration
	// StreamAppends sends every Append over one long-lived AppendStream
	// instead of one RPC each: much cheaper for many small concurrent
	// appends, with the same semantics and retries. It needs HTTP/2 (not
	// the "connect" protocol over HTTP/1.1). Defaults to false.
	StreamAppends bool
}

// Client talks to a rewind server. It is safe for concurrent use, and
// reuses its connections: create one per server and share it.
type Client struct {
	cfg    Config
	url    string
	http   *http.Client
	own    *http.Transport
	events rewindv1connect.EventStoreServiceClient
	tokens rewindv1connect.TokenServiceClient
	groups rewindv1connect.ConsumerGroupServiceClient
	pipe   *pipeline
	// life ends with Close: every call fails with rewind.ErrClosed from
	// then on, and open subscriptions end.
	life context.Context
	end  context.CancelFunc
}

// The client keeps the rewind.Store contract, describing the server's
// store and its last position through GetServerInfo.
var (
	_ rewind.Store          = (*Client)(nil)
	_ rewind.LastPositioner = (*Client)(nil)
	_ rewind.Describer      = (*Client)(nil)
	_ rewind.HealthReporter = (*Client)(nil)
	_ rewind.Subscription   = (*Subscription)(nil)
	_ rewind.EpochReporter  = (*Subscription)(nil)
)

// New returns a client of the server at baseURL, such as
// "http://127.0.0.1:7070": scheme, host and port, no path (the server
// serves its API at the root). It does not connect until the first call.
func New(baseURL string, cfg Config) (*Client, error) {
	u, err := url.Parse(baseURL)
	// A path, query or fragment is refused rather than ignored or sent on:
	// the server serves its API at the root of its address only.
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		strings.TrimRight(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, &rewind.ValidationError{Field: "server URL", Value: baseURL,
			Reason: "must be http://HOST:PORT or https://HOST:PORT, with no path (the API is served at the root)"}
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 8
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	c := &Client{cfg: cfg, url: strings.TrimRight(baseURL, "/"), http: cfg.HTTPClient}
	c.life, c.end = context.WithCancel(context.Background())
	if c.http == nil {
		c.own = newTransport(u.Scheme == "https", cfg.TLS)
		c.http = &http.Client{Transport: c.own}
	}
	// No gzip: on the networks a store runs on, compressing event batches
	// costs more CPU than the bytes it saves.
	opts := []connect.ClientOption{connect.WithAcceptCompression("gzip", nil, nil), connect.WithCodec(protoCodec{})}
	switch cfg.Protocol {
	case "", "grpc":
		opts = append(opts, connect.WithGRPC())
	case "grpcweb":
		opts = append(opts, connect.WithGRPCWeb())
	case "connect":
	default:
		return nil, &rewind.ValidationError{Field: "protocol", Value: cfg.Protocol, Reason: `must be "grpc", "connect" or "grpcweb"`}
	}
	if cfg.Token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(cfg.Token)))
	}
	c.events = rewindv1connect.NewEventStoreServiceClient(c.http, c.url, opts...)
	c.tokens = rewindv1connect.NewTokenServiceClient(c.http, c.url, opts...)
	c.groups = rewindv1connect.NewConsumerGroupServiceClient(c.http, c.url, opts...)
	if cfg.StreamAppends {
		c.pipe = &pipeline{c: c}
	}
	return c, nil
}

func newTransport(https bool, tlsCfg *tls.Config) *http.Transport {
	t := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 16,
		ForceAttemptHTTP2:   true,
	}
	t.Protocols = new(http.Protocols)
	if https {
		t.Protocols.SetHTTP2(true)
		t.Protocols.SetHTTP1(true)
	} else {
		t.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, which gRPC needs
	}
	return t
}

func bearer(token string) connect.Interceptor {
	h := "Bearer " + token
	return &bearerInterceptor{h}
}

type bearerInterceptor struct{ h string }

func (b *bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", b.h)
		return next(ctx, req)
	}
}

func (b *bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", b.h)
		return conn
	}
}

func (b *bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// URL returns the server's base URL.
func (c *Client) URL() string { return c.url }

// Close ends the client's append stream and its subscriptions, and closes
// its idle connections. Calls after Close fail with rewind.ErrClosed.
func (c *Client) Close() error {
	c.end()
	if c.pipe != nil {
		c.pipe.close()
	}
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// checkOpen fails with rewind.ErrClosed once Close was called.
func (c *Client) checkOpen() error {
	if c.life.Err() != nil {
		return fmt.Errorf("%w: the client is closed", rewind.ErrClosed)
	}
	return nil
}

// transient reports whether err may go away by itself: the server was
// unavailable (restarting, draining) or the connection broke (see
// asUnavailable).
func transient(err error) bool {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code() == connect.CodeUnavailable || brokenConnection(err)
	}
	return false
}

// brokenConnection reports whether err is the failure of the connection to
// the server, not an answer of the server nor the end of the caller's
// context: the connection reset, closed before the answer ended, or lost
// (a server killed mid-request, a network failure). connect-go reports
// such a failure as Canceled (a reset), Unknown or Internal ("protocol
// error: incomplete envelope: unexpected EOF"), under an error of the
// transport; an error the server sent never carries one.
func brokenConnection(err error) bool {
	var ce *connect.Error
	if err == nil || !errors.As(err, &ce) || connect.IsWireError(ce) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller's context (or the client's Close) ended it
	}
	var ne net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne) {
		return true
	}
	// net/http's HTTP/2 errors are not exported.
	msg := err.Error()
	for _, s := range []string{"http2: client connection lost", "http2: client conn is closed",
		"http2: server sent GOAWAY", "http2: Transport: cannot retry err", "connection reset by peer", "broken pipe",
		// A write to a dead server failed: net/http closes the whole
		// connection, and the other streams on it end with this.
		"http2: client connection force closed",
		// A stream the server reset rather than answered: a server that
		// forwards group requests resets a stream whose owner died.
		"INTERNAL_ERROR; received from peer"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// asUnavailable returns a broken connection (see brokenConnection) as the
// Unavailable error it stands for, which is retried, and which the caller
// sees once the retries run out (rewind.ErrClosed, exit status 9) rather
// than a Canceled that would pass for an interrupt. Other errors are
// returned as they are.
func asUnavailable(err error) error {
	var ce *connect.Error
	if !brokenConnection(err) || errors.As(err, &ce) && ce.Code() == connect.CodeUnavailable {
		return err
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the connection to the server broke: %w", ce.Unwrap()))
}

// dialFailed reports whether err is a failure to connect at all, so that
// no byte of the request reached the server.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// retry runs op until it succeeds, fails with a non-transient error, or
// the retries run out. Only operations safe to repeat use it.
func retry[T any](ctx context.Context, c *Client, op func() (T, error)) (T, error) {
	if c.cfg.MaxRetries < 0 {
		v, err := op()
		return v, apiconv.FromConnect(asUnavailable(err))
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.RandomizationFactor = 50*time.Millisecond, c.cfg.MaxBackoff, 0.5
	v, err := backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		if err = asUnavailable(err); err != nil && !transient(err) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(c.cfg.MaxRetries)+1), backoff.WithMaxElapsedTime(0))
	return v, apiconv.FromConnect(err)
}

// ids reads UUID randomness from a buffer refilled from crypto/rand, so
// that an append of many events costs one getrandom call, not one each.
var ids = struct {
	sync.Mutex
	r *bufio.Reader
}{r: bufio.NewReaderSize(rand.Reader, 4096)}

// newID returns a new UUID v7 (time-ordered, so the server's index of
// recent ids stays compact).
func newID() (uuid.UUID, error) {
	ids.Lock()
	defer ids.Unlock()
	return uuid.NewV7FromReader(ids.r)
}

// Append appends events to stream as one atomic batch if the stream is in
// the expected state; see store.Store.Append for the semantics. Events
// without an id get a UUID v7 before the first try, so retrying after a
// lost response (a broken connection, a server killed mid-request) is
// safe: the server recognises the ids and returns the original positions.
//
// When the retries run out after a try that may have reached the server,
// the append may or may not be recorded. With ids the caller gave every
// event, the error is the server's unavailability (rewind.ErrClosed):
// appending again with the same ids is safe. Otherwise the caller does
// not know the ids the client made up, and the error matches
// rewind.ErrOutcomeUnknown.
func (c *Client) Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error) {
	callerIDs := true
	for i := range events {
		if events[i].ID == (uuid.UUID{}) {
			callerIDs = false
		}
	}
	return c.append(ctx, stream, expected, events, callerIDs)
}

// append is Append; callerIDs says whether the caller knows the ids of all
// the events (else an append whose outcome is unknown says so).
func (c *Client) append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events []rewind.Event, callerIDs bool) (rewind.AppendResult, error) {
	if err := c.checkOpen(); err != nil {
		return rewind.AppendResult{}, err
	}
	req := &rewindv1.AppendRequest{Stream: stream, Events: make([]*rewindv1.Event, len(events))}
	apiconv.SetAppendExpected(req, expected)
	for i := range events {
		p := apiconv.EventToProto(&events[i])
		if p.Id == "" {
			id, err := newID()
			if err != nil {
				return rewind.AppendResult{}, fmt.Errorf("generate event id: %w", err)
			}
			p.Id, callerIDs = id.String(), false
		}
		req.Events[i] = p
	}
	sent := false // a try may have reached the server without its answer coming back
	res, err := retry(ctx, c, func() (*rewindv1.AppendResponse, error) {
		var res *rewindv1.AppendResponse
		var err error
		if c.pipe != nil {
			res, err = c.pipe.append(ctx, req)
		} else {
			var r *connect.Response[rewindv1.AppendResponse]
			if r, err = c.events.Append(ctx, connect.NewRequest(req)); err == nil {
				res = r.Msg
			}
		}
		if (brokenConnection(err) || errors.Is(err, errStreamBroke)) && !dialFailed(err) {
			sent = true
		}
		return res, err
	})
	if err != nil {
		if sent && errors.Is(err, rewind.ErrClosed) && c.checkOpen() == nil {
			if !callerIDs {
				return rewind.AppendResult{}, fmt.Errorf("%w: the connection to the server broke after the append was "+
					"sent and the retries did not get its answer (%s); it may or may not be recorded, under event ids "+
					"the client made up: give events ids to retry safely", rewind.ErrOutcomeUnknown,
					strings.TrimPrefix(err.Error(), "rewind: "))
			}
			return rewind.AppendResult{}, fmt.Errorf("%w; the append may or may not be recorded: appending it again "+
				"with the same event ids is safe", err)
		}
		return rewind.AppendResult{}, err
	}
	return apiconv.AppendResultFromProto(res), nil
}

// ReadStream returns events of a stream in version order (or reverse order
// when reading backward), fetching as many pages as needed. A page that
// fails with damage (an error matching rewind.ErrCorruption) ends the read
// with the events of the pages before it: those the server read before the
// damaged event.
func (c *Client) ReadStream(ctx context.Context, stream string, opts rewind.ReadStreamOptions) ([]rewind.RecordedEvent, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"}
	}
	var out []rewind.RecordedEvent
	from := opts.From
	for {
		page := uint32(0)
		if opts.Limit > 0 {
			page = uint32(min(opts.Limit-len(out), 1000))
		}
		req := &rewindv1.ReadStreamRequest{Stream: stream, FromVersion: from, Backward: opts.Backward, Limit: page}
		res, err := retry(ctx, c, func() (*connect.Response[rewindv1.ReadStreamResponse], error) {
			return c.events.ReadStream(ctx, connect.NewRequest(req))
		})
		if errors.Is(err, rewind.ErrCorruption) {
			return out, err
		}
		if err != nil {
			return nil, err
		}
		for _, p := range res.Msg.GetEvents() {
			ev, err := apiconv.RecordedFromProto(p)
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		n := len(res.Msg.GetEvents())
		if res.Msg.GetEndOfStream() || n == 0 || opts.Limit > 0 && len(out) >= opts.Limit {
			return out, nil
		}
		last := out[len(out)-1].Version
		if opts.Backward {
			if last <= 1 {
				return out, nil
			}
			from = last - 1
		} else {
			from = last + 1
		}
	}
}

// ReadAll iterates over the whole log in position order, one page at a
// time. The event it yields is valid until the next iteration. A read of
// several pages stops at the log's last position as of the end of its first
// page (it asks the server for it then), so that it ends even while
// appends go on.
func (c *Client) ReadAll(ctx context.Context, opts rewind.ReadAllOptions) iter.Seq2[*rewind.RecordedEvent, error] {
	return func(yield func(*rewind.RecordedEvent, error) bool) {
		end := rewind.Position(0) // 0: not known yet
		if err := c.checkOpen(); err != nil {
			yield(nil, err)
			return
		}
		req := &rewindv1.ReadAllRequest{FromPosition: uint64(opts.From), FromTime: apiconv.TimeToProto(opts.FromTime),
			Filter: apiconv.FilterToProto(opts.Filter), Epoch: opts.Epoch}
		n := 0
		for {
			if opts.Limit > 0 {
				req.Limit = uint32(min(opts.Limit-n, 1000))
			}
			res, err := retry(ctx, c, func() (*connect.Response[rewindv1.ReadAllResponse], error) {
				return c.events.ReadAll(ctx, connect.NewRequest(req))
			})
			if err != nil {
				if req.FromPosition > 0 {
					err = c.lostPositions(ctx, err, rewind.Position(req.FromPosition-1), req.Epoch)
				}
				yield(nil, err)
				return
			}
			for _, p := range res.Msg.GetEvents() {
				ev, err := apiconv.RecordedFromProto(p)
				if err != nil {
					yield(nil, err)
					return
				}
				if end != 0 && ev.Position > end {
					return
				}
				if !yield(&ev, nil) {
					return
				}
				if n++; opts.Limit > 0 && n >= opts.Limit {
					return
				}
			}
			if res.Msg.GetEndOfLog() {
				return
			}
			if end == 0 {
				if end, err = c.LastPosition(ctx); err != nil {
					yield(nil, err)
					return
				}
			}
			if rewind.Position(res.Msg.GetNextPosition()) > end {
				return
			}
			req.FromPosition, req.FromTime = res.Msg.GetNextPosition(), nil
			if e := res.Msg.GetEpoch(); e != 0 {
				req.Epoch = e // a cut between pages is noticed
			}
		}
	}
}

// lostPositions turns the server's refusal of a position beyond the end of
// its log into an epoch change (rewind.EpochError) when the caller saw
// position after in a known epoch: the log lost positions the caller saw,
// even if its store did not notice and kept its epoch, and the positions
// it gives next will hold other events. Other errors are returned as they
// are.
func (c *Client) lostPositions(ctx context.Context, err error, after rewind.Position, epoch uint64) error {
	var ve *rewind.ValidationError
	if epoch == 0 || after == 0 || !errors.As(apiconv.FromConnect(err), &ve) || ve.Field != "position" {
		return err
	}
	info, ierr := c.ServerInfo(ctx)
	if ierr != nil || info.LastPosition >= after {
		return err
	}
	return fmt.Errorf("%w (the server's log ends at position %d, before position %d that was read in it)",
		&rewind.EpochError{After: after, Epoch: epoch, Current: info.Health.Epoch, CutAt: info.LastPosition + 1},
		info.LastPosition, after)
}

// StreamInfo describes a stream.
func (c *Client) StreamInfo(ctx context.Context, stream string) (rewind.StreamInfo, error) {
	if err := c.checkOpen(); err != nil {
		return rewind.StreamInfo{}, err
	}
	res, err := retry(ctx, c, func() (*connect.Response[rewindv1.GetStreamInfoResponse], error) {
		return c.events.GetStreamInfo(ctx, connect.NewRequest(&rewindv1.GetStreamInfoRequest{Stream: stream}))
	})
	if err != nil {
		return rewind.StreamInfo{}, err
	}
	return apiconv.StreamInfoFromProto(res.Msg.GetInfo()), nil
}

// ListStreams returns streams sorted by name, fetching pages as needed.
func (c *Client) ListStreams(ctx context.Context, opts rewind.ListStreamsOptions) ([]rewind.StreamInfo, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"}
	}
	if opts.Limit == 0 {
		opts.Limit = rewind.DefaultListStreamsLimit
	}
	var out []rewind.StreamInfo
	after := opts.After
	for len(out) < opts.Limit {
		page := min(opts.Limit-len(out), 1000)
		req := &rewindv1.ListStreamsRequest{Prefix: opts.Prefix, After: after, Limit: uint32(page),
			IncludeDeleted: opts.IncludeDeleted}
		res, err := retry(ctx, c, func() (*connect.Response[rewindv1.ListStreamsResponse], error) {
			return c.events.ListStreams(ctx, connect.NewRequest(req))
		})
		if err != nil {
			return nil, err
		}
		for _, p := range res.Msg.GetStreams() {
			out = append(out, apiconv.StreamInfoFromProto(p))
		}
		if len(res.Msg.GetStreams()) < page {
			break
		}
		after = out[len(out)-1].Stream
	}
	return out, nil
}

// DeleteStream soft-deletes a stream and returns the position of the
// delete record. It is not retried: a repeated delete would fail.
func (c *Client) DeleteStream(ctx context.Context, stream string, expected rewind.ExpectedVersion) (rewind.Position, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	req := &rewindv1.DeleteStreamRequest{Stream: stream}
	apiconv.SetDeleteExpected(req, expected)
	res, err := c.events.DeleteStream(ctx, connect.NewRequest(req))
	if err != nil {
		return 0, apiconv.FromConnect(err)
	}
	return rewind.Position(res.Msg.GetPosition()), nil
}

// ServerInfo describes the server.
type ServerInfo struct {
	Version       string          `json:"version"`
	Durability    string          `json:"durability"`
	FirstPosition rewind.Position `json:"first_position"`
	LastPosition  rewind.Position `json:"last_position"`
	Streams       int             `json:"streams"`
	Segments      int             `json:"segments"`
	Bytes         int64           `json:"bytes"`
	// Health is the store's: whether it can write, its epoch, and what
	// recovery found when the server opened it.
	Health rewind.Health `json:"health"`
}

// ServerInfo returns the server's version, durability mode and log bounds.
func (c *Client) ServerInfo(ctx context.Context) (ServerInfo, error) {
	if err := c.checkOpen(); err != nil {
		return ServerInfo{}, err
	}
	res, err := retry(ctx, c, func() (*connect.Response[rewindv1.GetServerInfoResponse], error) {
		return c.events.GetServerInfo(ctx, connect.NewRequest(&rewindv1.GetServerInfoRequest{}))
	})
	if err != nil {
		return ServerInfo{}, err
	}
	m := res.Msg
	return ServerInfo{Version: m.GetVersion(), Durability: m.GetDurability(),
		FirstPosition: rewind.Position(m.GetFirstPosition()), LastPosition: rewind.Position(m.GetLastPosition()),
		Streams: int(m.GetStreams()), Segments: int(m.GetSegments()), Bytes: int64(m.GetBytes()),
		Health: apiconv.HealthFromProto(m.GetHealth())}, nil
}

// Health returns the health of the server's store (rewind.HealthReporter).
func (c *Client) Health(ctx context.Context) (rewind.Health, error) {
	i, err := c.ServerInfo(ctx)
	return i.Health, err
}

// LastPosition returns the position of the last event the server's store
// acknowledged.
func (c *Client) LastPosition(ctx context.Context) (rewind.Position, error) {
	i, err := c.ServerInfo(ctx)
	return i.LastPosition, err
}

// Describe describes the server's store.
func (c *Client) Describe(ctx context.Context) (rewind.StoreInfo, error) {
	i, err := c.ServerInfo(ctx)
	if err != nil {
		return rewind.StoreInfo{}, err
	}
	return rewind.StoreInfo{Location: c.url, Durability: i.Durability, FirstPosition: i.FirstPosition,
		LastPosition: i.LastPosition, Streams: i.Streams, Segments: i.Segments, Bytes: i.Bytes, Version: i.Version}, nil
}

// Ping reports whether the server accepts requests: an error matching
// rewind.ErrClosed while it drains, rewind.ErrFailed when its store failed.
// It is not retried, so it answers quickly.
func (c *Client) Ping(ctx context.Context) error {
	res, err := c.events.Health(ctx, connect.NewRequest(&rewindv1.HealthRequest{}))
	if err != nil {
		return apiconv.FromConnect(err)
	}
	switch res.Msg.GetStatus() {
	case rewindv1.HealthResponse_STATUS_SERVING:
		return nil
	case rewindv1.HealthResponse_STATUS_FAILED:
		return fmt.Errorf("%w: the server's store failed: %s", rewind.ErrFailed, res.Msg.GetReason())
	}
	return fmt.Errorf("%w: the server is %s", rewind.ErrClosed, res.Msg.GetStatus())
}
