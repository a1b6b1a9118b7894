package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/rewindhq/rewind"
)

// DeliveryID identifies one delivery of an event to a member. Every
// delivery of a group gets a new one, a redelivery too, so that an ack
// meant for an earlier delivery cannot ack a later one.
type DeliveryID uint64

// Delivery is an event handed to a member.
type Delivery struct {
	ID DeliveryID
	// Event is shared with the engine: read it, do not change it.
	Event *rewind.RecordedEvent
	// Attempt is 1 for the first delivery, 2 for the first redelivery…
	Attempt int
	// Replay is set for a parked event handed back by a replay: if it
	// fails again it is parked again.
	Replay bool
}

// MemberOptions configures a member joining a group.
type MemberOptions struct {
	// Name describes the member in the group's description. Optional.
	Name string
	// MaxAckPending caps the member's deliveries not yet acked. Defaults
	// to the group's MemberMaxAckPending, and cannot exceed it.
	MaxAckPending int
}

// Member is one consumer of a group (members compete for the group's
// events). A server keeps one per connected client; it is safe for
// concurrent use.
type Member struct {
	g *group
	m *member
}

type member struct {
	id       uint64
	name     string
	max      int
	joined   time.Time
	inflight deliveryList // its deliveries in flight, in the order handed out
	left     bool
}

// Join adds a member to a group.
func (e *Engine) Join(ctx context.Context, group string, opts MemberOptions) (*Member, error) {
	g, err := e.group("join", group)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	max := g.cfg.MemberMaxAckPending
	switch {
	case opts.MaxAckPending < 0:
		return nil, bad("member max ack pending", opts.MaxAckPending, "must not be negative")
	case opts.MaxAckPending > max:
		return nil, tooLarge("member max ack pending", int64(opts.MaxAckPending), int64(max),
			"the group's member_max_ack_pending caps it")
	case opts.MaxAckPending > 0:
		max = opts.MaxAckPending
	}
	if g.deleted {
		return nil, notFound("join", group)
	}
	m := &member{id: e.nextID.Add(1), name: opts.Name, max: max, joined: e.cfg.Now(), inflight: deliveryList{link: byMember}}
	g.members[m.id] = m
	return &Member{g: g, m: m}, nil
}

// ID returns the member's id, as the group's description lists it.
func (mb *Member) ID() uint64 { return mb.m.id }

// MaxAckPending returns the member's cap of un-acked deliveries.
func (mb *Member) MaxAckPending() int { return mb.m.max }

// Group returns the name of the member's group.
func (mb *Member) Group() string { return mb.g.name }

// Mode returns the group's delivery mode. At-most-once deliveries need no
// ack (they are done before they are handed out).
func (mb *Member) Mode() Mode { return mb.g.cfg.Mode }

// Fetch waits until at least one event is ready for the member, and
// returns up to max of them. It fails when ctx ends, when the member has
// left, when the group failed, or with ErrLogDamaged (code corruption) when
// the group's reader met a damaged record of the log and every event before
// it is done: nothing more can come until the group is reset past it.
func (mb *Member) Fetch(ctx context.Context, max int) ([]Delivery, error) {
	return mb.fetch(ctx, max, 0, true)
}

// FetchBytes is Fetch bounded by bytes too: the events returned carry at
// most maxBytes of data and metadata, except that the first is returned
// whatever its size (an event larger than maxBytes comes alone). Events
// that do not fit stay with the group, free for any member.
func (mb *Member) FetchBytes(ctx context.Context, max, maxBytes int) ([]Delivery, error) {
	return mb.fetch(ctx, max, maxBytes, true)
}

// TryFetch returns up to max events ready for the member now, without
// waiting (none if none is ready).
func (mb *Member) TryFetch(ctx context.Context, max int) ([]Delivery, error) {
	return mb.fetch(ctx, max, 0, false)
}

