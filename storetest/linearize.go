package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// The linearizability check: goroutines run expected-version appends
// (some of them retries of earlier batches), stream reads, stream infos and
// deletes on a few streams at once, each call's start and end are
// recorded, and porcupine searches for an order of the calls, each placed
// between its start and end, in which a sequential model of one stream
// gives exactly the answers the store gave. If there is none, some answer
// revealed a state that no single moment had: typically a conflict that
// reported a version a later read did not see.

const (
	linStreams = 3
	linClients = 8
	linOps     = 30 // per client and trial
)

type linKind uint8

const (
	linAppend linKind = iota
	linRead
	linInfo
	linDelete
)

type linInput struct {
	kind     linKind
	stream   string
	expected rewind.ExpectedVersion
	batch    int // append: the batch's number; retries send an earlier one again
	n        int // append: its events
}

type linOutKind uint8

const (
	linOK linOutKind = iota
	linDup
	linWEV
	linNotFound
)

type linOutput struct {
	kind        linOutKind
	first, last uint64 // append: the versions; read: the readable range
	actual      uint64 // wrong expected version: the actual version; info: the version
	exists      bool   // wrong expected version: whether the stream exists
	deleted     bool   // info
	batches     string // read: the batch of each version read, in order
}

// linSpan is where a batch landed in its stream.
type linSpan struct {
	batch       int
	first, last uint64
}

// linState is the model's state of one stream. It is never changed in
// place: Step returns a new one.
type linState struct {
	version, deleted uint64
	spans            []linSpan // in version order
}

func (st linState) exists() bool { return st.version > st.deleted }

func (st linState) holds(expected rewind.ExpectedVersion) bool {
	switch expected {
	case rewind.Any:
		return true
	case rewind.NoStream:
		return !st.exists()
	case rewind.StreamExists:
		return st.exists()
	}
	return uint64(expected) == st.version
}

// batchesOf names the batch of each version from lo to hi.
func (st linState) batchesOf(lo, hi uint64) string {
	var b strings.Builder
	for _, sp := range st.spans {
		for v := max(sp.first, lo); v <= min(sp.last, hi); v++ {
			fmt.Fprintf(&b, "%d,", sp.batch)
		}
	}
	return b.String()
}

func linStep(state, input, output any) (bool, any) {
	st, in, out := state.(linState), input.(linInput), output.(linOutput)
	switch in.kind {
	case linAppend:
		for _, sp := range st.spans {
			if sp.batch == in.batch {
				return out.kind == linDup && out.first == sp.first && out.last == sp.last, st
			}
		}
		if !st.holds(in.expected) {
			return out.kind == linWEV && out.actual == st.version && out.exists == st.exists(), st
		}
		next := linState{version: st.version + uint64(in.n), deleted: st.deleted,
			spans: append(slices.Clip(st.spans), linSpan{in.batch, st.version + 1, st.version + uint64(in.n)})}
		return out.kind == linOK && out.first == st.version+1 && out.last == next.version, next
	case linRead:
		if !st.exists() {
			return out.kind == linNotFound, st
		}
		return out.kind == linOK && out.first == st.deleted+1 && out.last == st.version &&
			out.batches == st.batchesOf(st.deleted+1, st.version), st
	case linInfo:
		if st.version == 0 {
			return out.kind == linNotFound, st
		}
		return out.kind == linOK && out.actual == st.version && out.deleted == !st.exists(), st
	case linDelete:
		if !st.exists() {
			return out.kind == linNotFound, st
		}
		if !st.holds(in.expected) {
			return out.kind == linWEV && out.actual == st.version && out.exists, st
		}
		next := st
		next.deleted = st.version
		return out.kind == linOK, next
	}
	return false, st
}

var linModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			s := op.Input.(linInput).stream
			by[s] = append(by[s], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return linState{} },
	Step: linStep,
	Equal: func(a, b any) bool {
		x, y := a.(linState), b.(linState)
		return x.version == y.version && x.deleted == y.deleted && slices.Equal(x.spans, y.spans)
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		res := map[linOutKind]string{linOK: "ok", linDup: "duplicate", linWEV: "wrong expected version", linNotFound: "not found"}[out.kind]
		switch in.kind {
		case linAppend:
			return fmt.Sprintf("append batch %d (%d events) to %s expecting %s -> %s %d..%d actual %d", in.batch, in.n,
				in.stream, in.expected, res, out.first, out.last, out.actual)
		case linRead:
			return fmt.Sprintf("read %s -> %s versions %d..%d batches %s", in.stream, res, out.first, out.last, out.batches)
		case linInfo:
			return fmt.Sprintf("info %s -> %s version %d deleted %v", in.stream, res, out.actual, out.deleted)
		}
		return fmt.Sprintf("delete %s expecting %s -> %s actual %d", in.stream, in.expected, res, out.actual)
	},
	DescribeState: func(state any) string {
		st := state.(linState)
		return fmt.Sprintf("version %d, deleted %d, batches %v", st.version, st.deleted, st.spans)
	},
}

