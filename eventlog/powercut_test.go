package eventlog

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

var (
	powerCuts    = flag.Int("powercut.rounds", 1000, "power-cut test: number of simulated power cuts")
	powerCutSeed = flag.Uint64("powercut.seed", 0, "power-cut test: seed (0: from the clock)")
)

// A batch the power-cut test appended: its payloads say which batch and
// which record they are, so that recovery can be checked record by record.
type pcBatch struct {
	id    uint64
	n     int
	sizes []int
	first uint64 // position of its first record, once acknowledged
}

func pcPayload(id uint64, i, n, size int) []byte {
	b := make([]byte, max(size, 16))
	binary.LittleEndian.PutUint64(b, id)
	binary.LittleEndian.PutUint32(b[8:], uint32(i))
	binary.LittleEndian.PutUint32(b[12:], uint32(n))
	for j := 16; j < len(b); j++ {
		b[j] = byte(id) + byte(j)
	}
	return b
}

// TestPowerCuts appends from several writers to a log on a MemFS, cuts the
// power at a random moment (losing every unsynced write, or keeping a random
// mix of unsynced sectors), reopens from what the disk holds and checks:
//   - in sync mode, every acknowledged batch is there, intact, at its
//     positions; in interval and none mode, every batch acknowledged before
//     a Sync that returned;
//   - a batch is all there or not at all, and nothing is there that was
//     never appended, nor any batch answered "failed" (not "unknown");
//   - a power cut is never mistaken for damage: nothing is kept as
//     corruption, no segment is missing;
//   - when acknowledged positions were lost (interval, none), the cut began
//     an epoch at or before them.
//
// Each lineage of rounds reopens the disk the previous cut left, so that
// recovery after recovery is exercised too.
func TestPowerCuts(t *testing.T) {
	t.Parallel()
	seed := *powerCutSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rounds := *powerCuts
	if testing.Short() {
		rounds = min(rounds, 100)
	}
	const lineage = 25
	var stats struct{ cuts, acked, lost, torn int }
	for start := 0; start < rounds; start += lineage {
		rng := rand.New(rand.NewPCG(seed, uint64(start)))
		modes := []Durability{Sync, Sync, Interval, None}
		mode := modes[rng.IntN(len(modes))]
		cfg := Config{Durability: mode, SyncInterval: time.Duration(1+rng.IntN(3)) * time.Millisecond,
			SegmentSize: 64 << 10, NoPreallocate: rng.IntN(3) == 0, IndexInterval: 256, Logger: quietLogger()}
		var fs vfs.FS = vfs.NewMem()
		var durable []*pcBatch // batches every later open must find
		known := map[uint64]*pcBatch{}
		nextID := uint64(1)
		for round := start; round < min(start+lineage, rounds); round++ {
			what := fmt.Sprintf("seed %d, round %d, %s, prealloc %v", seed, round, mode, !cfg.NoPreallocate)
			cfg.FS = fs
			l, err := Open("/data", cfg)
			if err != nil {
				t.Fatalf("%s: open: %v", what, err)
			}
			durable = checkPowerCut(t, what, l, durable, known, &stats)
			torn := rng.IntN(2) == 0
			var acked int
			fs, acked = runAndCut(t, l, rng, &nextID, known, &durable, torn)
			stats.acked += acked
			if torn {
				stats.torn++
			}
			stats.cuts++
		}
		cfg.FS = fs
		l, err := Open("/data", cfg)
		if err != nil {
			t.Fatalf("seed %d: last open: %v", seed, err)
		}
		checkPowerCut(t, fmt.Sprintf("seed %d, after the last cut", seed), l, durable, known, &stats)
		l.Close()
	}
	t.Logf("seed %d: %d power cuts (%d tearing unsynced writes), %d batches acknowledged, %d acknowledged batches lost "+
		"within the interval/none bound", seed, stats.cuts, stats.torn, stats.acked, stats.lost)
}

