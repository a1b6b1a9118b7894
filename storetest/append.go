package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// event returns an event with a new id.
func event(typ, data string) rewind.Event {
	return rewind.Event{ID: uuid.New(), Type: typ, Data: []byte(data)}
}

func events(n int, typ string) []rewind.Event {
	evs := make([]rewind.Event, n)
	for i := range evs {
		evs[i] = event(typ, fmt.Sprintf(`{"n":%d}`, i))
	}
	return evs
}

func mustAppend(t *testing.T, s rewind.Store, stream string, expected rewind.ExpectedVersion, evs ...rewind.Event) rewind.AppendResult {
	t.Helper()
	res, err := s.Append(ctxBG, stream, expected, evs...)
	if err != nil {
		t.Fatalf("append %d events to %s (expected %s): %v", len(evs), stream, expected, err)
	}
	return res
}

// readAll returns the whole log from opts, cloned.
func readAll(t *testing.T, s rewind.Store, opts rewind.ReadAllOptions) []rewind.RecordedEvent {
	t.Helper()
	var out []rewind.RecordedEvent
	for ev, err := range s.ReadAll(ctxBG, opts) {
		if err != nil {
			t.Fatalf("read all %+v: %v", opts, err)
		}
		out = append(out, ev.Clone())
	}
	return out
}

// lastPosition is the position of the last event in the log (0: none).
func lastPosition(t *testing.T, s rewind.Store) rewind.Position {
	t.Helper()
	evs := readAll(t, s, rewind.ReadAllOptions{})
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Position
}

func wantWEV(t *testing.T, err error, actual uint64, exists bool) {
	t.Helper()
	var we *rewind.WrongExpectedVersionError
	if !errors.As(err, &we) || we.Actual != actual || we.Exists != exists || rewind.CodeOf(err) != rewind.CodeWrongExpectedVersion {
		t.Fatalf("got %v, want a wrong expected version error with actual version %d (exists %v)", err, actual, exists)
	}
}

// testAppendAndRead: what is appended is read back as it was given, with
// the store's defaults, from the stream, the whole log and the stream info.
func testAppendAndRead(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	in := []rewind.Event{
		{ID: uuid.New(), Type: "OrderPlaced", Data: []byte(`{"total":12}`), Metadata: map[string]string{"actor": "ann"},
			OccurredAt: at, SchemaVersion: 3, ContentType: "application/vnd.x+json"},
		{ID: uuid.New(), Type: "OrderPaid", Data: []byte{0, 1, 2, 255}},
		{Type: "Noted"}, // no id: the store makes one up
	}
	before := time.Now().Add(-time.Minute)
	res := mustAppend(t, s, "orders-1", rewind.NoStream, in...)
	want := rewind.AppendResult{FirstPosition: 1, LastPosition: 3, FirstVersion: 1, LastVersion: 3}
	if res != want {
		t.Fatalf("first append to a new store: %+v, want %+v", res, want)
	}
	got, err := s.ReadStream(ctxBG, "orders-1", rewind.ReadStreamOptions{})
	if err != nil || len(got) != 3 {
		t.Fatalf("read stream: %d events, %v", len(got), err)
	}
	for i, ev := range got {
		e := in[i]
		w := rewind.RecordedEvent{Event: e, Stream: "orders-1", Version: uint64(i + 1), Position: rewind.Position(i + 1)}
		if w.SchemaVersion == 0 {
			w.SchemaVersion = 1
		}
		if w.ContentType == "" {
			w.ContentType = rewind.DefaultContentType
		}
		if e.ID == (uuid.UUID{}) {
			if ev.ID == (uuid.UUID{}) {
				t.Fatalf("event %d: the store kept a zero id", i)
			}
			w.ID = ev.ID
		}
		switch {
		case ev.ID != w.ID || ev.Type != w.Type || ev.Stream != w.Stream || ev.Version != w.Version ||
			ev.Position != w.Position || ev.SchemaVersion != w.SchemaVersion || ev.ContentType != w.ContentType:
			t.Fatalf("event %d: %+v, want %+v", i, ev, w)
		case !bytes.Equal(ev.Data, e.Data) || len(ev.Metadata) != len(e.Metadata) || !maps.Equal(ev.Metadata, e.Metadata):
			t.Fatalf("event %d: data %q metadata %v, want %q %v", i, ev.Data, ev.Metadata, e.Data, e.Metadata)
		case !ev.OccurredAt.Equal(e.OccurredAt) || ev.OccurredAt.IsZero() != e.OccurredAt.IsZero():
			t.Fatalf("event %d: occurred at %v, want %v", i, ev.OccurredAt, e.OccurredAt)
		case ev.RecordedAt.Before(before) || i > 0 && ev.RecordedAt.Before(got[i-1].RecordedAt):
			t.Fatalf("event %d: recorded at %v (before %v)", i, ev.RecordedAt, before)
		}
	}
	all := readAll(t, s, rewind.ReadAllOptions{})
	if len(all) != 3 {
		t.Fatalf("read all: %d events, want 3", len(all))
	}
	for i := range all {
		if all[i].ID != got[i].ID || all[i].Position != got[i].Position || !all[i].RecordedAt.Equal(got[i].RecordedAt) {
			t.Fatalf("read all event %d: %+v, the stream read gave %+v", i, all[i], got[i])
		}
	}
	info, err := s.StreamInfo(ctxBG, "orders-1")
	wantInfo := rewind.StreamInfo{Stream: "orders-1", Version: 3, FirstVersion: 1, FirstPosition: 1, LastPosition: 3, Count: 3}
	if err != nil || info != wantInfo {
		t.Fatalf("stream info: %+v, %v; want %+v", info, err, wantInfo)
	}
	if _, err := s.ReadStream(ctxBG, "never-written", rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Fatalf("read of a stream never written: %v, want not found", err)
	}
	if _, err := s.StreamInfo(ctxBG, "never-written"); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Fatalf("info of a stream never written: %v, want not found", err)
	}
}

