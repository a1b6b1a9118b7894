package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/cenkalti/backoff/v5"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// Subscription delivers the whole log in position order, catching up and
// then following live. When the connection breaks or the server restarts
// it reconnects by itself, resuming after the last position it received,
// so its consumer sees every event exactly once. It is not safe for
// concurrent use.
type Subscription struct {
	c      *Client
	opts   rewind.SubscribeOptions
	pos    rewind.Position // last position received (delivered or skipped)
	epoch  uint64          // the log epoch pos was received in: a reconnect checks it
	stream *connect.ServerStreamForClient[rewindv1.SubscribeResponse]
	cancel context.CancelFunc
	unlink func() bool // stops the client's Close from cancelling the stream
	batch  []*rewindv1.RecordedEvent
	next   int
	ev     rewind.RecordedEvent
	bo     *backoff.ExponentialBackOff
	closed bool
}

// Subscribe starts a subscription and waits for the server to confirm it,
// so that a bad request fails here rather than in Next. Close it when done.
// It returns a *Subscription.
func (c *Client) Subscribe(ctx context.Context, opts rewind.SubscribeOptions) (rewind.Subscription, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	s := &Subscription{c: c, opts: opts, pos: opts.After, epoch: opts.Epoch}
	s.bo = backoff.NewExponentialBackOff()
	s.bo.InitialInterval, s.bo.MaxInterval, s.bo.RandomizationFactor = 50*time.Millisecond, c.cfg.MaxBackoff, 0.5
	if _, err := retry(ctx, c, func() (struct{}, error) { return struct{}{}, s.connect(ctx) }); err != nil {
		return nil, err
	}
	return s, nil
}

// connect opens the stream from s.pos and reads the confirmation.
func (s *Subscription) connect(ctx context.Context) error {
	req := &rewindv1.SubscribeRequest{AfterPosition: uint64(s.pos), Filter: apiconv.FilterToProto(s.opts.Filter),
		Epoch: s.epoch}
	if s.pos == 0 {
		req.FromTime = apiconv.TimeToProto(s.opts.FromTime)
	}
	// The stream lives until Close (of the subscription or the client),
	// not until the caller's ctx ends; ctx only bounds the wait for the
	// confirmation.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	unlink := context.AfterFunc(s.c.life, cancel)
	stop := context.AfterFunc(ctx, cancel)
	stream, err := s.c.events.Subscribe(sctx, connect.NewRequest(req))
	if err == nil && !stream.Receive() {
		err = stream.Err()
		if err == nil {
			err = connect.NewError(connect.CodeUnavailable, errors.New("the server ended the subscription before confirming it"))
		}
	}
	if !stop() && err == nil {
		// ctx ended as the confirmation came: the stream is being
		// cancelled, so it cannot be kept.
		err = ctx.Err()
	}
	if err != nil {
		unlink()
		cancel()
		if stream != nil {
			stream.Close()
		}
		return s.c.lostPositions(ctx, err, s.pos, s.epoch)
	}
	if p := rewind.Position(stream.Msg().GetPosition()); p > s.pos {
		s.pos = p // a start by time, or after a retention cut
	}
	if e := stream.Msg().GetEpoch(); e != 0 {
		s.epoch = e
	}
	s.stream, s.cancel, s.unlink = stream, cancel, unlink
	return nil
}

// Epoch returns the log epoch of the events received (see
// rewind.EpochReporter): keep it with Position to resume with both. The
// subscription resumes with it by itself when it reconnects, and fails with
// an error matching rewind.ErrEpochChanged if the server's log was cut at
// or before its position meanwhile, or now ends before it.
func (s *Subscription) Epoch() uint64 { return s.epoch }

func (s *Subscription) disconnect() {
	if s.stream != nil {
		s.unlink()
		s.cancel()
		s.stream.Close()
		s.stream, s.cancel, s.unlink = nil, nil, nil
	}
	s.batch, s.next = nil, 0
}

// Position returns the last position received, delivered or skipped by
// the filter. Resuming with After set to it continues exactly after it.
func (s *Subscription) Position() rewind.Position { return s.pos }

// Next waits for the next event. The event is reused by the next call.
// When ctx ends Next returns its error; the next call resumes where the
// subscription stood. Transient failures (a broken connection, a server
// restart) are retried with backoff, resuming after Position.
func (s *Subscription) Next(ctx context.Context) (*rewind.RecordedEvent, error) {
	if s.closed {
		return nil, fmt.Errorf("%w: the subscription is closed", rewind.ErrClosed)
	}
	for {
		if s.next < len(s.batch) {
			p := s.batch[s.next]
			s.next++
			ev, err := apiconv.RecordedFromProto(p)
			if err != nil {
				return nil, err
			}
			s.ev = ev
			s.pos = ev.Position
			return &s.ev, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.c.checkOpen(); err != nil {
			s.disconnect()
			return nil, err
		}
		if s.stream == nil {
			if err := s.reconnect(ctx); err != nil {
				return nil, err
			}
		}
		if err := s.receive(ctx); err != nil {
			return nil, err
		}
	}
}

// receive reads the next message into s.batch. ctx ending interrupts it by
// dropping the stream; the next call reconnects.
func (s *Subscription) receive(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.cancel)
	ok := s.stream.Receive()
	interrupted := !stop()
	if ok && !interrupted {
		msg := s.stream.Msg()
		s.batch, s.next = msg.GetEvents(), 0
		if e := msg.GetEpoch(); e != 0 {
			s.epoch = e
		}
		if len(s.batch) == 0 {
			if p := rewind.Position(msg.GetPosition()); p > s.pos {
				s.pos = p // events skipped by the filter
			}
		}
		s.bo.Reset()
		return nil
	}
	err := s.stream.Err()
	s.disconnect()
	if interrupted || ctx.Err() != nil {
		return ctx.Err()
	}
	if err := s.c.checkOpen(); err != nil {
		return err
	}
	if err == nil {
		err = connect.NewError(connect.CodeUnavailable, errors.New("the server ended the subscription"))
	}
	// A server killed mid-stream breaks the connection: connect-go says
	// Internal ("incomplete envelope") or Canceled (a reset).
	err = asUnavailable(err)
	if transient(err) && s.c.cfg.MaxRetries >= 0 {
		return nil // reconnect on the next round
	}
	return apiconv.FromConnect(err)
}

// reconnect opens a new stream after a backoff wait, retrying transient
// failures up to the client's MaxRetries.
func (s *Subscription) reconnect(ctx context.Context) error {
	tries := 0
	for {
		wait := s.bo.NextBackOff()
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		case <-s.c.life.Done():
			return s.c.checkOpen()
		}
		err := s.connect(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err() // what cut the connect short, not how it failed
		}
		if err := s.c.checkOpen(); err != nil {
			return err
		}
		err = asUnavailable(err)
		if tries++; !transient(err) || tries > s.c.cfg.MaxRetries {
			return apiconv.FromConnect(err)
		}
	}
}

// Close ends the subscription.
func (s *Subscription) Close() error {
	s.closed = true
	s.disconnect()
	return nil
}
