package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// A subscription sends batches of at most batchEvents events and
// batchBytes of data: an event that would take a batch beyond batchBytes
// starts the next one, and one larger than batchBytes goes alone. Small
// batches keep
// what a slow subscriber holds small (see Subscribe); at 128 KiB a batch
// is still large enough that its framing costs nothing.
const (
	batchEvents = 512
	batchBytes  = 128 << 10
)

// Subscribe streams the log. Flow control: the store's subscription reads
// the log only when asked, and the next batch is read only after Send of
// the previous one returned, which waits for the client's HTTP/2 flow
// control window; so a slow client holds at most one batch in server
// memory (the batch, its encoding and the store's 256 KiB read buffer:
// about 0.6 MiB, more only for events larger than a batch) and simply
// falls behind, to catch up later from disk. A client too slow for too
// long, whose message waited more than SlowSubscriberTimeout to be read,
// is ended with ResourceExhausted once the message is through.
func (e *eventStore) Subscribe(ctx context.Context, req *connect.Request[rewindv1.SubscribeRequest], stream *connect.ServerStream[rewindv1.SubscribeResponse]) error {
	s := e.s
	if s.draining.Load() {
		return apiconv.Errorf(rewind.CodeClosed, "rewind: the server is shutting down; subscribe again to its successor")
	}
	m := req.Msg
	from, err := apiconv.TimeFromProto("from_time", m.GetFromTime())
	if err != nil {
		return err
	}
	tok := tokenFrom(ctx)
	entry, err := s.subs.add(tok)
	if err != nil {
		return err
	}
	defer s.subs.remove(entry)
	sub, err := s.store.Subscribe(ctx, rewind.SubscribeOptions{After: rewind.Position(m.GetAfterPosition()),
		FromTime: from, Filter: apiconv.FilterFromProto(m.GetFilter()), Epoch: m.GetEpoch()})
	if err != nil {
		return err
	}
	defer sub.Close()

	// End with the server's shutdown as well as with the client.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.stopSubs, cancel)
	defer stop()

	err = e.pump(ctx, sub, tok, entry, stream)
	if s.stopSubs.Err() != nil && (errors.Is(err, context.Canceled) || err == nil) {
		return apiconv.Errorf(rewind.CodeClosed,
			"rewind: the server is shutting down; resume with after_position %d once it is back", sub.Position())
	}
	return err
}

// scopeSkipRound is how many events a token's scope may hide before the
// subscription reports its position (and checks for cancellation and
// revocation), like the store's filter rounds.
const scopeSkipRound = 4096

