package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// AppenderConfig configures an Appender. The zero value is the default.
type AppenderConfig struct {
	// MaxBatch is the most events sent in one append. Defaults to 500.
	MaxBatch int
	// MaxInFlight is the most appends awaiting their response at once;
	// when they are all busy and a batch is full, Append blocks. Defaults
	// to 4.
	MaxInFlight int
	// Linger is how long a batch that is not full waits for more events
	// before it is sent. Defaults to 2ms.
	Linger time.Duration
}

// Appender batches events for high throughput: Append returns at once
// with a Pending result, and events of the same stream are sent together,
// up to MaxBatch per append, with at most MaxInFlight appends in flight.
// Appends use rewind.Any as expected version; use Client.Append for
// optimistic concurrency. The events of one stream land in the order of
// the Append calls: a stream's batch is sent only after its previous one
// succeeded (if that one failed, the later ones fail too, so that no
// event lands after a lost one). Events get their ids before they are queued, so
// the retries of a batch are idempotent. It is safe for concurrent use.
type Appender struct {
	c     *Client
	cfg   AppenderConfig
	slots chan struct{} // in-flight permits

	mu       sync.Mutex
	batches  map[string]*batch   // open, by stream
	last     map[string]*batch   // the last batch sent of each stream
	inflight map[*batch]struct{} // sent, awaiting their response
	closed   bool
}

type batch struct {
	stream string
	prev   *batch // the stream's previous batch, which must land first
	events []rewind.Event
	timer  *time.Timer
	sent   bool
	done   chan struct{}
	res    rewind.AppendResult
	err    error
}

// Pending is the future result of one appended event.
type Pending struct {
	b *batch
	i int
}

// Wait waits for the event's append and returns its position.
func (p *Pending) Wait(ctx context.Context) (rewind.Position, error) {
	select {
	case <-p.b.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if p.b.err != nil {
		return 0, p.b.err
	}
	return p.b.res.FirstPosition + rewind.Position(p.i), nil
}

// Done is closed once the event's append finished.
func (p *Pending) Done() <-chan struct{} { return p.b.done }

// NewAppender returns an appender that sends through c.
func (c *Client) NewAppender(cfg AppenderConfig) *Appender {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 2 * time.Millisecond
	}
	return &Appender{c: c, cfg: cfg, slots: make(chan struct{}, cfg.MaxInFlight),
		batches: map[string]*batch{}, last: map[string]*batch{}, inflight: map[*batch]struct{}{}}
}

// Append queues ev for stream. It blocks only while MaxInFlight appends
// are in flight and the stream's batch is full, or until ctx ends.
func (a *Appender) Append(ctx context.Context, stream string, ev rewind.Event) (*Pending, error) {
	if ev.ID == (uuid.UUID{}) {
		id, err := newID()
		if err != nil {
			return nil, err
		}
		ev.ID = id
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, rewind.ErrClosed
	}
	b := a.batches[stream]
	if b == nil {
		b = &batch{stream: stream, done: make(chan struct{})}
		a.batches[stream] = b
		b.timer = time.AfterFunc(a.cfg.Linger, func() { a.flushBatch(context.Background(), b) })
	}
	b.events = append(b.events, ev)
	p := &Pending{b: b, i: len(b.events) - 1}
	full := len(b.events) >= a.cfg.MaxBatch
	if full {
		a.detach(b)
	}
	a.mu.Unlock()
	if full {
		return p, a.send(ctx, b)
	}
	return p, nil
}

// detach removes b from the open batches. Called with a.mu held.
func (a *Appender) detach(b *batch) bool {
	if b.sent {
		return false
	}
	b.sent = true
	b.timer.Stop()
	if a.batches[b.stream] == b {
		delete(a.batches, b.stream)
	}
	return true
}

func (a *Appender) flushBatch(ctx context.Context, b *batch) {
	a.mu.Lock()
	ok := a.detach(b)
	a.mu.Unlock()
	if ok {
		a.send(ctx, b)
	}
}

// send waits for an in-flight permit, then appends b in the background.
func (a *Appender) send(ctx context.Context, b *batch) error {
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		b.err = ctx.Err()
		close(b.done)
		return ctx.Err()
	}
	a.mu.Lock()
	a.inflight[b] = struct{}{}
	b.prev = a.last[b.stream]
	a.last[b.stream] = b
	a.mu.Unlock()
	go func() {
		if b.prev != nil {
			<-b.prev.done
		}
		if b.prev != nil && b.prev.err != nil {
			b.err = fmt.Errorf("not sent: an earlier batch of stream %q failed: %w", b.stream, b.prev.err)
		} else {
			b.res, b.err = a.c.Append(context.Background(), b.stream, rewind.Any, b.events...)
		}
		a.mu.Lock()
		delete(a.inflight, b)
		if a.last[b.stream] == b {
			delete(a.last, b.stream)
		}
		b.prev = nil
		a.mu.Unlock()
		<-a.slots
		close(b.done)
	}()
	return nil
}

// Flush sends every queued event and waits until all appends finished. It
// returns the first error of those appends.
func (a *Appender) Flush(ctx context.Context) error {
	a.mu.Lock()
	open := make([]*batch, 0, len(a.batches))
	for _, b := range a.batches {
		if a.detach(b) {
			open = append(open, b)
		}
	}
	a.mu.Unlock()
	var errs []error
	for _, b := range open {
		if err := a.send(ctx, b); err != nil {
			errs = append(errs, err)
		}
	}
	a.mu.Lock()
	for b := range a.inflight {
		open = append(open, b)
	}
	a.mu.Unlock()
	for _, b := range open {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.err != nil {
			errs = append(errs, b.err)
		}
	}
	return errors.Join(errs...)
}

// Close flushes and refuses further events.
func (a *Appender) Close(ctx context.Context) error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	return a.Flush(ctx)
}
