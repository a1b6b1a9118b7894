package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// Optimistic concurrency under contention (run with -race): many writers
// append to the same streams with exact expected versions, retrying with the
// actual version they are told; no version may be given twice or skipped,
// and versions must follow global positions.
func TestConcurrentExpectedVersions(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	const writers, perWriter, streams = 12, 40, 3
	type won struct {
		stream  string
		version uint64
		pos     rewind.Position
		id      uuid.UUID
	}
	results := make(chan won, writers*perWriter)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			versions := make([]uint64, streams) // what this writer believes
			for i := range perWriter {
				k := (w + i) % streams
				stream := fmt.Sprintf("hot-%d", k)
				e := ev("T", fmt.Sprintf("w%d-%d", w, i))
				e.ID = uuid.New()
				for attempt := 0; ; attempt++ {
					res, err := s.Append(ctx, stream, rewind.Exactly(versions[k]), e)
					var wev *rewind.WrongExpectedVersionError
					if errors.As(err, &wev) {
						if wev.Actual <= versions[k] && attempt > 0 {
							t.Errorf("%s: told actual version %d after expecting %d", stream, wev.Actual, versions[k])
							return
						}
						versions[k] = wev.Actual
						continue
					}
					if err != nil || res.Duplicate || res.FirstVersion != versions[k]+1 {
						t.Errorf("%s: append expecting %d: %+v, %v", stream, versions[k], res, err)
						return
					}
					versions[k] = res.LastVersion
					results <- won{stream, res.FirstVersion, res.FirstPosition, e.ID}
					break
				}
			}
		})
	}
	wg.Wait()
	close(results)
	if t.Failed() {
		return
	}
	byStream := map[string][]won{}
	for r := range results {
		byStream[r.stream] = append(byStream[r.stream], r)
	}
	for range 2 { // before and after a reopen
		total := 0
		for stream, rs := range byStream {
			slices.SortFunc(rs, func(a, b won) int { return int(a.version) - int(b.version) })
			evs, err := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{})
			if err != nil || len(evs) != len(rs) {
				t.Fatalf("%s: read %d events, %v; %d appends were acknowledged", stream, len(evs), err, len(rs))
			}
			for i, r := range rs {
				if r.version != uint64(i)+1 {
					t.Fatalf("%s: acknowledged versions %v… are not 1, 2, 3…", stream, r.version)
				}
				if e := evs[i]; e.Version != r.version || e.Position != r.pos || e.ID != r.id {
					t.Fatalf("%s: version %d is %s at %d, acknowledged as %s at %d", stream, r.version, e.ID, e.Position, r.id, r.pos)
				}
				if i > 0 && r.pos <= rs[i-1].pos {
					t.Fatalf("%s: version %d at position %d, after version %d at %d", stream, r.version, r.pos, i, rs[i-1].pos)
				}
			}
			total += len(rs)
		}
		if total != writers*perWriter {
			t.Fatalf("%d appends acknowledged, want %d", total, writers*perWriter)
		}
		s = reopen(t, s, b)
	}
}

// Exactly one of N appends racing with the same expected version wins; the
// others are told the version the winner made. The same holds for NoStream
// on a new stream, and for a delete racing with appends.
func TestExactlyOneRacingAppendWins(t *testing.T) {
	t.Parallel()
	s, _ := setup(t, Config{})
	const racers, rounds = 8, 25
	race := func(op func(i int) error) (wins int, losers []error) {
		start := make(chan struct{})
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				<-start
				errs[i] = op(i)
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err == nil {
				wins++
			} else {
				losers = append(losers, err)
			}
		}
		return wins, losers
	}
	checkLosers := func(what string, losers []error, actual uint64, exists bool) {
		t.Helper()
		for _, err := range losers {
			var wev *rewind.WrongExpectedVersionError
			if !errors.As(err, &wev) || wev.Actual != actual || wev.Exists != exists {
				t.Fatalf("%s: a loser got %v, want a wrong expected version with actual %d", what, err, actual)
			}
		}
	}
	for round := range rounds {
		stream := fmt.Sprintf("race-%d", round)
		wins, losers := race(func(int) error {
			_, err := s.Append(ctx, stream, rewind.NoStream, ev("Created", "x"))
			return err
		})
		if wins != 1 {
			t.Fatalf("round %d: %d appends with NoStream won", round, wins)
		}
		checkLosers("no-stream", losers, 1, true)
		for v := uint64(1); v < 4; v++ {
			wins, losers := race(func(i int) error {
				_, err := s.Append(ctx, stream, rewind.Exactly(v), ev("Changed", fmt.Sprint(i)))
				return err
			})
			if wins != 1 {
				t.Fatalf("round %d: %d appends expecting version %d won", round, wins, v)
			}
			checkLosers(fmt.Sprintf("exactly(%d)", v), losers, v+1, true)
		}
		// A delete races with appends, all expecting version 4.
		wins, losers = race(func(i int) error {
			if i == 0 {
				_, err := s.DeleteStream(ctx, stream, rewind.Exactly(4))
				return err
			}
			_, err := s.Append(ctx, stream, rewind.Exactly(4), ev("Changed", fmt.Sprint(i)))
			return err
		})
		if wins != 1 {
			t.Fatalf("round %d: %d of a delete and appends expecting version 4 won", round, wins)
		}
		info, err := s.StreamInfo(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if info.Deleted {
			checkLosers("after the delete", losers, 4, false)
		} else {
			checkLosers("after an append", losers, 5, true)
		}
		if evs, err := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{}); !info.Deleted && (err != nil || len(evs) != 5) {
			t.Fatalf("round %d: stream has %d events, %v", round, len(evs), err)
		}
	}
	// The whole log: every position once, in order.
	var prev rewind.Position
	for e, err := range s.ReadAll(context.Background(), rewind.ReadAllOptions{}) {
		if err != nil || e.Position != prev+1 {
			t.Fatalf("read all: position %v after %d, %v", e, prev, err)
		}
		prev = e.Position
	}
}