// runAndCut appends from 3 writers until the power is cut at a random
// moment, and returns the filesystem the cut left. Batches acknowledged
// before a Sync that returned are added to durable; in sync mode every
// acknowledged one.
func runAndCut(t *testing.T, l *Log, rng *rand.Rand, nextID *uint64, known map[uint64]*pcBatch, durable *[]*pcBatch, torn bool) (vfs.FS, int) {
	mem := l.fs.(*vfs.MemFS)
	var mu sync.Mutex
	var acked []*pcBatch
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 3 {
		n := 1 + rng.IntN(4)
		sizes := make([][]int, 40)
		for i := range sizes {
			for range n {
				sizes[i] = append(sizes[i], 16+rng.IntN(3000))
			}
		}
		ids := make([]uint64, len(sizes))
		mu.Lock()
		for i := range ids {
			ids[i] = *nextID
			*nextID++
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, sz := range sizes {
				select {
				case <-stop:
					return
				default:
				}
				b := &pcBatch{id: ids[i], n: len(sz), sizes: sz}
				entries := make([]Entry, len(sz))
				for j, s := range sz {
					entries[j] = Entry{Kind: 1, Payload: pcPayload(b.id, j, len(sz), s)}
				}
				mu.Lock()
				known[b.id] = b
				mu.Unlock()
				a, err := l.Append(entries)
				if err == nil {
					err = a.Wait(context.Background())
				}
				if err != nil {
					if !errors.Is(err, rewind.ErrFailed) {
						t.Errorf("writer %d: %v, want a failure after the power cut", w, err)
					}
					return
				}
				b.first = a.First
				mu.Lock()
				acked = append(acked, b)
				mu.Unlock()
			}
		}()
	}
	syncMode := l.Durability() == Sync
	// Cut the power after a random number of acknowledgements, syncing
	// now and then in the other modes.
	target := rng.IntN(60)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= target {
			break
		}
		if !syncMode && rng.IntN(8) == 0 {
			mu.Lock()
			before := append([]*pcBatch(nil), acked...)
			mu.Unlock()
			if l.Sync() == nil {
				for _, b := range before {
					markDurable(durable, b)
				}
			}
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
	}
	var img *vfs.MemFS
	if torn {
		img = mem.Crash(vfs.TornWrites, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
	} else {
		img = mem.Crash(vfs.DropUnsynced, nil)
	}
	close(stop)
	wg.Wait()
	l.Close()
	if syncMode {
		mu.Lock()
		for _, b := range acked {
			markDurable(durable, b)
		}
		mu.Unlock()
	}
	return img, len(acked)
}

func markDurable(durable *[]*pcBatch, b *pcBatch) {
	for _, d := range *durable {
		if d == b {
			return
		}
	}
	*durable = append(*durable, b)
}

// checkPowerCut checks a log reopened after a power cut and returns the
// batches the next rounds must still find: the durable ones, at the
// positions they have now.
func checkPowerCut(t *testing.T, what string, l *Log, durable []*pcBatch, known map[uint64]*pcBatch, stats *struct{ cuts, acked, lost, torn int }) []*pcBatch {
	t.Helper()
	if len(l.Damage()) != 0 || len(l.Missing()) != 0 {
		t.Fatalf("%s: a power cut was taken for damage: %v %v", what, l.Damage(), l.Missing())
	}
	found := map[uint64]uint64{} // batch id -> first position
	r := l.NewReader(1)
	defer r.Close()
	var cur *pcBatch
	next := 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: read at %d: %v", what, r.Position(), err)
		}
		id := binary.LittleEndian.Uint64(rec.Payload)
		i := int(binary.LittleEndian.Uint32(rec.Payload[8:]))
		b := known[id]
		if b == nil || i >= b.n || string(rec.Payload) != string(pcPayload(id, i, b.n, b.sizes[i])) {
			t.Fatalf("%s: position %d holds a record that was never appended", what, rec.Position)
		}
		if cur != nil && (b != cur || i != next) || cur == nil && i != 0 {
			t.Fatalf("%s: position %d: batch %d record %d, where batch %v record %d was due: a batch is not whole", what, rec.Position, id, i, cur, next)
		}
		if i == 0 {
			found[id] = rec.Position
		}
		cur, next = b, i+1
		if next == b.n {
			if !rec.BatchEnd {
				t.Fatalf("%s: the last record of batch %d has no batch-end flag", what, id)
			}
			cur, next = nil, 0
		}
	}
	if cur != nil {
		t.Fatalf("%s: batch %d ends after %d of its %d records", what, cur.id, next, cur.n)
	}
	var keep []*pcBatch
	for _, b := range durable {
		first, ok := found[b.id]
		switch {
		case !ok && l.Durability() == Sync:
			t.Fatalf("%s: acknowledged batch %d (positions from %d) is lost in sync mode", what, b.id, b.first)
		case !ok:
			// The documented bound: only appends after the last Sync can
			// go. A batch acknowledged before a Sync that returned cannot.
			t.Fatalf("%s: batch %d, acknowledged before a Sync that returned, is lost", what, b.id)
		case first != b.first:
			t.Fatalf("%s: batch %d moved from position %d to %d", what, b.id, b.first, first)
		}
		keep = append(keep, b)
	}
	// Acknowledged batches that are gone (interval, none) began an epoch.
	for id, b := range known {
		if b.first == 0 {
			continue
		}
		if _, ok := found[id]; ok {
			continue
		}
		stats.lost++
		e := l.Epochs()
		if len(e) < 2 || e[len(e)-1].From > b.first {
			t.Fatalf("%s: acknowledged batch at %d is gone but no epoch began at or before it: %+v", what, b.first, e)
		}
		b.first = 0 // lost for good; not counted again
	}
	for id, b := range known {
		if _, ok := found[id]; ok {
			b.first = found[id]
		}
	}
	return keep
}
