package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// The model-based test (in the style of Pebble's metamorphic tests): a
// seeded random sequence of operations runs against the real store and
// against the model of model.go, and every result must agree exactly:
// appends with every kind of expected version, retries (exact, changed,
// partial, mixed), deletes, stream reads in both directions, whole-log
// reads with filters, limits and start times, stream info and lists,
// subscriptions resumed from any position, restarts (Features.Reopen) and
// retention (Features.Retention).

// RunModel runs the randomized model test alone, for a configuration of a
// store that does not need the whole suite again (another durability mode,
// retention). Run includes it.
func RunModel(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	f = f.withDefaults()
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	h := newHarness(t, seed, newStore, f)
	defer h.close()
	ops := f.ModelOps
	for h.op = 0; h.op < ops; h.op++ {
		h.step()
	}
	h.fullCheck()
	t.Logf("seed %d: %d operations, %d records, first position %d, %d streams, %d reopens; outcomes %v",
		seed, ops, h.m.last(), h.m.first, len(h.m.streams), h.reopens, h.outcomes)
	// A long enough run must have reached every outcome, or it tested less
	// than it claims.
	want := []string{"duplicate", string(rewind.CodeOK), string(rewind.CodeWrongExpectedVersion),
		string(rewind.CodeIdempotencyConflict), string(rewind.CodeNotFound), string(rewind.CodeInvalidArgument)}
	if f.Retention {
		want = append(want, string(rewind.CodeTruncated))
	}
	for _, o := range want {
		if ops >= 2000 && h.outcomes[o] == 0 {
			t.Errorf("no operation had the outcome %q in %d operations", o, ops)
		}
	}
}

type harness struct {
	t         *testing.T
	seed      uint64
	rng       *rand.Rand
	f         Features
	retention bool
	s         rewind.Store
	m         *model
	subs      []*mSub
	op        int
	trace     []string // the last operations, for failure messages
	newNames  int
	reopens   int
	outcomes  map[string]int
}

type mSub struct {
	sub    rewind.Subscription
	filter rewind.Filter
	pos    uint64 // the last position delivered or skipped
}

func newHarness(t *testing.T, seed uint64, newStore func(t *testing.T) rewind.Store, f Features) *harness {
	h := &harness{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5eed)), f: f, retention: f.Retention,
		m: newModel(), outcomes: map[string]int{}}
	h.s = newStore(t)
	if _, ok := h.s.(rewind.Retainer); h.retention && !ok {
		h.s.Close()
		t.Fatal("Features.Retention is set but the store does not implement rewind.Retainer")
	}
	return h
}

func (h *harness) close() {
	for _, sub := range h.subs {
		sub.sub.Close()
	}
	h.s.Close()
}

// outcome counts the result of an operation, and compares it with the model's.
func (h *harness) outcome(what string, got, want error) {
	h.t.Helper()
	if msg := sameError(got, want); msg != "" {
		h.failf("%s: %s", what, msg)
	}
	h.outcomes[string(rewind.CodeOf(got))]++
}

// failf stops the test with the seed and the operations that led there.
func (h *harness) failf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("operation %d: %s\nreproduce with -model.seed=%d -model.ops=%d; last operations:\n  %s",
		h.op, fmt.Sprintf(format, args...), h.seed, h.op+1, strings.Join(h.trace, "\n  "))
}

func (h *harness) logOp(format string, args ...any) {
	h.trace = append(h.trace, fmt.Sprintf("%d: ", h.op)+fmt.Sprintf(format, args...))
	if len(h.trace) > 25 {
		h.trace = h.trace[1:]
	}
}

