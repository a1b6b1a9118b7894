package consumer

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

func positions(ds []Delivery) []rewind.Position {
	out := make([]rewind.Position, len(ds))
	for i, d := range ds {
		out[i] = d.Event.Position
	}
	return out
}

func TestDeliverAckAndResume(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	res := b.appendN("orders-1", "OrderPlaced", 10)
	b.appendN("users-1", "UserCreated", 5)
	g := b.create(GroupConfig{Name: "billing", Filter: rewind.Filter{StreamPrefix: "orders-"}})
	waitRead(t, g, res.LastPosition)
	m := b.join("billing", 0)
	ds := fetchNow(t, m, 100)
	if len(ds) != 10 || ds[0].Event.Position != 1 || ds[9].Event.Position != 10 || ds[0].Attempt != 1 {
		t.Fatalf("fetched %v", positions(ds))
	}
	for _, d := range ds[:6] {
		if err := m.Ack(bg, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Ack(bg, ds[0].ID); !errors.Is(err, ErrStaleDelivery) || rewind.CodeOf(err) != rewind.CodeInvalidArgument {
		t.Fatalf("second ack: %v", err)
	}
	in, _ := b.engine.Info("billing")
	if in.AckFloor != 6 || in.InFlight != 4 || in.Acked != 6 {
		t.Fatalf("info %+v", in)
	}
	// A clean restart keeps the acks: only the 4 un-acked come back.
	b.restart(false)
	g = b.group("billing")
	waitRead(t, g, res.LastPosition)
	m = b.join("billing", 0)
	ds = fetchNow(t, m, 100)
	if got := positions(ds); !slices.Equal(got, []rewind.Position{7, 8, 9, 10}) {
		t.Fatalf("after restart fetched %v", got)
	}
}

func TestNakBackoffAndPark(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 1)
	g := b.create(GroupConfig{Name: "g", MaxDeliveries: 3, Backoff: []time.Duration{time.Second, 10 * time.Second}})
	waitRead(t, g, 1)
	m := b.join("g", 0)
	d := fetchNow(t, m, 1)[0]
	if err := m.Nak(bg, d.ID, NakOptions{Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	if ds := fetchNow(t, m, 1); len(ds) != 0 {
		t.Fatal("redelivered before its backoff")
	}
	b.clock.Add(time.Second)
	b.engine.tick()
	d = fetchNow(t, m, 1)[0]
	if d.Attempt != 2 {
		t.Fatalf("attempt %d", d.Attempt)
	}
	// The ack wait runs out: the timeout takes the second backoff step.
	b.clock.Add(DefaultAckWait)
	b.engine.tick()
	if err := m.Ack(bg, d.ID); !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("ack after timeout: %v", err)
	}
	b.clock.Add(9 * time.Second)
	b.engine.tick()
	if ds := fetchNow(t, m, 1); len(ds) != 0 {
		t.Fatal("redelivered before the second backoff step")
	}
	b.clock.Add(time.Second)
	b.engine.tick()
	d = fetchNow(t, m, 1)[0]
	if err := m.Nak(bg, d.ID, NakOptions{Error: "still broken"}); err != nil {
		t.Fatal(err)
	}
	parked, err := b.engine.Parked(bg, "g", ParkedOptions{})
	if err != nil || len(parked) != 1 {
		t.Fatalf("parked %v %v", parked, err)
	}
	p := parked[0]
	if p.Position != 1 || p.Attempts != 3 || p.LastError != "still broken" || p.Reason != "max deliveries reached" {
		t.Fatalf("parked %+v", p)
	}
	in, _ := b.engine.Info("g")
	if in.AckFloor < 1 || in.Parked != 1 || in.Redeliveries != 2 || in.Timeouts != 1 {
		t.Fatalf("info %+v", in)
	}
}

func TestInProgressExtendsDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 1)
	g := b.create(GroupConfig{Name: "g", AckWait: 10 * time.Second})
	waitRead(t, g, 1)
	m := b.join("g", 0)
	d := fetchNow(t, m, 1)[0]
	b.clock.Add(8 * time.Second)
	if err := m.InProgress(bg, d.ID); err != nil {
		t.Fatal(err)
	}
	b.clock.Add(8 * time.Second)
	b.engine.tick()
	if err := m.Ack(bg, d.ID); err != nil {
		t.Fatalf("ack within the extended deadline: %v", err)
	}
}

