package projection

import (
	"errors"
	"fmt"

	"github.com/rewindhq/rewind"
)

// Sentinel errors of the package. An *Error matches one of them and the
// rewind sentinel of the same class (see rewind.CodeOf).
var (
	// ErrBadDefinition: a Projection or Config does not validate (a bad
	// name, a version below 1, no handlers…). Nothing was written (code
	// invalid_argument).
	ErrBadDefinition = errors.New("projection: bad definition")
	// ErrNotFound: no projection, or no version of it, has that name or
	// number (code not_found).
	ErrNotFound = errors.New("projection: not found")
	// ErrStaleVersion: a version older than the serving one was asked to
	// run or to be swapped in. Nothing changed (code invalid_argument).
	ErrStaleVersion = errors.New("projection: version older than the serving one")
	// ErrBehind: the version to swap in is more than SwapOptions.MaxLag
	// positions behind the serving one; let it catch up first. Nothing
	// changed (code invalid_argument).
	ErrBehind = errors.New("projection: version too far behind the serving one")
	// ErrServing: the serving version cannot be dropped (swap another in
	// first). Nothing changed (code invalid_argument).
	ErrServing = errors.New("projection: version is serving")
	// ErrSwapInProgress: another swap of the projection is under way; run
	// Swap with its target version to finish it. Nothing changed (code
	// invalid_argument).
	ErrSwapInProgress = errors.New("projection: swap in progress")
	// ErrRetired is what Run returns once its version was swapped out: it
	// stopped at the swap position and will never advance again.
	ErrRetired = errors.New("projection: version retired")
	// ErrConcurrentRunner: another runner advanced the same version's
	// checkpoint; only one runner per version may run (code failed).
	ErrConcurrentRunner = errors.New("projection: another runner moved the checkpoint")
	// ErrUndecodable marks a handler error meaning the event's payload could
	// not be decoded: the event is parked with kind "undecodable". Decode
	// returns errors that match it.
	ErrUndecodable = errors.New("projection: undecodable event")
)

// Error is the typed error of the package: Op and Name say what was asked,
// Err is one of the sentinels above and Reason says what to do.
type Error struct {
	Op      string // "run", "swap", "drop", "status"…
	Name    string
	Version int
	Err     error
	Reason  string
}

func (e *Error) Error() string {
	s := "projection: " + e.Op
	if e.Name != "" {
		s += fmt.Sprintf(" %q", e.Name)
	}
	if e.Version != 0 {
		s += fmt.Sprintf(" version %d", e.Version)
	}
	s += ": " + e.Err.Error()[len("projection: "):]
	if e.Reason != "" {
		s += "; " + e.Reason
	}
	return s
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the rewind sentinel of the error's class.
func (e *Error) Is(target error) bool {
	switch e.Err {
	case ErrBadDefinition, ErrStaleVersion, ErrBehind, ErrServing, ErrSwapInProgress:
		return target == rewind.ErrInvalidArgument
	case ErrNotFound:
		return target == rewind.ErrStreamNotFound
	case ErrConcurrentRunner:
		return target == rewind.ErrFailed
	}
	return false
}