func (h *harness) step() {
	h.t.Helper()
	switch r := h.rng.IntN(100); {
	case r < 35:
		h.opAppend()
	case r < 45:
		h.opRetry()
	case r < 49:
		h.opDelete()
	case r < 50:
		h.opInvalid()
	case r < 61:
		h.opReadStream()
	case r < 70:
		h.opReadAll()
	case r < 75:
		h.opStreamInfo()
	case r < 78:
		h.opListStreams()
	case r < 83:
		h.opSubscribe()
	case r < 93:
		h.opSubNext()
	case r < 95:
		h.opSubLive()
	case r < 97:
		if h.f.Reopen != nil {
			h.opReopen()
		} else {
			h.fullCheck()
		}
	default:
		h.fullCheck()
	}
}

// Names: a few categories, so that prefixes select something, and now and
// then a new stream.
var (
	modelStreams = []string{"a-1", "a-2", "a-3", "a-4", "b-1", "b-2", "b-3", "c", "c-x"}
	modelTypes   = []string{"Created", "Updated", "Shipped", "Noted"}
	modelPrefix  = []string{"", "", "a-", "b-", "c", "n-", "zz"}
)

func (h *harness) pickStream() string {
	// With retention, new streams written once would soon have no event
	// left in the log; see opReopen for why that is avoided.
	if !h.retention && h.rng.IntN(12) == 0 {
		h.newNames++
		return fmt.Sprintf("n-%d", h.newNames)
	}
	if h.newNames > 0 && h.rng.IntN(4) == 0 {
		return fmt.Sprintf("n-%d", 1+h.rng.IntN(h.newNames))
	}
	return modelStreams[h.rng.IntN(len(modelStreams))]
}

func (h *harness) pickExpected(stream string) rewind.ExpectedVersion {
	var v uint64
	if st := h.m.streams[stream]; st != nil {
		v = st.version
	}
	switch h.rng.IntN(9) {
	case 0, 1:
		return rewind.Any
	case 2:
		return rewind.NoStream
	case 3:
		return rewind.StreamExists
	case 4, 5, 6:
		return rewind.Exactly(v)
	case 7:
		return rewind.Exactly(v + 1)
	default:
		return rewind.Exactly(uint64(h.rng.IntN(int(v) + 2)))
	}
}

func (h *harness) randID() uuid.UUID {
	var id uuid.UUID
	for id == (uuid.UUID{}) {
		for i := range id {
			id[i] = byte(h.rng.Uint32())
		}
	}
	return id
}

func (h *harness) randEvent() rewind.Event {
	e := rewind.Event{Type: modelTypes[h.rng.IntN(len(modelTypes))]}
	if h.rng.IntN(10) > 0 {
		e.ID = h.randID()
	}
	e.SchemaVersion = []uint32{0, 1, 2, 3}[h.rng.IntN(4)]
	e.ContentType = []string{"", "", rewind.DefaultContentType, "text/plain"}[h.rng.IntN(4)]
	if h.rng.IntN(3) == 0 {
		e.Metadata = map[string]string{}
		for range h.rng.IntN(4) {
			e.Metadata[fmt.Sprintf("k%d", h.rng.IntN(5))] = strings.Repeat("v", h.rng.IntN(6))
		}
	}
	size := h.rng.IntN(200)
	switch h.rng.IntN(20) {
	case 0:
		size = 3000 + h.rng.IntN(5000)
	case 1, 2, 3, 4:
		size = 200 + h.rng.IntN(1300)
	}
	e.Data = make([]byte, size)
	for i := range e.Data {
		e.Data[i] = byte(h.rng.Uint32())
	}
	if h.rng.IntN(3) == 0 {
		e.OccurredAt = time.Unix(1+h.rng.Int64N(4e9), h.rng.Int64N(1e9))
		if h.rng.IntN(2) == 0 {
			e.OccurredAt = e.OccurredAt.In(time.FixedZone("x", 3600))
		}
	}
	return e
}

func (h *harness) randEvents() []rewind.Event {
	n := 1 + h.rng.IntN(5)
	if h.rng.IntN(20) == 0 {
		n = 10 + h.rng.IntN(20)
	}
	evs := make([]rewind.Event, n)
	for i := range evs {
		evs[i] = h.randEvent()
	}
	return evs
}