func TestReplayParksAgainAndPurge(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 5)
	g := b.create(GroupConfig{Name: "g", ReplayChunk: 2})
	waitRead(t, g, 5)
	m := b.join("g", 0)
	for _, d := range fetchNow(t, m, 10) {
		if err := m.Term(bg, d.ID, "bad payload", "decode failed"); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.engine.ReplayParked(bg, "g", ReplayOptions{Through: 4})
	if err != nil || n != 4 {
		t.Fatalf("replay: %d %v", n, err)
	}
	waitReplay(t, g)
	ds := fetchNow(t, m, 10)
	if got := positions(ds); !slices.Equal(got, []rewind.Position{1, 2}) || !ds[0].Replay {
		t.Fatalf("first chunk %v", got)
	}
	// 1 succeeds; 2 fails again and is parked again, not retried.
	m.Ack(bg, ds[0].ID)
	m.Nak(bg, ds[1].ID, NakOptions{Error: "again"})
	waitReplay(t, g)
	ds = fetchNow(t, m, 10)
	if got := positions(ds); !slices.Equal(got, []rewind.Position{3, 4}) {
		t.Fatalf("second chunk %v", got)
	}
	for _, d := range ds {
		m.Ack(bg, d.ID)
	}
	waitReplay(t, g)
	if ds := fetchNow(t, m, 10); len(ds) != 0 {
		t.Fatalf("replay went on: %v", positions(ds))
	}
	parked, _ := b.engine.Parked(bg, "g", ParkedOptions{})
	if len(parked) != 2 || parked[0].Position != 2 || parked[0].Attempts != 2 ||
		parked[0].Reason != "failed again after a replay" || parked[1].Position != 5 {
		t.Fatalf("parked %+v", parked)
	}
	// Parked survives a restart; a purge removes it for good.
	b.restart(false)
	if parked, _ := b.engine.Parked(bg, "g", ParkedOptions{}); len(parked) != 2 {
		t.Fatalf("parked after restart %+v", parked)
	}
	if n, err := b.engine.PurgeParked(bg, "g", PurgeOptions{}); n != 2 || err != nil {
		t.Fatalf("purge %d %v", n, err)
	}
	b.restart(false)
	if in, _ := b.engine.Info("g"); in.Parked != 0 {
		t.Fatalf("parked after purge and restart: %d", in.Parked)
	}
}

func TestBackpressure(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 50)
	g := b.create(GroupConfig{Name: "g", MaxAckPending: 8, MaxPending: 10, MemberMaxAckPending: 5})
	waitRead(t, g, 50)
	in, _ := b.engine.Info("g")
	// Full, and no member to take the ready events: what it needs is a
	// member (an outside test saw "full" here, which hid the cure).
	if in.Status != StatusNoMembers || in.ReadPosition != 10 || !strings.Contains(in.StatusReason, "max pending") {
		t.Fatalf("info %+v", in)
	}
	m1, m2 := b.join("g", 0), b.join("g", 0)
	if ds := fetchNow(t, m1, 100); len(ds) != 5 {
		t.Fatalf("member cap: got %d", len(ds))
	}
	if ds := fetchNow(t, m2, 100); len(ds) != 3 {
		t.Fatalf("group cap: got %d", len(ds))
	}
	in, _ = b.engine.Info("g")
	if in.Status != StatusFull || in.InFlight != 8 || len(in.MemberList) != 2 || in.MemberList[0].InFlight != 5 ||
		in.MemberList[1].InFlight != 3 || !strings.Contains(in.StatusReason, "8 in flight, 0 delayed, 2 ready") {
		t.Fatalf("info %+v", in)
	}
	if _, err := b.engine.Join(bg, "g", MemberOptions{MaxAckPending: 6}); !errors.Is(err, rewind.ErrLimitExceeded) {
		t.Fatalf("member cap above the group's: %v", err)
	}
}

func TestOrderedOneInFlightPerKey(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("a", "T", 3)
	b.appendN("b", "T", 3)
	g := b.create(GroupConfig{Name: "g", OrderBy: "stream", Backoff: []time.Duration{0}})
	waitRead(t, g, 6)
	m := b.join("g", 0)
	ds := fetchNow(t, m, 10)
	if got := positions(ds); !slices.Equal(got, []rewind.Position{1, 4}) {
		t.Fatalf("heads %v", got)
	}
	// A nak keeps its key's later events waiting.
	m.Nak(bg, ds[0].ID, NakOptions{})
	m.Ack(bg, ds[1].ID)
	ds = fetchNow(t, m, 10)
	if got := positions(ds); !slices.Equal(got, []rewind.Position{1, 5}) {
		t.Fatalf("after nak %v", got)
	}
}

func TestPriorityTypesFirst(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "Low", 5)
	b.appendN("s", "Urgent", 2)
	g := b.create(GroupConfig{Name: "g", Priority: []string{"Urgent"}})
	waitRead(t, g, 7)
	m := b.join("g", 0)
	if got := positions(fetchNow(t, m, 3)); !slices.Equal(got, []rewind.Position{6, 7, 1}) {
		t.Fatalf("fetched %v", got)
	}
}

func TestAtMostOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{CommitInterval: 10 * time.Second})
	b.appendN("s", "T", 3)
	g := b.create(GroupConfig{Name: "g", Mode: AtMostOnce})
	waitRead(t, g, 3)
	m := b.join("g", 0)
	ds, err := m.Fetch(bg, 2) // waits for its commit, long before the interval
	if err != nil || len(ds) != 2 {
		t.Fatalf("fetch %v %v", ds, err)
	}
	// A crash right after the fetch: the two are not delivered again.
	b.restart(true)
	waitRead(t, b.group("g"), 3)
	m = b.join("g", 0)
	if got := positions(fetchNow(t, m, 10)); !slices.Equal(got, []rewind.Position{3}) {
		t.Fatalf("after crash %v", got)
	}
}