// testVersionsWithoutGaps: concurrent appends to a few streams leave
// versions 1..n in each stream and strictly increasing, gapless positions
// across the log, each append's events together.
func testVersionsWithoutGaps(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	const writers, appends = 8, 25
	var mu sync.Mutex
	results := map[string][]rewind.AppendResult{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				stream := fmt.Sprintf("gapless-%d", (w+i)%3)
				res, err := s.Append(ctxBG, stream, rewind.Any, events(1+(w+i)%3, "T")...)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				results[stream] = append(results[stream], res)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	total := 0
	for stream, rs := range results {
		slices.SortFunc(rs, func(a, b rewind.AppendResult) int { return int(a.FirstVersion) - int(b.FirstVersion) })
		next := uint64(1)
		for _, r := range rs {
			n := r.LastVersion - r.FirstVersion + 1
			if r.FirstVersion != next || uint64(r.LastPosition-r.FirstPosition)+1 != n || r.Duplicate {
				t.Fatalf("%s: append %+v after version %d", stream, r, next-1)
			}
			next += n
		}
		evs, err := s.ReadStream(ctxBG, stream, rewind.ReadStreamOptions{})
		if err != nil || uint64(len(evs)) != next-1 {
			t.Fatalf("%s: read %d events, %v; want %d", stream, len(evs), err, next-1)
		}
		for i, ev := range evs {
			if ev.Version != uint64(i+1) || i > 0 && ev.Position <= evs[i-1].Position {
				t.Fatalf("%s: version %d at position %d follows %+v", stream, ev.Version, ev.Position, evs[max(i-1, 0)])
			}
		}
		total += len(evs)
	}
	all := readAll(t, s, rewind.ReadAllOptions{})
	if len(all) != total {
		t.Fatalf("the log holds %d events, the streams %d", len(all), total)
	}
	for i, ev := range all {
		if ev.Position != rewind.Position(i+1) {
			t.Fatalf("the log's event %d has position %d: positions must start at 1 without gaps", i, ev.Position)
		}
	}
}

// testExpectedVersion: every kind of expected version, on a new, an
// existing and a deleted stream; a failed check writes nothing.
func testExpectedVersion(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	const st = "cond-1"
	fail := func(expected rewind.ExpectedVersion, actual uint64, exists bool) {
		t.Helper()
		last := lastPosition(t, s)
		_, err := s.Append(ctxBG, st, expected, event("T", "x"))
		wantWEV(t, err, actual, exists)
		if got := lastPosition(t, s); got != last {
			t.Fatalf("a failed expected-version check wrote position %d", got)
		}
	}
	fail(rewind.StreamExists, 0, false)
	fail(rewind.Exactly(1), 0, false)
	mustAppend(t, s, st, rewind.Exactly(0), event("T", "v1")) // Exactly(0): no stream yet
	fail(rewind.NoStream, 1, true)
	fail(rewind.Exactly(0), 1, true)
	fail(rewind.Exactly(2), 1, true)
	if r := mustAppend(t, s, st, rewind.StreamExists, event("T", "v2")); r.FirstVersion != 2 {
		t.Fatalf("append with stream-exists: %+v", r)
	}
	if r := mustAppend(t, s, st, rewind.Exactly(2), events(2, "T")...); r.FirstVersion != 3 || r.LastVersion != 4 {
		t.Fatalf("append with exactly 2: %+v", r)
	}
	if r := mustAppend(t, s, st, rewind.Any, event("T", "v5")); r.FirstVersion != 5 {
		t.Fatalf("append with any: %+v", r)
	}
	if _, err := s.DeleteStream(ctxBG, st, rewind.Exactly(5)); err != nil {
		t.Fatal(err)
	}
	// Deleted: no readable events, the version stays.
	fail(rewind.StreamExists, 5, false)
	fail(rewind.Exactly(4), 5, false)
	if r := mustAppend(t, s, st, rewind.NoStream, event("T", "v6")); r.FirstVersion != 6 {
		t.Fatalf("append with no-stream to a deleted stream: %+v, want version 6", r)
	}
	fail(rewind.NoStream, 6, true)
}

// testOptimisticConcurrency: writers that read a stream's version and
// append with it as the expected version never both succeed on one
// version, and a conflict reports a version newer than the one expected.
func testOptimisticConcurrency(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	const st, writers, rounds = "occ-1", 6, 15
	var mu sync.Mutex
	won := map[uint64]int{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range rounds {
				var v uint64
				info, err := s.StreamInfo(ctxBG, st)
				if err == nil {
					v = info.Version
				} else if !errors.Is(err, rewind.ErrStreamNotFound) {
					t.Errorf("stream info: %v", err)
					return
				}
				res, err := s.Append(ctxBG, st, rewind.Exactly(v), event("T", fmt.Sprint(w)))
				var we *rewind.WrongExpectedVersionError
				switch {
				case err == nil:
					if res.FirstVersion != v+1 {
						t.Errorf("append at expected version %d got version %d", v, res.FirstVersion)
					}
					mu.Lock()
					won[res.FirstVersion]++
					mu.Unlock()
				case errors.As(err, &we):
					if we.Actual <= v || !we.Exists {
						t.Errorf("expected %d, conflict says actual %d (exists %v): versions only grow", v, we.Actual, we.Exists)
					}
				default:
					t.Errorf("append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	info, err := s.StreamInfo(ctxBG, st)
	if err != nil || info.Version != uint64(len(won)) {
		t.Fatalf("stream at version %d (%v) after %d successful appends", info.Version, err, len(won))
	}
	for v, n := range won {
		if n != 1 {
			t.Fatalf("%d appends succeeded at version %d", n, v)
		}
	}
}

// testAtomicBatches: a reader never sees part of a batch, however the
// appends interleave.
func testAtomicBatches(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	const batch, writers, appends = 5, 4, 20
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range appends {
				res, err := s.Append(ctxBG, fmt.Sprintf("batch-%d", w), rewind.Any, events(batch, "T")...)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				if res.LastPosition-res.FirstPosition != batch-1 {
					t.Errorf("a batch of %d got positions %d..%d", batch, res.FirstPosition, res.LastPosition)
				}
			}
		})
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			n := map[string]int{}
			for ev, err := range s.ReadAll(ctxBG, rewind.ReadAllOptions{}) {
				if err != nil {
					t.Errorf("read all: %v", err)
					return
				}
				n[ev.Stream]++
			}
			for stream, c := range n {
				if c%batch != 0 {
					t.Errorf("a whole-log read saw %d events of %s: part of a batch", c, stream)
					return
				}
			}
			evs, err := s.ReadStream(ctxBG, "batch-0", rewind.ReadStreamOptions{})
			if err != nil && !errors.Is(err, rewind.ErrStreamNotFound) || len(evs)%batch != 0 {
				t.Errorf("a stream read saw %d events, %v: part of a batch", len(evs), err)
				return
			}
		}
	})
	wg.Wait()
	close(done)
	readers.Wait()
}