func (h *harness) opAppend() {
	stream := h.pickStream()
	h.doAppend("append", stream, h.pickExpected(stream), h.randEvents())
}

// doAppend runs one append on both sides and compares.
func (h *harness) doAppend(what, stream string, expected rewind.ExpectedVersion, events []rewind.Event) (rewind.AppendResult, error) {
	h.t.Helper()
	h.logOp("%s %s expected %s, %d events", what, stream, expected, len(events))
	want, wantErr := h.m.append(stream, expected, events)
	got, err := h.s.Append(ctxBG, stream, expected, events...)
	h.outcome(fmt.Sprintf("%s to %s (expected %s)", what, stream, expected), err, wantErr)
	if err != nil {
		return got, err
	}
	if got != want {
		h.failf("%s to %s: result %+v, want %+v", what, stream, got, want)
	}
	if got.Duplicate {
		h.outcomes["duplicate"]++
		return got, nil
	}
	h.learn(uint64(got.FirstPosition), len(events))
	h.m.batches = append(h.m.batches, mBatch{stream: stream, events: slices.Clone(events), res: got})
	h.applyRetention()
	return got, nil
}

// learn reads back n records from pos to learn the ids the store chose and
// the times it recorded, checking the rest.
func (h *harness) learn(pos uint64, n int) {
	h.t.Helper()
	i := 0
	for ev, err := range h.s.ReadAll(ctxBG, rewind.ReadAllOptions{From: rewind.Position(pos), Limit: n}) {
		if err != nil {
			h.failf("read back %d: %v", pos, err)
		}
		if ev.Position != rewind.Position(pos+uint64(i)) {
			h.failf("read back %d: position %d", pos+uint64(i), ev.Position)
		}
		if err := h.m.learn(ev); err != nil {
			h.failf("%v", err)
		}
		if d := h.m.diffEvent(ev); d != "" {
			h.failf("read back: %s", d)
		}
		i++
	}
	if i != n {
		h.failf("read back %d records from %d, want %d", i, pos, n)
	}
}

// applyRetention runs retention as a background retainer would, so that
// the model knows exactly where the log starts.
func (h *harness) applyRetention() {
	h.t.Helper()
	if !h.retention {
		return
	}
	p, err := h.s.(rewind.Retainer).ApplyRetention(ctxBG)
	if err != nil {
		h.failf("retention: %v", err)
	}
	first := uint64(p)
	if first < h.m.first || first > h.m.last()+1 {
		h.failf("retention moved the first position from %d to %d (last %d)", h.m.first, first, h.m.last())
	}
	if first != h.m.first {
		h.logOp("retention: first position %d -> %d", h.m.first, first)
	}
	h.m.first = first
	h.m.forgetEmptied()
}

// retryable returns a random earlier append whose events are all still in
// the log (the store only remembers ids it can read back).
func (h *harness) retryable() (int, bool) {
	for range 10 {
		if len(h.m.batches) == 0 {
			return 0, false
		}
		i := h.rng.IntN(len(h.m.batches))
		if uint64(h.m.batches[i].res.FirstPosition) >= h.m.first {
			return i, true
		}
	}
	return 0, false
}

