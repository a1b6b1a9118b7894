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
	// MaxInFlight is the most appends awaiting their response at once.
	// Append blocks while twice as many full batches wait to be sent.
	// Defaults to 4.
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
// the Append calls: a stream's batches are sent one after the other, and
// once one fails (after the client's retries) the stream stops: the
// events queued behind it fail, and so does every later Append to that
// stream, until Reset, so that no event lands after a lost one. Events get
// their ids before they are queued, so the retries of a batch are
// idempotent. It is safe for concurrent use.
type Appender struct {
	c       *Client
	cfg     AppenderConfig
	permits chan struct{} // appends in flight

	mu      sync.Mutex
	open    map[string]*batch     // the batch being filled, by stream
	streams map[string]*sendQueue // batches waiting to be sent, by stream
	sealed  int                   // batches sealed and not yet done
	freed   chan struct{}         // closed when sealed decreases
	failed  map[string]error      // streams stopped by a failed batch, until Reset
	closed  bool
}

type batch struct {
	stream string
	events []rewind.Event
	// madeUpIDs: some events got their ids here, not from the caller, who
	// cannot repeat them: a batch whose outcome is unknown says so.
	madeUpIDs bool
	timer     *time.Timer
	sealed    bool
	done      chan struct{}
	res       rewind.AppendResult
	err       error
}

// sendQueue holds one stream's sealed batches in order; one goroutine per
// stream sends them while the queue is not empty.
type sendQueue struct {
	batches []*batch
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
	return &Appender{c: c, cfg: cfg, permits: make(chan struct{}, cfg.MaxInFlight), freed: make(chan struct{}),
		open: map[string]*batch{}, streams: map[string]*sendQueue{}, failed: map[string]error{}}
}

// stoppedError is the error of the events of a stream stopped by err.
func stoppedError(stream string, err error) error {
	return fmt.Errorf("not sent: an earlier batch of stream %q failed, so that no event lands after a lost one "+
		"(Appender.Reset(%q) once that is dealt with): %w", stream, stream, err)
}

// Reset lets a stream stopped by a failed batch take appends again. Call
// it once the failed events were dealt with (appended again, or given up).
func (a *Appender) Reset(stream string) {
	a.mu.Lock()
	delete(a.failed, stream)
	a.mu.Unlock()
}

// Append queues ev for stream. It blocks only while the appender holds
// 2 × MaxInFlight batches not yet acknowledged, or until ctx ends.
func (a *Appender) Append(ctx context.Context, stream string, ev rewind.Event) (*Pending, error) {
	madeUp := ev.ID == (uuid.UUID{})
	if madeUp {
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
	if err := a.failed[stream]; err != nil {
		a.mu.Unlock()
		return nil, stoppedError(stream, err)
	}
	b := a.open[stream]
	if b == nil {
		b = &batch{stream: stream, done: make(chan struct{})}
		a.open[stream] = b
		b.timer = time.AfterFunc(a.cfg.Linger, func() { a.seal(b) })
	}
	b.events = append(b.events, ev)
	b.madeUpIDs = b.madeUpIDs || madeUp
	p := &Pending{b: b, i: len(b.events) - 1}
	full := len(b.events) >= a.cfg.MaxBatch
	if full {
		a.sealLocked(b)
	}
	a.mu.Unlock()
	if full {
		return p, a.throttle(ctx)
	}
	return p, nil
}

// seal sends b if it is still open (its linger ran out).
func (a *Appender) seal(b *batch) {
	a.mu.Lock()
	a.sealLocked(b)
	a.mu.Unlock()
}

// sealLocked closes b to new events and queues it behind its stream's
// earlier batches. Called with a.mu held.
func (a *Appender) sealLocked(b *batch) bool {
	if b.sealed {
		return false
	}
	b.sealed = true
	b.timer.Stop()
	if a.open[b.stream] == b {
		delete(a.open, b.stream)
	}
	q := a.streams[b.stream]
	if q == nil {
		q = &sendQueue{}
		a.streams[b.stream] = q
	}
	q.batches = append(q.batches, b)
	a.sealed++
	if len(q.batches) == 1 {
		go a.sendAll(b.stream, q)
	}
	return true
}

// throttle waits while more than 2 × MaxInFlight batches are sealed and
// not yet acknowledged, so that a slow server slows the producer.
func (a *Appender) throttle(ctx context.Context) error {
	for {
		a.mu.Lock()
		if a.sealed <= 2*a.cfg.MaxInFlight {
			a.mu.Unlock()
			return nil
		}
		ch := a.freed
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendAll sends a stream's queued batches in order until the queue is
// empty.
func (a *Appender) sendAll(stream string, q *sendQueue) {
	for {
		a.mu.Lock()
		b := q.batches[0]
		failed := a.failed[stream]
		a.mu.Unlock()

		if failed != nil {
			b.err = stoppedError(stream, failed)
		} else {
			a.permits <- struct{}{}
			b.res, b.err = a.c.append(context.Background(), stream, rewind.Any, b.events, !b.madeUpIDs)
			<-a.permits
		}
		a.mu.Lock()
		if b.err != nil && failed == nil {
			a.failed[stream] = b.err // before the caller can see the failure
		}
		close(b.done)
		a.sealed--
		close(a.freed)
		a.freed = make(chan struct{})
		q.batches = q.batches[1:]
		if len(q.batches) == 0 {
			if a.streams[stream] == q {
				delete(a.streams, stream)
			}
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
}

// Flush sends every queued event and waits until all appends finished. It
// returns the first error of those appends.
func (a *Appender) Flush(ctx context.Context) error {
	a.mu.Lock()
	var waits []*batch
	for _, b := range a.open {
		a.sealLocked(b)
	}
	for _, q := range a.streams {
		waits = append(waits, q.batches...)
	}
	a.mu.Unlock()
	var errs []error
	for _, b := range waits {
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