func TestAckAll(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 4)
	g := b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 4)
	m := b.join("g", 0)
	ds := fetchNow(t, m, 4)
	m.Ack(bg, ds[0].ID)
	err := m.AckAll(bg, []DeliveryID{ds[0].ID, ds[1].ID, ds[2].ID})
	if !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("AckAll with a stale id: %v", err)
	}
	if in, _ := b.engine.Info("g"); in.InFlight != 1 || in.Acked != 3 {
		t.Fatalf("the valid ids were not acked: %+v", in)
	}
}

// TestSecondEngineFencedOut: two engines on one store; the one whose
// commit finds the state stream moved on stops the group, and says so.
func TestSecondEngineFencedOut(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{manualCommits: true})
	b.appendN("s", "T", 4)
	g := b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 4)
	other, err := Open(bg, b.store, Config{Now: b.clock.Now, manualTicks: true, manualCommits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.abandon()
	for _, e := range []*Engine{other, b.engine} {
		m, _ := e.Join(bg, "g", MemberOptions{})
		waitRead(t, e.groups["g"], 4)
		d := fetchNow(t, m, 1)[0]
		m.Ack(bg, d.ID)
	}
	if err := other.Flush(bg); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	err = b.engine.Flush(bg)
	if !errors.Is(err, ErrGroupFailed) || rewind.CodeOf(err) != rewind.CodeFailed {
		t.Fatalf("second engine's commit: %v", err)
	}
	in, _ := b.engine.Info("g")
	if in.Status != StatusFailed || in.StatusReason == "" {
		t.Fatalf("status %s %q", in.Status, in.StatusReason)
	}
	m := b.join("g", 0)
	if _, err := m.Fetch(bg, 1); !errors.Is(err, ErrGroupFailed) {
		t.Fatalf("fetch from a failed group: %v", err)
	}
}

// TestPriorityAheadOfBacklog: priority types are delivered ahead of a
// backlog far larger than what the group holds in memory, and the main
// reader does not deliver them again when it gets there, also after a
// restart.
func TestPriorityAheadOfBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "Low", 100)
	b.appendN("s", "Urgent", 2) // 101, 102
	g := b.create(GroupConfig{Name: "g", Priority: []string{"Urgent"}, MaxAckPending: 10, MaxPending: 10})
	waitRead(t, g, 10)
	m := b.join("g", 100)
	var got []rewind.Position
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		g.mu.Lock()
		n := len(g.laneTaken)
		g.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond) // the lane reads on its own
	}
	for _, d := range fetchNow(t, m, 3) {
		got = append(got, d.Event.Position)
		m.Ack(bg, d.ID)
	}
	if !slices.Equal(got, []rewind.Position{101, 102, 1}) {
		t.Fatalf("fetched %v", got)
	}
	b.restart(false)
	g = b.group("g")
	m = b.join("g", 100)
	seen := map[rewind.Position]int{}
	for len(seen) < 99 {
		waitRead(t, g, 102)
		ds := fetchNow(t, m, 10)
		if len(ds) == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		for _, d := range ds {
			seen[d.Event.Position]++
			m.Ack(bg, d.ID)
		}
	}
	for p, n := range seen {
		if n != 1 || p < 2 || p > 100 {
			t.Fatalf("after the restart event %d delivered %d times", p, n)
		}
	}
}

func TestGroupLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 5)
	g := b.create(GroupConfig{Name: "g", Start: Start{Kind: StartPosition, Position: 3}})
	waitRead(t, g, 5)
	m := b.join("g", 0)
	if got := positions(fetchNow(t, m, 10)); !slices.Equal(got, []rewind.Position{4, 5}) {
		t.Fatalf("start after 3 delivered %v", got)
	}
	if err := b.engine.DeleteGroup(bg, "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Fetch(bg, 1); !errors.Is(err, ErrMemberLeft) {
		t.Fatalf("fetch after delete: %v", err)
	}
	if _, err := b.engine.Info("g"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("info after delete: %v", err)
	}
	// Created again under the same name, it starts afresh, also after a restart.
	g = b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 5)
	b.restart(false)
	if gs := b.engine.Groups(); len(gs) != 1 || gs[0].Config.Start.Kind != StartBeginning {
		t.Fatalf("groups after re-create and restart: %+v", gs)
	}
	waitRead(t, b.group("g"), 5)
	if got := positions(fetchNow(t, b.join("g", 0), 10)); len(got) != 5 {
		t.Fatalf("re-created group delivered %v", got)
	}
}

func TestEngineConfig(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for _, cfg := range []Config{{CommitInterval: -1}, {CommitInterval: time.Hour}, {SnapshotEvery: -3},
		{TickInterval: time.Nanosecond}} {
		if _, err := Open(bg, b.store, cfg); rewind.CodeOf(err) != rewind.CodeInvalidArgument {
			t.Errorf("config %+v: %v", cfg, err)
		}
	}
}
