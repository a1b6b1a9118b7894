package replay

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
)

// Bound is one end of a window: a global position or a time, or neither
// (the start or the end of the log).
type Bound struct {
	// Position is a global position of the log.
	Position rewind.Position
	// Time is compared with the events' RecordedAt, the store's clock when
	// it wrote them, which never decreases along the log.
	Time time.Time
}

// AtPosition is the bound at position p.
func AtPosition(p rewind.Position) Bound { return Bound{Position: p} }

// AtTime is the bound at time t.
func AtTime(t time.Time) Bound { return Bound{Time: t} }

// IsZero reports whether the bound is unset.
func (b Bound) IsZero() bool { return b.Position == 0 && b.Time.IsZero() }

// String returns the bound as ParseBound reads it.
func (b Bound) String() string {
	if !b.Time.IsZero() {
		return b.Time.Format(time.RFC3339Nano)
	}
	return b.Position.String()
}

// ParseBound reads a bound: a decimal position (1000) or an RFC 3339 time
// with an optional fraction of a second (2026-11-23T10:00:00Z,
// 2026-11-23T10:00:00.123456789+01:00). The empty string is the zero
// bound. Position 0 and the zero time (0001-01-01T00:00:00Z, in any
// offset) are refused with ErrBadBound: they are the zero Bound, which
// means "no bound", so a --to of either would silently replay to the end
// of the log.
func ParseBound(field, s string) (Bound, error) {
	if s == "" {
		return Bound{}, nil
	}
	if p, err := strconv.ParseUint(s, 10, 64); err == nil {
		if p == 0 {
			return Bound{}, &Error{Field: field, Value: s, Err: ErrBadBound,
				Reason: "positions start at 1; leave the bound out for the start or the end of the log"}
		}
		return AtPosition(rewind.Position(p)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.IsZero() {
			return Bound{}, &Error{Field: field, Value: s, Err: ErrBadBound, Reason: ZeroTimeReason}
		}
		return AtTime(t), nil
	}
	return Bound{}, &Error{Field: field, Value: s, Err: ErrBadBound,
		Reason: "must be a position (1000) or an RFC 3339 time (2026-11-23T10:00:00Z)"}
}

// ZeroTimeReason says why the zero time (0001-01-01T00:00:00Z) is refused
// where a time bounds a window or a group: Go's zero time.Time means "no
// bound", so accepting it would silently drop the bound, and no event can
// be recorded before it.
const ZeroTimeReason = "the zero time 0001-01-01T00:00:00Z is not a bound (it would mean none: no event " +
	"is recorded before it); give a later time, or leave the bound out for the start or the end of the log"

// Window is a bounded range of the whole log to replay, with filters.
//
// Both ends are inclusive: From is the first position (or the first event
// recorded at or after From.Time), To the last position (or the last event
// recorded at or before To.Time). A zero From is the first position the log
// holds; a zero To is the last position acknowledged when the replay
// starts. A replay never waits for events to come: a To beyond the end is
// cut at the last position acknowledged when the replay starts, and Result
// says where it was cut.
type Window struct {
	From, To Bound
	// Streams keeps the events of these streams. Empty keeps all streams.
	Streams []string
	// StreamPrefix keeps the events of streams whose name starts with it,
	// such as a category "orders-". It cannot be combined with Streams.
	StreamPrefix string
	// Types keeps events of these types. Empty keeps all types, including
	// the records of soft deletes (rewind.TypeStreamDeleted).
	Types []string
}

// Validate checks the window without reading anything. Mistakes are
// reported as an *Error.
func (w *Window) Validate() error {
	for _, b := range []struct {
		field string
		b     Bound
	}{{"from", w.From}, {"to", w.To}} {
		if b.b.Position != 0 && !b.b.Time.IsZero() {
			return &Error{Field: b.field, Err: ErrBadBound, Reason: "give either a position or a time, not both"}
		}
	}
	switch {
	case w.From.Position != 0 && w.To.Position != 0 && w.From.Position > w.To.Position:
		return &Error{Field: "window", Value: fmt.Sprintf("%d..%d", w.From.Position, w.To.Position), Err: ErrFromAfterTo,
			Reason: "from must not be after to (both are inclusive; from = to replays one position)"}
	case !w.From.Time.IsZero() && !w.To.Time.IsZero() && w.From.Time.After(w.To.Time):
		return &Error{Field: "window", Value: w.From.String() + ".." + w.To.String(), Err: ErrFromAfterTo,
			Reason: "from must not be after to (both are inclusive)"}
	}
	if len(w.Streams) > 0 && w.StreamPrefix != "" {
		return &Error{Field: "streams", Err: ErrBadFilter, Reason: "give either stream names or a stream prefix, not both"}
	}
	for i, s := range w.Streams {
		if s == "" {
			return &Error{Field: fmt.Sprintf("streams[%d]", i), Err: ErrBadFilter, Reason: "must not be empty"}
		}
	}
	for i, t := range w.Types {
		if t == "" {
			return &Error{Field: fmt.Sprintf("types[%d]", i), Err: ErrBadFilter, Reason: "must not be empty"}
		}
	}
	return nil
}

// filter is the part of the window's filter a store applies itself: the
// prefix, the types, and for stream names their longest common prefix.
func (w *Window) filter() rewind.Filter {
	f := rewind.Filter{StreamPrefix: w.StreamPrefix, Types: w.Types}
	if len(w.Streams) > 0 {
		p := w.Streams[0]
		for _, s := range w.Streams[1:] {
			for !strings.HasPrefix(s, p) {
				p = p[:len(p)-1]
			}
		}
		f.StreamPrefix = p
	}
	return f
}

// resolve turns the window's bounds into positions, from and to inclusive
// (from > to when the window is empty), against the log as it stands now.
func resolve(ctx context.Context, s rewind.Store, w *Window) (from, to rewind.Position, err error) {
	first, last, err := logBounds(ctx, s)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case !w.From.Time.IsZero():
		if from, err = firstAt(ctx, s, w.From.Time, last); err != nil {
			return 0, 0, err
		}
	case w.From.Position != 0:
		from = w.From.Position
	default:
		from = first
	}
	to = last
	switch {
	case !w.To.Time.IsZero():
		after, err := firstAt(ctx, s, w.To.Time.Add(time.Nanosecond), last)
		if err != nil {
			return 0, 0, err
		}
		to = after - 1
	case w.To.Position != 0:
		to = min(w.To.Position, last)
	}
	return from, to, nil
}

// logBounds returns the first position the log holds and the last
// acknowledged one, through the store's optional interfaces.
func logBounds(ctx context.Context, s rewind.Store) (first, last rewind.Position, err error) {
	if d, ok := s.(rewind.Describer); ok {
		info, err := d.Describe(ctx)
		if err != nil {
			return 0, 0, err
		}
		return max(info.FirstPosition, 1), info.LastPosition, nil
	}
	if lp, ok := s.(rewind.LastPositioner); ok {
		last, err := lp.LastPosition(ctx)
		return 1, last, err
	}
	return 0, 0, fmt.Errorf("replay: the store (%T) cannot tell where its log ends (it has neither LastPosition nor Describe)", s)
}

// firstAt returns the position of the first event recorded at or after t,
// or last+1 when there is none up to last.
func firstAt(ctx context.Context, s rewind.Store, t time.Time, last rewind.Position) (rewind.Position, error) {
	for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{FromTime: t, Limit: 1}) {
		if err != nil {
			return 0, err
		}
		return min(ev.Position, last+1), nil
	}
	return last + 1, nil
}
