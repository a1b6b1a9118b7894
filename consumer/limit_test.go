package consumer

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// consumeOnce joins group, runs Consume until it returns (stop says how:
// by opts.Limit, or by the handler cancelling after n events), leaves,
// and returns the positions handed to the handler and their attempts.
func consumeOnce(t *testing.T, b *bundle, group string, n int, byLimit bool) ([]rewind.Position, []int) {
	t.Helper()
	m := b.join(group, 0)
	defer m.Leave()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	var got []rewind.Position
	var attempts []int
	var handled atomic.Int64
	opts := ConsumeOptions{}
	if byLimit {
		opts.Limit = n
	}
	err := Consume(ctx, m, func(hctx context.Context, msg *Message) error {
		if !byLimit && handled.Load() >= int64(n) {
			<-hctx.Done()
			return hctx.Err()
		}
		got = append(got, msg.Event.Position)
		attempts = append(attempts, msg.Attempt)
		if handled.Add(1) >= int64(n) && !byLimit {
			cancel()
		}
		return nil
	}, opts)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	return got, attempts
}

// TestConsumeLimitLosesNothing: a member that stops after N events (by
// ConsumeOptions.Limit, or by its handler cancelling the consume, as
// `rewind consume --count` did) holds no event it will not handle. In
// at-most-once mode an event fetched ahead was done already and was lost
// when the member stopped: an outside test consumed 1 3 5 7 9 one at a
// time and 2, 4, 6, 8, 10 were never handed out. In at-least-once mode
// the extra deliveries went back with their delivery counted.
func TestConsumeLimitLosesNothing(t *testing.T) {
	t.Parallel()
	for _, mode := range []Mode{AtMostOnce, AtLeastOnce} {
		for _, byLimit := range []bool{true, false} {
			if mode == AtLeastOnce && !byLimit {
				continue // events fetched ahead go back, their delivery counted (documented)
			}
			for _, bounded := range []bool{true, false} {
				b := setup(t, Config{Now: time.Now, TickInterval: time.Millisecond})
				b.appendN("s", "T", 10)
				for i := range 20 {
					cfg := GroupConfig{Name: fmt.Sprintf("g%d", i), Mode: mode}
					if bounded {
						cfg.End = End{Position: 10}
					}
					g := b.create(cfg)
					waitRead(t, g, 10)
					var all []rewind.Position
					for range 10 {
						got, attempts := consumeOnce(t, b, cfg.Name, 1, byLimit)
						if len(got) != 1 || attempts[0] != 1 {
							t.Fatalf("%s limit=%v bounded=%v #%d: handled %v attempts %v, want one first delivery",
								mode, byLimit, bounded, i, got, attempts)
						}
						all = append(all, got...)
					}
					if want := []rewind.Position{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(all, want) {
						t.Fatalf("%s limit=%v bounded=%v #%d: handled %v, want %v", mode, byLimit, bounded, i, all, want)
					}
					// Two at a time with two handlers, on a fresh group.
					cfg.Name += "-2"
					waitRead(t, b.create(cfg), 10)
					all = nil
					for range 5 {
						m := b.join(cfg.Name, 0)
						var n atomic.Int64
						err := Consume(bg, m, func(_ context.Context, msg *Message) error {
							n.Add(1)
							return nil
						}, ConsumeOptions{Concurrency: 2, Limit: 2})
						m.Leave()
						if err != nil || n.Load() != 2 {
							t.Fatalf("%s concurrency 2 limit 2: handled %d, %v", mode, n.Load(), err)
						}
					}
					if in := mustInfo(t, b, cfg.Name); in.Pending != 0 || in.Acked != 10 || in.Redeliveries != 0 {
						t.Fatalf("%s after 5 × 2: %+v, want all 10 acked, none redelivered", mode, in)
					}
				}
			}
		}
	}
}