// pump sends the subscription's events in batches. A store subscription
// that can poll (rewind.Poller) fills a batch with the events ready now;
// one that cannot sends each event as Next returns it.
func (e *eventStore) pump(ctx context.Context, sub rewind.Subscription, tok *auth.Token, entry *subEntry,
	stream *connect.ServerStream[rewindv1.SubscribeResponse]) error {
	readsAll := tok.AllowsAll(auth.Read)
	poller, _ := sub.(rewind.Poller)
	sent := sub.Position()
	entry.pos.Store(uint64(sent))
	msg := &rewindv1.SubscribeResponse{Position: uint64(sent)}
	if er, ok := sub.(rewind.EpochReporter); ok {
		msg.Epoch = er.Epoch() // on every message: the client resumes with it
	}
	limit := e.s.cfg.SlowSubscriberTimeout
	send := func(msg *rewindv1.SubscribeResponse) error {
		start := time.Now()
		if err := stream.Send(msg); err != nil {
			return err
		}
		if waited := time.Since(start); waited > limit {
			return tooSlow(waited, limit, msg.Position)
		}
		return nil
	}
	if err := send(msg); err != nil { // confirms the start
		return err
	}
	var b batchBuf
	// held is an event read for a batch it would have taken beyond
	// batchBytes: it starts the next batch. heldAfter is the position
	// before it, the one the batch it did not join ends at.
	var held *rewind.RecordedEvent
	var heldAfter rewind.Position
	for {
		if err := ctx.Err(); err != nil { // Send does not see ctx: a shutdown, a revoked token
			return err
		}
		msg.Events = msg.Events[:0]
		b.reset()
		size, scoped := 0, 0
		if held != nil {
			msg.Events = append(msg.Events, b.add(held))
			size, held = len(held.Data), nil
		}
		var stop error // a read error after events of this batch: sent after them
		// Events the token's scope hides end a round too, every
		// scopeSkipRound of them, as those the filter skips do in the store.
		for poller != nil && len(msg.Events) < batchEvents && size < batchBytes && scoped < scopeSkipRound {
			before := sub.Position()
			ev, err := poller.TryNext()
			if err != nil && len(msg.Events) == 0 && sub.Position() == sent {
				return err
			}
			if err != nil {
				stop = err
				break
			}
			if ev == nil {
				break
			}
			if !readsAll && !tok.Allows(auth.Read, ev.Stream) {
				scoped++
				continue
			}
			if len(msg.Events) > 0 && size+len(ev.Data) > batchBytes {
				c := ev.Clone() // the store reuses ev's buffers
				held, heldAfter = &c, before
				break
			}
			msg.Events = append(msg.Events, b.add(ev))
			size += len(ev.Data)
		}
		// Send events, or, when only skipped ones went by, the new position
		// so that a resumed subscription does not scan them again.
		if len(msg.Events) > 0 || sub.Position() != sent {
			if err := checkRevoked(ctx); err != nil {
				return err
			}
			sent = sub.Position()
			if held != nil {
				sent = heldAfter
			}
			msg.Position = uint64(sent)
			if err := send(msg); err != nil {
				return err
			}
			entry.pos.Store(uint64(sent))
			if stop != nil {
				// Clients take a batch's position from its last event: the
				// events skipped after it are told apart, so that the
				// subscription's position is just before the error's.
				if n := len(msg.Events); n > 0 && msg.Events[n-1].GetPosition() < uint64(sent) {
					msg.Events = msg.Events[:0]
					if err := send(msg); err != nil {
						return err
					}
				}
				return stop
			}
			continue
		}
		ev, err := sub.Next(ctx) // caught up: wait for the log to grow
		if err != nil {
			return err
		}
		if err := checkRevoked(ctx); err != nil {
			return err
		}
		if readsAll || tok.Allows(auth.Read, ev.Stream) {
			b.reset()
			msg.Events = append(msg.Events[:0], b.add(ev))
			sent = sub.Position()
			msg.Position = uint64(sent)
			if err := send(msg); err != nil {
				return err
			}
			entry.pos.Store(uint64(sent))
		}
	}
}

// tooSlow is the error that ends a subscription whose client took longer
// than the limit to read one message.
func tooSlow(waited, limit time.Duration, resume uint64) error {
	return apiconv.ToConnect(&rewind.LimitError{
		Limit: "milliseconds a subscription message waited for the client to read it (slow_subscriber_timeout)",
		Max:   limit.Milliseconds(), Got: waited.Milliseconds(),
		Hint: fmt.Sprintf("the subscriber is too slow: read as the events come (or filter them), and resume with "+
			"after_position %d", resume)})
}

// batchBuf copies the events of one batch out of the store's reused
// buffers with few allocations: bodies go into one arena, and the
// messages are reused from batch to batch (Send has marshalled them).
type batchBuf struct {
	data []byte
	msgs []*rewindv1.RecordedEvent
	n    int
}

func (b *batchBuf) reset() {
	b.data, b.n = b.data[:0], 0
	if cap(b.data) > 4*batchBytes {
		b.data = nil
	}
}

