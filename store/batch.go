package store

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

var _ rewind.BatchReader = (*Store)(nil)

// ReadBatches returns a cursor that reads the log from opts.From to
// opts.To in batches the caller owns, verifying every checksum (see
// rewind.BatchReader). In the steady state a batch costs no allocation:
// records are decoded in place into the caller's slots, stream names and
// types are interned, and a slot's metadata map is reused (its values are
// still copied, one allocation each).
func (s *Store) ReadBatches(ctx context.Context, opts rewind.BatchReadOptions) (rewind.BatchCursor, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := validateFilter(&opts.Filter); err != nil {
		return nil, err
	}
	last := rewind.Position(s.log.Last())
	to := opts.To
	if to == 0 || to > last {
		to = last
	}
	from := opts.From
	if from > last { // nothing to read yet: an empty cursor, not an error
		return &batchCursor{s: s, from: from, to: to, pos: from - 1, in: newInterner()}, nil
	}
	from, err := s.startPosition(from, time.Time{}, false)
	if err != nil {
		return nil, err
	}
	in := newInterner()
	in.reuseMaps = true
	return &batchCursor{s: s, r: s.log.NewReader(uint64(from)), from: from, to: to, pos: from - 1,
		filter: opts.Filter, in: in}, nil
}

// batchCursor is the embedded store's rewind.BatchCursor.
type batchCursor struct {
	s        *Store
	r        *eventlog.Reader // nil when there is nothing to read
	from, to rewind.Position
	pos      rewind.Position // last position read
	filter   rewind.Filter
	in       *interner
	recs     []eventlog.Record
}

func (c *batchCursor) Position() rewind.Position { return c.pos }

func (c *batchCursor) Close() error {
	if c.r != nil {
		c.r.Close()
		c.r = nil
	}
	return nil
}

func (c *batchCursor) NextBatch(ctx context.Context, buf []rewind.RecordedEvent) ([]rewind.RecordedEvent, error) {
	buf = buf[:0]
	if cap(buf) == 0 {
		return buf, &rewind.ValidationError{Field: "batch buffer", Reason: "must have a capacity of at least 1"}
	}
	if cap(c.recs) < cap(buf) {
		c.recs = make([]eventlog.Record, 0, cap(buf))
	}
	for {
		if c.r == nil || c.pos >= c.to {
			return buf, io.EOF
		}
		if err := ctx.Err(); err != nil {
			return buf, err
		}
		if err := c.s.checkOpen(); err != nil {
			return buf, err
		}
		// One read of the log per call: the payloads of a read are only
		// valid until the next, and the events handed out alias them.
		want := uint64(min(uint64(cap(buf)), uint64(c.to-c.pos)))
		recs, err := c.r.NextBatch(c.recs[:0:want])
		if err == io.EOF {
			// The log ends before To: retention or a recovery cut took
			// positions back since the cursor was made.
			return buf, fmt.Errorf("%w: the log ends at position %d, before the cursor's end %d", rewind.ErrTruncated, c.pos, c.to)
		}
		if err != nil {
			return buf, err
		}
		if buf, err = c.decodeAll(recs, buf); err != nil {
			return buf, err
		}
		if len(buf) > 0 {
			return buf, nil
		}
	}
}

// decodeAll appends the events of recs that the filter keeps to buf, as
// decodeRecord decodes each, in one loop.
func (c *batchCursor) decodeAll(recs []eventlog.Record, buf []rewind.RecordedEvent) ([]rewind.RecordedEvent, error) {
	filtered := c.filter.StreamPrefix != "" || len(c.filter.Types) > 0
	in := c.in
	for i := range recs {
		rec := &recs[i]
		buf = buf[:len(buf)+1]
		ev := &buf[len(buf)-1]
		if rec.Kind != kindEvent && rec.Kind != kindTombstone {
			c.pos = rewind.Position(rec.Position) - 1
			return buf[:len(buf)-1], &rewind.CorruptionError{Position: rewind.Position(rec.Position), Reason: fmt.Sprintf("unknown record kind %d", rec.Kind)}
		}
		if err := decodeEnvelope(rec.Payload, ev, in); err != nil {
			c.pos = rewind.Position(rec.Position) - 1
			return buf[:len(buf)-1], &rewind.CorruptionError{Position: rewind.Position(rec.Position), Reason: err.Error()}
		}
		ev.Position = rewind.Position(rec.Position)
		ev.RecordedAt = in.recordedAt(rec.Timestamp)
		if filtered && !c.filter.Match(ev) {
			buf = buf[:len(buf)-1]
		}
	}
	c.pos = rewind.Position(recs[len(recs)-1].Position)
	return buf, nil
}
