package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
)

// A server killed mid-request resets the connection (or closes it, when
// nothing was left unread): connect-go reports that as canceled, unknown or
// internal, but it is a broken connection, which the client retries, and
// when the retries run out reports as unavailable (exit status 9), never
// as canceled (130, for a local interrupt) nor internal.
func TestBrokenConnectionsAreRetriedThenUnavailable(t *testing.T) {
	t.Parallel()
	s, admin := setup(t)
	if _, err := admin.Append(ctx, "s", rewind.Any, rewind.Event{Type: "A"}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []proxyMode{reset, eof} {
		for _, streamAppends := range []bool{false, true} {
			t.Run(fmt.Sprintf("mode%d/stream=%v", mode, streamAppends), func(t *testing.T) {
				p := newProxy(t, s.Addr().String())
				p.setMode(mode)
				c, err := client.New(p.URL(), client.Config{Token: s.AdminSecret(), MaxRetries: 2,
					MaxBackoff: 5 * time.Millisecond, StreamAppends: streamAppends})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				wantUnavailable := func(what string, err error) {
					t.Helper()
					if !errors.Is(err, rewind.ErrClosed) || rewind.CodeOf(err) != rewind.CodeClosed {
						t.Errorf("%s over broken connections: %v (code %s), want unavailable", what, err, rewind.CodeOf(err))
					}
				}
				before := p.accepted.Load()
				_, err = c.ReadStream(ctx, "s", rewind.ReadStreamOptions{})
				wantUnavailable("ReadStream", err)
				if n := p.accepted.Load() - before; n != 3 {
					t.Errorf("ReadStream tried %d connections, want 1 + MaxRetries = 3", n)
				}
				_, err = c.StreamInfo(ctx, "s")
				wantUnavailable("StreamInfo", err)
				for _, err := range c.ReadAll(ctx, rewind.ReadAllOptions{}) {
					wantUnavailable("ReadAll", err)
				}
				_, err = c.Subscribe(ctx, rewind.SubscribeOptions{})
				wantUnavailable("Subscribe", err)
				// Events with the caller's ids: the caller can retry them
				// safely, so the server is simply unavailable.
				_, err = c.Append(ctx, "s", rewind.Any, rewind.Event{ID: uuid.New(), Type: "A"})
				wantUnavailable("Append with ids", err)
				// Events without ids got theirs from the client, which the
				// caller cannot repeat: whether the append was recorded is
				// unknown.
				_, err = c.Append(ctx, "s", rewind.Any, rewind.Event{Type: "A"})
				if !errors.Is(err, rewind.ErrOutcomeUnknown) {
					t.Errorf("Append without ids over broken connections: %v (code %s), want outcome_unknown",
						err, rewind.CodeOf(err))
				}
				// The same through an Appender, which gives events their ids.
				app := c.NewAppender(client.AppenderConfig{})
				withID, err := app.Append(ctx, "s", rewind.Event{ID: uuid.New(), Type: "A"})
				if err != nil {
					t.Fatal(err)
				}
				_, err = withID.Wait(ctx)
				wantUnavailable("Appender with ids", err)
				app.Reset("s")
				withoutID, err := app.Append(ctx, "s", rewind.Event{Type: "A"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err = withoutID.Wait(ctx); !errors.Is(err, rewind.ErrOutcomeUnknown) {
					t.Errorf("Appender without ids over broken connections: %v (code %s), want outcome_unknown",
						err, rewind.CodeOf(err))
				}
			})
		}
	}
}

// The retries go on until the server answers again.
func TestBrokenConnectionsAreRetried(t *testing.T) {
	t.Parallel()
	s, admin := setup(t)
	if _, err := admin.Append(ctx, "s", rewind.Any, rewind.Event{Type: "A"}); err != nil {
		t.Fatal(err)
	}
	for _, streamAppends := range []bool{false, true} {
		p := newProxy(t, s.Addr().String())
		p.setMode(reset)
		c, err := client.New(p.URL(), client.Config{Token: s.AdminSecret(), MaxRetries: 1000,
			MaxBackoff: 5 * time.Millisecond, StreamAppends: streamAppends})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			for p.accepted.Load() < 3 {
				time.Sleep(time.Millisecond)
			}
			p.setMode(forward)
		}()
		if evs, err := c.ReadStream(ctx, "s", rewind.ReadStreamOptions{}); err != nil || len(evs) == 0 {
			t.Fatalf("read across resets: %d events, %v", len(evs), err)
		}
		p.setMode(reset)
		p.breakAll(true)
		p.accepted.Store(0)
		go func() {
			for p.accepted.Load() < 3 {
				time.Sleep(time.Millisecond)
			}
			p.setMode(forward)
		}()
		if _, err := c.Append(ctx, "s", rewind.Any, rewind.Event{Type: "A"}); err != nil {
			t.Fatalf("append across resets (stream %v): %v", streamAppends, err)
		}
	}
}

// The server handles an append and dies before its answer: the client
// retries with the same ids and gets the original positions; the log
// holds the events once.
func TestAppendAnsweredByABrokenConnectionIsRetried(t *testing.T) {
	t.Parallel()
	for _, streamAppends := range []bool{false, true} {
		for _, rst := range []bool{true, false} {
			s, _ := setup(t)
			p := newProxy(t, s.Addr().String())
			p.setMode(mute)
			c, err := client.New(p.URL(), client.Config{Token: s.AdminSecret(), MaxBackoff: 5 * time.Millisecond,
				StreamAppends: streamAppends})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			type result struct {
				res rewind.AppendResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := c.Append(ctx, "s", rewind.Any, rewind.Event{Type: "A"}, rewind.Event{Type: "B"})
				done <- result{res, err}
			}()
			for lastPosition(t, s) < 2 {
				time.Sleep(time.Millisecond)
			}
			p.setMode(forward)
			p.breakAll(rst)
			r := <-done
			if r.err != nil || !r.res.Duplicate || r.res.FirstPosition != 1 || r.res.LastPosition != 2 {
				t.Fatalf("stream %v, rst %v: append whose answer was lost: %+v, %v; want the original positions 1-2",
					streamAppends, rst, r.res, r.err)
			}
			if last := lastPosition(t, s); last != 2 {
				t.Fatalf("the log holds %d events, want 2", last)
			}
		}
	}
}

// Many appends over one AppendStream while its connection breaks again
// and again: every append succeeds, once.
func TestStreamAppendsSurviveBrokenConnections(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	p := newProxy(t, s.Addr().String())
	c, err := client.New(p.URL(), client.Config{Token: s.AdminSecret(), MaxRetries: 1000,
		MaxBackoff: 5 * time.Millisecond, StreamAppends: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	breaker := make(chan struct{})
	go func() {
		defer close(breaker)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			p.breakAll(i%2 == 0)
		}
	}()
	var wg sync.WaitGroup
	const workers, each = 8, 40
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := c.Append(ctx, fmt.Sprintf("s-%d", w), rewind.Any, rewind.Event{Type: "E"}); err != nil {
					t.Errorf("worker %d append %d: %v", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-breaker
	if last := lastPosition(t, s); last != workers*each {
		t.Fatalf("the log holds %d events, want %d", last, workers*each)
	}
}

// A caller's own cancellation is not a broken connection: it stays
// canceled, and is not retried.
func TestCallerCancellationStaysCanceled(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	p := newProxy(t, s.Addr().String())
	p.setMode(hole)
	for _, streamAppends := range []bool{false, true} {
		c, err := client.New(p.URL(), client.Config{Token: s.AdminSecret(), MaxBackoff: 5 * time.Millisecond,
			StreamAppends: streamAppends})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		short, cancel := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err = c.ReadStream(short, "s", rewind.ReadStreamOptions{})
		if !errors.Is(err, context.Canceled) || rewind.CodeOf(err) != rewind.CodeCanceled {
			t.Errorf("read cancelled by its caller: %v (code %s), want canceled", err, rewind.CodeOf(err))
		}
		short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
		_, err = c.Append(short, "s", rewind.Any, rewind.Event{Type: "A"})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("append past its deadline (stream %v): %v, want the deadline", streamAppends, err)
		}
	}
}

// A live subscription whose connection breaks (a server SIGKILL) reconnects
// and goes on exactly once; when the server stays away it fails as
// unavailable.
func TestSubscriptionReconnectsAfterABrokenConnection(t *testing.T) {
	t.Parallel()
	for _, rst := range []bool{true, false} {
		s, admin := setup(t)
		p := newProxy(t, s.Addr().String())
		c, err := client.New(p.URL(), client.Config{Token: s.AdminSecret(), MaxRetries: 3, MaxBackoff: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		appendN := func(n int) {
			for range n {
				if _, err := admin.Append(ctx, "s", rewind.Any, rewind.Event{Type: "E"}); err != nil {
					t.Fatal(err)
				}
			}
		}
		appendN(5)
		sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		next := rewind.Position(1)
		expect := func(upTo rewind.Position) {
			t.Helper()
			for ; next <= upTo; next++ {
				nctx, cancel := context.WithTimeout(ctx, time.Minute)
				ev, err := sub.Next(nctx)
				cancel()
				if err != nil || ev.Position != next {
					t.Fatalf("rst %v: next: %v, %v; want position %d", rst, ev, err, next)
				}
			}
		}
		expect(5)
		p.breakAll(rst)
		appendN(5)
		expect(10)
		p.setMode(reset)
		p.breakAll(rst)
		nctx, cancel := context.WithTimeout(ctx, time.Minute)
		ev, err := sub.Next(nctx)
		cancel()
		if !errors.Is(err, rewind.ErrClosed) || rewind.CodeOf(err) != rewind.CodeClosed {
			t.Fatalf("rst %v: next with the server gone: %v, %v (code %s), want unavailable", rst, ev, err, rewind.CodeOf(err))
		}
	}
}
