package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/server"
)

// damagedServer serves a log of n events whose event at position damaged
// has one flipped byte (intact records follow it: corruption, kept and
// refused on read), and returns an admin client.
func damagedServer(t *testing.T, n, damaged int) *bundle {
	t.Helper()
	_, c, b := setup(t, serverConfig(t))
	for i := 1; i <= n; i += 50 {
		var evs []rewind.Event
		for j := i; j < i+50 && j <= n; j++ {
			evs = append(evs, ev("T", fmt.Sprintf(`{"n":"p%06d"}`, j)))
		}
		if _, err := c.Append(ctx, fmt.Sprintf("s-%d", i%7), rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(b.dir, "*.seg"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v %v", segs, err)
	}
	raw, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(raw, fmt.Appendf(nil, "p%06d", damaged))
	if at < 0 {
		t.Fatalf("event %d not found in the segment", damaged)
	}
	raw[at+3] ^= 0x01
	if err := os.WriteFile(segs[0], raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := b.cfg
	cfg.Addr = strings.TrimPrefix(b.url, "http://")
	cfg.AdminToken = b.admin
	_, b2 := start(t, cfg)
	b2.admin = b.admin
	return b2
}

func serverConfig(t *testing.T) server.Config {
	return server.Config{DataDir: t.TempDir()}
}

// Issue 9: intact records next to damage were withheld by whole-log reads
// over the API: a ReadAll page that reached the damaged position while
// looking for one more event failed as a whole, and a subscription dropped
// the batch it was filling (up to 511 intact events before the damage).
// Every intact event is delivered; the damaged position alone is refused,
// with a data-loss error naming it, and a reader resumes after it.
func TestWholeLogReadsServeEveryIntactEventNextToDamage(t *testing.T) {
	t.Parallel()
	const n, damaged = 700, 600
	b := damagedServer(t, n, damaged)
	c := newClient(t, b.url, b.admin)

	// A page that ends right before the damage.
	for _, tc := range []struct{ from, limit int }{{damaged - 1, 1}, {damaged - 6, 6}, {1, 0}} {
		var got []rewind.Position
		var err error
		for ev, e := range c.ReadAll(ctx, rewind.ReadAllOptions{From: rewind.Position(tc.from), Limit: tc.limit}) {
			if e != nil {
				err = e
				break
			}
			got = append(got, ev.Position)
		}
		want := damaged - tc.from
		if tc.limit > 0 {
			want = tc.limit
		}
		if len(got) != want || got[len(got)-1] != damaged-1 {
			t.Fatalf("ReadAll from %d limit %d: %d events (last %v), err %v; want %d up to %d",
				tc.from, tc.limit, len(got), got[max(len(got)-1, 0):], err, want, damaged-1)
		}
		if tc.limit == 0 && (!errors.Is(err, rewind.ErrCorruption) || !strings.Contains(err.Error(), fmt.Sprintf("position %d", damaged))) {
			t.Fatalf("ReadAll to the end: %v, want a corruption error naming position %d", err, damaged)
		}
	}
	// Resuming after the damaged position reads the rest.
	got := 0
	for ev, err := range c.ReadAll(ctx, rewind.ReadAllOptions{From: damaged + 1}) {
		if err != nil || ev.Position != rewind.Position(damaged+1+got) {
			t.Fatalf("ReadAll after the damage: %v at %d", err, got)
		}
		got++
	}
	if got != n-damaged {
		t.Fatalf("ReadAll after the damage read %d events, want %d", got, n-damaged)
	}

	// A subscription from the start delivers every event before the damage,
	// then fails at it; one resumed after it goes on.
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for want := 1; ; want++ {
		ev, err := sub.Next(ctx)
		if err != nil {
			if want != damaged || !errors.Is(err, rewind.ErrCorruption) || sub.Position() != damaged-1 {
				t.Fatalf("subscription: %v after %d events, at %d; want a corruption error at %d",
					err, want-1, sub.Position(), damaged)
			}
			break
		}
		if ev.Position != rewind.Position(want) {
			t.Fatalf("subscription delivered %d, want %d", ev.Position, want)
		}
	}
	// A filtered one too: its position tells where the damage is, so that it
	// can resume after it with After = Position()+1.
	fsub, err := c.Subscribe(ctx, rewind.SubscribeOptions{Filter: rewind.Filter{StreamPrefix: "s-1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fsub.Close()
	delivered := 0
	for {
		_, err := fsub.Next(ctx)
		if err != nil {
			if delivered != 100 || !errors.Is(err, rewind.ErrCorruption) || fsub.Position() != damaged-1 {
				t.Fatalf("filtered subscription: %v after %d events, at %d; want 100 events, then corruption after %d",
					err, delivered, fsub.Position(), damaged-1)
			}
			break
		}
		delivered++
	}
	sub2, err := c.Subscribe(ctx, rewind.SubscribeOptions{After: damaged})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	for want := damaged + 1; want <= n; want++ {
		if ev, err := sub2.Next(ctx); err != nil || ev.Position != rewind.Position(want) {
			t.Fatalf("subscription after the damage: %v, want position %d", err, want)
		}
	}
}
