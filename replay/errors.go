package replay

import (
	"errors"
	"fmt"

	"github.com/rewindhq/rewind"
)

// What was wrong with a replay's input. An *Error matches one of these and
// rewind.ErrInvalidArgument with errors.Is.
var (
	// ErrBadBound: a window bound (or an as-of point) is not a position nor
	// a time, or gives both.
	ErrBadBound = errors.New("replay: bad bound")
	// ErrFromAfterTo: the window starts after it ends.
	ErrFromAfterTo = errors.New("replay: window starts after it ends")
	// ErrBadFilter: a stream or type filter is malformed.
	ErrBadFilter = errors.New("replay: bad filter")
	// ErrBadPacing: a speed or rate is not a positive number, or both are given.
	ErrBadPacing = errors.New("replay: bad pacing")
)

// ErrStop is what a Handler returns to end a replay early on purpose: Run
// then returns what was delivered before it, with Result.Stopped set, and
// no error.
var ErrStop = errors.New("replay: stop")

// Error says which input of a replay was rejected and why. Nothing was read
// or written.
type Error struct {
	Field  string // "from", "to", "streams", "types", "speed", "rate", "as-of"…
	Value  string // the offending value, when it helps
	Reason string // what the value must be
	Err    error  // ErrBadBound, ErrFromAfterTo, ErrBadFilter or ErrBadPacing
}

func (e *Error) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("replay: invalid %s %q: %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("replay: invalid %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, rewind.ErrInvalidArgument) true, so that the
// error has the code invalid_argument (rewind.CodeOf).
func (e *Error) Is(target error) bool { return target == rewind.ErrInvalidArgument }

// Unwrap returns the kind of mistake (ErrBadBound…).
func (e *Error) Unwrap() error { return e.Err }