// testIdempotentRetries: a retry with the same ids is a duplicate whatever
// its expected version; any other reuse of the ids is a conflict; nothing
// is written either way.
func testIdempotentRetries(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	mustAppend(t, s, "idem-0", rewind.Any, event("T", "before"))
	batch := events(3, "T")
	orig := mustAppend(t, s, "idem-1", rewind.NoStream, batch...)
	last := lastPosition(t, s)
	for _, expected := range []rewind.ExpectedVersion{rewind.NoStream, rewind.Any, rewind.Exactly(0), rewind.Exactly(3), rewind.StreamExists} {
		res, err := s.Append(ctxBG, "idem-1", expected, batch...)
		want := orig
		want.Duplicate = true
		if err != nil || res != want {
			t.Fatalf("retry with expected %s: %+v, %v; want %+v", expected, res, err, want)
		}
	}
	if got := lastPosition(t, s); got != last {
		t.Fatalf("duplicates wrote: the log ends at %d, want %d", got, last)
	}
	second := events(2, "T")
	mustAppend(t, s, "idem-1", rewind.Any, second...)
	changed := slices.Clone(batch)
	changed[1].Data = []byte("other")
	conflicts := map[string][]rewind.Event{
		"a changed body":       changed,
		"part of the batch":    batch[:2],
		"the batch reordered":  {batch[1], batch[0], batch[2]},
		"new and old events":   append(slices.Clone(batch), event("T", "new")),
		"another stream":       batch,
		"another type":         {batch[0], batch[1], {ID: batch[2].ID, Type: "Other", Data: batch[2].Data}},
		"another schema":       {batch[0], batch[1], {ID: batch[2].ID, Type: "T", Data: batch[2].Data, SchemaVersion: 2}},
		"another metadata set": {batch[0], batch[1], {ID: batch[2].ID, Type: "T", Data: batch[2].Data, Metadata: map[string]string{"k": "v"}}},
		"two appends as one":   append(slices.Clone(batch), second...),
	}
	last = lastPosition(t, s)
	for what, evs := range conflicts {
		stream := "idem-1"
		if what == "another stream" {
			stream = "idem-2"
		}
		_, err := s.Append(ctxBG, stream, rewind.Any, evs...)
		var ic *rewind.IdempotencyConflictError
		if !errors.As(err, &ic) || rewind.CodeOf(err) != rewind.CodeIdempotencyConflict || ic.EventID == "" {
			t.Fatalf("retry with %s: %v, want an idempotency conflict", what, err)
		}
		if got := lastPosition(t, s); got != last {
			t.Fatalf("retry with %s wrote position %d", what, got)
		}
	}
	// Two different appends may carry the same ids only once: repeating an
	// id inside one batch is invalid input.
	dup := event("T", "x")
	if _, err := s.Append(ctxBG, "idem-3", rewind.Any, dup, dup); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("a batch repeating an id: %v, want invalid argument", err)
	}
	// Events without ids are never duplicates of each other.
	noID := rewind.Event{Type: "T", Data: []byte("same")}
	a := mustAppend(t, s, "idem-4", rewind.Any, noID)
	b := mustAppend(t, s, "idem-4", rewind.Any, noID)
	if b.Duplicate || b.FirstPosition == a.FirstPosition {
		t.Fatalf("two appends of an event without id: %+v then %+v, want two events", a, b)
	}
}

