package store

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Subscription delivers the events of the whole log in position order:
// first those already in the log (catch-up), then new ones as they become
// visible (live), through one reader, so the switch can neither skip nor
// repeat an event. It reads the log only when its consumer asks for more,
// so a slow consumer costs no memory: it simply falls behind and catches up
// later from disk.
//
// A Subscription is not safe for concurrent use.
type Subscription struct {
	s      *Store
	r      *eventlog.Reader
	filter rewind.Filter
	in     *interner
	recs   []eventlog.Record // read ahead by NextBatch; recs[next:] not yet returned
	next   int
	ev     rewind.RecordedEvent
	pos    rewind.Position // last position delivered or skipped
	once   sync.Once
}

// scanBudget bounds the events TryNext skips (its filter rejects them)
// before it returns nothing and lets its caller check for cancellation:
// about half a millisecond of scanning.
const scanBudget = 4096

// Subscribe starts a subscription. Close it when done.
//
// It returns a *Subscription, which also offers TryNext and Lag.
func (s *Store) Subscribe(ctx context.Context, opts rewind.SubscribeOptions) (rewind.Subscription, error) {
	if err := validateFilter(&opts.Filter); err != nil {
		return nil, err
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := s.log.CheckEpoch(uint64(opts.After), opts.Epoch); err != nil {
		return nil, err
	}
	from, err := s.startPosition(opts.After, opts.FromTime, true)
	if err != nil {
		return nil, err
	}
	return &Subscription{s: s, r: s.log.NewReaderSize(uint64(from), subscriptionBuffer), filter: opts.Filter, in: newInterner(),
		recs: make([]eventlog.Record, 0, 64), pos: from - 1}, nil
}

// subscriptionBuffer is the read buffer of a subscription: a subscription
// may live long and wait on a slow consumer, so it holds less than a
// one-off reader's 1 MiB (it grows for a larger record).
const subscriptionBuffer = 256 << 10

// Position returns the last position the subscription delivered or
// skipped. Resuming with After set to it continues exactly after it.
func (sub *Subscription) Position() rewind.Position { return sub.pos }

// Epoch returns the log epoch the subscription reads in (see
// rewind.EpochReporter); it changes only when the store is reopened.
func (sub *Subscription) Epoch() uint64 { return sub.s.log.Epoch() }

// Lag returns how many positions the subscription is behind the log.
func (sub *Subscription) Lag() uint64 {
	if last := sub.s.log.Last(); last > uint64(sub.pos) {
		return last - uint64(sub.pos)
	}
	return 0
}

// Next waits for the next event. The event is reused by the next call:
// use Clone to keep it. It fails with ctx's error, or with rewind.ErrClosed
// when the store closes. It checks ctx at least every scanBudget events it
// skips, so that cancelling a filtered subscription over millions of
// events it rejects takes effect within a millisecond.
func (sub *Subscription) Next(ctx context.Context) (*rewind.RecordedEvent, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev, err := sub.TryNext()
		if err != nil || ev != nil {
			return ev, err
		}
		if err := sub.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// TryNext returns the next event if one is visible now, or nil. It also
// returns nil after skipping scanBudget events its filter rejects, having
// advanced Position, so that a caller looping on it can check for
// cancellation; call it again to go on.
func (sub *Subscription) TryNext() (*rewind.RecordedEvent, error) {
	for skipped := 0; skipped < scanBudget; skipped++ {
		if sub.next == len(sub.recs) {
			var err error
			sub.recs, err = sub.r.NextBatch(sub.recs[:0])
			sub.next = 0
			if err == io.EOF {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
		}
		if err := decodeRecord(sub.recs[sub.next], &sub.ev, sub.in); err != nil {
			return nil, err // again on the next call: a bad event is never skipped
		}
		sub.next++
		sub.pos = sub.ev.Position
		if sub.filter.Match(&sub.ev) {
			return &sub.ev, nil
		}
	}
	return nil, nil
}

// wait blocks until the log has positions after the subscription's (or
// it holds records read ahead that TryNext left for the next call).
func (sub *Subscription) wait(ctx context.Context) error {
	if sub.next < len(sub.recs) {
		return nil
	}
	for {
		ch := sub.s.log.Changed()
		if sub.s.log.Last() >= sub.r.Position() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.s.closed:
			return fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
		}
	}
}

// Close releases the subscription.
func (sub *Subscription) Close() error {
	sub.once.Do(sub.r.Close)
	return nil
}
