package store

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

var storePowerCuts = flag.Int("powercut.rounds", 300, "store power-cut test: number of simulated power cuts")

type pcAppend struct {
	stream string
	events []rewind.Event
	res    rewind.AppendResult
}

// TestStorePowerCuts cuts the power under a store in sync mode (background
// index snapshots every few dozen events, so that cuts also land during
// them) and checks after each reopen that every acknowledged append is
// there at its positions and versions, that its retry is a duplicate
// answering the same positions, and that every stream reads back gapless.
func TestStorePowerCuts(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	rounds := *storePowerCuts
	if testing.Short() {
		rounds = min(rounds, 50)
	}
	const lineage = 20
	for start := 0; start < rounds; start += lineage {
		rng := rand.New(rand.NewPCG(seed, uint64(start)))
		var fs vfs.FS = vfs.NewMem()
		var acked []pcAppend
		for round := start; round < min(start+lineage, rounds); round++ {
			what := fmt.Sprintf("seed %d round %d", seed, round)
			cfg := Config{Log: eventlog.Config{FS: fs, SegmentSize: 64 << 10}, SnapshotEvery: 20 + rng.IntN(50),
				Logger: slog.New(slog.DiscardHandler)}
			s, err := Open("/data", cfg)
			if err != nil {
				t.Fatalf("%s: open: %v", what, err)
			}
			checkStoreAfterCut(t, what, s, acked)
			mem := fs.(*vfs.MemFS)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for w := range 3 {
				wg.Add(1)
				wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
				go func() {
					defer wg.Done()
					for {
						a := pcAppend{stream: fmt.Sprintf("s%d", wrng.IntN(6))}
						for range 1 + wrng.IntN(3) {
							a.events = append(a.events, rewind.Event{ID: uuid.New(), Type: "T", Data: make([]byte, 10+wrng.IntN(600))})
						}
						res, err := s.Append(context.Background(), a.stream, rewind.Any, a.events...)
						if err != nil {
							if !errors.Is(err, rewind.ErrFailed) {
								t.Errorf("%s: append: %v, want a failure after the cut", what, err)
							}
							return
						}
						a.res = res
						mu.Lock()
						acked = append(acked, a)
						mu.Unlock()
					}
				}()
			}
			time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
			if rng.IntN(2) == 0 {
				fs = mem.Crash(vfs.TornWrites, rand.New(rand.NewPCG(rng.Uint64(), 1)))
			} else {
				fs = mem.Crash(vfs.DropUnsynced, nil)
			}
			wg.Wait()
			s.Close()
		}
		s, err := Open("/data", Config{Log: eventlog.Config{FS: fs, SegmentSize: 64 << 10}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("seed %d: last open: %v", seed, err)
		}
		checkStoreAfterCut(t, fmt.Sprintf("seed %d, last open", seed), s, acked)
		s.Close()
	}
}

func checkStoreAfterCut(t *testing.T, what string, s *Store, acked []pcAppend) {
	t.Helper()
	streams := map[string][]rewind.RecordedEvent{}
	for _, a := range acked {
		if _, ok := streams[a.stream]; ok {
			continue
		}
		evs, err := s.ReadStream(context.Background(), a.stream, rewind.ReadStreamOptions{})
		if err != nil {
			t.Fatalf("%s: read %s: %v", what, a.stream, err)
		}
		for i, ev := range evs {
			if ev.Version != uint64(i+1) {
				t.Fatalf("%s: stream %s has version %d at index %d", what, a.stream, ev.Version, i)
			}
		}
		streams[a.stream] = evs
	}
	for _, a := range acked {
		evs := streams[a.stream]
		for i, e := range a.events {
			v := a.res.FirstVersion + uint64(i)
			if v > uint64(len(evs)) || evs[v-1].ID != e.ID || evs[v-1].Position != a.res.FirstPosition+rewind.Position(i) {
				t.Fatalf("%s: acknowledged event %s (stream %s version %d, position %d) is lost or moved",
					what, e.ID, a.stream, v, a.res.FirstPosition+rewind.Position(i))
			}
		}
	}
	// Retrying acknowledged appends writes nothing and answers the
	// original positions (a sample, to keep rounds short).
	for i := 0; i < len(acked); i += max(len(acked)/10, 1) {
		a := acked[i]
		res, err := s.Append(context.Background(), a.stream, rewind.Any, a.events...)
		if err != nil || !res.Duplicate || res.FirstPosition != a.res.FirstPosition {
			t.Fatalf("%s: retry of an acknowledged append: %+v, %v; want a duplicate at %d", what, res, err, a.res.FirstPosition)
		}
	}
}