func (h *harness) opRetry() {
	i, ok := h.retryable()
	if !ok {
		h.opAppend()
		return
	}
	b := h.m.batches[i]
	events := slices.Clone(b.events)
	stream := b.stream
	expected := h.pickExpected(stream)
	what := "retry"
	switch h.rng.IntN(8) {
	case 0, 1, 2:
	case 3:
		what = "retry with a changed event"
		j := h.rng.IntN(len(events))
		e := events[j]
		switch h.rng.IntN(5) {
		case 0:
			e.Data = append(slices.Clone(e.Data), 1)
		case 1:
			e.Type += "x"
		case 2:
			e.Metadata = map[string]string{"changed": "yes"}
		case 3:
			e.SchemaVersion = 7
		default:
			e.OccurredAt = time.Unix(42, 0)
		}
		events[j] = e
	case 4:
		what = "retry to another stream"
		stream = h.pickStream()
	case 5:
		what = "partial retry"
		if len(events) > 1 {
			from := h.rng.IntN(len(events))
			to := from + 1 + h.rng.IntN(len(events)-from)
			if from == 0 && to == len(events) {
				to--
			}
			events = events[from:to]
		}
	case 6:
		what = "retry with new events"
		events = append(events, h.randEvents()...)
		h.rng.Shuffle(len(events), func(a, b int) { events[a], events[b] = events[b], events[a] })
	default:
		what = "retry of two appends as one"
		if i+1 < len(h.m.batches) && h.m.batches[i+1].stream == stream {
			events = append(events, h.m.batches[i+1].events...)
		} else if len(events) > 1 {
			what = "retry in another order"
			events[0], events[len(events)-1] = events[len(events)-1], events[0]
		}
	}
	h.doAppend(what, stream, expected, events)
}

func (h *harness) opDelete() {
	stream := h.pickStream()
	var v uint64
	if st := h.m.streams[stream]; st != nil {
		v = st.version
	}
	expected := []rewind.ExpectedVersion{rewind.Any, rewind.StreamExists, rewind.Exactly(v), rewind.Exactly(v),
		rewind.Exactly(v + 1), rewind.NoStream}[h.rng.IntN(6)]
	h.logOp("delete %s expected %s", stream, expected)
	want, wantErr := h.m.delete(stream, expected)
	got, err := h.s.DeleteStream(ctxBG, stream, expected)
	h.outcome(fmt.Sprintf("delete %s (expected %s)", stream, expected), err, wantErr)
	if err != nil {
		return
	}
	if uint64(got) != want {
		h.failf("delete %s: position %d, want %d", stream, got, want)
	}
	h.learn(want, 1)
	h.applyRetention()
}

// opInvalid sends input the store must refuse without writing anything.
func (h *harness) opInvalid() {
	stream := h.pickStream()
	evs := h.randEvents()
	var err error
	var want error = rewind.ErrInvalidArgument
	switch h.rng.IntN(8) {
	case 0:
		h.logOp("append with no events")
		_, err = h.s.Append(ctxBG, stream, rewind.Any)
	case 1:
		h.logOp("append with a bad type")
		evs[len(evs)-1].Type = []string{"", "$internal", "has space"}[h.rng.IntN(3)]
		_, err = h.s.Append(ctxBG, stream, rewind.Any, evs...)
	case 2:
		h.logOp("append with a repeated id")
		evs = append(evs, evs[0])
		evs[0].ID = h.randID()
		evs[len(evs)-1].ID = evs[0].ID
		_, err = h.s.Append(ctxBG, stream, rewind.Any, evs...)
	case 3:
		h.logOp("append to a bad stream name")
		_, err = h.s.Append(ctxBG, []string{"", "$all", "a b", strings.Repeat("x", 300)}[h.rng.IntN(4)], rewind.Any, evs...)
	case 4:
		h.logOp("append with a bad expected version")
		_, err = h.s.Append(ctxBG, stream, rewind.ExpectedVersion(-4-h.rng.Int64N(10)), evs...)
	case 5:
		h.logOp("append of an event over the size limit")
		evs[0].Data = make([]byte, 1<<20+1)
		want = rewind.ErrLimitExceeded
		_, err = h.s.Append(ctxBG, stream, rewind.Any, evs...)
	case 6:
		h.logOp("append with an occurred-at outside 1677-2262")
		evs[len(evs)-1].OccurredAt = time.Date([]int{1500, 3000}[h.rng.IntN(2)], 1, 1, 0, 0, 0, 0, time.UTC)
		_, err = h.s.Append(ctxBG, stream, rewind.Any, evs...)
	default:
		h.logOp("delete with expected version no-stream")
		_, err = h.s.DeleteStream(ctxBG, stream, rewind.NoStream)
	}
	if !errors.Is(err, want) {
		h.failf("invalid input: got %v, want %v", err, want)
	}
	h.checkNothingNew("invalid input")
}

