package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/cenkalti/backoff/v5"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// ConsumeOptions configures Client.Consume.
type ConsumeOptions struct {
	// Concurrency is how many events are handled at once. Defaults to 1.
	Concurrency int
	// MaxAckPending caps the member's un-acked deliveries (those handed
	// to it and not yet settled). Defaults to the group's
	// member_max_ack_pending, which it cannot exceed.
	MaxAckPending int
	// Name describes the member in the group's description. Optional.
	Name string
	// Limit, when set, is how many events Consume hands to the handler
	// before it returns nil: the server sends the member no more than it
	// still has to hand out, across reconnections too. Defaults to 0: no
	// limit.
	Limit int
}

// Consume joins group on the server as one member and handles its
// deliveries with h, as consumer.Consume does on an engine: h's result
// acks the event (nil), parks it (consumer.Park), or naks it
// (consumer.RetryAfter, or any other error); so the consumer package's
// middleware composes here too (consumer.Chain). Settlements go back
// over the same stream, many in one message.
//
// It runs until ctx ends, then waits for the handlers running, sends
// their settlements, leaves the group and returns nil; it also returns
// nil when the group is bounded and complete (the server says so). When the
// connection breaks or the server restarts it joins again with backoff,
// up to the client's MaxRetries in a row: the server released the
// member's un-acked deliveries when the stream broke, so they come again
// (to this member or another), and the settlements of the old stream's
// deliveries are dropped. Other failures (an unknown group, a missing
// scope, the group deleted) end it with the error.
//
// The events' Data of one received batch share one buffer: a handler
// that keeps an event's data long after it returns keeps that buffer
// (about the batch's size: up to 128 KiB of event data, or one larger
// event); copy the bytes to keep them alone.
func (c *Client) Consume(ctx context.Context, group string, h consumer.Handler, opts ConsumeOptions) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 1
	}
	if opts.Concurrency < 1 || opts.Concurrency > 1_000_000 {
		return &rewind.ValidationError{Field: "concurrency", Value: fmt.Sprint(opts.Concurrency),
			Reason: "must be between 1 and 1000000"}
	}
	if !utf8.ValidString(opts.Name) {
		// Not even sent: protobuf refuses to encode it (the stream hung on it).
		return &rewind.ValidationError{Field: "member name", Value: strconv.Quote(opts.Name), Reason: "must be valid UTF-8"}
	}
	if opts.Limit < 0 {
		return &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative (0 is no limit)"}
	}
	if opts.MaxAckPending < 0 || opts.MaxAckPending > 1_000_000 {
		return &rewind.ValidationError{Field: "max ack pending", Value: fmt.Sprint(opts.MaxAckPending),
			Reason: "must be between 0 (the group's) and 1000000"}
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.RandomizationFactor = 50*time.Millisecond, c.cfg.MaxBackoff, 0.5
	tries := 0
	var handled atomic.Int64 // across sessions, for the limit
	for {
		s := &consumeSession{c: c, group: group, h: h, opts: opts, handled: &handled}
		err := s.run(ctx)
		if ctx.Err() != nil || errors.Is(err, consumer.ErrGroupComplete) || errors.Is(err, errLimitReached) {
			return nil
		}
		if err := c.checkOpen(); err != nil {
			return err
		}
		if s.started {
			tries = 0
			bo.Reset()
		}
		err = asUnavailable(err)
		if tries++; !transient(err) || c.cfg.MaxRetries < 0 || tries > c.cfg.MaxRetries {
			return apiconv.FromConnect(err)
		}
		select {
		case <-time.After(bo.NextBackOff()):
		case <-ctx.Done():
			return nil
		case <-c.life.Done():
			return c.checkOpen()
		}
	}
}

// errLimitReached ends a session whose limit's last event was handled.
var errLimitReached = errors.New("rewind: the consume's limit was reached")

