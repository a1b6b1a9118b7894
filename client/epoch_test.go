package client_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

const epochAdminToken = "adminadminadminadminadmin0123456789"

// runServer runs a server on dir in durability none at addr (a free port
// when empty) until the returned stop is called.
func runServer(t *testing.T, dir, addr string) (*server.Server, func()) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s, err := server.New(server.Config{Addr: addr, DataDir: dir, AdminToken: epochAdminToken,
		Store: store.Config{Log: eventlog.Config{Durability: eventlog.None}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return s, stop
}

// zeroTail zeroes the records of the log's first segment from position
// from on: what a power cut leaves of writes that were never synced.
func zeroTail(t *testing.T, dir string, from uint64) {
	t.Helper()
	name := filepath.Join(dir, "00000000000000000001.seg")
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	const segmentHeader, recordHeader = 40, 28
	start := -1
	off := segmentHeader
	for off+recordHeader <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n == 0 {
			break
		}
		if start < 0 && binary.LittleEndian.Uint64(b[off+8:]) >= from {
			start = off
		}
		off += recordHeader + n
	}
	if start < 0 {
		t.Fatalf("position %d is not in %s", from, name)
	}
	clear(b[start:off])
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// epochSetup runs a server in durability none with 100 events, and a live
// subscription of a client that has received them all in epoch 1.
func epochSetup(t *testing.T) (dir, addr string, stop func(), c *client.Client, sub rewind.Subscription) {
	dir = t.TempDir()
	s, stop := runServer(t, dir, "")
	addr = s.Addr().String()
	c, err := client.New(s.URL(), client.Config{Token: epochAdminToken, MaxBackoff: 20 * time.Millisecond, MaxRetries: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for range 100 {
		if _, err := c.Append(ctx, "s", rewind.Any, rewind.Event{Type: "Before"}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err = c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	for want := rewind.Position(1); want <= 100; want++ {
		ev, err := sub.Next(ctx)
		if err != nil || ev.Position != want {
			t.Fatalf("next: %v, %v; want %d", ev, err, want)
		}
	}
	if e := sub.(rewind.EpochReporter).Epoch(); e != 1 {
		t.Fatalf("epoch %d, want 1", e)
	}
	return dir, addr, stop, c, sub
}

func nextEpochChanged(t *testing.T, sub rewind.Subscription) {
	t.Helper()
	nctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ev, err := sub.Next(nctx)
	if !errors.Is(err, rewind.ErrEpochChanged) || rewind.CodeOf(err) != rewind.CodeEpochChanged {
		t.Fatalf("the live subscription resumed after 100 across a cut at 71: %v, %v (code %s), want epoch_changed",
			ev, err, rewind.CodeOf(err))
	}
}

// A power cut in durability none took back positions 71-100 that a live
// subscription had received; the server restarts in a new epoch. The
// subscription reconnects by itself with its epoch, so it fails with
// epoch_changed instead of going on with the new history, whether the new
// history has reached position 100 yet or not.
func TestSubscriptionReconnectAcrossACutFailsWithEpochChanged(t *testing.T) {
	t.Parallel()
	for _, appendAfter := range []int{0, 50} {
		dir, addr, stop, c, sub := epochSetup(t)
		// The state as the crashed run left it says the log was open.
		state, err := os.ReadFile(filepath.Join(dir, "log-state.json"))
		if err != nil {
			t.Fatal(err)
		}
		stop()
		zeroTail(t, dir, 71)
		if err := os.WriteFile(filepath.Join(dir, "log-state.json"), state, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stop2 := runServer(t, dir, addr)
		defer stop2()
		for range appendAfter {
			if _, err := c.Append(ctx, "s", rewind.Any, rewind.Event{Type: "After"}); err != nil {
				t.Fatal(err)
			}
		}
		nextEpochChanged(t, sub)
	}
}

// A log cleanly closed, then found shorter than a subscription's position
// (its tail lost without a trace the store could see): resuming beyond the
// end of the log with a known epoch is an epoch change, not a bad
// argument, and never a silent wait for the new history to catch up.
func TestSubscriptionResumeBeyondTheEndFailsWithEpochChanged(t *testing.T) {
	t.Parallel()
	dir, addr, stop, c, sub := epochSetup(t)
	stop()
	zeroTail(t, dir, 71)
	_, stop2 := runServer(t, dir, addr)
	defer stop2()
	nextEpochChanged(t, sub)
	// A new subscription resuming with the position and epoch it kept
	// fails the same way; without the epoch it is a bad position.
	_, err := c.Subscribe(ctx, rewind.SubscribeOptions{After: 100, Epoch: 1})
	if !errors.Is(err, rewind.ErrEpochChanged) {
		t.Fatalf("subscribe after 100 in epoch 1: %v, want epoch_changed", err)
	}
	for _, err := range c.ReadAll(ctx, rewind.ReadAllOptions{From: 101, Epoch: 1}) {
		if !errors.Is(err, rewind.ErrEpochChanged) {
			t.Fatalf("read from 101 in epoch 1: %v, want epoch_changed", err)
		}
	}
	_, err = c.Subscribe(ctx, rewind.SubscribeOptions{After: 100})
	if rewind.CodeOf(err) != rewind.CodeInvalidArgument {
		t.Fatalf("subscribe after 100 without an epoch: %v, want invalid_argument", err)
	}
}
