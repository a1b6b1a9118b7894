// Package storetest is the conformance suite of the rewind.Store contract:
// every backend — the embedded store, the client of a rewind server, a
// future PostgreSQL store — runs it from its own tests, in the style of
// testing/slogtest and River's riverdrivertest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) rewind.Store { return openMyStore(t) },
//		})
//	}
//
// Run checks every guarantee the README ("What rewind promises") and
// docs/architecture.md state of a store, each in its own subtest: versions
// without gaps, strictly increasing positions, expected-version
// conditions, atomic batches, idempotent retries and their conflicts,
// bad input that changes nothing, limits, soft deletes, reads by stream,
// position, time and filter, listings, subscriptions that deliver every
// event exactly once in order across the switch from catch-up to live and
// resume exactly after a position, cancellation and Close. A randomized
// model test (Model) runs long seeded sequences of every operation against
// the store and a trivially correct in-memory model and compares every
// answer; a linearizability check (Linearizable) runs concurrent
// expected-version appends, reads, stream info and deletes from many
// goroutines and checks the history with porcupine.
//
// Guarantees that need more than a store — a restart, a crash, retention —
// run when the Harness provides the hook for them; see Harness. The
// optional capabilities of package rewind (rewind.LastPositioner,
// rewind.Describer, rewind.Retainer, rewind.Verifier, rewind.Poller) are
// checked when the store offers them.
//
// The flags -model.ops and -model.seed size and reproduce the model test;
// -linearize.trials sets how many concurrent histories are checked.
package storetest
