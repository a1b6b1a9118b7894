package server

import (
	"strconv"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// DefaultMaxInflightAppendBytes is the default of
// Config.MaxInflightAppendBytes.
const DefaultMaxInflightAppendBytes = 256 << 20

// eventOverhead is what the budget counts for an event beyond its data,
// metadata and type: its decoded form and its record's framing.
const eventOverhead = 64

// retryAfter is the pause a client refused for want of budget is told to
// take before it retries.
const retryAfter = time.Second

// appendBudget bounds the bytes of the appends in progress on the whole
// server, from the moment an append is decoded until it is acknowledged
// or fails, across every connection and stream: under a burst the
// appends waiting for their group commit hold that much memory. An
// append that does not fit is refused at once with ResourceExhausted
// and a retry hint, rather than queued; one that finds the budget empty
// is always taken, so that no append is refused for ever.
type appendBudget struct {
	max  int64
	used atomic.Int64
}

// acquire takes n bytes of the budget, or fails with ResourceExhausted.
func (b *appendBudget) acquire(n int64) error {
	for {
		cur := b.used.Load()
		if cur > 0 && cur+n > b.max {
			return busy(cur, n, b.max)
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return nil
		}
	}
}

func (b *appendBudget) release(n int64) { b.used.Add(-n) }

// busy is the error of an append refused for want of budget: a
// LimitError with a hint, the standard gRPC RetryInfo detail, and a
// Retry-After header for HTTP clients.
func busy(inUse, n, limit int64) error {
	ce := apiconv.ToConnect(&rewind.LimitError{Limit: "bytes of appends in progress on the server", Max: limit,
		Got: inUse + n, Hint: "the server is busy: retry in " + retryAfter.String() + " with the same event ids " +
			"(a retry is safe), or raise its max_inflight_append_bytes"})
	if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
		ce.AddDetail(d)
	}
	ce.Meta().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	return ce
}
