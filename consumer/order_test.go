package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// TestOrderPerKeyProperty drives an ordered group with random fetches,
// acks, naks, ack waits running out, parks and member churn, and checks at
// every delivery that it is the earliest event of its key not yet done,
// and that no key ever has two deliveries in flight.
func TestOrderPerKeyProperty(t *testing.T) {
	t.Parallel()
	for _, orderBy := range []string{"stream", "metadata:tenant"} {
		t.Run(orderBy, func(t *testing.T) {
			t.Parallel()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			orderProperty(t, rand.New(rand.NewPCG(seed, 7)), orderBy)
		})
	}
}

func orderProperty(t *testing.T, r *rand.Rand, orderBy string) {
	b := setup(t, Config{})
	const keys, perKey = 12, 25
	keyOf := map[rewind.Position]string{}
	var all []rewind.Position
	for v := range perKey {
		for k := range keys {
			ev := rewind.Event{Type: "T", Data: []byte("{}"), Metadata: map[string]string{"tenant": fmt.Sprint(k % 5)}}
			stream := fmt.Sprintf("acct-%d", k)
			res, err := b.store.Append(bg, stream, rewind.Any, ev)
			if err != nil {
				t.Fatal(err)
			}
			key := stream
			if orderBy != "stream" {
				key = ev.Metadata["tenant"]
			}
			keyOf[res.FirstPosition] = key
			all = append(all, res.FirstPosition)
			_ = v
		}
	}
	g := b.create(GroupConfig{Name: "g", OrderBy: orderBy, AckWait: 5 * time.Second, MaxDeliveries: 4,
		Backoff: []time.Duration{0, time.Second}})
	waitRead(t, g, all[len(all)-1])
	done := map[rewind.Position]bool{}
	inflight := map[string]DeliveryID{}
	owner := map[DeliveryID]int{}
	events := map[DeliveryID]rewind.Position{}
	members := make([]*Member, 4)
	for i := range members {
		members[i] = b.join("g", 1+r.IntN(6))
	}
	// earliest returns the earliest event of key not yet done.
	earliest := func(key string) rewind.Position {
		for _, p := range all {
			if keyOf[p] == key && !done[p] {
				return p
			}
		}
		return 0
	}
	syncParked := func() {
		ps, _ := b.engine.Parked(bg, "g", ParkedOptions{Limit: 10_000})
		for _, p := range ps {
			done[p.Position] = true
		}
	}
	forget := func(id DeliveryID) {
		delete(inflight, keyOf[events[id]])
		delete(owner, id)
		delete(events, id)
	}
	for step := 0; len(done) < len(all); step++ {
		if step > 100_000 {
			t.Fatalf("no progress: %d of %d done", len(done), len(all))
		}
		i := r.IntN(len(members))
		switch k := r.IntN(10); {
		case k < 4:
			for _, d := range fetchNow(t, members[i], 1+r.IntN(4)) {
				key := keyOf[d.Event.Position]
				if _, busy := inflight[key]; busy {
					t.Fatalf("key %s has two deliveries in flight", key)
				}
				if want := earliest(key); d.Event.Position != want {
					t.Fatalf("key %s: delivered %d, earliest not done is %d", key, d.Event.Position, want)
				}
				inflight[key], owner[d.ID], events[d.ID] = d.ID, i, d.Event.Position
			}
		case k < 8:
			for id, o := range owner {
				if o != i {
					continue
				}
				var err error
				p := events[id]
				switch r.IntN(5) {
				case 0, 1, 2:
					err = members[i].Ack(bg, id)
					done[p] = true
				case 3:
					err = members[i].Nak(bg, id, NakOptions{})
				default:
					err = members[i].Term(bg, id, "bad", "")
					done[p] = true
				}
				if err != nil {
					t.Fatal(err)
				}
				forget(id)
				break
			}
		case k < 9:
			b.clock.Add(time.Duration(r.IntN(7)) * time.Second)
			b.engine.tick()
			for id := range owner {
				g.mu.Lock()
				_, live := g.inflight[id]
				g.mu.Unlock()
				if !live {
					forget(id)
				}
			}
		default:
			members[i].Leave()
			for id, o := range owner {
				if o == i {
					forget(id)
				}
			}
			members[i] = b.join("g", 1+r.IntN(6))
		}
		syncParked()
	}
}

