package consumer

import (
	"errors"
	"fmt"
	"time"

	"github.com/rewindhq/rewind"
)

// Sentinel errors of the consumer engine. Each also matches the rewind
// sentinel whose code a server or CLI reports (see rewind.CodeOf).
var (
	// ErrGroupNotFound: no group has that name (code not_found).
	ErrGroupNotFound = errors.New("consumer: group not found")
	// ErrGroupExists: a group of that name exists already (code already_exists).
	ErrGroupExists = errors.New("consumer: group already exists")
	// ErrStaleDelivery: the delivery was acked, nak'ed, timed out or
	// released already; the event may have gone to another member since.
	// Nothing changed (code invalid_argument).
	ErrStaleDelivery = errors.New("consumer: stale delivery")
	// ErrForeignDelivery: the delivery belongs to another member. Nothing
	// changed (code invalid_argument).
	ErrForeignDelivery = errors.New("consumer: delivery of another member")
	// ErrUnknownDelivery: no delivery of the group ever had that id.
	// Nothing changed (code invalid_argument).
	ErrUnknownDelivery = errors.New("consumer: unknown delivery id")
	// ErrMemberLeft: the member has left the group or its group is gone
	// (code unavailable).
	ErrMemberLeft = errors.New("consumer: member left the group")
	// ErrGroupFailed: the group stopped because its state could not be
	// written (the store failed, or another engine wrote the group's state
	// stream). Reopen the engine (code failed).
	ErrGroupFailed = errors.New("consumer: group failed")
	// ErrLogDamaged: the group's reader met a damaged record of the log
	// (a *rewind.CorruptionError). The group delivered every event before
	// it and delivers nothing after it until it is reset past it, or the
	// damaged segment is restored from a backup and the engine reopened
	// (code corruption).
	ErrLogDamaged = errors.New("consumer: the log is damaged")
	// ErrGroupComplete: the member's bounded group has delivered its whole
	// window (FetchUntilComplete). Not a failure: there is nothing more.
	ErrGroupComplete = errors.New("consumer: group complete")
)

// Error is the typed error of the engine: Op and Group say what was asked,
// Err is one of the sentinels above and Reason says what to do. It matches
// both its sentinel and the rewind sentinel of the same class.
type Error struct {
	Op     string // "ack", "join", "create"…
	Group  string
	ID     DeliveryID // the delivery in question, if any
	Err    error
	Reason string
}

func (e *Error) Error() string {
	s := "consumer: " + e.Op
	if e.Group != "" {
		s += fmt.Sprintf(" group %q", e.Group)
	}
	if e.ID != 0 {
		s += fmt.Sprintf(" delivery %d", e.ID)
	}
	s += ": " + e.Err.Error()[len("consumer: "):]
	if e.Reason != "" {
		s += "; " + e.Reason
	}
	return s
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the rewind sentinel of the error's class, so that
// rewind.CodeOf gives its code.
func (e *Error) Is(target error) bool {
	switch e.Err {
	case ErrGroupNotFound:
		return target == rewind.ErrStreamNotFound
	case ErrGroupExists:
		return target == rewind.ErrAlreadyExists
	case ErrStaleDelivery, ErrForeignDelivery, ErrUnknownDelivery:
		return target == rewind.ErrInvalidArgument
	case ErrMemberLeft:
		return target == rewind.ErrClosed
	case ErrGroupFailed:
		return target == rewind.ErrFailed
	case ErrLogDamaged:
		return target == rewind.ErrCorruption
	}
	return false
}

func notFound(op, group string) error {
	return &Error{Op: op, Group: group, Err: ErrGroupNotFound, Reason: "list the groups to see their names"}
}

// ParkError is what a handler returns to park its event at once (term),
// with Reason recorded as the parked event's reason. Make one with Park.
type ParkError struct {
	Reason string
	Err    error
}

func (e *ParkError) Error() string {
	if e.Err == nil {
		return "park: " + e.Reason
	}
	return fmt.Sprintf("park: %s: %v", e.Reason, e.Err)
}

// Unwrap returns the cause.
func (e *ParkError) Unwrap() error { return e.Err }

// Park returns an error that parks the event being handled, with a reason
// and the cause (which may be nil).
func Park(reason string, err error) error { return &ParkError{Reason: reason, Err: err} }

// RetryError is what a handler returns to have its event redelivered
// after Delay rather than after the group's backoff step. Make one with
// RetryAfter.
type RetryError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err) }

// Unwrap returns the cause.
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter returns an error that naks the event being handled with delay d.
func RetryAfter(d time.Duration, err error) error { return &RetryError{Delay: d, Err: err} }
