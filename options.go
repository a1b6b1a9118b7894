package rewind

import (
	"slices"
	"strings"
	"time"
)

// ReadStreamOptions selects events of one stream.
type ReadStreamOptions struct {
	// From is the first version to read. Forward, 0 means the stream's
	// first readable version; backward, 0 means its last version.
	From uint64
	// Backward reads from From towards version 1.
	Backward bool
	// Limit caps the number of events returned; 0 means no cap.
	Limit int
}

// Filter selects events of the whole log.
type Filter struct {
	// StreamPrefix keeps events whose stream name starts with it, such as a
	// category "orders-". Empty keeps all streams.
	StreamPrefix string
	// Types keeps events of these types. Empty keeps all types. It lists
	// at most MaxFilterTypes types (a type listed twice counts twice);
	// more is an invalid argument.
	Types []string
}

// MaxFilterTypes is the most types a Filter lists. A read with more is
// refused rather than made to compare each event with a list of any length
// (a request over the API may be large); one that wants more reads without
// a type filter and skips the types it does not want.
const MaxFilterTypes = 1000

// Match reports whether ev passes the filter.
func (f *Filter) Match(ev *RecordedEvent) bool {
	if f.StreamPrefix != "" && !strings.HasPrefix(ev.Stream, f.StreamPrefix) {
		return false
	}
	return len(f.Types) == 0 || slices.Contains(f.Types, ev.Type)
}

// ReadAllOptions selects a range of the whole log.
type ReadAllOptions struct {
	// From is the first position to read; 0 means the first position the
	// log still holds. A position retention removed fails with a
	// *TruncatedError.
	From Position
	// FromTime, when set, starts at the first event recorded at or after it.
	// From must then be 0.
	FromTime time.Time
	// Filter selects events; skipped ones still advance the read.
	Filter Filter
	// Limit caps the number of events yielded; 0 means no cap.
	Limit int
	// Epoch is the log epoch in which the reader saw the positions before
	// From (see Health.Epoch and EpochReporter). When set, the read fails
	// with an *EpochError if a recovery cut since took back a position
	// before From. 0 checks nothing.
	Epoch uint64
}

// SubscribeOptions says where a subscription starts and what it delivers.
type SubscribeOptions struct {
	// After is the last position already seen: the subscription delivers
	// the events after it. 0 starts at the first position the log holds.
	// A position that retention removed fails with a *TruncatedError.
	After Position
	// FromTime, when set, starts at the first event recorded at or after
	// it. After must then be 0.
	FromTime time.Time
	// Filter selects events. Skipped events still advance the
	// subscription's position, so a resumed subscription does not scan
	// them again.
	Filter Filter
	// Epoch is the log epoch in which After was seen (the earlier
	// subscription's Epoch, see EpochReporter). When set, Subscribe fails
	// with an *EpochError if a recovery cut since took back a position at
	// or before After: the events after it are no longer the ones the
	// caller saw. Without it a resumed subscription cannot tell. 0 checks
	// nothing.
	Epoch uint64
}

// DefaultListStreamsLimit is how many streams a listing returns when its
// Limit is 0.
const DefaultListStreamsLimit = 1000

// ListStreamsOptions selects streams to list.
type ListStreamsOptions struct {
	// Prefix keeps streams whose name starts with it.
	Prefix string
	// After lists names sorting after it, for paging.
	After string
	// Limit caps the number of streams; 0 means DefaultListStreamsLimit.
	Limit int
	// IncludeDeleted lists deleted streams too.
	IncludeDeleted bool
}
