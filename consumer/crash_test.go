package consumer

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

var crashRounds = flag.Int("consumer.crash.rounds", 40, "consumer: crash-and-reopen rounds of the crash test")

// TestCrashRedeliveryBound stops the engine without writing what it has
// not committed (and closes and reopens the store) at random points of a
// random workload, for every ordering mode, and checks after each reopen:
//
//   - no event is lost: every event is acked and committed, held (to be
//     delivered), or parked — and at the end every event was acked or parked;
//   - the redelivery bound: an event acked before the last commit is never
//     delivered again; the events delivered again after a crash are among
//     those un-acked at the crash and those acked since the last commit.
func TestCrashRedeliveryBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		orderBy string
		prio    bool
	}{{"", false}, {"stream", false}, {"", true}} {
		t.Run(fmt.Sprintf("order=%s/priority=%v", tc.orderBy, tc.prio), func(t *testing.T) {
			t.Parallel()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			crashRun(t, rand.New(rand.NewPCG(seed, 11)), tc.orderBy, tc.prio)
		})
	}
}

func crashRun(t *testing.T, r *rand.Rand, orderBy string, prio bool) {
	b := setup(t, Config{manualCommits: true, SnapshotEvery: 2})
	cfg := GroupConfig{Name: "g", OrderBy: orderBy, MaxDeliveries: 6, Backoff: []time.Duration{0}, MaxPending: 40,
		MaxAckPending: 30}
	if prio {
		cfg.Priority = []string{"P"} // a lane reads them ahead of the backlog
	}
	b.create(cfg)
	var last rewind.Position
	appended := map[rewind.Position]bool{}
	committed := map[rewind.Position]bool{}  // acked, and the ack committed
	ackedSince := map[rewind.Position]bool{} // acked since the last commit
	parkedSeen := map[rewind.Position]bool{}
	appendSome := func() {
		res := b.appendN(fmt.Sprintf("s-%d", r.IntN(5)), []string{"T", "P"}[r.IntN(2)], 1+r.IntN(20))
		for p := res.FirstPosition; p <= res.LastPosition; p++ {
			appended[p] = true
		}
		last = res.LastPosition
	}
	flush := func() {
		if err := b.engine.Flush(bg); err != nil {
			t.Fatal(err)
		}
		for p := range ackedSince {
			committed[p] = true
		}
		clear(ackedSince)
	}
	for round := range *crashRounds {
		appendSome()
		waitRead(t, b.group("g"), last)
		m := b.join("g", 0)
		// Work a while: fetch, ack most, nak some, flush now and then.
		for step := range 5 + r.IntN(30) {
			for _, d := range fetchNow(t, m, 1+r.IntN(8)) {
				p := d.Event.Position
				if committed[p] {
					t.Fatalf("round %d: event %d delivered again after its ack was committed", round, p)
				}
				if ackedSince[p] {
					t.Fatalf("round %d: event %d delivered again without a crash", round, p)
				}
				switch r.IntN(6) {
				case 0:
					if err := m.Nak(bg, d.ID, NakOptions{}); err != nil {
						t.Fatal(err)
					}
				case 1:
					// left in flight
				default:
					if err := m.Ack(bg, d.ID); err != nil {
						t.Fatal(err)
					}
					ackedSince[p] = true
				}
			}
			if step%7 == 3 {
				flush()
			}
			if r.IntN(5) == 0 {
				appendSome()
				waitRead(t, b.group("g"), last)
			}
		}
		// Crash: what was acked since the last commit may come back.
		b.restart(true)
		clear(ackedSince)
		g := b.group("g")
		waitRead(t, g, last)
		checkNothingLost(t, round, b, g, appended, committed, parkedSeen)
	}
	// Drain: every event ends acked or parked.
	m := b.join("g", 0)
	g := b.group("g")
	for range 100_000 {
		waitRead(t, g, last)
		ds := fetchNow(t, m, 100)
		if len(ds) == 0 {
			g.mu.Lock()
			drained := g.cursor >= last && g.entries.Len() == 0
			g.mu.Unlock()
			if drained {
				break
			}
			time.Sleep(time.Millisecond) // the reader reads on
			continue
		}
		for _, d := range ds {
			if committed[d.Event.Position] {
				t.Fatalf("drain: event %d delivered again after its ack was committed", d.Event.Position)
			}
			m.Ack(bg, d.ID)
			committed[d.Event.Position] = true
		}
	}
	flush()
	ps, _ := b.engine.Parked(bg, "g", ParkedOptions{Limit: 10_000})
	for _, p := range ps {
		committed[p.Position] = true
	}
	for p := range appended {
		if !committed[p] {
			t.Fatalf("event %d was lost: neither acked nor parked", p)
		}
	}
}