// checkNothingNew checks that the log holds nothing after the model's last
// position.
func (h *harness) checkNothingNew(what string) {
	h.t.Helper()
	for ev, err := range h.s.ReadAll(ctxBG, rewind.ReadAllOptions{From: rewind.Position(h.m.last() + 1)}) {
		if err != nil {
			h.failf("%s: read after the last position: %v", what, err)
		}
		h.failf("%s changed the log: position %d was written", what, ev.Position)
	}
}

func (h *harness) opReadStream() {
	stream := h.pickStream()
	var v uint64
	if st := h.m.streams[stream]; st != nil {
		v = st.version
	}
	opts := rewind.ReadStreamOptions{Backward: h.rng.IntN(3) == 0}
	if h.rng.IntN(2) == 0 {
		opts.From = uint64(h.rng.IntN(int(v) + 3))
	}
	opts.Limit = []int{0, 0, 1, 2, 5, 100}[h.rng.IntN(6)]
	h.logOp("read stream %s %+v", stream, opts)
	want, wantErr := h.m.readStream(stream, opts)
	got, err := h.s.ReadStream(ctxBG, stream, opts)
	h.outcome(fmt.Sprintf("read stream %s %+v", stream, opts), err, wantErr)
	h.compareEvents(fmt.Sprintf("read stream %s %+v", stream, opts), got, want)
}

func (h *harness) compareEvents(what string, got []rewind.RecordedEvent, want []uint64) {
	h.t.Helper()
	for i := range got {
		if i >= len(want) || uint64(got[i].Position) != want[i] {
			h.failf("%s: got positions %v, want %v", what, positionsOf(got), want)
		}
		if d := h.m.diffEvent(&got[i]); d != "" {
			h.failf("%s: %s", what, d)
		}
		if err := h.m.learn(&got[i]); err != nil {
			h.failf("%s: %v", what, err)
		}
	}
	if len(got) != len(want) {
		h.failf("%s: got positions %v, want %v", what, positionsOf(got), want)
	}
}

func positionsOf(evs []rewind.RecordedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i := range evs {
		out[i] = uint64(evs[i].Position)
	}
	return out
}

func (h *harness) randFilter() rewind.Filter {
	f := rewind.Filter{StreamPrefix: modelPrefix[h.rng.IntN(len(modelPrefix))]}
	for _, typ := range append(slices.Clone(modelTypes), rewind.TypeStreamDeleted) {
		if h.rng.IntN(5) == 0 {
			f.Types = append(f.Types, typ)
		}
	}
	return f
}

// randStart picks a start position around the log's valid range, or a
// time, for reads and subscriptions. fromTime is the model's answer for
// the time.
func (h *harness) randStart() (pos rewind.Position, t time.Time, fromTime uint64) {
	switch h.rng.IntN(8) {
	case 0:
		return 0, time.Time{}, 0
	case 1:
		// A time: just before, at or just after a recorded time the
		// model knows, or far out.
		known := []uint64{}
		for p := h.m.first; p <= h.m.last() && h.m.log[p-1].tsKnown; p++ {
			known = append(known, p)
		}
		if len(known) == 0 || h.rng.IntN(6) == 0 {
			t = []time.Time{time.Unix(1, 0), time.Now().Add(time.Hour)}[h.rng.IntN(2)]
		} else {
			ts := h.m.log[known[h.rng.IntN(len(known))]-1].ev.RecordedAt
			t = ts.Add(time.Duration(h.rng.IntN(3)-1) * time.Nanosecond)
		}
		p, ok := h.m.firstAt(t)
		if !ok {
			return 0, time.Time{}, 0
		}
		return 0, t, p
	}
	lo := int64(h.m.first) - 2
	hi := int64(h.m.last()) + 2
	p := max(1, lo+h.rng.Int64N(hi-lo+1))
	return rewind.Position(p), time.Time{}, 0
}

