package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// Sentinel errors. Each matches a rewind sentinel too, so rewind.CodeOf
// gives the CLI its exit status.
var (
	// ErrRunNotFound: no run with that id (or id prefix).
	ErrRunNotFound = &codedError{"backfill: run not found", rewind.ErrStreamNotFound}
	// ErrRunLocked: another process holds the run's lease.
	ErrRunLocked = &codedError{"backfill: run is being applied by another process", rewind.ErrLocked}
	// ErrJobChanged: the job or the binary differs from the run's, and
	// changes were not allowed.
	ErrJobChanged = &codedError{"backfill: job or binary changed since the run started", rewind.ErrWrongExpectedVersion}
	// ErrPlanMismatch: the job or its input no longer matches the plan hash.
	ErrPlanMismatch = &codedError{"backfill: plan no longer matches", rewind.ErrWrongExpectedVersion}
	// ErrUnfinishedRun: an unfinished run of the same job name blocks a new one.
	ErrUnfinishedRun = &codedError{"backfill: an unfinished run of this job exists", rewind.ErrWrongExpectedVersion}
	// ErrAlreadyApplied: the job finished in an earlier run and no new run
	// was asked for (ApplyOptions.NewRun naming the job's last run).
	ErrAlreadyApplied = &codedError{"backfill: job already applied", rewind.ErrWrongExpectedVersion}
	// ErrRunEnded: the run finished or was cancelled: there is nothing
	// left to do to it.
	ErrRunEnded = &codedError{"backfill: run already ended", rewind.ErrWrongExpectedVersion}
	// ErrRunFailed: the run stopped on an error (see *RunError).
	ErrRunFailed = &codedError{"backfill: run failed", nil}
	// ErrSessionSettings: a database session lexes SQL otherwise than the
	// check of the job's SQL does (see *SessionSettingsError).
	ErrSessionSettings = &codedError{"backfill: database session settings refused", rewind.ErrInvalidArgument}
	// ErrRunSettings: the session a run is resumed on gives its job
	// another meaning than the session it started on (another TimeZone,
	// search_path or resolved table; see *RunSettingsError).
	ErrRunSettings = &codedError{"backfill: session settings differ from the run's", rewind.ErrWrongExpectedVersion}
	// ErrLeaseLost: the run's lease was lost while applying.
	ErrLeaseLost = &codedError{"backfill: lease lost", rewind.ErrLocked}
)

type codedError struct {
	msg  string
	also error
}

func (e *codedError) Error() string { return e.msg }

func (e *codedError) Is(target error) bool { return e.also != nil && target == e.also }

// Class is how the runner treats an error.
type Class string

// The error classes.
const (
	// Transient errors are retried with exponential backoff and jitter:
	// serialization failures, deadlocks, lock and statement timeouts, lost
	// connections, a server shutting down or out of connections, a
	// transaction the server ended after it sat idle for LeaseTimeout (the
	// process was frozen: tried again, its chunk meets the run's fence and
	// control, so a worker taken over stops and one paused waits).
	Transient Class = "transient"
	// Data errors concern particular rows: constraint violations, invalid
	// values, an *ItemError from a process function. The run's policy
	// decides: halt, or quarantine the keys and go on.
	Data Class = "data"
	// Fatal errors stop the run: bad SQL, missing objects, permissions,
	// anything unknown.
	Fatal Class = "fatal"
)

// Classify returns the class of err.
func Classify(err error) Class {
	var ie *ItemError
	if errors.As(err, &ie) {
		return Data
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03", pe.Code == "57014",
			strings.HasPrefix(pe.Code, "08"), pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03",
			pe.Code == "25P03", pe.Code == "57P05",
			strings.HasPrefix(pe.Code, "53"):
			return Transient
		case strings.HasPrefix(pe.Code, "22"), strings.HasPrefix(pe.Code, "23"), pe.Code == "P0001":
			return Data
		}
		return Fatal
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Fatal
	}
	var ne net.Error
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, pgx.ErrTxClosed) || isConnClosed(err) {
		return Transient
	}
	return Fatal
}

func isConnClosed(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "conn closed") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "broken pipe") || strings.Contains(s, "unexpected EOF")
}