// TryFetchBytes is TryFetch bounded by bytes as FetchBytes is, except
// that it returns nothing when the first event ready is larger than
// maxBytes (a caller topping up a batch leaves it for the next one).
func (mb *Member) TryFetchBytes(ctx context.Context, max, maxBytes int) ([]Delivery, error) {
	if maxBytes < 1 {
		return nil, nil
	}
	return mb.fetch(ctx, max, -maxBytes, false)
}

// EventBytes is the size of an event as FetchBytes counts it: its data
// and metadata.
func EventBytes(ev *rewind.RecordedEvent) int {
	n := len(ev.Data)
	for k, v := range ev.Metadata {
		n += len(k) + len(v)
	}
	return n
}

// fetch hands out up to max events; maxBytes > 0 bounds their bytes
// (the first goes whatever its size), maxBytes < 0 bounds them strictly
// by -maxBytes, 0 not at all.
func (mb *Member) fetch(ctx context.Context, max, maxBytes int, wait bool) ([]Delivery, error) {
	return mb.fetchUntil(ctx, max, maxBytes, wait, false)
}

// FetchUntilComplete is FetchBytes (maxBytes 0: no bound) that, once the
// member's group is bounded and complete, returns ErrGroupComplete instead
// of waiting for events that will never come.
func (mb *Member) FetchUntilComplete(ctx context.Context, max, maxBytes int) ([]Delivery, error) {
	return mb.fetchUntil(ctx, max, maxBytes, true, true)
}