// add converts ev, copying what the store will reuse.
func (b *batchBuf) add(ev *rewind.RecordedEvent) *rewindv1.RecordedEvent {
	if b.n == len(b.msgs) {
		b.msgs = append(b.msgs, new(rewindv1.RecordedEvent))
	}
	m := b.msgs[b.n]
	b.n++
	apiconv.FillRecorded(m, ev)
	start := len(b.data)
	if cap(b.data)-start < len(ev.Data) {
		// A new arena: the messages already filled keep the old one.
		b.data = make([]byte, 0, max(batchBytes, len(ev.Data)))
		start = 0
	}
	b.data = append(b.data, ev.Data...)
	m.Data = b.data[start:len(b.data):len(b.data)]
	if len(ev.Metadata) > 0 {
		m.Metadata = maps.Clone(ev.Metadata)
	}
	return m
}

// subscriptions tracks open subscriptions: it enforces the per-token
// limit and reports each one's lag as a metric.
type subscriptions struct {
	last func() (uint64, bool) // the store's last position, if it tells
	max  int

	mu      sync.Mutex
	next    uint64
	open    map[*subEntry]struct{}
	byToken map[string]int
	wg      sync.WaitGroup

	lagDesc, activeDesc *prometheus.Desc
}

type subEntry struct {
	id      string
	token   string // name, for the metric
	tokenID string
	pos     atomic.Uint64
}

func newSubscriptions(st rewind.Store, max int) *subscriptions {
	last := func() (uint64, bool) { return 0, false }
	if lp, ok := st.(rewind.LastPositioner); ok {
		last = func() (uint64, bool) {
			p, err := lp.LastPosition(context.Background())
			return uint64(p), err == nil
		}
	}
	return &subscriptions{last: last, max: max, open: map[*subEntry]struct{}{}, byToken: map[string]int{},
		lagDesc: prometheus.NewDesc("rewind_subscription_lag_events",
			"Positions between the log's end and the last position a subscription sent.",
			[]string{"subscription", "token"}, nil),
		activeDesc: prometheus.NewDesc("rewind_subscriptions_active", "Open subscriptions.", nil, nil)}
}

func (ss *subscriptions) add(tok *auth.Token) (*subEntry, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if n := ss.byToken[tok.ID]; n >= ss.max {
		return nil, &rewind.LimitError{Limit: "open subscriptions of token " + strconv.Quote(tok.Name), Max: int64(ss.max),
			Got: int64(n + 1), Hint: "close a subscription, or raise the server's max-subscriptions-per-token"}
	}
	ss.next++
	e := &subEntry{id: strconv.FormatUint(ss.next, 10), token: tok.Name, tokenID: tok.ID}
	last, _ := ss.last()
	e.pos.Store(last) // until the first batch: not counted as lag
	ss.open[e] = struct{}{}
	ss.byToken[tok.ID]++
	ss.wg.Add(1)
	return e, nil
}

func (ss *subscriptions) remove(e *subEntry) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.open, e)
	if ss.byToken[e.tokenID]--; ss.byToken[e.tokenID] == 0 {
		delete(ss.byToken, e.tokenID)
	}
	ss.wg.Done()
}

// wait waits until every subscription has ended, or ctx ends.
func (ss *subscriptions) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { ss.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Describe implements prometheus.Collector.
func (ss *subscriptions) Describe(ch chan<- *prometheus.Desc) {
	ch <- ss.lagDesc
	ch <- ss.activeDesc
}

// Collect implements prometheus.Collector: the lag of each subscription,
// computed at scrape time (when the store tells its last position).
func (ss *subscriptions) Collect(ch chan<- prometheus.Metric) {
	last, known := ss.last()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(ss.activeDesc, prometheus.GaugeValue, float64(len(ss.open)))
	if !known {
		return
	}
	for e := range ss.open {
		lag := uint64(0)
		if p := e.pos.Load(); last > p {
			lag = last - p
		}
		ch <- prometheus.MustNewConstMetric(ss.lagDesc, prometheus.GaugeValue, float64(lag), e.id, e.token)
	}
}
