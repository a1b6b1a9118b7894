package consumer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// Message is an event handed to a Handler, with its delivery.
type Message struct {
	Delivery
	Group    string
	member   *Member
	progress func(context.Context) error
}

// InProgress extends the message's ack deadline (see Member.InProgress).
func (m *Message) InProgress(ctx context.Context) error {
	switch {
	case m.progress != nil:
		return m.progress(ctx)
	case m.member == nil:
		return nil
	}
	return m.member.InProgress(ctx, m.ID)
}

// NewRemoteMessage builds a Message of a member that settles its
// deliveries elsewhere (a client of a server): its InProgress calls
// inProgress.
func NewRemoteMessage(group string, d Delivery, inProgress func(context.Context) error) *Message {
	return &Message{Delivery: d, Group: group, progress: inProgress}
}

// SettleKind is what becomes of a handled event.
type SettleKind int

// The settlements of a handled event.
const (
	SettleAck SettleKind = iota
	SettleNak
	SettleTerm
)

// Settlement is what a handler's result asks for (see Handler): an ack, a
// nak (after Delay, or the group's backoff step when it is 0) or a term
// (park, with Reason). Error is the handler's error, recorded as the
// event's last error.
type Settlement struct {
	Kind   SettleKind
	Delay  time.Duration
	Reason string
	Error  string
}

// SettlementOf returns what the handler result herr asks for, as Consume
// applies it; a remote member sends it to its server.
func SettlementOf(herr error) Settlement {
	if herr == nil {
		// Before the targets of errors.As, which escape: an ack, the
		// common case, allocates nothing.
		return Settlement{Kind: SettleAck}
	}
	var park *ParkError
	var retry *RetryError
	switch {
	case errors.As(herr, &park):
		s := Settlement{Kind: SettleTerm, Reason: park.Reason}
		if park.Err != nil {
			s.Error = park.Err.Error()
		}
		return s
	case errors.As(herr, &retry):
		return Settlement{Kind: SettleNak, Delay: retry.Delay, Error: herr.Error()}
	}
	return Settlement{Kind: SettleNak, Error: herr.Error()}
}

// NewMessage builds a Message for a delivery of group, for tests of
// handlers and middleware that run without an engine.
func NewMessage(group string, d Delivery) *Message { return &Message{Delivery: d, Group: group} }

// Handler handles one event. Its result decides what becomes of it: nil
// acks it; an error made by Park parks it at once (term); one made by
// RetryAfter naks it with that delay; any other naks it, to be
// redelivered after the group's backoff step (or parked after its last
// delivery), with the error recorded as its last error — except ctx's own
// error once ctx has ended (the consume stopped): that event is left
// unsettled and goes back to the group at once when the member leaves.
type Handler func(ctx context.Context, m *Message) error

// Middleware wraps a Handler (see package consumer/middleware).
type Middleware func(Handler) Handler

// Chain wraps h in mws, the first the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// ConsumeOptions configures Consume.
type ConsumeOptions struct {
	// Concurrency is how many events are handled at once. Defaults to 1.
	Concurrency int
	// Limit, when set, is how many events Consume hands to the handler
	// before it returns nil (once the last handlers returned). It never
	// fetches more than it still has to hand out, so the member holds no
	// delivery it will not handle: in at-most-once mode none is lost, in
	// the others none goes back with its delivery counted. Defaults to 0:
	// no limit.
	Limit int
}

// Consume fetches events for member and handles each with h, acking,
// nak'ing or parking it by h's result, until ctx ends (it then waits for
// the handlers running, and returns nil), the member fails, or the
// member's group is bounded and complete (it returns nil once the handlers
// finished). It does not leave the group; call Leave after it.
func Consume(ctx context.Context, member *Member, h Handler, opts ConsumeOptions) error {
	n := opts.Concurrency
	if n == 0 {
		n = 1
	}
	if n < 1 || n > maxLimit {
		return bad("concurrency", n, "must be between 1 and 1000000")
	}
	if opts.Limit < 0 {
		return bad("limit", opts.Limit, "must not be negative (0 is no limit)")
	}
	// An at-most-once delivery is done once fetched: one fetched ahead of
	// a free handler would be lost if the consume stopped before it was
	// handled. So in that mode events are fetched only for idle handlers.
	atMostOnce := member.Mode() == AtMostOnce
	idle := make(chan struct{}, n)
	for range n {
		idle <- struct{}{}
	}
	work := make(chan Delivery, n)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if err := member.settle(ctx, d, h(ctx, &Message{Delivery: d, Group: member.Group(),
					member: member})); err != nil {
					fail(err)
				}
				if atMostOnce {
					idle <- struct{}{}
				}
			}
		}()
	}
	remaining := opts.Limit
	for ctx.Err() == nil {
		want := n
		if opts.Limit > 0 {
			if remaining == 0 {
				break
			}
			want = min(want, remaining)
		}
		if atMostOnce {
			if want = takeIdle(ctx, idle, want); want == 0 {
				break
			}
		}
		ds, err := member.FetchUntilComplete(ctx, want, 0)
		if atMostOnce {
			for range want - len(ds) {
				idle <- struct{}{}
			}
		}
		if errors.Is(err, ErrGroupComplete) {
			break
		}
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			break
		}
		remaining -= len(ds)
		for _, d := range ds {
			work <- d
		}
	}
	close(work)
	wg.Wait()
	return firstErr
}

// takeIdle waits for at least one idle handler, takes up to want, and
// returns how many it took (0 when ctx ended first: none taken).
func takeIdle(ctx context.Context, idle chan struct{}, want int) int {
	select {
	case <-idle:
	case <-ctx.Done():
		return 0
	}
	took := 1
	for took < want {
		select {
		case <-idle:
			took++
		default:
			return took
		}
	}
	return took
}

// Abandoned reports whether a handler's result herr only says that the
// consume stopped: ctx ended and the handler returned its error. Such an
// event is not settled (a nak would delay it by the backoff): it goes
// back to the group at once when the member leaves.
func Abandoned(ctx context.Context, herr error) bool {
	return herr != nil && ctx.Err() != nil && errors.Is(herr, ctx.Err())
}

// settle acts on a handler's result. A stale delivery (its ack wait ran
// out meanwhile) is not an error of the consumer's: the event went back.
func (mb *Member) settle(ctx context.Context, d Delivery, herr error) error {
	if mb.Mode() == AtMostOnce || Abandoned(ctx, herr) {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	var err error
	switch s := SettlementOf(herr); s.Kind {
	case SettleAck:
		err = mb.Ack(ctx, d.ID)
	case SettleTerm:
		err = mb.Term(ctx, d.ID, s.Reason, s.Error)
	default:
		err = mb.Nak(ctx, d.ID, NakOptions{Delay: s.Delay, Error: s.Error})
	}
	if errors.Is(err, ErrStaleDelivery) {
		return nil
	}
	return err
}

func isSystem(stream string) bool { return strings.HasPrefix(stream, SystemStreamPrefix) }
