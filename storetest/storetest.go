package storetest

import (
	"context"
	"flag"
	"testing"

	"github.com/rewindhq/rewind"
)

// Features describes what a store under test offers beyond the contract's
// core, and how to exercise it. The zero value runs everything that needs
// nothing but New.
type Features struct {
	// Reopen closes s and opens the same data again, as a restart does,
	// and returns the new store. With it, Run checks that everything
	// acknowledged, and the memory of event ids for idempotent retries,
	// survive a restart. The hook may vary how it restarts (with or
	// without the store's caches, say) as long as nothing acknowledged is
	// lost.
	Reopen func(t *testing.T, s rewind.Store) rewind.Store
	// Crash returns a function that opens what a crash of s at this very
	// moment would leave behind, while s keeps running (Run closes it).
	// With it, Run checks that histories stay linearizable across
	// crashes: every change an answer acknowledged survives; appends in
	// flight at the crash may or may not have happened.
	Crash func(t *testing.T, s rewind.Store) (open func(t *testing.T) rewind.Store)
	// Retention says that New's stores apply a retention policy when
	// rewind.Retainer's ApplyRetention is called, small enough to remove
	// segments during the model test. The model then follows the first
	// position the store reports.
	Retention bool
	// ModelOps is the number of operations of the randomized model test.
	// 0 means the -model.ops flag (2,500 by default).
	ModelOps int
	// MaxEventSize and MaxBatchEvents are the limits New's stores enforce.
	// Default to 1 MiB and 10,000, the embedded store's defaults.
	MaxEventSize, MaxBatchEvents int
}

var (
	modelOps  = flag.Int("model.ops", 2500, "storetest: operations of the randomized model test")
	modelSeed = flag.Uint64("model.seed", 0, "storetest: seed of the randomized model test (0: from the clock)")
	trials    = flag.Int("linearize.trials", 12, "storetest: concurrent histories checked for linearizability")
)

// DefaultModelOps returns the -model.ops flag: the operations of a model
// test whose Features leave ModelOps zero.
func DefaultModelOps() int { return *modelOps }

func (f *Features) withDefaults() Features {
	c := *f
	if c.ModelOps == 0 {
		c.ModelOps = *modelOps
	}
	if c.MaxEventSize == 0 {
		c.MaxEventSize = 1 << 20
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = 10_000
	}
	return c
}

// Run checks every guarantee of the rewind.Store contract against the
// stores newStore returns, each in a parallel subtest with a store of its
// own. newStore must return a new, empty store that remembers event ids for
// idempotent retries for at least ten minutes; Run closes it.
func Run(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	f = f.withDefaults()
	tests := []struct {
		name  string
		fn    func(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features)
		needs string // a hook of Features the test cannot run without
	}{
		{"AppendAndRead", testAppendAndRead, ""},
		{"VersionsWithoutGaps", testVersionsWithoutGaps, ""},
		{"ExpectedVersion", testExpectedVersion, ""},
		{"OptimisticConcurrency", testOptimisticConcurrency, ""},
		{"AtomicBatches", testAtomicBatches, ""},
		{"IdempotentRetries", testIdempotentRetries, ""},
		{"ConcurrentRetries", testConcurrentRetries, ""},
		{"RetryAfterRestart", testRetryAfterRestart, "Reopen"},
		{"BadInputChangesNothing", testBadInputChangesNothing, ""},
		{"Limits", testLimits, ""},
		{"Deletes", testDeletes, ""},
		{"ReadStreamOptions", testReadStreamOptions, ""},
		{"ReadAllOptions", testReadAllOptions, ""},
		{"ListStreams", testListStreams, ""},
		{"NULInNames", testNULInNames, ""},
		{"FilterTypesLimit", testFilterTypesLimit, ""},
		{"SubscribeCatchUpToLive", testSubscribeCatchUpToLive, ""},
		{"SubscribeResume", testSubscribeResume, ""},
		{"SubscribeFilter", testSubscribeFilter, ""},
		{"Epochs", testEpochs, ""},
		{"Cancellation", testCancellation, ""},
		{"Close", testClose, ""},
		{"Capabilities", testCapabilities, ""},
		{"Model", func(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
			RunModel(t, newStore, f)
		}, ""},
		{"Linearizable", testLinearizable, ""},
		{"LinearizableAcrossCrashes", testLinearizableAcrossCrashes, "Crash"},
	}
	for _, tc := range tests {
		if tc.needs == "Reopen" && f.Reopen == nil || tc.needs == "Crash" && f.Crash == nil {
			t.Logf("storetest: %s is not run: Features.%s is not set", tc.name, tc.needs)
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore, f)
		})
	}
}

// open returns a new store, closed when the test ends.
func open(t *testing.T, newStore func(t *testing.T) rewind.Store) rewind.Store {
	t.Helper()
	s := newStore(t)
	t.Cleanup(func() { s.Close() })
	return s
}

var ctxBG = context.Background()
