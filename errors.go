package rewind

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors. Every error rewind returns matches one of them with
// errors.Is; the typed errors below carry the data a caller needs.
var (
	ErrInvalidArgument      = errors.New("rewind: invalid argument")
	ErrLimitExceeded        = errors.New("rewind: limit exceeded")
	ErrWrongExpectedVersion = errors.New("rewind: wrong expected version")
	ErrIdempotencyConflict  = errors.New("rewind: event id already used for a different event")
	ErrStreamNotFound       = errors.New("rewind: stream not found")
	ErrTruncated            = errors.New("rewind: position no longer in the log")
	ErrCorruption           = errors.New("rewind: corruption")
	ErrLocked               = errors.New("rewind: data directory in use")
	ErrClosed               = errors.New("rewind: closed")
	// ErrFailed: a write or fsync of the store failed (disk full, I/O
	// error). The store refuses every further write until it is reopened;
	// the error wraps the operating system's cause, so errors.Is(err,
	// syscall.ENOSPC) works. It is not transient: retrying against the same
	// store fails the same way.
	ErrFailed = errors.New("rewind: store failed")
	// ErrOutcomeUnknown: an append may or may not have been recorded (its
	// bytes reached the file but could not be made durable nor removed).
	// Retry with the same event ids once the store is available again: the
	// retry either returns the original positions or appends the events.
	ErrOutcomeUnknown = errors.New("rewind: outcome unknown")
	// ErrEpochChanged: recovery cut the log back below a position the
	// caller has already seen, so positions after it were given to other
	// events. Resuming from that position would silently mix histories.
	ErrEpochChanged = errors.New("rewind: log epoch changed")
	// ErrUnauthenticated: a server request had no token, or an unknown or
	// revoked one.
	ErrUnauthenticated = errors.New("rewind: unauthenticated")
	// ErrPermissionDenied: the request's token lacks the scope it needs.
	ErrPermissionDenied = errors.New("rewind: permission denied")
	// ErrAlreadyExists: something to be created under a name (a token)
	// already exists under that name. Nothing was created.
	ErrAlreadyExists = errors.New("rewind: already exists")
	// ErrFailedPrecondition: the data is in a state the operation cannot
	// work on until someone changes it, and retrying as it is fails the
	// same way: a PostgreSQL store's schema older than the binary (run
	// rewind migrate) or newer (run a newer rewind). Nothing was changed.
	ErrFailedPrecondition = errors.New("rewind: failed precondition")
)

// Code is a stable, machine-readable error class, used in JSON output, exit
// statuses and API error codes.
type Code string

// The error codes.
const (
	CodeOK                   Code = "ok"
	CodeInvalidArgument      Code = "invalid_argument"
	CodeLimitExceeded        Code = "limit_exceeded"
	CodeWrongExpectedVersion Code = "wrong_expected_version"
	CodeIdempotencyConflict  Code = "idempotency_conflict"
	CodeNotFound             Code = "not_found"
	CodeTruncated            Code = "out_of_range"
	CodeCorruption           Code = "corruption"
	CodeLocked               Code = "locked"
	CodeClosed               Code = "unavailable"
	CodeFailed               Code = "failed"
	CodeOutcomeUnknown       Code = "outcome_unknown"
	CodeEpochChanged         Code = "epoch_changed"
	CodeUnauthenticated      Code = "unauthenticated"
	CodePermissionDenied     Code = "permission_denied"
	CodeAlreadyExists        Code = "already_exists"
	CodeFailedPrecondition   Code = "failed_precondition"
	CodeCanceled             Code = "canceled"
	CodeInternal             Code = "internal"
)

var codes = []struct {
	err  error
	code Code
}{
	{ErrInvalidArgument, CodeInvalidArgument},
	{ErrLimitExceeded, CodeLimitExceeded},
	{ErrWrongExpectedVersion, CodeWrongExpectedVersion},
	{ErrIdempotencyConflict, CodeIdempotencyConflict},
	{ErrStreamNotFound, CodeNotFound},
	{ErrTruncated, CodeTruncated},
	{ErrCorruption, CodeCorruption},
	{ErrLocked, CodeLocked},
	// Before ErrClosed: a failed store's errors may also say it is closed.
	{ErrOutcomeUnknown, CodeOutcomeUnknown},
	{ErrFailed, CodeFailed},
	{ErrEpochChanged, CodeEpochChanged},
	{ErrClosed, CodeClosed},
	{ErrUnauthenticated, CodeUnauthenticated},
	{ErrPermissionDenied, CodePermissionDenied},
	{ErrAlreadyExists, CodeAlreadyExists},
	{ErrFailedPrecondition, CodeFailedPrecondition},
}

// CodeOf returns the code of err: CodeOK for nil, CodeInternal for an error
// that matches no sentinel.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return CodeCanceled
	}
	return CodeInternal
}

// ValidationError says which input was rejected and why. It matches
// ErrInvalidArgument.
type ValidationError struct {
	Field  string // what was wrong: "stream", "event type", "events[3].data"…
	Value  string // the offending value, shortened, when it helps
	Reason string // what the value must be
}