func (h *harness) opReadAll() {
	from, fromTime, fromTimePos := h.randStart()
	opts := rewind.ReadAllOptions{From: from, FromTime: fromTime, Limit: []int{0, 0, 1, 3, 50}[h.rng.IntN(5)]}
	if h.rng.IntN(2) == 0 {
		opts.Filter = h.randFilter()
	}
	if h.rng.IntN(30) == 0 {
		opts.Filter.Types = append(opts.Filter.Types, "bad type")
	}
	h.logOp("read all %+v", opts)
	want, wantErr := h.m.readAll(opts, fromTimePos)
	var got []rewind.RecordedEvent
	var err error
	for ev, e := range h.s.ReadAll(ctxBG, opts) {
		if e != nil {
			err = e
			break
		}
		if len(got) > 0 && ev.RecordedAt.Before(got[len(got)-1].RecordedAt) {
			h.failf("read all: recorded time goes back at %d", ev.Position)
		}
		got = append(got, ev.Clone())
	}
	h.outcome(fmt.Sprintf("read all %+v", opts), err, wantErr)
	h.compareEvents(fmt.Sprintf("read all %+v", opts), got, want)
}

func (h *harness) opStreamInfo() {
	stream := h.pickStream()
	h.logOp("stream info %s", stream)
	h.checkStreamInfo(stream)
}

func (h *harness) checkStreamInfo(stream string) {
	h.t.Helper()
	want, wantErr := h.m.streamInfo(stream)
	got, err := h.s.StreamInfo(ctxBG, stream)
	h.outcome("stream info "+stream, err, wantErr)
	if got != want {
		h.failf("stream info %s: %+v, want %+v", stream, got, want)
	}
}

func (h *harness) opListStreams() {
	opts := rewind.ListStreamsOptions{Prefix: modelPrefix[h.rng.IntN(len(modelPrefix))],
		Limit: []int{0, 1, 3, 100}[h.rng.IntN(4)], IncludeDeleted: h.rng.IntN(2) == 0}
	if h.rng.IntN(3) == 0 {
		opts.After = h.pickStream()
	}
	h.logOp("list streams %+v", opts)
	h.checkList(opts)
}

func (h *harness) checkList(opts rewind.ListStreamsOptions) {
	h.t.Helper()
	want := h.m.listStreams(opts)
	got, err := h.s.ListStreams(ctxBG, opts)
	if err != nil || !slices.Equal(got, want) {
		h.failf("list streams %+v: %v\n got %+v\nwant %+v", opts, err, got, want)
	}
}

func (h *harness) opSubscribe() {
	if len(h.subs) >= 4 {
		h.opSubNext()
		return
	}
	after, fromTime, fromTimePos := h.randStart()
	if after > 0 && h.rng.IntN(4) > 0 {
		after-- // "after": mostly the last position seen
	}
	opts := rewind.SubscribeOptions{After: after, FromTime: fromTime}
	if h.rng.IntN(2) == 0 {
		opts.Filter = h.randFilter()
	}
	h.logOp("subscribe %+v", opts)
	h.subscribe(opts, fromTimePos)
}

