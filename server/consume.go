package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// consumeBatch caps the deliveries of one message; the member's max ack
// pending caps them further, and batchBytes their bytes as it does a
// subscription's batches: an event that would take a batch beyond
// batchBytes waits with the group for the next one (free for any member
// meanwhile), one larger than batchBytes goes alone. So a member that
// does not read holds the server to one batch of about batchBytes.
const consumeBatch = 256

// maxMemberName bounds the member name a client gives.
const maxMemberName = 128

// Consume makes the client one member of a group. Two goroutines share
// the stream: the sender fetches deliveries and sends them, at most the
// member's max ack pending un-acked at once (the engine hands out no
// more), one message at a time, each sent before the next is fetched, so
// the server holds at most one batch for a member; the receiver applies
// the client's settlements in order and answers those that fail in band
// (they change nothing). However the stream ends — the client closes it
// or goes away, the token is revoked, the group is deleted, the server
// shuts down — the member leaves at once, so its un-acked deliveries go
// back to the group without waiting for the ack wait.
func (g *groupService) Consume(ctx context.Context, stream *connect.BidiStream[rewindv1.ConsumeRequest, rewindv1.ConsumeResponse]) error {
	s := g.s
	if s.draining.Load() {
		return apiconv.Errorf(rewind.CodeClosed, "rewind: the server is shutting down; consume from its successor")
	}
	member, err := g.join(ctx, stream)
	if err != nil {
		return err
	}
	defer member.Leave()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		sendMu sync.Mutex
		ended  bool // the handler returned: nothing may be sent any more
	)
	// msg is a *rewindv1.ConsumeResponse or consumeDeliveries.
	send := func(msg any) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		if ended {
			return context.Canceled
		}
		return stream.Conn().Send(msg)
	}
	flow, err := newConsumeFlow(stream.RequestHeader(), member.Mode())
	if err != nil {
		return err
	}
	max := member.MaxAckPending()
	if err := send(&rewindv1.ConsumeResponse{Started: &rewindv1.ConsumeStarted{MemberId: member.ID(),
		MaxAckPending: uint32(max), Mode: string(member.Mode())}}); err != nil {
		return err
	}

	recvDone := make(chan error, 1)
	go func() { recvDone <- g.settleLoop(ctx, member, stream, send, flow) }()
	sendDone := make(chan error, 1)
	go func() { sendDone <- g.deliverLoop(ctx, member, min(max, consumeBatch), send, flow) }()

	sent := false // sendDone was received
	select {
	case err = <-recvDone:
	case err = <-sendDone:
		sent = true
	case <-s.stopSubs.Done():
		err = apiconv.Errorf(rewind.CodeClosed, "rewind: the server is shutting down; its un-acked deliveries went "+
			"back to the group: consume again from its successor")
	}
	// Release the member's deliveries first: the stream is over for them.
	member.Leave()
	cancel()
	// Fetch ends with ctx. A Send blocked on a client that neither reads
	// nor goes away holds the handler until its connection is cut (the
	// client's end, shutdown's cut), as a subscription's does; its member
	// has left already.
	if !sent {
		<-sendDone
	}
	sendMu.Lock()
	ended = true
	sendMu.Unlock()
	if errors.Is(err, io.EOF) || errors.Is(err, consumer.ErrGroupComplete) {
		err = nil
	}
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, rewind.ErrUnauthenticated) {
		err = cause
	}
	return err
}

// join reads the first message and joins the group it names.
func (g *groupService) join(ctx context.Context, stream *connect.BidiStream[rewindv1.ConsumeRequest, rewindv1.ConsumeResponse]) (*consumer.Member, error) {
	first, err := stream.Receive()
	if errors.Is(err, io.EOF) {
		return nil, apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: the stream ended before its first message: "+
			"send start (the group to join) first")
	}
	if err != nil {
		return nil, err
	}
	st := first.GetStart()
	if st == nil || len(first.GetAcks())+len(first.GetNaks())+len(first.GetInProgress())+len(first.GetTerms()) > 0 {
		return nil, &rewind.ValidationError{Field: "start", Reason: "the first message must carry start (the group " +
			"to join) and nothing else; settle deliveries in the messages after it"}
	}
	name := st.GetGroup()
	if err := checkGroup(ctx, auth.Write, name); err != nil {
		return nil, err
	}
	if name := st.GetMemberName(); !utf8.ValidString(name) || strings.IndexFunc(name, func(r rune) bool {
		return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
	}) >= 0 {
		// groups info prints it: no escape sequence for the reader's terminal.
		return nil, &rewind.ValidationError{Field: "member_name", Value: strconv.Quote(name),
			Reason: "must be one line of plain UTF-8 text (no control or format characters)"}
	}
	if len(st.GetMemberName()) > maxMemberName {
		return nil, &rewind.LimitError{Limit: "bytes of member_name", Max: maxMemberName,
			Got: int64(len(st.GetMemberName())), Hint: "name the member more briefly"}
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	info, err := e.Info(name)
	if err != nil {
		return nil, err
	}
	if err := authorizeFilter(ctx, name, info.Config.Filter); err != nil {
		return nil, err
	}
	return e.Join(ctx, name, consumer.MemberOptions{Name: st.GetMemberName(),
		MaxAckPending: int(st.GetMaxAckPending())})
}

