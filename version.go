package rewind

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ExpectedVersion is the optimistic-concurrency condition of an append: the
// append writes nothing and fails with a *WrongExpectedVersionError unless
// the stream is in the expected state. Non-negative values are exact
// versions; the negative values are the named conditions below.
type ExpectedVersion int64

const (
	// Any accepts the stream in any state.
	Any ExpectedVersion = -1
	// NoStream requires that the stream has no readable events: it was never
	// written or it was deleted.
	NoStream ExpectedVersion = -2
	// StreamExists requires that the stream has readable events.
	StreamExists ExpectedVersion = -3
)

// Exactly requires the stream's last version to be v. Exactly(0) means the
// stream was never written.
func Exactly(v uint64) ExpectedVersion { return ExpectedVersion(v) }

// String returns "any", "no-stream", "stream-exists" or the version number.
func (e ExpectedVersion) String() string {
	switch {
	case e == Any:
		return "any"
	case e == NoStream:
		return "no-stream"
	case e == StreamExists:
		return "stream-exists"
	case e >= 0:
		return strconv.FormatInt(int64(e), 10)
	}
	return fmt.Sprintf("invalid(%d)", int64(e))
}

// Valid reports whether e is one of the named conditions or an exact version.
func (e ExpectedVersion) Valid() bool { return e >= StreamExists }

// ParseExpectedVersion parses what String returns.
func ParseExpectedVersion(s string) (ExpectedVersion, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "any":
		return Any, nil
	case "no-stream", "nostream":
		return NoStream, nil
	case "stream-exists", "exists":
		return StreamExists, nil
	}
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 63)
	if errors.Is(err, strconv.ErrRange) {
		return 0, &ValidationError{Field: "expected version", Value: s,
			Reason: fmt.Sprintf("is too large: the largest version is %d", int64(math.MaxInt64))}
	}
	if err != nil {
		return 0, &ValidationError{Field: "expected version", Value: s,
			Reason: `must be "any", "no-stream", "stream-exists" or a version number`}
	}
	return ExpectedVersion(v), nil
}

// Check returns a *WrongExpectedVersionError when a stream at version
// (existing or not) is not in the state e expects, and nil when it is.
// Stores call it under their stream's lock.
func (e ExpectedVersion) Check(stream string, version uint64, exists bool) error {
	ok := true
	switch e {
	case Any:
	case NoStream:
		ok = !exists
	case StreamExists:
		ok = exists
	default:
		ok = uint64(e) == version
	}
	if !ok {
		return &WrongExpectedVersionError{Stream: stream, Expected: e, Actual: version, Exists: exists}
	}
	return nil
}
