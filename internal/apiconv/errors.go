package apiconv

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
)

// connectCodes maps rewind's error codes to the API's status codes.
var connectCodes = map[rewind.Code]connect.Code{
	rewind.CodeInvalidArgument:      connect.CodeInvalidArgument,
	rewind.CodeLimitExceeded:        connect.CodeResourceExhausted,
	rewind.CodeWrongExpectedVersion: connect.CodeAborted,
	rewind.CodeIdempotencyConflict:  connect.CodeAlreadyExists,
	rewind.CodeNotFound:             connect.CodeNotFound,
	rewind.CodeTruncated:            connect.CodeOutOfRange,
	rewind.CodeCorruption:           connect.CodeDataLoss,
	rewind.CodeLocked:               connect.CodeUnavailable,
	rewind.CodeClosed:               connect.CodeUnavailable,
	rewind.CodeUnauthenticated:      connect.CodeUnauthenticated,
	rewind.CodePermissionDenied:     connect.CodePermissionDenied,
	rewind.CodeAlreadyExists:        connect.CodeAlreadyExists,
	// A failed store is not transient: clients retry only Unavailable.
	rewind.CodeFailed:         connect.CodeFailedPrecondition,
	rewind.CodeOutcomeUnknown: connect.CodeUnknown,
	rewind.CodeEpochChanged:   connect.CodeFailedPrecondition,
	// A store whose schema is at another version than the server's.
	rewind.CodeFailedPrecondition: connect.CodeFailedPrecondition,
	rewind.CodeCanceled:           connect.CodeCanceled,
	rewind.CodeInternal:           connect.CodeInternal,
	CodeDeadlineExceeded:          connect.CodeDeadlineExceeded,
	CodeUnimplemented:             connect.CodeUnimplemented,
}

// Codes of the ErrorDetail of errors the server's HTTP layer makes, which
// have no counterpart in the store: a request that did not arrive in time,
// a path where no RPC is.
const (
	CodeDeadlineExceeded rewind.Code = "deadline_exceeded"
	CodeUnimplemented    rewind.Code = "unimplemented"
)

// DetailCode returns the code of the ErrorDetail that goes with a status
// code, for errors made without one (by connect-go, net/http or the
// middleware).
func DetailCode(c connect.Code) rewind.Code {
	switch c {
	case connect.CodeInvalidArgument:
		return rewind.CodeInvalidArgument
	case connect.CodeResourceExhausted:
		return rewind.CodeLimitExceeded
	case connect.CodeDeadlineExceeded:
		return CodeDeadlineExceeded
	case connect.CodeUnimplemented:
		return CodeUnimplemented
	case connect.CodeAborted:
		return rewind.CodeWrongExpectedVersion
	case connect.CodeAlreadyExists:
		return rewind.CodeAlreadyExists
	case connect.CodeNotFound:
		return rewind.CodeNotFound
	case connect.CodeOutOfRange:
		return rewind.CodeTruncated
	case connect.CodeUnauthenticated:
		return rewind.CodeUnauthenticated
	case connect.CodePermissionDenied:
		return rewind.CodePermissionDenied
	case connect.CodeUnavailable:
		return rewind.CodeClosed
	case connect.CodeDataLoss:
		return rewind.CodeCorruption
	case connect.CodeFailedPrecondition:
		return rewind.CodeFailed
	case connect.CodeCanceled:
		return rewind.CodeCanceled
	}
	return rewind.CodeInternal
}

// sentinels gives the rewind sentinel of each code, for the client.
var sentinels = map[rewind.Code]error{
	rewind.CodeInvalidArgument:      rewind.ErrInvalidArgument,
	rewind.CodeLimitExceeded:        rewind.ErrLimitExceeded,
	rewind.CodeWrongExpectedVersion: rewind.ErrWrongExpectedVersion,
	rewind.CodeIdempotencyConflict:  rewind.ErrIdempotencyConflict,
	rewind.CodeNotFound:             rewind.ErrStreamNotFound,
	rewind.CodeTruncated:            rewind.ErrTruncated,
	rewind.CodeCorruption:           rewind.ErrCorruption,
	rewind.CodeLocked:               rewind.ErrLocked,
	rewind.CodeClosed:               rewind.ErrClosed,
	rewind.CodeUnauthenticated:      rewind.ErrUnauthenticated,
	rewind.CodePermissionDenied:     rewind.ErrPermissionDenied,
	rewind.CodeAlreadyExists:        rewind.ErrAlreadyExists,
	rewind.CodeFailed:               rewind.ErrFailed,
	rewind.CodeOutcomeUnknown:       rewind.ErrOutcomeUnknown,
	rewind.CodeEpochChanged:         rewind.ErrEpochChanged,
	rewind.CodeFailedPrecondition:   rewind.ErrFailedPrecondition,
	rewind.CodeCanceled:             context.Canceled,
	CodeDeadlineExceeded:            context.DeadlineExceeded,
}

// ConnectCode returns the status code the API uses for a rewind code.
func ConnectCode(c rewind.Code) connect.Code {
	if cc, ok := connectCodes[c]; ok {
		return cc
	}
	return connect.CodeInternal
}

