// Package client is the Go client of a rewind server. A *Client keeps the
// rewind.Store contract, as the embedded store (package store) does, so
// code written against rewind.Store runs on either; it passes the same
// conformance suite (package storetest) against a live server. It also
// offers rewind.LastPositioner and rewind.Describer. After Close every call
// fails with rewind.ErrClosed and its subscriptions end.
//
// # Guarantees
//
// Errors come back as rewind's typed errors: errors.As finds a
// *rewind.WrongExpectedVersionError with the stream's actual version, and
// rewind.CodeOf gives the same codes as the embedded store.
//
// Operations that are safe to repeat are retried on transient failures
// (the server unavailable or restarting, a broken connection) with
// exponential backoff and jitter: reads, and appends, because the client
// gives every event an id before the first try and the server recognises
// a repeated batch by its ids (within its dedup window, 2 minutes by
// default) and returns the original positions. DeleteStream and
// CreateToken are not retried. A connection that breaks under a call (a
// server killed mid-request) counts as unavailable, however connect-go
// reports it (canceled, unknown, internal): when the retries run out the
// error matches rewind.ErrClosed, never context.Canceled, which stays for
// a context the caller ended. An append whose retries ran out after it may
// have reached the server matches rewind.ErrOutcomeUnknown when the client
// made up its event ids (the caller cannot repeat them); with the caller's
// ids it is simply unavailable, and appending again is safe.
//
// A Subscription reconnects by itself after a disconnect and resumes after
// the last position it received, with the log epoch it received it in, so
// its consumer sees each event once, in order, without gaps, or an error
// matching rewind.ErrEpochChanged when a recovery cut took back positions
// it had seen (or the log now ends before them).
//
// An Appender batches single events into appends for throughput, with a
// bound on appends in flight so that a slow server slows the producer
// instead of growing memory.
//
// One Client holds one HTTP/2 connection per server (h2c for http://
// URLs) that all calls share; create one and reuse it.
package client