// fetchUntil is fetch that, with untilComplete, returns ErrGroupComplete
// instead of waiting once the member's bounded group is complete.
func (mb *Member) fetchUntil(ctx context.Context, max, maxBytes int, wait, untilComplete bool) ([]Delivery, error) {
	if max < 1 || max > maxLimit {
		return nil, bad("fetch max", max, "must be between 1 and 1000000")
	}
	g := mb.g
	for {
		g.mu.Lock()
		if err := mb.usable("fetch"); err != nil {
			g.mu.Unlock()
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			// A caller that stopped takes nothing (an at-most-once event
			// handed to it would be lost).
			g.mu.Unlock()
			return nil, err
		}
		ds := g.fetch(mb.m, max, maxBytes, g.e.cfg.Now())
		if len(ds) == 0 && g.damaged != nil && g.drained() {
			// Every event before the damage is done: say why nothing more
			// comes.
			err := g.damaged
			g.mu.Unlock()
			return nil, err
		}
		if len(ds) == 0 && untilComplete && g.complete() {
			// Complete only once the acks that completed it, and the floor
			// at the end, are durable: a crash right after the caller is
			// told must not deliver the window again.
			seq := g.durableSeq()
			g.mu.Unlock()
			if err := g.waitCommitted(ctx, seq); err != nil {
				return nil, err
			}
			return nil, &Error{Op: "fetch", Group: g.name, Err: ErrGroupComplete,
				Reason: "the bounded group delivered its whole window"}
		}
		var ch <-chan struct{}
		if len(ds) == 0 && wait {
			ch = g.waitCh()
		}
		seq := g.bufSeq
		g.mu.Unlock()
		if len(ds) > 0 {
			if g.cfg.Mode == AtMostOnce {
				// They are done: return them even if ctx ends meanwhile
				// (dropped here, they would be lost), once that is durable.
				if err := g.waitCommitted(context.WithoutCancel(ctx), seq); err != nil {
					return nil, err
				}
			}
			return ds, nil
		}
		if !wait {
			return nil, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// durableSeq is the commit buffer that holds what the group did so far:
// the open one when it holds changes, or a floor at the end not yet
// written (commit writes those), else the last one handed to a commit,
// which an empty buffer never is (waiting for it would never end: the
// group's second consume after it completed spun forever). Called with
// g.mu held.
func (g *group) durableSeq() uint64 {
	if !g.buf.empty() || g.bounded && g.floor() >= g.end && g.committedFloor < g.end {
		return g.bufSeq
	}
	return g.bufSeq - 1
}

// waitCommitted asks for a commit and waits until buffer seq is durable.
func (g *group) waitCommitted(ctx context.Context, seq uint64) error {
	for {
		select {
		case g.urgent <- struct{}{}:
		default:
		}
		g.mu.Lock()
		done, failed, gone, ch := g.committedSeq >= seq, g.failed, g.deleted, g.commitWake
		g.mu.Unlock()
		if failed != nil {
			return failed
		}
		if gone && !done {
			return &Error{Op: "fetch", Group: g.name, Err: ErrMemberLeft, Reason: "the group was deleted or closed"}
		}
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// usable fails when the member cannot act. Called with g.mu held.
func (mb *Member) usable(op string) error {
	switch {
	case mb.g.failed != nil:
		return mb.g.failed
	case mb.m.left:
		return &Error{Op: op, Group: mb.g.name, Err: ErrMemberLeft, Reason: "join the group again"}
	}
	return nil
}

// act runs f on delivery id of the member, with the group locked.
func (mb *Member) act(op string, id DeliveryID, f func(d *delivery, now time.Time)) error {
	g := mb.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := mb.usable(op); err != nil {
		return err
	}
	d, err := g.lookup(mb.m, id, op)
	if err != nil {
		return err
	}
	f(d, g.e.cfg.Now())
	g.signal()
	return nil
}

// Ack marks the delivered event done: it will not be delivered again
// (unless a crash loses the ack before its commit, see the package docs).
func (mb *Member) Ack(_ context.Context, id DeliveryID) error {
	return mb.act("ack", id, func(d *delivery, _ time.Time) { mb.g.ack(d) })
}

// AckAll acks many deliveries at once (one lock for all, as a server does
// with the acks a client streams back). Each is acked or fails as Ack
// would; the errors of those that failed are returned joined, the others
// are acked.
func (mb *Member) AckAll(_ context.Context, ids []DeliveryID) error {
	g := mb.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := mb.usable("ack"); err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		d, err := g.lookup(mb.m, id, "ack")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.ack(d)
	}
	g.signal()
	return errors.Join(errs...)
}

// NakOptions says how a nak'ed event comes back.
type NakOptions struct {
	// Delay, when set, is the delay before the redelivery; otherwise the
	// group's backoff step applies.
	Delay time.Duration
	// Error is recorded as the event's last error (kept if it is parked).
	Error string
}

// Nak hands the event back for redelivery, after opts.Delay or the group's
// backoff step; an event that had its last delivery is parked instead.
func (mb *Member) Nak(_ context.Context, id DeliveryID, opts NakOptions) error {
	if opts.Delay < 0 || opts.Delay > maxAckWait {
		return bad("nak delay", opts.Delay, "must be between 0 and 24h")
	}
	return mb.act("nak", id, func(d *delivery, now time.Time) {
		mb.g.nak(d, opts.Delay, opts.Delay > 0, opts.Error, now)
	})
}

// InProgress tells the group the member is still working on the event:
// its ack deadline moves to now plus the ack wait.
func (mb *Member) InProgress(_ context.Context, id DeliveryID) error {
	return mb.act("in-progress", id, func(d *delivery, now time.Time) {
		d.deadline = now.Add(mb.g.cfg.AckWait)
		mb.g.deadlines.remove(d)
		mb.g.deadlines.insertByDeadline(d)
	})
}

// Term parks the event now, with reason and the last error.
func (mb *Member) Term(_ context.Context, id DeliveryID, reason, errMsg string) error {
	return mb.act("term", id, func(d *delivery, now time.Time) { mb.g.term(d, reason, errMsg, now) })
}

// Leave removes the member from its group. Its deliveries not yet acked
// go back to the group at once, to be delivered to other members.
func (mb *Member) Leave() {
	g := mb.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if mb.m.left {
		return
	}
	g.leave(mb.m, g.e.cfg.Now())
	g.signal()
}

// InFlight returns how many of the member's deliveries are not yet acked.
func (mb *Member) InFlight() int {
	mb.g.mu.Lock()
	defer mb.g.mu.Unlock()
	return mb.m.inflight.n
}