// linRun records the history of concurrent calls on one store.
type linRun struct {
	t     *testing.T
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	ids   map[uuid.UUID]int // event id -> batch
	sent  [][]rewind.Event  // by batch
	where []string          // the stream of each batch
	// deletes leaves deletes out (across crashes, where which ones
	// happened cannot be told afterwards).
	noDeletes bool
}

func newLinRun(t *testing.T) *linRun {
	return &linRun{t: t, start: time.Now(), ids: map[uuid.UUID]int{}}
}

func (r *linRun) now() int64 { return int64(time.Since(r.start)) }

func (r *linRun) newBatch(stream string, n int) (int, []rewind.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := len(r.sent)
	evs := events(n, "T")
	for _, e := range evs {
		r.ids[e.ID] = b
	}
	r.sent = append(r.sent, evs)
	r.where = append(r.where, stream)
	return b, evs
}

// client runs ops calls from one goroutine until stop is set.
func (r *linRun) client(s rewind.Store, id int, seed uint64, ops int, stop *atomic.Bool) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	seen := map[string]uint64{} // the last version this client saw of each stream
	var mine []int              // batches this client sent
	for range ops {
		if stop != nil && stop.Load() {
			return
		}
		stream := fmt.Sprintf("lin-%d", rng.IntN(linStreams))
		v := seen[stream]
		expected := rewind.Exactly(v)
		switch x := rng.IntN(20); {
		case x < 3:
			expected = rewind.Any
		case x < 5:
			expected = rewind.NoStream
		case x < 7:
			expected = rewind.StreamExists
		case x < 9:
			expected = rewind.Exactly(v + 1)
		case x < 10 && v > 0:
			expected = rewind.Exactly(v - 1)
		}
		in := linInput{stream: stream, expected: expected}
		var call func(ctx context.Context) (linOutput, error)
		switch x := rng.IntN(100); {
		case x < 40 || x < 50 && len(mine) == 0:
			var evs []rewind.Event
			in.kind, in.n = linAppend, 1+rng.IntN(2)
			in.batch, evs = r.newBatch(stream, in.n)
			mine = append(mine, in.batch)
			call = func(ctx context.Context) (linOutput, error) { return appendCall(ctx, s, in, evs) }
		case x < 50: // a retry of an earlier batch, to its stream
			in.kind, in.batch = linAppend, mine[rng.IntN(len(mine))]
			r.mu.Lock()
			evs := r.sent[in.batch]
			in.stream = r.where[in.batch]
			r.mu.Unlock()
			in.n = len(evs)
			call = func(ctx context.Context) (linOutput, error) { return appendCall(ctx, s, in, evs) }
		case x < 72:
			in.kind = linRead
			call = func(ctx context.Context) (linOutput, error) { return r.readCall(ctx, s, in) }
		case x < 94 || r.noDeletes:
			in.kind = linInfo
			call = func(ctx context.Context) (linOutput, error) { return infoCall(ctx, s, in) }
		default:
			in.kind = linDelete
			if expected == rewind.NoStream {
				in.expected = rewind.Any
			}
			call = func(ctx context.Context) (linOutput, error) { return deleteCall(ctx, s, in) }
		}
		ctx, cancel := context.WithTimeout(ctxBG, time.Minute)
		begin := r.now()
		out, err := call(ctx)
		end := r.now()
		cancel()
		if err != nil {
			if stop != nil && stop.Load() && errors.Is(err, rewind.ErrClosed) {
				return // the crash image was taken and the store closed
			}
			r.t.Errorf("client %d: %s: %v", id, linModel.DescribeOperation(in, linOutput{}), err)
			return
		}
		switch {
		case in.kind == linAppend && (out.kind == linOK || out.kind == linDup) || in.kind == linRead && out.kind == linOK:
			seen[in.stream] = max(seen[in.stream], out.last)
		case out.kind == linWEV || in.kind == linInfo && out.kind == linOK:
			seen[in.stream] = max(seen[in.stream], out.actual)
		}
		r.mu.Lock()
		r.ops = append(r.ops, porcupine.Operation{ClientId: id, Input: in, Call: begin, Output: out, Return: end})
		r.mu.Unlock()
	}
}

