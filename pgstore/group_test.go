package pgstore

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// TestGroupOutcomes runs group transactions by hand: in one group, each
// append is checked on its own, in arrival order against the streams as
// the earlier ones leave them; a failed one is answered alone and the
// others are written; an id already recorded sends the group's appends
// back one by one; two appends of the same ids are written once.
func TestGroupOutcomes(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	ctx := context.Background()
	req := func(stream string, expected rewind.ExpectedVersion, evs ...rewind.Event) *appendReq {
		t.Helper()
		b, err := s.encode(stream, evs)
		if err != nil {
			t.Fatal(err)
		}
		return &appendReq{ctx: ctx, stream: stream, expected: expected, events: evs, b: b, size: b.size, done: make(chan struct{})}
	}
	ev := func() rewind.Event { return rewind.Event{ID: uuid.New(), Type: "T"} }
	answered := func(r *appendReq) {
		t.Helper()
		select {
		case <-r.done:
		default:
			t.Fatalf("append to %s was not answered", r.stream)
		}
	}
	old := []rewind.Event{ev(), ev()}
	if _, err := s.Append(ctx, "g-old", rewind.Any, old...); err != nil {
		t.Fatal(err)
	}
	for _, withRecordedID := range []bool{false, true} {
		prefix := map[bool]string{false: "a-", true: "b-"}[withRecordedID]
		x, y := prefix+"x", prefix+"y"
		shared := []rewind.Event{ev()}
		group := []*appendReq{
			req(x, rewind.NoStream, ev(), ev()),   // written, versions 1-2
			req(x, rewind.NoStream, ev()),         // conflicts with the one before: actual 2
			req(y, rewind.Exactly(5), ev()),       // conflicts with what is committed: actual 0
			req(x, rewind.Exactly(2), shared...),  // written after the first, version 3
			req(x, rewind.Exactly(3), shared...),  // the same ids: a duplicate of the one before
			req(y, rewind.Any, ev()),              // written, version 1
			req("g-old", rewind.NoStream, old...), // a retry of a committed append: a duplicate
		}
		if withRecordedID {
			// Expected version any: it passes the check, and its id,
			// recorded already, fails the group's insert.
			group = append(group, req(prefix+"z", rewind.Any, old[0]))
		}
		before, _ := s.LastPosition(ctx)
		s.runGroup(ctx, group)
		for _, r := range group {
			answered(r)
		}
		var wev *rewind.WrongExpectedVersionError
		if r := group[0]; r.err != nil || r.res.FirstVersion != 1 || r.res.LastVersion != 2 || r.res.FirstPosition != before+1 {
			t.Fatalf("%s: first append: %+v, %v", prefix, r.res, r.err)
		}
		if r := group[1]; !errors.As(r.err, &wev) || wev.Actual != 2 || !wev.Exists {
			t.Fatalf("%s: second append: %v, want a wrong expected version with actual 2", prefix, r.err)
		}
		if r := group[2]; !errors.As(r.err, &wev) || wev.Actual != 0 || wev.Exists {
			t.Fatalf("%s: third append: %v, want a wrong expected version with actual 0", prefix, r.err)
		}
		if r := group[3]; r.err != nil || r.res.FirstVersion != 3 || r.res.Duplicate {
			t.Fatalf("%s: fourth append: %+v, %v", prefix, r.res, r.err)
		}
		if r := group[4]; r.err != nil || !r.res.Duplicate || r.res != (rewind.AppendResult{FirstPosition: group[3].res.FirstPosition,
			LastPosition: group[3].res.LastPosition, FirstVersion: 3, LastVersion: 3, Duplicate: true}) {
			t.Fatalf("%s: fifth append: %+v, %v; want a duplicate of %+v", prefix, r.res, r.err, group[3].res)
		}
		if r := group[5]; r.err != nil || r.res.FirstVersion != 1 {
			t.Fatalf("%s: sixth append: %+v, %v", prefix, r.res, r.err)
		}
		if r := group[6]; r.err != nil || !r.res.Duplicate || r.res.FirstPosition != 1 {
			t.Fatalf("%s: seventh append: %+v, %v", prefix, r.res, r.err)
		}
		if withRecordedID {
			if r := group[7]; !errors.Is(r.err, rewind.ErrIdempotencyConflict) {
				t.Fatalf("%s: append of a recorded id to another stream: %+v, %v", prefix, r.res, r.err)
			}
		}
		// The log holds the written ones, gapless, and the streams agree.
		last, _ := s.LastPosition(ctx)
		if last != before+4 {
			t.Fatalf("%s: the group wrote up to %d, want %d", prefix, last, before+4)
		}
		info, err := s.StreamInfo(ctx, x)
		if err != nil || info != (rewind.StreamInfo{Stream: x, Version: 3, FirstVersion: 1, FirstPosition: group[0].res.FirstPosition,
			LastPosition: group[3].res.LastPosition, Count: 3}) {
			t.Fatalf("%s: stream info: %+v, %v", prefix, info, err)
		}
	}
}
