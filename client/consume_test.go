package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/consumer/middleware"
	"github.com/rewindhq/rewind/server"
)

// TestConsumeThroughServer runs a middleware chain under Client.Consume:
// the handler's results ack, nak (an error, a panic turned into one by
// Recover) and park events on the server's group, and Consume leaves the
// group when its context ends.
func TestConsumeThroughServer(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", Backoff: []time.Duration{0},
		Filter: rewind.Filter{StreamPrefix: "orders-"}}); err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := range n {
		if _, err := c.Append(ctx, "orders-"+strconv.Itoa(i%3), rewind.Any,
			rewind.Event{Type: "E", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[int]int{}
	h := func(_ context.Context, m *consumer.Message) error {
		i, _ := strconv.Atoi(string(m.Event.Data))
		mu.Lock()
		seen[i]++
		k := seen[i]
		mu.Unlock()
		if err := m.InProgress(ctx); err != nil {
			return err
		}
		switch {
		case i%10 == 3:
			return consumer.Park("poison", errors.New("cannot decode"))
		case i%10 == 5 && k == 1:
			return errors.New("try again")
		case i%10 == 7 && k == 1:
			panic("boom")
		}
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(cctx, "g", consumer.Chain(h, middleware.Recover()),
			client.ConsumeOptions{Concurrency: 4, MaxAckPending: 8, Name: "test"})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		in, err := c.GroupInfo(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		if in.Acked == n-3 && in.Parked == 3 {
			if in.Members != 1 || in.MemberList[0].Name != "test" || in.MemberList[0].MaxAckPending != 8 {
				t.Fatalf("member: %+v", in.MemberList)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group never finished: %+v", in)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	in, err := c.GroupInfo(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if in.Members != 0 || in.Redeliveries != 6 || in.InFlight != 0 {
		t.Fatalf("after Consume returned: %+v", in)
	}
	parked, err := c.Parked(ctx, "g", consumer.ParkedOptions{})
	if err != nil || len(parked) != 3 {
		t.Fatalf("parked: %v %v", parked, err)
	}
	for _, p := range parked {
		if p.Reason != "poison" || !strings.Contains(p.LastError, "cannot decode") || p.Attempts != 1 {
			t.Errorf("parked: %+v", p)
		}
	}
	for i := range n {
		want := 1
		if i%10 == 5 || i%10 == 7 {
			want = 2
		}
		if seen[i] != want {
			t.Errorf("event %d handled %d times, want %d", i, seen[i], want)
		}
	}
}

// TestConsumeUnknownGroup: a group that does not exist ends Consume at
// once with not_found, without retries.
func TestConsumeUnknownGroup(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	err := c.Consume(ctx, "nope", func(context.Context, *consumer.Message) error { return nil }, client.ConsumeOptions{})
	if rewind.CodeOf(err) != rewind.CodeNotFound || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Consume of an unknown group: %v", err)
	}
	err = c.Consume(ctx, "g", func(context.Context, *consumer.Message) error { return nil },
		client.ConsumeOptions{Concurrency: -1})
	if rewind.CodeOf(err) != rewind.CodeInvalidArgument {
		t.Fatalf("bad concurrency: %v", err)
	}
	_ = fmt.Sprint
}

// TestConsumeSurvivesServerRestart: a server shut down under a member
// ends its stream; Consume joins again once a new server runs on the same
// data directory and goes on with the group where its last commit left
// it: every event is handled, and the group ends with all of them acked.
func TestConsumeSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serve := func(addr string) (*server.Server, func()) {
		s, err := server.New(server.Config{Addr: addr, DataDir: dir, NoAuth: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(runCtx) }()
		return s, func() { cancel(); <-done }
	}
	s1, stop1 := serve("127.0.0.1:0")
	addr := s1.Addr().String()
	c, err := client.New("http://"+addr, client.Config{MaxRetries: 1000, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	appendAll := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := c.Append(ctx, "s", rewind.Any, rewind.Event{Type: "E", Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendAll(0, 10)
	var mu sync.Mutex
	seen := map[string]bool{}
	got := make(chan struct{}, 100)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(cctx, "g", func(_ context.Context, m *consumer.Message) error {
			mu.Lock()
			seen[string(m.Event.Data)] = true
			mu.Unlock()
			got <- struct{}{}
			return nil
		}, client.ConsumeOptions{})
	}()
	wait := func(n int) {
		deadline := time.After(30 * time.Second)
		for {
			mu.Lock()
			k := len(seen)
			mu.Unlock()
			if k >= n {
				return
			}
			select {
			case <-got:
			case <-deadline:
				t.Fatalf("%d distinct events handled, want %d", k, n)
			}
		}
	}
	wait(10)
	time.Sleep(200 * time.Millisecond) // the acks committed (every 100 ms)
	stop1()
	_, stop2 := serve(addr)
	defer stop2()
	appendAll(10, 20)
	wait(20)
	deadline := time.Now().Add(30 * time.Second)
	for {
		in, err := c.GroupInfo(ctx, "g")
		if err == nil && in.AckFloor > 0 && in.Pending == 0 && in.InFlight == 0 && in.Members == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not settle after the restart: %+v %v", in, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
}

// TestConsumeBoundedGroupEnds: Client.Consume of a bounded group handles
// each event of the window once (a nak'ed one again) and returns nil by
// itself once the server says the group is complete; appends after the
// end are not delivered.
func TestConsumeBoundedGroupEnds(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	for i := range 20 {
		if _, err := c.Append(ctx, "orders-"+strconv.Itoa(i%3), rewind.Any,
			rewind.Event{Type: "E", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	in, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "w", Backoff: []time.Duration{0},
		Start: consumer.Start{Kind: consumer.StartPosition, Position: 5}, End: consumer.End{Position: 15}})
	if err != nil || !in.Bounded || in.End != 15 {
		t.Fatalf("create: %+v %v", in, err)
	}
	if _, err := c.Append(ctx, "orders-9", rewind.Any, rewind.Event{Type: "E", Data: []byte("99")}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[rewind.Position]int{}
	tries := map[rewind.Position]int{}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = c.Consume(cctx, "w", func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		p := m.Event.Position
		if tries[p]++; p == 10 && tries[p] == 1 {
			return errors.New("once more")
		}
		acked[p]++
		return nil
	}, client.ConsumeOptions{Concurrency: 3})
	if err != nil || cctx.Err() != nil {
		t.Fatalf("consume: %v (ctx %v): it should end by itself when the group is complete", err, cctx.Err())
	}
	for p := rewind.Position(6); p <= 15; p++ {
		if acked[p] != 1 {
			t.Errorf("position %d acked %d times, want once", p, acked[p])
		}
	}
	if len(acked) != 10 {
		t.Fatalf("acked %v, want exactly 6..15", acked)
	}
	if in, err := c.GroupInfo(ctx, "w"); err != nil || in.Status != consumer.StatusComplete || !in.Complete {
		t.Fatalf("info: %+v %v", in, err)
	}
}

// TestConsumeAtMostOnceStopsLosingNothing: a consumer of an at-most-once
// group that stops — by its Limit, or by its handler cancelling the
// consume — has taken no event it did not handle: the server sends no
// more than it has handlers (the window), and no more than its limit.
// Before, the server sent up to the member's max ack pending and those
// waiting in the client were lost (done before they were sent): one at a
// time, 1 3 5 7 9 were handled and the others never.
func TestConsumeAtMostOnceStopsLosingNothing(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	for i := range 10 {
		if _, err := c.Append(ctx, "orders-1", rewind.Any, rewind.Event{Type: "E", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		byLimit := i%2 == 0
		name := fmt.Sprintf("g%d", i)
		cfg := consumer.GroupConfig{Name: name, Mode: consumer.AtMostOnce}
		if i%4 < 2 {
			cfg.End = consumer.End{Position: 10}
		}
		if _, err := c.CreateGroup(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		var got []rewind.Position
		for range 10 {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			var mu sync.Mutex
			n := 0
			opts := client.ConsumeOptions{}
			if byLimit {
				opts.Limit = 1
			}
			err := c.Consume(cctx, name, func(hctx context.Context, m *consumer.Message) error {
				mu.Lock()
				defer mu.Unlock()
				if n > 0 {
					<-hctx.Done()
					return hctx.Err()
				}
				n++
				got = append(got, m.Event.Position)
				if !byLimit {
					cancel()
				}
				return nil
			}, opts)
			timedOut := cctx.Err() == context.DeadlineExceeded
			cancel()
			if err != nil || timedOut {
				t.Fatalf("%s (limit %v): consume: %v (timed out %v)", name, byLimit, err, timedOut)
			}
		}
		want := []rewind.Position{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s (limit %v): handled %v, want %v", name, byLimit, got, want)
		}
	}
}