func appendCall(ctx context.Context, s rewind.Store, in linInput, evs []rewind.Event) (linOutput, error) {
	res, err := s.Append(ctx, in.stream, in.expected, evs...)
	var we *rewind.WrongExpectedVersionError
	switch {
	case errors.As(err, &we):
		return linOutput{kind: linWEV, actual: we.Actual, exists: we.Exists}, nil
	case err != nil:
		return linOutput{}, err
	case res.Duplicate:
		return linOutput{kind: linDup, first: res.FirstVersion, last: res.LastVersion}, nil
	}
	return linOutput{kind: linOK, first: res.FirstVersion, last: res.LastVersion}, nil
}

func (r *linRun) readCall(ctx context.Context, s rewind.Store, in linInput) (linOutput, error) {
	evs, err := s.ReadStream(ctx, in.stream, rewind.ReadStreamOptions{})
	switch {
	case errors.Is(err, rewind.ErrStreamNotFound):
		return linOutput{kind: linNotFound}, nil
	case err != nil:
		return linOutput{}, err
	case len(evs) == 0:
		return linOutput{}, fmt.Errorf("read %s: no events and no error", in.stream)
	}
	out := linOutput{kind: linOK, first: evs[0].Version, last: evs[len(evs)-1].Version}
	var b strings.Builder
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ev := range evs {
		batch, ok := r.ids[ev.ID]
		if !ok || ev.Version != out.first+uint64(i) {
			return linOutput{}, fmt.Errorf("read %s: version %d (event %s) is not one of the test's", in.stream, ev.Version, ev.ID)
		}
		fmt.Fprintf(&b, "%d,", batch)
	}
	out.batches = b.String()
	return out, nil
}

func infoCall(ctx context.Context, s rewind.Store, in linInput) (linOutput, error) {
	info, err := s.StreamInfo(ctx, in.stream)
	if errors.Is(err, rewind.ErrStreamNotFound) {
		return linOutput{kind: linNotFound}, nil
	}
	return linOutput{kind: linOK, actual: info.Version, deleted: info.Deleted}, err
}

func deleteCall(ctx context.Context, s rewind.Store, in linInput) (linOutput, error) {
	_, err := s.DeleteStream(ctx, in.stream, in.expected)
	var we *rewind.WrongExpectedVersionError
	switch {
	case errors.As(err, &we):
		return linOutput{kind: linWEV, actual: we.Actual, exists: we.Exists}, nil
	case errors.Is(err, rewind.ErrStreamNotFound):
		return linOutput{kind: linNotFound}, nil
	case err != nil:
		return linOutput{}, err
	}
	return linOutput{kind: linOK}, nil
}

// runClients runs linClients clients on s and waits for them.
func (r *linRun) runClients(s rewind.Store, seed uint64, ops int, stop *atomic.Bool) {
	var wg sync.WaitGroup
	for c := range linClients {
		wg.Go(func() { r.client(s, c, seed, ops, stop) })
	}
	wg.Wait()
}

// check fails the test when the history is not linearizable, writing a
// visualization of it.
func (r *linRun) check(what string, history []porcupine.Operation) {
	r.t.Helper()
	res, info := porcupine.CheckOperationsVerbose(linModel, history, time.Minute)
	if res == porcupine.Ok {
		return
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("rewind-linearizability-%d.html", time.Now().UnixNano()))
	if err := porcupine.VisualizePath(linModel, info, path); err != nil {
		path = "(not written: " + err.Error() + ")"
	}
	r.t.Fatalf("%s: the history of %d calls is %s: no order of the calls explains every answer; "+
		"see the visualization in %s\n%s", what, len(history), map[porcupine.CheckResult]string{
		porcupine.Illegal: "not linearizable", porcupine.Unknown: "not checked in time"}[res], path, explain(history))
}

