//go:build unix

package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/pgstore"
)

var groupsOwnerKills = flag.Int("groups-owner-kills", 5, "SIGKILLs of the node running the groups in TestGroupsOwnerKilled")

// groupNodes starts two `rewind serve --store postgres://…` processes on
// one migrated database and returns them, a client of each, and a store
// to ask which of them runs the groups.
func groupNodes(t *testing.T) ([]*childServer, []*client.Client, *pgstore.Store, string) {
	t.Helper()
	db := pgtest.New(t)
	if _, err := pgstore.Migrate(context.Background(), db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	const secret = "groups-nodes-test-admin-secret-0123456789"
	nodes := make([]*childServer, 2)
	clients := make([]*client.Client, 2)
	for i := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &childServer{t: t, dir: t.TempDir(), addr: ln.Addr().String(), secret: secret,
			args: []string{"--store", db.DSN, "--advertise-url", "http://" + ln.Addr().String()}}
		ln.Close()
		nodes[i].start()
		t.Cleanup(func() {
			if n := nodes[i]; n.cmd.ProcessState == nil {
				n.cmd.Process.Kill()
				<-n.exited
			}
		})
		c, err := client.New("http://"+nodes[i].addr, client.Config{Token: secret, MaxRetries: 1000,
			MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients[i] = c
	}
	st, err := pgstore.Open(context.Background(), db.DSN, pgstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return nodes, clients, st, db.DSN
}

// groupsOwner waits until one of nodes other than not (-1: any) runs the
// groups and returns its index.
func groupsOwner(t *testing.T, st *pgstore.Store, nodes []*childServer, not int) int {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		url, err := st.GroupsOwner(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			if url == "http://"+n.addr && i != not {
				return i
			}
		}
	}
	t.Fatalf("no node (other than %d) took the consumer groups within a minute", not)
	return -1
}

// TestGroupsTwoNodesOneOwner: two servers on one database, the groups run
// by one of them. A group created through either node is listed and
// described through both; a member on each node shares the events
// (competing consumers of one engine): every event is delivered, none
// twice, and the node that does not own the groups runs no engine (its
// own metrics report no group). A command's own engine over the database
// (rewind groups --store) is refused while a server runs the groups.
func TestGroupsTwoNodesOneOwner(t *testing.T) {
	t.Parallel()
	nodes, clients, st, dsn := groupNodes(t)
	ctx := context.Background()
	owner := groupsOwner(t, st, nodes, -1)
	other := 1 - owner
	// Created through the node that does not run the groups, and through
	// the one that does.
	if _, err := clients[other].CreateGroup(ctx, consumer.GroupConfig{Name: "g1", Filter: rewind.Filter{StreamPrefix: "orders-"},
		MemberMaxAckPending: 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[owner].CreateGroup(ctx, consumer.GroupConfig{Name: "g2"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		gs, err := c.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) != 2 || gs[0].Config.Name != "g1" || gs[1].Config.Name != "g2" {
			t.Fatalf("node %d lists %d groups, want g1 and g2: %+v", i, len(gs), gs)
		}
		if _, err := c.GroupInfo(ctx, "g1"); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	// The CLI, through the node that does not run them.
	code, out, errOut := run(t, "", "", "groups", "ls", "--server", "http://"+nodes[other].addr, "--token", nodes[other].secret)
	if code != 0 || !strings.Contains(out, "g1") || !strings.Contains(out, "g2") {
		t.Fatalf("groups ls through the other node: exit %d\n%s%s", code, out, errOut)
	}
	// An engine of the command itself over the database would be a second
	// one: refused, naming the server to ask.
	code, _, errOut = run(t, t.TempDir(), "", "--store", dsn, "groups", "ls")
	if code != 6 || !strings.Contains(errOut, "--server http://"+nodes[owner].addr) {
		t.Fatalf("groups ls --store while a server runs the groups: exit %d, want 6 naming the owner\n%s", code, errOut)
	}

	const n = 600
	var mu sync.Mutex
	deliveries := map[uuid.UUID]int{}
	byNode := [2]int{}
	ids := map[uuid.UUID]bool{}
	for i := 0; i < n; i += 10 {
		evs := make([]rewind.Event, 10)
		for j := range evs {
			evs[j] = rewind.Event{ID: uuid.New(), Type: "Placed", Data: []byte(`{}`)}
			ids[evs[j].ID] = true
		}
		if _, err := clients[i/10%2].Append(ctx, fmt.Sprintf("orders-%d", i%7), rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	cctx, stop := context.WithCancel(ctx)
	var members sync.WaitGroup
	for i, c := range clients {
		members.Go(func() {
			err := c.Consume(cctx, "g1", func(_ context.Context, m *consumer.Message) error {
				mu.Lock()
				deliveries[m.Event.ID]++
				byNode[i]++
				mu.Unlock()
				time.Sleep(time.Millisecond) // so that both members get a share
				return nil
			}, client.ConsumeOptions{Name: fmt.Sprint("on-node-", i)})
			if err != nil {
				t.Errorf("member on node %d: %v", i, err)
			}
		})
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		info, err := clients[other].GroupInfo(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := len(deliveries)
		mu.Unlock()
		if got == n && info.InFlight == 0 && info.Pending == 0 {
			if info.Members != 2 {
				t.Errorf("g1 has %d members, want the 2 of both nodes", info.Members)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered; group %+v", got, n, info)
		}
	}
	stop()
	members.Wait()
	mu.Lock()
	defer mu.Unlock()
	for id, k := range deliveries {
		if !ids[id] {
			t.Errorf("event %s delivered, never appended to orders-*", id)
		}
		if k != 1 {
			t.Errorf("event %s delivered %d times, want once (no node was killed)", id, k)
		}
	}
	if byNode[0] == 0 || byNode[1] == 0 {
		t.Errorf("deliveries by node %v: the member on each node should get a share", byNode)
	}
	res, err := http.Get("http://" + nodes[other].addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("metrics: %d %v", res.StatusCode, err)
	}
	if strings.Contains(string(body), "rewind_consumer_group_members{") {
		t.Errorf("the node that does not own the groups reports group metrics: it runs an engine")
	}
	t.Logf("%d events, delivered through node 0: %d, node 1: %d (node %d owns the groups)", n, byNode[0], byNode[1], owner)
}

// TestGroupsOwnerKilled: two servers on one database, a member on each,
// a writer appending through both; the node that runs the groups is
// SIGKILLed (-groups-owner-kills times, 5 by default) and started again.
// The other node takes the groups over each time (the members go on
// through their own node), no event acknowledged to the writer is lost
// (each is delivered and acked, none parked), and an event is delivered
// again only around a kill: never when its last ack was sent more than
// 10 s from every kill (the bound is one commit interval, 100 ms, before
// the kill, and the takeover after it), so not at all before the first
// kill — two engines delivering at once would break that.
func TestGroupsOwnerKilled(t *testing.T) {
	t.Parallel()
	nodes, clients, st, _ := groupNodes(t)
	ctx := context.Background()
	groupsOwner(t, st, nodes, -1)
	if _, err := clients[0].CreateGroup(ctx, consumer.GroupConfig{Name: "g", MemberMaxAckPending: 50}); err != nil {
		t.Fatal(err)
	}
	// The writer's clients give up at once, to retry on the other node.
	writers := make([]*client.Client, 2)
	for i, n := range nodes {
		c, err := client.New("http://"+n.addr, client.Config{Token: n.secret, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		writers[i] = c
	}
	var mu sync.Mutex
	appended := map[uuid.UUID]bool{}
	lastAck := map[uuid.UUID]time.Time{}
	deliveries := map[uuid.UUID]int{}
	var kills []time.Time
	var violations []string

	appendCtx, stopAppends := context.WithCancel(ctx)
	appendDone := make(chan struct{})
	go func() {
		defer close(appendDone)
		for i := 0; appendCtx.Err() == nil; i++ {
			evs := make([]rewind.Event, 5)
			for j := range evs {
				evs[j] = rewind.Event{ID: uuid.Must(uuid.NewV7()), Type: "Work", Data: fmt.Appendf(nil, `{"i":%d}`, i)}
			}
			// The same ids on the other node when one fails: a retry is
			// answered as a duplicate if the first try was written.
			for node := i % 2; appendCtx.Err() == nil; node = 1 - node {
				actx, cancel := context.WithTimeout(appendCtx, 5*time.Second)
				_, err := writers[node].Append(actx, fmt.Sprintf("s-%d", i%7), rewind.Any, evs...)
				cancel()
				if err == nil {
					mu.Lock()
					for _, e := range evs {
						appended[e.ID] = true
					}
					mu.Unlock()
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	handler := func(_ context.Context, m *consumer.Message) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		id := m.Event.ID
		deliveries[id]++
		if last, ok := lastAck[id]; ok {
			// An ack sent up to 10 s before a kill may be in no commit
			// yet; one sent after a kill, before the member found the
			// new owner, reached no engine.
			bounded := false
			for _, k := range kills {
				if d := k.Sub(last); d >= -10*time.Second && d <= 10*time.Second {
					bounded = true
				}
			}
			if !bounded {
				violations = append(violations, fmt.Sprintf("event %d, acked at %s, delivered again at %s with no "+
					"kill of the owner within 10 s of that ack (kills %v)", m.Event.Position,
					last.Format(time.StampMilli), now.Format(time.StampMilli), kills))
			}
		}
		lastAck[id] = now
		return nil
	}
	consumeCtx, stopConsumers := context.WithCancel(ctx)
	var members sync.WaitGroup
	for i, c := range clients {
		members.Go(func() {
			if err := c.Consume(consumeCtx, "g", handler, client.ConsumeOptions{Concurrency: 4, Name: fmt.Sprint("on-node-", i)}); err != nil {
				t.Errorf("member on node %d: %v", i, err)
			}
		})
	}
	acked := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(lastAck)
	}
	waitAcked := func(more int) {
		t.Helper()
		want := acked() + more
		for deadline := time.Now().Add(time.Minute); acked() < want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d events acked, want %d: the groups were not taken over\nnode 0:\n%s\nnode 1:\n%s", acked(), want,
					tail(nodes[0].stderr.String()), tail(nodes[1].stderr.String()))
			}
		}
	}
	waitAcked(200)
	for range *groupsOwnerKills {
		victim := groupsOwner(t, st, nodes, -1)
		mu.Lock()
		kills = append(kills, time.Now()) // before the signal: stricter for acks racing it
		mu.Unlock()
		nodes[victim].stop(syscall.SIGKILL)
		groupsOwner(t, st, nodes, victim) // the other node takes over
		t.Logf("kill %d: node %d took over in %s", len(kills), 1-victim, time.Since(kills[len(kills)-1]))
		waitAcked(100) // the other node delivers
		t.Logf("kill %d: 100 more acked after %s", len(kills), time.Since(kills[len(kills)-1]))
		nodes[victim].start()
	}
	stopAppends()
	<-appendDone
	t.Log("appends stopped; draining")

	deadline := time.Now().Add(2 * time.Minute)
	for {
		info, err := clients[0].GroupInfo(ctx, "g")
		last, lerr := clients[0].LastPosition(ctx)
		if err == nil && lerr == nil && info.AckFloor == last && info.InFlight == 0 && info.Pending == 0 {
			if info.Parked != 0 {
				t.Errorf("%d events parked (acks only: none should be)", info.Parked)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not drain: %+v (last position %d), %v %v", info, last, err, lerr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopConsumers()
	members.Wait()

	mu.Lock()
	defer mu.Unlock()
	lost, again := 0, 0
	for id := range appended {
		if deliveries[id] == 0 {
			lost++
		}
	}
	for _, n := range deliveries {
		again += n - 1
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged events were never delivered", lost, len(appended))
	}
	for i, v := range violations {
		if i == 10 {
			t.Errorf("… %d more", len(violations)-10)
			break
		}
		t.Error(v)
	}
	if len(kills) == 0 {
		t.Fatal("no kill: the test proved nothing")
	}
	t.Logf("%d events acknowledged, %d delivered, %d deliveries again, over %d kills of the owner",
		len(appended), len(deliveries), again, len(kills))
}

// tail is the end of a node's log, for a failure message.
func tail(s string) string { return s[max(0, len(s)-4000):] }
