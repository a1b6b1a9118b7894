package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// Subscribe starts a subscription of the whole log; see rewind.Store.
//
// It reads pages of the log after its position up to the last committed
// position, read in the same snapshot. Because positions are given out in
// commit order (see Append), no transaction still open can later fill a
// position at or below that end, so the subscription never passes an event
// it has not delivered. Caught up, it waits for a NOTIFY from an append,
// the store's own appends, or PollInterval, whichever comes first.
func (s *Store) Subscribe(ctx context.Context, opts rewind.SubscribeOptions) (rewind.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var err error
	if opts.Filter, err = validFilter(opts.Filter); err != nil {
		return nil, err
	}
	if opts.After != 0 && !opts.FromTime.IsZero() {
		return nil, &rewind.ValidationError{Field: "after", Reason: "give a position or a time, not both"}
	}
	if err := checkEpoch(opts.After, opts.Epoch); err != nil {
		return nil, err
	}
	last, err := s.LastPosition(ctx)
	if err != nil {
		return nil, err
	}
	if uint64(opts.After) > uint64(last) {
		return nil, &rewind.ValidationError{Field: "position", Value: opts.After.String(),
			Reason: fmt.Sprintf("is beyond the end of the log (last position %d)", last)}
	}
	pos := int64(opts.After)
	if !opts.FromTime.IsZero() {
		from, err := s.start(ctx, 0, opts.FromTime, int64(last))
		if err != nil {
			return nil, err
		}
		pos = from - 1
	}
	return &subscription{s: s, filter: opts.Filter, types: filterTypes(opts.Filter), pos: pos, scanned: pos,
		done: make(chan struct{})}, nil
}

type subscription struct {
	s       *Store
	filter  rewind.Filter
	types   []string
	pos     int64 // the last position delivered or skipped
	scanned int64 // the last position the buffered page covers
	buf     []rewind.RecordedEvent
	next    int
	dec     eventDecoder
	done    chan struct{}
	closed  bool
}

// Next waits for the next event; see rewind.Subscription.
func (sub *subscription) Next(ctx context.Context) (*rewind.RecordedEvent, error) {
	for {
		if sub.closed {
			return nil, fmt.Errorf("%w: the subscription is closed", rewind.ErrClosed)
		}
		if err := sub.s.checkOpen(); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if sub.next < len(sub.buf) {
			ev := &sub.buf[sub.next]
			sub.next++
			sub.pos = int64(ev.Position)
			return ev, nil
		}
		sub.pos = max(sub.pos, sub.scanned)
		wake := sub.s.wait() // before the read: a signal after it is not lost
		if err := sub.fetch(ctx); err != nil {
			return nil, err
		}
		if len(sub.buf) > 0 {
			continue
		}
		timer := time.NewTimer(sub.s.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-sub.s.closed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// fetch reads the page after the subscription's position.
func (sub *subscription) fetch(ctx context.Context) error {
	var rows pgx.Rows
	var err error
	if sub.filter.StreamPrefix == "" && len(sub.types) == 0 {
		rows, err = sub.s.pool.Query(ctx, sub.s.q.pollAll, sub.pos)
	} else {
		rows, err = sub.s.pool.Query(ctx, sub.s.q.poll, sub.pos, sqlPrefix(sub.filter.StreamPrefix), sub.types)
	}
	if err != nil {
		return sub.s.dbError("subscription read", err)
	}
	defer rows.Close()
	sub.buf, sub.next = sub.buf[:0], 0
	sub.dec.start(rows, 1)
	var last int64
	for rows.Next() {
		var r row
		ok, err := sub.dec.next(rows, &r, &last)
		if err != nil {
			sub.buf = sub.buf[:0] // the next call reads the page again
			return sub.s.dbError("subscription read", err)
		}
		if ok {
			sub.buf = append(sub.buf, r.ev)
		}
	}
	if err := rows.Err(); err != nil {
		sub.buf = sub.buf[:0]
		return sub.s.dbError("subscription read", err)
	}
	sub.scanned = last
	if len(sub.buf) == readPage {
		sub.scanned = int64(sub.buf[len(sub.buf)-1].Position)
	}
	if sub.filter.StreamPrefix == "" && len(sub.types) == 0 {
		// Unfiltered, the page holds every position after sub.pos up to
		// scanned: a hole is data loss (GapError). Deliver what comes
		// before it; the next read, starting there, fails.
		k := contiguous(sub.buf, sub.pos)
		if k < len(sub.buf) || sub.pos+int64(k) < sub.scanned {
			if k == 0 {
				sub.buf = sub.buf[:0]
				return &GapError{Schema: sub.s.cfg.Schema, Missing: rewind.Position(sub.pos + 1)}
			}
			sub.buf, sub.scanned = sub.buf[:k], sub.pos+int64(k)
		}
	}
	return nil
}

// Position returns the last position delivered or skipped.
func (sub *subscription) Position() rewind.Position { return rewind.Position(sub.pos) }

// Epoch returns the log epoch the subscription reads in, always 1 (see
// rewind.EpochReporter and logEpoch).
func (sub *subscription) Epoch() uint64 { return logEpoch }

// Close releases the subscription.
func (sub *subscription) Close() error {
	sub.closed = true
	sub.buf = nil
	return nil
}

// listen keeps a connection LISTENing on the store's channel and wakes the
// subscriptions at each notification, and after each reconnection (what
// was appended meanwhile was not notified). Without it subscriptions still
// poll every PollInterval.
func (s *Store) listen(ctx context.Context, cc *pgx.ConnConfig) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cc)
		if ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("pgstore: listener connection lost; subscriptions poll until it is back",
			"schema", s.cfg.Schema, "err", err, "retry_in", backoff)
		s.signal()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, cc *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+quoteIdent(channel(s.cfg.Schema))); err != nil {
		return err
	}
	s.signal()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.signal()
	}
}