// explain lists, for a stream whose calls are not linearizable, the
// calls in the order they began, with their times in microseconds.
func explain(history []porcupine.Operation) string {
	for _, ops := range linModel.Partition(history) {
		if porcupine.CheckOperations(linModel, ops) {
			continue
		}
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		var b strings.Builder
		fmt.Fprintf(&b, "the calls on %s, in the order they began:\n", ops[0].Input.(linInput).stream)
		for _, op := range ops {
			fmt.Fprintf(&b, "  [%9.1f, %9.1f µs] client %d: %s\n", float64(op.Call)/1e3, float64(op.Return)/1e3,
				op.ClientId, linModel.DescribeOperation(op.Input, op.Output))
		}
		return b.String()
	}
	return ""
}

// testLinearizable checks histories of concurrent calls on a live store.
func testLinearizable(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	seed := uint64(time.Now().UnixNano())
	for trial := range *trials {
		s := newStore(t)
		r := newLinRun(t)
		r.runClients(s, seed+uint64(trial), linOps, nil)
		s.Close()
		if t.Failed() {
			return
		}
		r.check(fmt.Sprintf("trial %d (seed %d)", trial, seed+uint64(trial)), r.ops)
	}
}

// testLinearizableAcrossCrashes takes a crash image while clients run,
// reopens it and runs more clients on it. Calls that ended before the
// image was begun must all be reflected; calls in flight while it was taken
// may or may not have happened (an append is kept exactly when its batch is
// in the reopened store); the whole history must be linearizable.
func testLinearizableAcrossCrashes(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	seed := uint64(time.Now().UnixNano())
	for trial := range max(1, *trials/3) {
		rng := rand.New(rand.NewPCG(seed, uint64(trial)))
		s := newStore(t)
		r := newLinRun(t)
		r.noDeletes = true
		var stop atomic.Bool
		done := make(chan struct{})
		go func() { r.runClients(s, seed+uint64(trial), 10*linOps, &stop); close(done) }()
		// Let the clients get going, then crash.
		for n := 20 + rng.IntN(60); ; time.Sleep(time.Millisecond) {
			r.mu.Lock()
			k := len(r.ops)
			r.mu.Unlock()
			if k >= n || t.Failed() {
				break
			}
		}
		crashFrom := r.now()
		reopen := f.Crash(t, s)
		crashTo := r.now()
		// The crashed process may go on a moment: what it does after the
		// image is not in it (a file store) or is (PostgreSQL).
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		stop.Store(true)
		<-done
		s.Close()
		if t.Failed() {
			return
		}
		s = reopen(t)
		history := r.resolve(s, crashFrom, crashTo)
		r.ops = nil
		r.runClients(s, seed+uint64(trial)+1<<32, linOps, nil)
		s.Close()
		if t.Failed() {
			return
		}
		r.check(fmt.Sprintf("trial %d (seed %d), crash between %d and %d ns", trial, seed+uint64(trial), crashFrom, crashTo),
			append(history, r.ops...))
	}
}

// resolve returns the calls of the history before the crash as the
// reopened store s tells them: those that ended before the crash began as
// they were (an acknowledged append missing after the crash fails the
// test); those in flight during it or begun after it only if they were
// appends whose batch s holds.
func (r *linRun) resolve(s rewind.Store, crashFrom, crashTo int64) []porcupine.Operation {
	r.t.Helper()
	have := map[int]bool{}
	for _, ev := range readAll(r.t, s, rewind.ReadAllOptions{}) {
		if b, ok := r.ids[ev.ID]; ok {
			have[b] = true
		}
	}
	var out []porcupine.Operation
	for _, op := range r.ops {
		in, res := op.Input.(linInput), op.Output.(linOutput)
		wrote := in.kind == linAppend && (res.kind == linOK || res.kind == linDup)
		switch {
		case wrote && have[in.batch] && op.Return >= crashFrom:
			// In flight during the crash, or begun after it on the old
			// store, and kept: it happened, at its own time. (A store
			// such as PostgreSQL that outlives the crashed process keeps
			// what the old process still wrote after the image.)
			out = append(out, op)
		case op.Call > crashTo:
			// Begun after the image was complete: it acted on the old
			// store only.
		case op.Return < crashFrom:
			if wrote && !have[in.batch] {
				r.t.Fatalf("batch %d was acknowledged (%s) before the crash and is missing after it",
					in.batch, linModel.DescribeOperation(in, res))
			}
			out = append(out, op)
		}
	}
	return out
}