// deliverLoop fetches the member's deliveries and sends them, one batch
// at a time.
func (g *groupService) deliverLoop(ctx context.Context, member *consumer.Member, most int,
	send func(any) error, flow *consumeFlow) error {
	for {
		batch, err := flow.allow(ctx, most)
		if err != nil {
			return err
		}
		ds, err := member.FetchUntilComplete(ctx, batch, batchBytes)
		if errors.Is(err, consumer.ErrGroupComplete) {
			// Nothing is in flight in a complete group: say so and end.
			if err := send(&rewindv1.ConsumeResponse{Complete: true}); err != nil {
				return err
			}
			return err
		}
		if err != nil {
			return err
		}
		size := 0
		for _, d := range ds {
			size += consumer.EventBytes(d.Event)
		}
		if len(ds) < batch/4 && size < batchBytes/4 {
			// Acks free slots one message at a time: let the settlements
			// being applied free more before sending, so that a message
			// carries many deliveries rather than one.
			runtime.Gosched()
			more, err := member.TryFetchBytes(ctx, batch-len(ds), batchBytes-size)
			if err != nil {
				return err
			}
			ds = append(ds, more...)
			for _, d := range more {
				size += consumer.EventBytes(d.Event)
			}
		}
		if err := checkRevoked(ctx); err != nil {
			return err
		}
		flow.sent(ds)
		g.s.metrics.consumeHeld.Add(float64(size))
		err = send(consumeDeliveries(ds))
		g.s.metrics.consumeHeld.Sub(float64(size))
		if err != nil {
			return err
		}
	}
}

// MaxSettlementsPerMessage caps the acks, naks, in-progress reports and
// terms of one Consume message (the Go client sends at most 4,097).
const MaxSettlementsPerMessage = 10_000

// settleLoop applies the client's settlements, in the order they come,
// until the client ends its side of the stream (io.EOF).
func (g *groupService) settleLoop(ctx context.Context, member *consumer.Member,
	stream *connect.BidiStream[rewindv1.ConsumeRequest, rewindv1.ConsumeResponse],
	send func(any) error, flow *consumeFlow) error {
	for {
		req, err := stream.Receive()
		if err != nil {
			return err
		}
		if err := checkRevoked(ctx); err != nil {
			return err
		}
		if req.GetStart() != nil {
			return &rewind.ValidationError{Field: "start", Reason: "is only allowed in the first message: a stream " +
				"is one member of one group; open another stream to join again"}
		}
		var failed []*rewindv1.ConsumeError
		if n := len(req.GetAcks()) + len(req.GetNaks()) + len(req.GetInProgress()) + len(req.GetTerms()); n > MaxSettlementsPerMessage {
			// Refused whole, answered with one error: millions of unknown
			// ids in one message took gigabytes to answer one by one.
			err := &rewind.ValidationError{Field: "settlements", Value: strconv.Itoa(n), Reason: fmt.Sprintf(
				"are more than %d in one message: none of them was applied; send them in several messages", MaxSettlementsPerMessage)}
			if err := send(&rewindv1.ConsumeResponse{Errors: []*rewindv1.ConsumeError{g.s.settleError(ctx, "settle", 0, err)}}); err != nil {
				return err
			}
			continue
		}
		fail := func(op string, id uint64, err error) error {
			if errors.Is(err, consumer.ErrMemberLeft) || errors.Is(err, consumer.ErrGroupFailed) {
				return err // the member cannot go on: end the stream with it
			}
			failed = append(failed, g.s.settleError(ctx, op, id, err))
			return nil
		}
		if acks := flow.handled(req.GetAcks()); len(acks) > 0 {
			ids := make([]consumer.DeliveryID, len(acks))
			for i, id := range acks {
				ids[i] = consumer.DeliveryID(id)
			}
			if err := member.AckAll(ctx, ids); err != nil {
				for _, e := range unjoin(err) {
					var ce *consumer.Error
					errors.As(e, &ce)
					id := uint64(0)
					if ce != nil {
						id = uint64(ce.ID)
					}
					if err := fail("ack", id, e); err != nil {
						return err
					}
				}
			}
		}
		for _, n := range req.GetNaks() {
			delay, err := apiconv.DurationFromProto("nak delay", n.GetDelay())
			if err == nil {
				err = member.Nak(ctx, consumer.DeliveryID(n.GetDeliveryId()), consumer.NakOptions{Delay: delay,
					Error: n.GetError()})
			}
			if err != nil {
				if err := fail("nak", n.GetDeliveryId(), err); err != nil {
					return err
				}
			}
		}
		for _, id := range req.GetInProgress() {
			if err := member.InProgress(ctx, consumer.DeliveryID(id)); err != nil {
				if err := fail("in-progress", id, err); err != nil {
					return err
				}
			}
		}
		for _, t := range req.GetTerms() {
			if err := member.Term(ctx, consumer.DeliveryID(t.GetDeliveryId()), t.GetReason(), t.GetError()); err != nil {
				if err := fail("term", t.GetDeliveryId(), err); err != nil {
					return err
				}
			}
		}
		if len(failed) > 0 {
			if err := send(&rewindv1.ConsumeResponse{Errors: failed}); err != nil {
				return err
			}
		}
	}
}

// consumeDeliveries is a ConsumeResponse carrying deliveries, which the
// binary codec writes straight from the engine's events (see
// apiconv.AppendConsumeDeliveries) rather than through a protobuf message
// per event.
type consumeDeliveries []consumer.Delivery

func (ds consumeDeliveries) appendProto(b []byte) []byte {
	return apiconv.AppendConsumeDeliveries(b, ds)
}
func (ds consumeDeliveries) message() proto.Message { return apiconv.ConsumeResponseOf(ds) }

// unjoin returns the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
