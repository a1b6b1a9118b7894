package consumer

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
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
	for _, orderBy := range []string{"", "stream"} {
		t.Run("order="+orderBy, func(t *testing.T) {
			t.Parallel()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			crashRun(t, rand.New(rand.NewPCG(seed, 11)), orderBy)
		})
	}
}

func crashRun(t *testing.T, r *rand.Rand, orderBy string) {
	b := setup(t, Config{manualCommits: true, SnapshotEvery: 2})
	b.create(GroupConfig{Name: "g", OrderBy: orderBy, MaxDeliveries: 6, Backoff: []time.Duration{0}})
	var last rewind.Position
	appended := map[rewind.Position]bool{}
	committed := map[rewind.Position]bool{}  // acked, and the ack committed
	ackedSince := map[rewind.Position]bool{} // acked since the last commit
	parkedSeen := map[rewind.Position]bool{}
	appendSome := func() {
		res := b.appendN(fmt.Sprintf("s-%d", r.IntN(5)), "T", 1+r.IntN(20))
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
	for range 10_000 {
		ds := fetchNow(t, m, 100)
		if len(ds) == 0 {
			break
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
		case !committed[p] && !held && !isParked:
			t.Fatalf("round %d: event %d lost after a crash: not acked, held nor parked", round, p)
		}
	}
}