// checkNothingLost checks that every appended event is committed as acked,
// held by the group, or parked.
func checkNothingLost(t *testing.T, round int, b *bundle, g *group, appended, committed,
	parked map[rewind.Position]bool) {
	t.Helper()
	ps, _ := b.engine.Parked(bg, "g", ParkedOptions{Limit: 10_000})
	for _, p := range ps {
		parked[p.Position] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range appended {
		_, held := g.entries.Get(p)
		_, isParked := g.parked.Get(p)
		switch {
		case committed[p] && held:
			t.Fatalf("round %d: event %d is held again after its ack was committed", round, p)
		case !committed[p] && !held && !isParked && p <= g.cursor: // beyond it, still to be read
			t.Fatalf("round %d: event %d lost after a crash: not acked, held nor parked", round, p)
		}
	}
}

// TestCrashImages copies the data directory while the engine runs — with
// background commits every millisecond and members acking, failing and
// flushing — which is what a crash at that moment leaves (a commit may be
// half written), and opens a store and an engine on each copy: no event
// is lost, and no event whose ack a Flush committed before the copy comes
// back.
func TestCrashImages(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Now: time.Now, CommitInterval: time.Millisecond, TickInterval: time.Millisecond,
		SnapshotEvery: 5})
	b.create(GroupConfig{Name: "g", AckWait: 50 * time.Millisecond, MaxDeliveries: 3, Backoff: []time.Duration{0}})
	var mu sync.Mutex
	acked, tried := map[rewind.Position]bool{}, map[rewind.Position]bool{}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		m := b.join("g", 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				ds, err := m.Fetch(ctx, 8)
				if err != nil {
					return
				}
				for _, d := range ds {
					if rand.IntN(5) == 0 {
						m.Nak(bg, d.ID, NakOptions{Error: "flaky"})
						continue
					}
					// Tried before the ack (an image may hold it as done),
					// acked once it is in: a Flush after that commits it.
					// (It fails if the ack wait ran out first.)
					mu.Lock()
					tried[d.Event.Position] = true
					mu.Unlock()
					if m.Ack(bg, d.ID) == nil {
						mu.Lock()
						acked[d.Event.Position] = true
						mu.Unlock()
					}
				}
			}
		}()
	}
	appended := map[rewind.Position]bool{}
	for round := range 12 {
		res := b.appendN(fmt.Sprintf("s-%d", round%3), "T", 50+rand.IntN(100))
		for p := res.FirstPosition; p <= res.LastPosition; p++ {
			appended[p] = true
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		// Everything acked before this Flush began is committed when it returns.
		mu.Lock()
		before := maps.Clone(acked)
		mu.Unlock()
		if err := b.engine.Flush(bg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
		image := t.TempDir()
		copyDir(t, image, b.dir)
		mu.Lock()
		everAcked := maps.Clone(tried)
		mu.Unlock()
		checkImage(t, round, b, image, appended, before, everAcked)
	}
	cancel()
	wg.Wait()
}

// checkImage opens a crash image and checks that it holds every event
// held (to be delivered), parked, or done — and done only if a member
// acked it — and does not hold again those whose ack a Flush committed.
func checkImage(t *testing.T, round int, b *bundle, dir string, appended, committedAcked,
	everAcked map[rewind.Position]bool) {
	t.Helper()
	s, err := store.Open(dir, b.scfg)
	if err != nil {
		t.Fatalf("round %d: open image: %v", round, err)
	}
	defer s.Close()
	e, err := Open(bg, s, Config{Logger: b.cfg.Logger, manualTicks: true, manualCommits: true})
	if err != nil {
		t.Fatalf("round %d: open engine on image: %v", round, err)
	}
	defer e.abandon()
	g := e.groups["g"]
	var last rewind.Position
	for p := range appended {
		last = max(last, p)
	}
	waitRead(t, g, last)
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range appended {
		_, held := g.entries.Get(p)
		_, parked := g.parked.Get(p)
		if committedAcked[p] && held {
			t.Fatalf("round %d: event %d held again though a Flush committed its ack", round, p)
		}
		if !held && !parked && !everAcked[p] {
			t.Fatalf("round %d: event %d lost: not held, not parked, and no member acked it", round, p)
		}
	}
}

// copyDir copies the files of src into dst (not the lock), as a crash
// leaves them: writes under way may or may not be in the copy.
func copyDir(t *testing.T, dst, src string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Name() == "LOCK" || en.IsDir() {
			continue
		}
		in, err := os.Open(filepath.Join(src, en.Name()))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