func (h *harness) subscribe(opts rewind.SubscribeOptions, fromTimePos uint64) {
	h.t.Helper()
	wantErr := validFilter(opts.Filter)
	pos := uint64(opts.After)
	switch {
	case wantErr != nil:
	case !opts.FromTime.IsZero():
		pos = fromTimePos - 1
	case pos == 0:
		pos = h.m.first - 1
	case pos > h.m.last():
		wantErr = &rewind.ValidationError{Field: "position"}
	case pos+1 < h.m.first:
		wantErr = &rewind.TruncatedError{Requested: opts.After + 1, FirstAvailable: rewind.Position(h.m.first)}
	}
	sub, err := h.s.Subscribe(ctxBG, opts)
	h.outcome(fmt.Sprintf("subscribe %+v", opts), err, wantErr)
	if err != nil {
		return
	}
	if sub.Position() != rewind.Position(pos) {
		h.failf("subscribe %+v: position %d, want %d", opts, sub.Position(), pos)
	}
	h.subs = append(h.subs, &mSub{sub: sub, filter: opts.Filter, pos: pos})
}

func (h *harness) opSubNext() {
	if len(h.subs) == 0 {
		h.opSubscribe()
		return
	}
	i := h.rng.IntN(len(h.subs))
	ms := h.subs[i]
	n := 1 + h.rng.IntN(20)
	h.logOp("subscription %d (at %d, filter %+v): %d × next", i, ms.pos, ms.filter, n)
	for range n {
		want := h.m.subNext(ms.pos, ms.filter)
		ev, err := h.poll(ms.sub, want != 0)
		var te *rewind.TruncatedError
		if errors.As(err, &te) && ms.pos+1 < h.m.first && uint64(te.FirstAvailable) == h.m.first {
			// Retention removed what the subscription had still to read.
			ms.sub.Close()
			h.subs = slices.Delete(h.subs, i, i+1)
			return
		}
		if err != nil {
			h.failf("subscription at %d: %v", ms.pos, err)
		}
		got := uint64(ms.sub.Position())
		if ev == nil {
			// Nothing now: the subscription may have skipped events its
			// filter rejects, up to the log's end, but none it should
			// deliver.
			if got < ms.pos || got > h.m.last() || want != 0 && got >= want {
				h.failf("subscription at %d: nothing, at position %d; want position %d next (last %d)",
					ms.pos, got, want, h.m.last())
			}
			if want != 0 && got == ms.pos {
				h.failf("subscription at %d: nothing and no progress, want position %d", ms.pos, want)
			}
			ms.pos = got
			if want == 0 {
				return
			}
			continue
		}
		if uint64(ev.Position) != want {
			h.failf("subscription at %d: position %d, want %d", ms.pos, ev.Position, want)
		}
		if d := h.m.diffEvent(ev); d != "" {
			h.failf("subscription: %s", d)
		}
		ms.pos = want
		if got != want {
			h.failf("subscription delivered %d but says position %d", want, got)
		}
	}
}

// poll asks a subscription for its next event without waiting for the
// log to grow: with TryNext when it is a rewind.Poller, else with Next and
// a deadline, generous when an event is due (due) and short otherwise.
func (h *harness) poll(sub rewind.Subscription, due bool) (*rewind.RecordedEvent, error) {
	if p, ok := sub.(rewind.Poller); ok {
		return p.TryNext()
	}
	wait := 20 * time.Millisecond
	if due {
		wait = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctxBG, wait)
	defer cancel()
	ev, err := sub.Next(ctx)
	if !due && errors.Is(err, context.DeadlineExceeded) {
		return nil, nil
	}
	return ev, err
}

// opSubLive waits on a caught-up subscription while an append happens:
// the live path must deliver it.
func (h *harness) opSubLive() {
	var ms *mSub
	for _, s := range h.subs {
		if h.m.subNext(s.pos, rewind.Filter{}) == 0 && s.filter.StreamPrefix == "" && len(s.filter.Types) == 0 {
			ms = s
			break
		}
	}
	if ms == nil {
		h.logOp("subscribe (live)")
		h.subscribe(rewind.SubscribeOptions{After: rewind.Position(h.m.last())}, 0)
		return
	}
	type result struct {
		ev  rewind.RecordedEvent
		err error
	}
	ch := make(chan result, 1)
	ctx, cancel := context.WithTimeout(ctxBG, time.Minute)
	defer cancel()
	go func() {
		ev, err := ms.sub.Next(ctx)
		if err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{ev: ev.Clone()}
	}()
	stream := h.pickStream()
	h.doAppend("append (live)", stream, rewind.Any, []rewind.Event{h.randEvent()})
	r := <-ch
	if r.err != nil {
		h.failf("live subscription: %v", r.err)
	}
	if want := h.m.subNext(ms.pos, ms.filter); uint64(r.ev.Position) != want {
		h.failf("live subscription at %d: position %d, want %d", ms.pos, r.ev.Position, want)
	}
	if d := h.m.diffEvent(&r.ev); d != "" {
		h.failf("live subscription: %s", d)
	}
	ms.pos = uint64(r.ev.Position)
}