// testConcurrentRetries: the same batch sent by many goroutines at once is
// written once; every other sender gets the original positions.
func testConcurrentRetries(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	for round := range 10 {
		stream := fmt.Sprintf("retry-%d", round)
		batch := events(1+round%3, "T")
		results := make([]rewind.AppendResult, 8)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				var err error
				if results[i], err = s.Append(ctxBG, stream, rewind.NoStream, batch...); err != nil {
					t.Errorf("concurrent retry %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		written := 0
		for _, r := range results {
			if !r.Duplicate {
				written++
			}
			r.Duplicate = false
			if first := results[0]; r.FirstPosition != first.FirstPosition || r.LastVersion != first.LastVersion {
				t.Fatalf("concurrent retries got %+v and %+v", r, first)
			}
		}
		evs, err := s.ReadStream(ctxBG, stream, rewind.ReadStreamOptions{})
		if written != 1 || err != nil || len(evs) != len(batch) {
			t.Fatalf("%d of %d concurrent retries wrote; the stream holds %d events (%v), want %d",
				written, len(results), len(evs), err, len(batch))
		}
	}
}

// testRetryAfterRestart: a retry after a restart is still a duplicate.
func testRetryAfterRestart(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := newStore(t)
	batch := events(3, "T")
	mustAppend(t, s, "restart-0", rewind.Any, event("T", "x"))
	orig := mustAppend(t, s, "restart-1", rewind.NoStream, batch...)
	s = f.Reopen(t, s)
	defer s.Close()
	res, err := s.Append(ctxBG, "restart-1", rewind.NoStream, batch...)
	want := orig
	want.Duplicate = true
	if err != nil || res != want {
		t.Fatalf("retry after a restart: %+v, %v; want %+v", res, err, want)
	}
	changed := slices.Clone(batch)
	changed[0].Data = []byte("other")
	if _, err := s.Append(ctxBG, "restart-1", rewind.Any, changed...); !errors.Is(err, rewind.ErrIdempotencyConflict) {
		t.Fatalf("changed retry after a restart: %v, want an idempotency conflict", err)
	}
	next := mustAppend(t, s, "restart-1", rewind.Exactly(3), event("T", "y"))
	if next.FirstVersion != 4 || next.FirstPosition != orig.LastPosition+1 {
		t.Fatalf("append after a restart: %+v, want version 4 at position %d", next, orig.LastPosition+1)
	}
}

// testBadInputChangesNothing: each kind of bad input fails with a
// validation error that says what is wrong, and writes nothing.
func testBadInputChangesNothing(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	mustAppend(t, s, "good-1", rewind.Any, event("T", "x"))
	dup := event("T", "d")
	long := strings.Repeat("x", 300)
	cases := map[string]func() error{
		"no events":              func() error { _, err := s.Append(ctxBG, "bad-1", rewind.Any); return err },
		"empty stream name":      func() error { _, err := s.Append(ctxBG, "", rewind.Any, event("T", "x")); return err },
		"reserved stream name":   func() error { _, err := s.Append(ctxBG, "$all", rewind.Any, event("T", "x")); return err },
		"stream name with space": func() error { _, err := s.Append(ctxBG, "a b", rewind.Any, event("T", "x")); return err },
		"long stream name":       func() error { _, err := s.Append(ctxBG, long, rewind.Any, event("T", "x")); return err },
		"empty type":             func() error { _, err := s.Append(ctxBG, "bad-1", rewind.Any, event("", "x")); return err },
		"reserved type": func() error {
			_, err := s.Append(ctxBG, "bad-1", rewind.Any, event("T", "ok"), event(rewind.TypeStreamDeleted, "x"))
			return err
		},
		"type with space": func() error { _, err := s.Append(ctxBG, "bad-1", rewind.Any, event("a b", "x")); return err },
		"repeated id":     func() error { _, err := s.Append(ctxBG, "bad-1", rewind.Any, dup, dup); return err },
		"bad expected": func() error {
			_, err := s.Append(ctxBG, "bad-1", rewind.ExpectedVersion(-9), event("T", "x"))
			return err
		},
		"delete no-stream":    func() error { _, err := s.DeleteStream(ctxBG, "good-1", rewind.NoStream); return err },
		"delete bad name":     func() error { _, err := s.DeleteStream(ctxBG, "a b", rewind.Any); return err },
		"read bad name":       func() error { _, err := s.ReadStream(ctxBG, "$x", rewind.ReadStreamOptions{}); return err },
		"negative read limit": func() error { _, err := s.ReadStream(ctxBG, "good-1", rewind.ReadStreamOptions{Limit: -1}); return err },
		"negative list limit": func() error { _, err := s.ListStreams(ctxBG, rewind.ListStreamsOptions{Limit: -1}); return err },
		"info bad name":       func() error { _, err := s.StreamInfo(ctxBG, ""); return err },
		"occurred at 1500": func() error {
			e := event("T", "x")
			e.OccurredAt = time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)
			_, err := s.Append(ctxBG, "bad-1", rewind.Any, e)
			return err
		},
		"read all filter type": func() error {
			for _, err := range s.ReadAll(ctxBG, rewind.ReadAllOptions{Filter: rewind.Filter{Types: []string{"a b"}}}) {
				return err
			}
			return nil
		},
		"read all beyond the end": func() error {
			for _, err := range s.ReadAll(ctxBG, rewind.ReadAllOptions{From: 50}) {
				return err
			}
			return nil
		},
		"read all position and time": func() error {
			for _, err := range s.ReadAll(ctxBG, rewind.ReadAllOptions{From: 1, FromTime: time.Now()}) {
				return err
			}
			return nil
		},
		"subscribe beyond the end": func() error {
			sub, err := s.Subscribe(ctxBG, rewind.SubscribeOptions{After: 50})
			if err == nil {
				sub.Close()
			}
			return err
		},
		"subscribe filter type": func() error {
			sub, err := s.Subscribe(ctxBG, rewind.SubscribeOptions{Filter: rewind.Filter{Types: []string{""}}})
			if err == nil {
				sub.Close()
			}
			return err
		},
	}
	for what, call := range cases {
		err := call()
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || rewind.CodeOf(err) != rewind.CodeInvalidArgument || ve.Reason == "" {
			t.Errorf("%s: %v (%T), want a *rewind.ValidationError with a reason", what, err, err)
		}
	}
	if last := lastPosition(t, s); last != 1 {
		t.Fatalf("bad input wrote: the log ends at %d, want 1", last)
	}
	list, err := s.ListStreams(ctxBG, rewind.ListStreamsOptions{IncludeDeleted: true})
	if err != nil || len(list) != 1 || list[0].Stream != "good-1" {
		t.Fatalf("bad input created streams: %+v, %v", list, err)
	}
}

// testLimits: an event or a batch over the store's limits fails with a
// limit error and writes nothing.
func testLimits(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	big := event("T", "")
	big.Data = make([]byte, f.MaxEventSize+1)
	cases := map[string][]rewind.Event{
		"an event over the size limit": {event("T", "ok"), big},
		"a batch over the event limit": events(f.MaxBatchEvents+1, "T"),
	}
	for what, evs := range cases {
		_, err := s.Append(ctxBG, "limits-1", rewind.Any, evs...)
		var le *rewind.LimitError
		if !errors.As(err, &le) || rewind.CodeOf(err) != rewind.CodeLimitExceeded || le.Max == 0 {
			t.Errorf("%s: %v, want a *rewind.LimitError", what, err)
		}
	}
	if last := lastPosition(t, s); last != 0 {
		t.Fatalf("appends over the limits wrote up to position %d", last)
	}
	// At the limits, both are fine.
	atLimit := event("T", "")
	atLimit.Data = make([]byte, f.MaxEventSize/2)
	mustAppend(t, s, "limits-1", rewind.Any, atLimit)
	mustAppend(t, s, "limits-1", rewind.Any, events(f.MaxBatchEvents, "T")...)
}

// testDeletes: a soft delete hides a stream from stream reads and lists,
// leaves a delete record in the whole log, and appending again continues
// the versions.
func testDeletes(t *testing.T, newStore func(t *testing.T) rewind.Store, f Features) {
	s := open(t, newStore)
	mustAppend(t, s, "del-1", rewind.Any, events(2, "T")...)
	mustAppend(t, s, "del-2", rewind.Any, event("T", "x"))
	if _, err := s.DeleteStream(ctxBG, "del-1", rewind.Exactly(1)); err == nil {
		t.Fatal("delete with a wrong expected version succeeded")
	} else {
		wantWEV(t, err, 2, true)
	}
	pos, err := s.DeleteStream(ctxBG, "del-1", rewind.Exactly(2))
	if err != nil || pos != 4 {
		t.Fatalf("delete: position %d, %v; want 4", pos, err)
	}
	if _, err := s.ReadStream(ctxBG, "del-1", rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Fatalf("read of a deleted stream: %v, want not found", err)
	}
	info, err := s.StreamInfo(ctxBG, "del-1")
	if want := (rewind.StreamInfo{Stream: "del-1", Version: 2, Deleted: true}); err != nil || info != want {
		t.Fatalf("info of a deleted stream: %+v, %v; want %+v", info, err, want)
	}
	all := readAll(t, s, rewind.ReadAllOptions{})
	if len(all) != 4 || all[3].Type != rewind.TypeStreamDeleted || all[3].Stream != "del-1" || all[3].Position != pos {
		t.Fatalf("the whole log after a delete: %d events, last %+v", len(all), all[len(all)-1])
	}
	for _, expected := range []rewind.ExpectedVersion{rewind.Any, rewind.StreamExists, rewind.Exactly(2)} {
		if _, err := s.DeleteStream(ctxBG, "del-1", expected); !errors.Is(err, rewind.ErrStreamNotFound) {
			t.Fatalf("second delete (expected %s): %v, want not found", expected, err)
		}
	}
	if _, err := s.DeleteStream(ctxBG, "never-written", rewind.Any); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Fatalf("delete of a stream never written: %v, want not found", err)
	}
	list, err := s.ListStreams(ctxBG, rewind.ListStreamsOptions{Prefix: "del-"})
	if err != nil || len(list) != 1 || list[0].Stream != "del-2" {
		t.Fatalf("list after a delete: %+v, %v", list, err)
	}
	list, err = s.ListStreams(ctxBG, rewind.ListStreamsOptions{Prefix: "del-", IncludeDeleted: true})
	if err != nil || len(list) != 2 || !list[0].Deleted {
		t.Fatalf("list with deleted streams: %+v, %v", list, err)
	}
	res := mustAppend(t, s, "del-1", rewind.NoStream, event("T", "again"))
	if res.FirstVersion != 3 {
		t.Fatalf("append after a delete: %+v, want version 3", res)
	}
	evs, err := s.ReadStream(ctxBG, "del-1", rewind.ReadStreamOptions{})
	if err != nil || len(evs) != 1 || evs[0].Version != 3 {
		t.Fatalf("read after recreating a deleted stream: %+v, %v", evs, err)
	}
	info, err = s.StreamInfo(ctxBG, "del-1")
	if want := (rewind.StreamInfo{Stream: "del-1", Version: 3, FirstVersion: 3, FirstPosition: res.FirstPosition,
		LastPosition: res.FirstPosition, Count: 1}); err != nil || info != want {
		t.Fatalf("info of a recreated stream: %+v, %v; want %+v", info, err, want)
	}
}