// consumeSession is one Consume stream: one member of the group.
type consumeSession struct {
	c       *Client
	group   string
	h       consumer.Handler
	opts    ConsumeOptions
	started bool
	handled *atomic.Int64
	limited chan struct{} // closed once the limit's last event was handled
	once    sync.Once

	stream  *connect.BidiStreamForClient[rewindv1.ConsumeRequest, rewindv1.ConsumeResponse]
	mode    consumer.Mode
	mu      sync.Mutex // guards stopped and the closing of work
	stopped bool
	work    chan consumer.Delivery
	settled chan settlement
	fatal   chan error
}

// settlement is a handler's result (or an in-progress report) to send.
type settlement struct {
	id       consumer.DeliveryID
	progress bool
	s        consumer.Settlement
}

func (s *consumeSession) run(ctx context.Context) error {
	// The stream outlives ctx by the time it takes to send the last
	// settlements; the client's Close ends it at once.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(s.c.life, cancel)()
	s.stream = s.c.groups.Consume(sctx)
	defer s.stream.CloseResponse()
	s.limited = make(chan struct{})
	// The window: an at-most-once delivery waiting here when the consume
	// stops would be lost, so the server sends no more than there are
	// handlers (other modes ignore it). The limit: no more than are left.
	window := s.opts.Concurrency
	if s.opts.Limit > 0 {
		left := s.opts.Limit - int(s.handled.Load())
		if left <= 0 {
			return errLimitReached
		}
		window = min(window, left)
		if left <= 1_000_000 { // the server's bound; beyond it the client alone stops
			s.stream.RequestHeader().Set(apiconv.HeaderConsumeLimit, strconv.Itoa(left))
		}
	}
	s.stream.RequestHeader().Set(apiconv.HeaderConsumeWindow, strconv.Itoa(min(window, 1_000_000)))
	err := s.stream.Send(&rewindv1.ConsumeRequest{Start: &rewindv1.ConsumeStart{Group: s.group,
		MemberName: s.opts.Name, MaxAckPending: uint32(s.opts.MaxAckPending)}})
	if err != nil && !errors.Is(err, io.EOF) { // the error comes with Receive
		return err
	}
	stop := context.AfterFunc(ctx, cancel) // until started: ctx bounds the join
	msg, err := s.stream.Receive()
	if !stop() || err != nil {
		if err == nil || ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	st := msg.GetStarted()
	if st == nil {
		return connect.NewError(connect.CodeInternal, errors.New("the server sent no confirmation of the join"))
	}
	s.started, s.mode = true, consumer.Mode(st.GetMode())
	max := max(int(st.GetMaxAckPending()), 1)
	s.work = make(chan consumer.Delivery, max)
	s.settled = make(chan settlement, max+s.opts.Concurrency)
	s.fatal = make(chan error, 1)

	var workers sync.WaitGroup
	for range s.opts.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s.handle(ctx)
		}()
	}
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		s.send()
	}()
	recvDone := make(chan error, 1)
	go func() { recvDone <- s.receive() }()

	var end error
	graceful := false
	select {
	case <-ctx.Done():
		graceful = true
	case end = <-recvDone:
		recvDone <- end
		// A complete group has nothing in flight: nothing to settle.
		graceful = errors.Is(end, consumer.ErrGroupComplete)
	case end = <-s.fatal:
	case <-s.limited:
		graceful, end = true, errLimitReached
	}
	s.stopWork()
	workers.Wait()
	close(s.settled)
	<-senderDone
	if graceful {
		// The server applies what was sent before the end of the stream,
		// then ends its side.
		s.stream.CloseRequest()
		select {
		case <-recvDone:
		case <-time.After(5 * time.Second):
		}
		if errors.Is(end, consumer.ErrGroupComplete) || errors.Is(end, errLimitReached) {
			return end
		}
		return nil
	}
	if end == nil {
		end = connect.NewError(connect.CodeUnavailable, errors.New("the server ended the consume stream"))
	}
	return end
}