// opReopen restarts the store (Features.Reopen). Subscriptions that had
// caught up must end with rewind.ErrClosed; they are then resumed from
// their positions on the new store.
func (h *harness) opReopen() {
	h.reopens++
	h.logOp("reopen")
	s := h.f.Reopen(h.t, h.s)
	for _, ms := range h.subs {
		if h.m.subNext(ms.pos, ms.filter) == 0 {
			// A subscription behind retention may find that out first.
			ctx, cancel := context.WithTimeout(ctxBG, time.Minute)
			_, err := ms.sub.Next(ctx)
			cancel()
			if !errors.Is(err, rewind.ErrClosed) && !(errors.Is(err, rewind.ErrTruncated) && ms.pos+1 < h.m.first) {
				h.failf("caught-up subscription after close: %v, want ErrClosed", err)
			}
		}
		ms.sub.Close()
	}
	h.s = s
	h.applyRetention()
	subs := h.subs
	h.subs = nil
	for _, ms := range subs {
		h.subscribe(rewind.SubscribeOptions{After: rewind.Position(ms.pos), Filter: ms.filter}, 0)
	}
	h.fullCheck()
}

// fullCheck compares everything: the whole log, every stream, the list,
// and what the optional capabilities say.
func (h *harness) fullCheck() {
	h.t.Helper()
	h.logOp("full check")
	var got []rewind.RecordedEvent
	for ev, err := range h.s.ReadAll(ctxBG, rewind.ReadAllOptions{}) {
		if err != nil {
			h.failf("read all: %v", err)
		}
		got = append(got, ev.Clone())
	}
	var want []uint64
	for p := h.m.first; p <= h.m.last(); p++ {
		want = append(want, p)
	}
	h.compareEvents("full read", got, want)
	for name := range h.m.streams {
		h.checkStreamInfo(name)
		want, wantErr := h.m.readStream(name, rewind.ReadStreamOptions{})
		got, err := h.s.ReadStream(ctxBG, name, rewind.ReadStreamOptions{})
		if msg := sameError(err, wantErr); msg != "" {
			h.failf("read stream %s: %s", name, msg)
		}
		h.compareEvents("read stream "+name, got, want)
	}
	h.checkList(rewind.ListStreamsOptions{IncludeDeleted: true, Limit: 100_000})
	if d, ok := h.s.(rewind.Describer); ok {
		info, err := d.Describe(ctxBG)
		if err != nil || uint64(info.FirstPosition) != h.m.first || uint64(info.LastPosition) != h.m.last() ||
			info.Streams != len(h.m.streams) {
			h.failf("describe: %+v, %v; model: first %d, last %d, %d streams", info, err, h.m.first, h.m.last(), len(h.m.streams))
		}
	}
	if lp, ok := h.s.(rewind.LastPositioner); ok {
		if last, err := lp.LastPosition(ctxBG); err != nil || uint64(last) != h.m.last() {
			h.failf("last position %d, %v; want %d", last, err, h.m.last())
		}
	}
	if v, ok := h.s.(rewind.Verifier); ok {
		if err := v.Verify(ctxBG); err != nil {
			h.failf("verify: %v", err)
		}
	}
}