// ToConnect turns a rewind error into a connect error with an ErrorDetail
// carrying its code and data. A context error becomes Canceled or
// DeadlineExceeded; an existing connect error is returned as is.
func ToConnect(err error) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	code := rewind.CodeOf(err)
	var cerr *codeError
	if errors.As(err, &cerr) {
		code = cerr.code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		code = CodeDeadlineExceeded // not rewind.CodeOf's "canceled": the detail's code goes with the status
	}
	cc := ConnectCode(code)
	d := &rewindv1.ErrorDetail{Code: string(code)}
	var (
		ve  *rewind.ValidationError
		le  *rewind.LimitError
		we  *rewind.WrongExpectedVersionError
		ie  *rewind.IdempotencyConflictError
		te  *rewind.TruncatedError
		coe *rewind.CorruptionError
	)
	switch {
	case errors.As(err, &ve):
		d.Field, d.Reason = ve.Field, ve.Reason
	case errors.As(err, &le):
		d.Limit, d.Max, d.Got, d.Hint = le.Limit, le.Max, le.Got, le.Hint
	case errors.As(err, &we):
		d.Stream, d.ExpectedVersion, d.ActualVersion, d.StreamExists = we.Stream, int64(we.Expected), we.Actual, we.Exists
	case errors.As(err, &ie):
		d.EventId, d.Position, d.Reason = ie.EventID, uint64(ie.Position), ie.Reason
	case errors.As(err, &te):
		d.Position, d.FirstAvailable = uint64(te.Requested), uint64(te.FirstAvailable)
	case errors.As(err, &coe):
		d.Position, d.Reason = uint64(coe.Position), coe.Reason
	}
	out := connect.NewError(cc, errors.New(err.Error()))
	if detail, derr := connect.NewErrorDetail(d); derr == nil {
		out.AddDetail(detail)
	}
	return out
}

// FromConnect turns an error of a connect client back into rewind's typed
// errors, so that rewind.CodeOf and errors.As work on the client as on the
// embedded store. Transport errors keep their connect code as Unavailable
// (rewind.ErrClosed).
func FromConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	msg := ce.Message()
	var d *rewindv1.ErrorDetail
	for _, det := range ce.Details() {
		if v, derr := det.Value(); derr == nil {
			if ed, ok := v.(*rewindv1.ErrorDetail); ok {
				d = ed
			}
		}
	}
	if d == nil {
		return &RemoteError{Code: codeOfConnect(ce.Code()), Connect: ce.Code(), Msg: prefixed(msg), cause: ce}
	}
	switch rewind.Code(d.Code) {
	case rewind.CodeInvalidArgument:
		if d.Field != "" {
			return &rewind.ValidationError{Field: d.Field, Reason: d.Reason}
		}
	// A detail with only its code (an error the server's HTTP layer or
	// connect-go made) keeps its message rather than become an empty
	// typed error.
	case rewind.CodeLimitExceeded:
		if d.Limit != "" {
			return &rewind.LimitError{Limit: d.Limit, Max: d.Max, Got: d.Got, Hint: d.Hint}
		}
	case rewind.CodeWrongExpectedVersion:
		if d.Stream != "" {
			return &rewind.WrongExpectedVersionError{Stream: d.Stream,
				Expected: rewind.ExpectedVersion(d.ExpectedVersion), Actual: d.ActualVersion, Exists: d.StreamExists}
		}
	case rewind.CodeIdempotencyConflict:
		if d.EventId != "" {
			return &rewind.IdempotencyConflictError{EventID: d.EventId, Position: rewind.Position(d.Position),
				Reason: d.Reason}
		}
	case rewind.CodeTruncated:
		if d.Position != 0 || d.FirstAvailable != 0 {
			return &rewind.TruncatedError{Requested: rewind.Position(d.Position),
				FirstAvailable: rewind.Position(d.FirstAvailable)}
		}
	}
	return &RemoteError{Code: rewind.Code(d.Code), Connect: ce.Code(), Msg: prefixed(msg), cause: ce}
}

func prefixed(msg string) string {
	if strings.HasPrefix(msg, "rewind: ") {
		return msg
	}
	return "rewind: " + msg
}

func codeOfConnect(c connect.Code) rewind.Code {
	switch c {
	case connect.CodeInvalidArgument:
		return rewind.CodeInvalidArgument
	case connect.CodeResourceExhausted:
		return rewind.CodeLimitExceeded
	case connect.CodeUnauthenticated:
		return rewind.CodeUnauthenticated
	case connect.CodePermissionDenied:
		return rewind.CodePermissionDenied
	case connect.CodeAlreadyExists:
		return rewind.CodeAlreadyExists
	case connect.CodeNotFound:
		return rewind.CodeNotFound
	case connect.CodeUnavailable:
		return rewind.CodeClosed
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return rewind.CodeCanceled
	}
	return rewind.CodeInternal
}

// RemoteError is an error the server returned that has no typed
// counterpart. It matches the rewind sentinel of its code, and the
// connect error it came from.
type RemoteError struct {
	Code    rewind.Code
	Connect connect.Code
	Msg     string
	cause   *connect.Error
}

func (e *RemoteError) Error() string { return e.Msg }

// Is matches the sentinel of e's code.
func (e *RemoteError) Is(target error) bool {
	s, ok := sentinels[e.Code]
	return ok && s == target
}

// Unwrap returns the connect error.
func (e *RemoteError) Unwrap() error {
	if e.cause == nil {
		return nil
	}
	return e.cause
}

// Errorf is fmt.Errorf returning a connect error of the given code, for
// errors the server makes itself.
func Errorf(code rewind.Code, format string, args ...any) *connect.Error {
	return ToConnect(&codeError{code: code, msg: fmt.Sprintf(format, args...)})
}

type codeError struct {
	code rewind.Code
	msg  string
}

func (e *codeError) Error() string { return e.msg }

func (e *codeError) Is(target error) bool {
	s, ok := sentinels[e.code]
	return ok && s == target
}