// TestOrderConcurrentMembers runs ordered consumers in goroutines that
// fail at random and come and go, and checks that each key's events are
// handled one at a time and acked in order.
func TestOrderConcurrentMembers(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
	const keys, perKey = 16, 40
	for v := range perKey {
		for k := range keys {
			b.appendN(fmt.Sprintf("k-%d", k), fmt.Sprint(v), 1)
		}
	}
	g := b.create(GroupConfig{Name: "g", OrderBy: "stream", MaxDeliveries: -1, Backoff: []time.Duration{0}})
	var mu sync.Mutex
	acked := map[string][]uint64{}
	busy := map[string]*atomic.Int32{}
	for k := range keys {
		busy[fmt.Sprintf("k-%d", k)] = &atomic.Int32{}
	}
	var total atomic.Int64
	var fails atomic.Int64
	handler := func(_ context.Context, m *Message) error {
		b := busy[m.Event.Stream]
		if b.Add(1) != 1 {
			t.Errorf("two handlers of key %s at once", m.Event.Stream)
		}
		defer b.Add(-1)
		if rand.IntN(4) == 0 {
			fails.Add(1)
			return errors.New("flaky")
		}
		mu.Lock()
		acked[m.Event.Stream] = append(acked[m.Event.Stream], m.Event.Version)
		mu.Unlock()
		total.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; total.Load() < keys*perKey && ctx.Err() == nil; round++ {
				m, err := b.engine.Join(ctx, "g", MemberOptions{Name: fmt.Sprint(w)})
				if err != nil {
					t.Error(err)
					return
				}
				// Each member consumes for a short while, then leaves.
				cctx, ccancel := context.WithTimeout(ctx, time.Duration(5+rand.IntN(20))*time.Millisecond)
				if err := Consume(cctx, m, handler, ConsumeOptions{Concurrency: 3}); err != nil {
					t.Error(err)
				}
				ccancel()
				m.Leave()
			}
		}()
	}
	wg.Wait()
	if total.Load() != keys*perKey {
		in, _ := b.engine.Info("g")
		t.Fatalf("acked %d of %d: %+v", total.Load(), keys*perKey, in)
	}
	for k, vs := range acked {
		if !slices.IsSorted(vs) || len(vs) != perKey {
			t.Fatalf("key %s acked out of order or not once each: %v", k, vs)
		}
	}
	t.Logf("%d failures redelivered", fails.Load())
	_ = g
}

// TestMemberLeavesMidBatch: a member that leaves with un-acked deliveries
// releases them at once to another member; what it acked never comes back.
func TestMemberLeavesMidBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 20)
	g := b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 20)
	a, c := b.join("g", 10), b.join("g", 0)
	ds := fetchNow(t, a, 10)
	var acked, unacked []rewind.Position
	for i, d := range ds {
		if i%3 == 0 {
			if err := a.Ack(bg, d.ID); err != nil {
				t.Fatal(err)
			}
			acked = append(acked, d.Event.Position)
		} else {
			unacked = append(unacked, d.Event.Position)
		}
	}
	a.Leave()
	if err := a.Ack(bg, ds[1].ID); !errors.Is(err, ErrMemberLeft) {
		t.Fatalf("ack after leaving: %v", err)
	}
	// No clock moved: the release did not wait for the ack wait.
	got := positions(fetchNow(t, c, 100))
	for _, p := range unacked {
		if !slices.Contains(got, p) {
			t.Fatalf("un-acked %d not redelivered to the other member: %v", p, got)
		}
	}
	for _, p := range acked {
		if slices.Contains(got, p) {
			t.Fatalf("acked %d delivered again: %v", p, got)
		}
	}
	if len(got) != 20-len(acked) {
		t.Fatalf("other member got %d events, want %d", len(got), 20-len(acked))
	}
}
