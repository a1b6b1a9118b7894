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
	deletesWon := 0
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
		// A delete races with appends, all expecting version 4. A soft
		// delete keeps the stream's version, so an append expecting 4 may
		// follow it (and recreate the stream): exactly one append wins
		// either way, and the delete wins only if it came first.
		errs := make([]error, racers)
		wins, _ = race(func(i int) error {
			if i == 0 {
				_, errs[i] = s.DeleteStream(ctx, stream, rewind.Exactly(4))
			} else {
				_, errs[i] = s.Append(ctx, stream, rewind.Exactly(4), ev("Changed", fmt.Sprint(i)))
			}
			return errs[i]
		})
		deleted := errs[0] == nil
		deletesWon += btoi(deleted)
		if appended := wins - btoi(deleted); appended != 1 {
			t.Fatalf("round %d: %d appends expecting version 4 won (delete won: %v)", round, appended, deleted)
		}
		checkLosers("appends after the winning append", nonNil(errs[1:]), 5, true)
		if !deleted {
			checkLosers("the delete after the winning append", errs[:1], 5, true)
		}
		info, err := s.StreamInfo(ctx, stream)
		evs, rerr := s.ReadStream(ctx, stream, rewind.ReadStreamOptions{})
		want := 5 // the events of the stream
		if deleted {
			want = 1 // only the append after the delete
		}
		if err != nil || info.Version != 5 || info.Deleted || rerr != nil || len(evs) != want || evs[len(evs)-1].Version != 5 {
			t.Fatalf("round %d (delete won: %v): info %+v, %v; %d events, %v", round, deleted, info, err, len(evs), rerr)
		}
	}
	t.Logf("the delete won %d of %d races with appends", deletesWon, rounds)
	// The whole log: every position once, in order.
	var prev rewind.Position
	for e, err := range s.ReadAll(context.Background(), rewind.ReadAllOptions{}) {
		if err != nil || e.Position != prev+1 {
			t.Fatalf("read all: position %v after %d, %v", e, prev, err)
		}
		prev = e.Position
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nonNil(errs []error) []error {
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