// receive reads deliveries and failed settlements until the stream ends.
// It decodes each message straight into deliveries (apiconv.ConsumeFrame,
// which the client's codec knows) rather than through protobuf messages.
func (s *consumeSession) receive() error {
	conn, err := s.stream.Conn()
	if err != nil {
		return err
	}
	strs := &apiconv.Interner{}
	for {
		msg := apiconv.ConsumeFrame{Strings: strs}
		if err := conn.Receive(&msg); err != nil {
			return err
		}
		for _, e := range msg.Errors {
			if e.GetKind() == "stale" {
				continue // its ack wait ran out, or it was released: the event went back
			}
			s.fail(&apiconv.RemoteError{Code: rewind.Code(e.GetCode()), Connect: apiconv.ConnectCode(rewind.Code(e.GetCode())),
				Msg: fmt.Sprintf("rewind: the server refused the %s of delivery %d: %s", e.GetOp(), e.GetDeliveryId(),
					e.GetMessage())})
		}
		for _, d := range msg.Deliveries {
			s.mu.Lock()
			if !s.stopped {
				s.work <- d // never blocks: the server sends at most max un-acked
			}
			s.mu.Unlock()
		}
		if msg.Complete {
			return consumer.ErrGroupComplete
		}
	}
}

func (s *consumeSession) fail(err error) {
	select {
	case s.fatal <- err:
	default:
	}
}

func (s *consumeSession) stopWork() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.work)
	}
}

// handle runs the handler over deliveries.
func (s *consumeSession) handle(ctx context.Context) {
	for d := range s.work {
		m := consumer.NewRemoteMessage(s.group, d, func(context.Context) error {
			s.settled <- settlement{id: d.ID, progress: true}
			return nil
		})
		if s.opts.Limit > 0 && s.handled.Load() >= int64(s.opts.Limit) {
			continue // beyond the limit (a server that does not know it): released when the stream ends
		}
		herr := s.h(ctx, m)
		last := s.opts.Limit > 0 && s.handled.Add(1) >= int64(s.opts.Limit)
		if last {
			s.once.Do(func() { close(s.limited) })
		}
		if s.mode == consumer.AtMostOnce {
			// Done before it was handed out: the ack only tells the server
			// it was handled, so that it sends the next one (the window).
			// Not once the consume stops: that one would be lost.
			if ctx.Err() == nil && !last {
				s.settled <- settlement{id: d.ID, s: consumer.Settlement{Kind: consumer.SettleAck}}
			}
			continue
		}
		if consumer.Abandoned(ctx, herr) {
			continue // the consume stopped: the server releases it at once when the stream ends
		}
		s.settled <- settlement{id: d.ID, s: consumer.SettlementOf(herr)}
	}
}

// send sends settlements, each message carrying all that are ready, until
// settled is closed. Once a send fails the rest are dropped: the server
// released those deliveries when the stream broke.
func (s *consumeSession) send() {
	var failed bool
	for first := range s.settled {
		// Handlers settle one event at a time: let the others of a batch
		// queue theirs, so that one message carries many.
		runtime.Gosched()
		req := &rewindv1.ConsumeRequest{}
		add := func(st settlement) {
			id := uint64(st.id)
			switch {
			case st.progress:
				req.InProgress = append(req.InProgress, id)
			case st.s.Kind == consumer.SettleAck:
				req.Acks = append(req.Acks, id)
			case st.s.Kind == consumer.SettleTerm:
				req.Terms = append(req.Terms, &rewindv1.ConsumeTerm{DeliveryId: id, Reason: st.s.Reason, Error: st.s.Error})
			default:
				n := &rewindv1.ConsumeNak{DeliveryId: id, Error: st.s.Error}
				if st.s.Delay > 0 {
					n.Delay = durationpb.New(st.s.Delay)
				}
				req.Naks = append(req.Naks, n)
			}
		}
		add(first)
	more:
		for range 4096 {
			select {
			case st, ok := <-s.settled:
				if !ok {
					break more
				}
				add(st)
			default:
				break more
			}
		}
		if failed {
			continue
		}
		if err := s.stream.Send(req); err != nil {
			failed = true
			s.fail(err)
		}
	}
}
