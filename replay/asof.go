package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/rewindhq/rewind"
)

// Point is where an as-of read stops: exactly one of a stream version, a
// time or a global position.
type Point struct {
	// Version keeps the stream's events up to this version, inclusive. It
	// must not be beyond the stream's last version.
	Version uint64
	// Time keeps the events recorded at or before it (RecordedAt). A time
	// in the future keeps every event acknowledged when the read starts.
	Time time.Time
	// Position keeps the events at or before this global position. A
	// position beyond the end keeps every event acknowledged when the read
	// starts.
	Position rewind.Position
}

func (p Point) validate() error {
	set := 0
	for _, b := range []bool{p.Version != 0, !p.Time.IsZero(), p.Position != 0} {
		if b {
			set++
		}
	}
	if set != 1 {
		return &Error{Field: "as-of", Err: ErrBadBound, Reason: "give exactly one of a version, a time or a position"}
	}
	return nil
}

// keeps reports whether ev is at or before the point. Along a stream
// versions, positions and recording times all grow, so the first event it
// rejects ends the read.
func (p Point) keeps(ev *rewind.RecordedEvent) bool {
	switch {
	case p.Version != 0:
		return ev.Version <= p.Version
	case p.Position != 0:
		return ev.Position <= p.Position
	default:
		return !ev.RecordedAt.After(p.Time)
	}
}

// AsOfResult says what an as-of read folded.
type AsOfResult struct {
	Stream string `json:"stream"`
	// Events counts the events folded.
	Events int `json:"events"`
	// FirstVersion and LastVersion bound them (0 when there were none).
	// A FirstVersion above 1 means earlier versions are not readable: the
	// stream was deleted and written again, or retention removed them.
	FirstVersion uint64 `json:"first_version"`
	LastVersion  uint64 `json:"last_version"`
	// LastPosition is the global position of the last event folded.
	LastPosition rewind.Position `json:"last_position"`
}

// asOfPage is how many events an as-of read asks the store for at once.
const asOfPage = 1000

// Fold folds the readable events of stream up to the point into a state,
// in version order, starting from initial: the stream's state as of that
// version, time or position, given the fold of your aggregate. It reads the
// stream, not the whole log, a page at a time.
//
// A point that does not validate fails with an *Error; a Version beyond
// the stream's last fails with an *Error (ErrBadBound) that names the last.
// A stream that does not exist, or is deleted now, fails with
// rewind.ErrStreamNotFound (as-of of deleted streams needs a whole-log
// read; Run with Window.Streams does that). An error of fn ends the fold
// and is returned.
func Fold[S any](ctx context.Context, s rewind.Store, stream string, at Point, initial S,
	fn func(S, *rewind.RecordedEvent) (S, error)) (S, AsOfResult, error) {
	state, res := initial, AsOfResult{Stream: stream}
	if err := at.validate(); err != nil {
		return state, res, err
	}
	info, err := s.StreamInfo(ctx, stream)
	if err != nil {
		return state, res, err
	}
	if at.Version > info.Version {
		return state, res, &Error{Field: "as-of version", Value: fmt.Sprint(at.Version), Err: ErrBadBound,
			Reason: fmt.Sprintf("is beyond the last version of stream %q, %d", stream, info.Version)}
	}
	last := info.Version // appends that come during the read are not folded
	for next := uint64(0); ; {
		page, err := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{From: next, Limit: asOfPage})
		if err != nil {
			return state, res, err
		}
		for i := range page {
			ev := &page[i]
			if ev.Version > last || !at.keeps(ev) {
				return state, res, nil
			}
			if state, err = fn(state, ev); err != nil {
				return state, res, fmt.Errorf("replay: as-of fold of stream %q failed at version %d: %w", stream, ev.Version, err)
			}
			if res.Events == 0 {
				res.FirstVersion = ev.Version
			}
			res.Events++
			res.LastVersion, res.LastPosition = ev.Version, ev.Position
		}
		if len(page) < asOfPage {
			return state, res, nil
		}
		next = page[len(page)-1].Version + 1
	}
}

// AsOf returns the readable events of stream up to the point, in version
// order (see Fold).
func AsOf(ctx context.Context, s rewind.Store, stream string, at Point) ([]rewind.RecordedEvent, AsOfResult, error) {
	return Fold(ctx, s, stream, at, []rewind.RecordedEvent(nil),
		func(evs []rewind.RecordedEvent, ev *rewind.RecordedEvent) ([]rewind.RecordedEvent, error) {
			return append(evs, *ev), nil // ReadStream's events belong to the caller already
		})
}
