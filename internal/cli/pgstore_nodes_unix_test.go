//go:build unix

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/pgstore"
)

var pgNodeKills = flag.Int("serve-kills-pg", 3, "SIGKILLs of a `rewind serve` node in TestTwoServersOnePostgres")

// TestTwoServersOnePostgres: two `rewind serve --store postgres://…`
// processes on one database. Writers append through both at once, each
// batch with ids of its own; one node is SIGKILLed mid-load (-serve-kills-pg
// times, alternately, and started again), and a writer whose append failed
// retries it, with the same ids, on the other node. The log is one global
// order without gap, every acknowledged event is at its acknowledged
// position, and no event is in it twice: a retry of an append the killed
// node had committed is answered as a duplicate.
func TestTwoServersOnePostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if _, err := pgstore.Migrate(context.Background(), db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	const secret = "pg-nodes-test-admin-secret-0123456789"
	nodes := make([]*childServer, 2)
	clients := make([]*client.Client, 2)
	for i := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &childServer{t: t, dir: t.TempDir(), addr: ln.Addr().String(), secret: secret,
			args: []string{"--store", db.DSN}}
		ln.Close()
		nodes[i].start()
		defer func(n *childServer) {
			if n.cmd.ProcessState == nil {
				n.cmd.Process.Kill()
				<-n.exited
			}
		}(nodes[i])
		c, err := client.New("http://"+nodes[i].addr, client.Config{Token: secret, MaxRetries: 1,
			MaxBackoff: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}

	var (
		mu      sync.Mutex
		acked   = map[uuid.UUID]rewind.Position{}
		batches int
		dups    int
		retried int
		bad     []error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			node := w % 2
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				evs := []rewind.Event{{ID: uuid.New(), Type: "T", Data: fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)},
					{ID: uuid.New(), Type: "T", Data: []byte(`{}`)}}
				deadline := time.Now().Add(2 * time.Minute)
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					res, err := clients[node].Append(ctx, fmt.Sprintf("n-%d", w), rewind.Any, evs...)
					cancel()
					mu.Lock()
					if err == nil {
						for k, e := range evs {
							acked[e.ID] = res.FirstPosition + rewind.Position(k)
						}
						batches++
						if res.Duplicate {
							dups++
						}
						if attempt > 0 {
							retried++
						}
						mu.Unlock()
						break
					}
					if !errors.Is(err, rewind.ErrClosed) && !errors.Is(err, rewind.ErrOutcomeUnknown) &&
						!errors.Is(err, context.DeadlineExceeded) && len(bad) < 10 {
						bad = append(bad, err) // a node gone is unavailable or outcome unknown, nothing else
					}
					mu.Unlock()
					if time.Now().After(deadline) {
						mu.Lock()
						bad = append(bad, fmt.Errorf("writer %d: an append failed for 2 minutes: %w", w, err))
						mu.Unlock()
						return
					}
					node = 1 - node // the same batch, on the other node
				}
			}
		})
	}
	waitAcked := func(n int) {
		t.Helper()
		mu.Lock()
		want := batches + n
		mu.Unlock()
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			got := batches
			mu.Unlock()
			if got >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d appends acknowledged, want %d (failures %v)", got, want, bad)
			}
		}
	}
	waitAcked(100)
	for k := range *pgNodeKills {
		victim := nodes[k%2]
		victim.stop(syscall.SIGKILL)
		waitAcked(50) // on the other node alone
		victim.start()
		waitAcked(50)
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("appends failed with errors other than unavailable, outcome unknown or the deadline: %v", bad)
	}

	seen := map[uuid.UUID]bool{}
	n := 0
	for ev, err := range clients[0].ReadAll(context.Background(), rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if ev.Position != rewind.Position(n) {
			t.Fatalf("event %d is at position %d: the global order has a gap", n, ev.Position)
		}
		if seen[ev.ID] {
			t.Fatalf("event %s is in the log twice (again at %d)", ev.ID, ev.Position)
		}
		seen[ev.ID] = true
		if pos, ok := acked[ev.ID]; !ok || pos != ev.Position {
			t.Fatalf("event %s at %d: acknowledged at %d (%v)", ev.ID, ev.Position, pos, ok)
		}
	}
	if n != len(acked) {
		t.Fatalf("the log holds %d events, %d were acknowledged: every append was retried until acknowledged", n, len(acked))
	}
	t.Logf("%d appends through two nodes, %d node kills, %d retried on the other node (%d answered as duplicates)",
		batches, *pgNodeKills, retried, dups)
}