func (e *ValidationError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("rewind: invalid %s %q: %s", e.Field, shorten(e.Value), e.Reason)
	}
	return fmt.Sprintf("rewind: invalid %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidArgument }

// LimitError says which limit an input exceeded. It matches ErrLimitExceeded.
type LimitError struct {
	Limit string // "event size", "batch size", "batch bytes"…
	Max   int64
	Got   int64
	Hint  string // what to do instead
}

func (e *LimitError) Error() string {
	msg := fmt.Sprintf("rewind: %s %d exceeds the limit of %d", e.Limit, e.Got, e.Max)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// Is makes errors.Is(err, ErrLimitExceeded) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// WrongExpectedVersionError is returned when an append's or delete's
// expected version does not hold. Nothing was written.
type WrongExpectedVersionError struct {
	Stream   string
	Expected ExpectedVersion
	// Actual is the stream's current last version.
	Actual uint64
	// Exists says whether the stream has readable events.
	Exists bool
}

func (e *WrongExpectedVersionError) Error() string {
	state := "has no readable events"
	if e.Exists {
		state = "exists"
	}
	return fmt.Sprintf("rewind: wrong expected version for stream %q: expected %s, actual version %d (stream %s); "+
		"read the stream again and retry with the version you saw", e.Stream, e.Expected, e.Actual, state)
}

// Is makes errors.Is(err, ErrWrongExpectedVersion) true.
func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// IdempotencyConflictError is returned when an append reuses an event id
// that is already in the log for a different event, or retries only part of
// an earlier batch. Nothing was written.
type IdempotencyConflictError struct {
	EventID  string
	Position Position // where the id is already recorded
	Reason   string
}

func (e *IdempotencyConflictError) Error() string {
	return fmt.Sprintf("rewind: event id %s is already recorded at position %d: %s; give new events new ids",
		e.EventID, e.Position, e.Reason)
}

// Is makes errors.Is(err, ErrIdempotencyConflict) true.
func (e *IdempotencyConflictError) Is(target error) bool { return target == ErrIdempotencyConflict }

// TruncatedError is returned when a read or subscription asks for positions
// that retention has already removed. Resume from FirstAvailable-1 to
// accept the loss explicitly.
type TruncatedError struct {
	Requested      Position
	FirstAvailable Position
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("rewind: position %d is no longer in the log (retention removed it); "+
		"the first available position is %d", e.Requested, e.FirstAvailable)
}

// Is makes errors.Is(err, ErrTruncated) true.
func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }

// CorruptionError locates a record whose checksum or framing is wrong. Such
// a record is never served.
type CorruptionError struct {
	Segment  string // file name
	Offset   int64  // byte offset of the record in the segment
	Position Position
	Reason   string
}

func (e *CorruptionError) Error() string {
	pos := ""
	if e.Position != 0 {
		pos = fmt.Sprintf(" (position %d)", e.Position)
	}
	return fmt.Sprintf("rewind: corruption in segment %s at offset %d%s: %s", e.Segment, e.Offset, pos, e.Reason)
}

// Is makes errors.Is(err, ErrCorruption) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorruption }

func shorten(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// FailedError is the error of a store whose write or fsync failed. Op says
// what failed; Cause is the operating system's error, which errors.Is and
// errors.As reach through Unwrap. It matches ErrFailed.
type FailedError struct {
	Op    string // "fsync segment 00000000000000000001.seg", "create segment"…
	Cause error
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("rewind: store failed: %s: %v; it refuses writes until it is reopened "+
		"(free disk space or repair the device, then restart it)", e.Op, e.Cause)
}

// IsDiskFailure reports whether err comes from a full disk, an exhausted
// quota or an I/O error of the device: a failure of the disk under the
// store, which the caller reports as ErrFailed.
func IsDiskFailure(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EIO)
}

// Is makes errors.Is(err, ErrFailed) true.
func (e *FailedError) Is(target error) bool { return target == ErrFailed }

// Unwrap returns the cause.
func (e *FailedError) Unwrap() error { return e.Cause }

// EpochError is returned when a read or subscription resumes after a
// position that recovery has since cut from the log: the positions after
// the cut now belong to other events. It matches ErrEpochChanged.
type EpochError struct {
	// After is the position the caller resumed from, seen in epoch Epoch.
	After Position
	Epoch uint64
	// Current is the log's epoch now; CutAt is the first position that the
	// cut starting a newer epoch removed (at or before After).
	Current uint64
	CutAt   Position
}

func (e *EpochError) Error() string {
	if e.CutAt == 0 {
		return fmt.Sprintf("rewind: position %d was seen in log epoch %d, but this log is only at epoch %d: it is not "+
			"the log that position was read from (a restored backup, another data directory?); rebuild from the "+
			"start", e.After, e.Epoch, e.Current)
	}
	if e.Epoch == e.Current {
		// No recovery of the store cut it (a PostgreSQL store never
		// does): the log lost positions another way.
		return fmt.Sprintf("rewind: position %d was seen in log epoch %d, but the log now ends at position %d, "+
			"still in epoch %d: positions that were read are gone (a database or data directory restored from an "+
			"older backup?), and the positions given next will hold other events; rebuild from an earlier position "+
			"or resume from %d to accept the new history", e.After, e.Epoch, e.CutAt-1, e.Current, e.CutAt-1)
	}
	return fmt.Sprintf("rewind: position %d was seen in log epoch %d, but recovery cut the log at position %d since "+
		"(now epoch %d): the events after %d are not the ones seen before; rebuild from an earlier position or "+
		"resume from %d to accept the new history", e.After, e.Epoch, e.CutAt, e.Current, e.CutAt-1, e.CutAt-1)
}

// Is makes errors.Is(err, ErrEpochChanged) true.
func (e *EpochError) Is(target error) bool { return target == ErrEpochChanged }