// ItemError is what a process function returns for an input it cannot
// handle. It is a data error: under the skip policy the item's key goes to
// the quarantine and the chunk is processed without it. Join several with
// errors.Join.
type ItemError struct {
	Key Key
	Err error
}

func (e *ItemError) Error() string { return fmt.Sprintf("key %s: %v", e.Key, e.Err) }

func (e *ItemError) Unwrap() error { return e.Err }

// itemErrors returns every *ItemError in err's tree.
func itemErrors(err error) []*ItemError {
	var out []*ItemError
	var walk func(error)
	walk = func(e error) {
		if ie, ok := e.(*ItemError); ok {
			out = append(out, ie)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

// RunError says where and why a run stopped. It matches ErrRunFailed.
type RunError struct {
	RunID string
	Chunk int64 // chunk sequence number; 0 when no chunk was involved
	Key   Key   // the failing row's key, when known
	Class Class
	Err   error
}

func (e *RunError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "backfill: run %s failed", e.RunID)
	if e.Chunk > 0 {
		fmt.Fprintf(&b, " at chunk %d", e.Chunk)
	}
	if e.Key != nil {
		fmt.Fprintf(&b, ", key %s", e.Key)
	}
	fmt.Fprintf(&b, " (%s error): %v", e.Class, e.Err)
	b.WriteString("; " + e.next())
	return b.String()
}

// next says what to do about the failed run.
func (e *RunError) next() string {
	resume := fmt.Sprintf("then continue it from where it stopped with 'rewind backfill resume %s' (or the same run "+
		"command again); resuming under a changed job file needs --allow-changed-job", e.RunID)
	if e.Class == Data {
		return "fix the failing row or the job's SQL, " + resume + "; or set on_data_error: skip to quarantine " +
			"failing rows and go on (see 'rewind backfill retry-failed')"
	}
	return "fix the cause, " + resume
}

func (e *RunError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRunFailed) true.
func (e *RunError) Is(target error) bool { return target == ErrRunFailed }

// DetailWithheld replaces the DETAIL of a database error about a job
// with secret parameters, wherever the error is recorded or shown.
const DetailWithheld = "row contents withheld: the job has secret parameters"

// withholdDetail returns err with the DETAIL of the *pgconn.PgError in it
// replaced by DetailWithheld. PostgreSQL puts row contents there
// ("Failing row contains (…)", "Key (…)=(…) already exists"), as the
// columns' types print them, of the job's table or of any table a
// trigger writes: a secret parameter's value may be there in a form no
// masking can know (see Params.Redact). The message, SQLSTATE, schema,
// table, column and constraint names are kept. errors.As finds the copy.
func withholdDetail(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Detail == "" || pe.Detail == DetailWithheld {
		return err
	}
	c := *pe
	c.Detail = DetailWithheld
	return &withheldErr{err: err, pe: &c}
}

// withheldErr is err whose *pgconn.PgError reads as pe.
type withheldErr struct {
	err error
	pe  *pgconn.PgError
}

func (e *withheldErr) Error() string { return e.err.Error() }
func (e *withheldErr) Unwrap() error { return e.err }

// As makes errors.As find the copy whose DETAIL is withheld, not the
// original below it.
func (e *withheldErr) As(target any) bool {
	if t, ok := target.(**pgconn.PgError); ok {
		*t = e.pe
		return true
	}
	return false
}

// describeErr is an error's message with its SQLSTATE, for the ledger.
func describeErr(err error) (code, msg string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Detail != "" {
			msg += " (" + pe.Detail + ")"
		}
		return pe.Code, msg
	}
	return "", err.Error()
}

// EscapeError is a statement job's statement changing rows outside the
// chunk it was given: rows of other chunks would be changed again by
// theirs. The chunk's transaction is rolled back and the run stops.
type EscapeError struct {
	Statement string
	Lo, Hi    Key
	Rows      int64 // rows changed outside the chunk
	Key       Key   // the first of them
}

func (e *EscapeError) Error() string {
	return fmt.Sprintf("statement %q changed %d row(s) outside its chunk [%s, %s], the first with key %s; "+
		"the chunk's transaction was rolled back: restrict the statement to the rows between @lo and @hi",
		e.Statement, e.Rows, e.Lo, e.Hi, e.Key)
}
