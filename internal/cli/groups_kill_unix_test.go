//go:build unix

package cli

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
)

var groupKillRounds = flag.Int("groups-kill-rounds", 55, "rounds of TestGroupsSurviveServerKills: a SIGKILL each, a clean stop every tenth")

// childServer is `rewind serve` in a child process on a fixed address.
type childServer struct {
	t      *testing.T
	dir    string
	addr   string
	secret string
	args   []string // more arguments of serve (--store …)
	cmd    *exec.Cmd
	stderr *strings.Builder
	exited chan error
}

func (c *childServer) start() {
	c.t.Helper()
	c.cmd = exec.Command(rewindBinary(c.t), append([]string{"serve", "--data-dir", c.dir, "--addr", c.addr}, c.args...)...)
	c.cmd.Env = cleanEnv("REWIND_ADMIN_TOKEN=" + c.secret)
	c.stderr = &strings.Builder{}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(c.cmd, c.exited)
	for i := 0; ; i++ {
		res, err := http.Get("http://" + c.addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-c.exited:
			c.t.Fatalf("rewind serve exited at start: %v\n%s", err, c.stderr.String())
		default:
		}
		if i == 1000 {
			c.cmd.Process.Kill()
			c.t.Fatalf("rewind serve did not become ready: %v\n%s", err, c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *childServer) stop(sig syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.exited:
	case <-time.After(time.Minute):
		c.cmd.Process.Kill()
		c.t.Fatalf("rewind serve did not exit after %v\n%s", sig, c.stderr.String())
	}
}

// The server SIGKILLed at random moments while events are appended and
// two members consume with acks (-groups-kill-rounds, 55 by default: 50 kills),
// and stopped cleanly (SIGTERM) every tenth round: no event acknowledged
// to its writer is lost (each is delivered and acked; none parked); a
// clean stop loses no ack (the ack floor after the restart is at least
// the one read just before the stop); and after a kill an event is
// delivered again only within the bound — never when its last ack was
// sent long before the kill (10 s, far past the 100 ms commit interval:
// an engine that lost committed acks, or never committed them, fails).
func TestGroupsSurviveServerKills(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &childServer{t: t, dir: t.TempDir(), addr: ln.Addr().String(), secret: "group-kill-test-admin-secret-0123456789"}
	ln.Close()
	srv.start()
	defer func() {
		if srv.cmd.ProcessState == nil {
			srv.cmd.Process.Kill()
			<-srv.exited
		}
	}()
	url := "http://" + srv.addr
	c, err := client.New(url, client.Config{Token: srv.secret, MaxRetries: 1000, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", MemberMaxAckPending: 50}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	appended := map[uuid.UUID]bool{} // acknowledged to the writer
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
			if _, err := c.Append(appendCtx, fmt.Sprintf("s-%d", i%7), rewind.Any, evs...); err != nil {
				time.Sleep(5 * time.Millisecond) // the server is restarting; the outcome is unknown
				continue
			}
			mu.Lock()
			for _, e := range evs {
				appended[e.ID] = true
			}
			mu.Unlock()
		}
	}()
	handler := func(_ context.Context, m *consumer.Message) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		id := m.Event.ID
		deliveries[id]++
		if last, ok := lastAck[id]; ok {
			// Delivered again: only within the bound of the first kill
			// after its last ack.
			for _, k := range kills {
				if k.After(last) {
					if k.Sub(last) > 10*time.Second {
						violations = append(violations, fmt.Sprintf("event %d acked %s before a kill delivered again after it",
							m.Event.Position, k.Sub(last)))
					}
					break
				}
			}
		}
		lastAck[id] = now
		return nil
	}
	consumeCtx, stopConsumers := context.WithCancel(ctx)
	var members sync.WaitGroup
	for m := range 2 {
		members.Go(func() {
			if err := c.Consume(consumeCtx, "g", handler, client.ConsumeOptions{Concurrency: 4, Name: fmt.Sprint("m", m)}); err != nil {
				t.Errorf("member %d: %v", m, err)
			}
		})
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for round := range *groupKillRounds {
		time.Sleep(time.Duration(50+rng.IntN(300)) * time.Millisecond)
		if round%10 == 9 {
			before, err := c.GroupInfo(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			srv.stop(syscall.SIGTERM)
			srv.start()
			after, err := c.GroupInfo(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			if after.AckFloor < before.AckFloor {
				t.Errorf("round %d: the ack floor went from %d to %d over a clean stop", round, before.AckFloor, after.AckFloor)
			}
			continue
		}
		mu.Lock()
		kills = append(kills, time.Now()) // before the signal: stricter for acks racing it
		mu.Unlock()
		srv.stop(syscall.SIGKILL)
		srv.start()
	}
	stopAppends()
	<-appendDone

	// Drain: every event acked or parked.
	deadline := time.Now().Add(4 * time.Minute)
	for {
		info, err := c.GroupInfo(ctx, "g")
		last, lerr := c.LastPosition(ctx)
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
	if len(appended) == 0 || len(kills) == 0 {
		t.Fatalf("%d events appended over %d kills: the test proved nothing", len(appended), len(kills))
	}
	t.Logf("%d events acknowledged, %d delivered, %d deliveries again, over %d kills", len(appended), len(deliveries), again, len(kills))
}
