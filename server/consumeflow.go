package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// consumeFlow is what the headers ask of one member's stream.
type consumeFlow struct {
	mu     sync.Mutex
	limit  bool
	left   int // deliveries still allowed by the limit
	window int // 0: none
	out    map[consumer.DeliveryID]struct{}
	wake   chan struct{}
}

func newConsumeFlow(h http.Header, mode consumer.Mode) (*consumeFlow, error) {
	f := &consumeFlow{wake: make(chan struct{}, 1)}
	parse := func(name string) (int, error) {
		v := h.Get(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return 0, &rewind.ValidationError{Field: "header " + name, Value: v,
				Reason: "must be a whole number between 1 and 1000000 (leave it out for no bound)"}
		}
		return n, nil
	}
	n, err := parse(apiconv.HeaderConsumeLimit)
	if err != nil {
		return nil, err
	}
	f.limit, f.left = n > 0, n
	if f.window, err = parse(apiconv.HeaderConsumeWindow); err != nil {
		return nil, err
	}
	if mode != consumer.AtMostOnce {
		f.window = 0
	}
	if f.window > 0 {
		f.out = map[consumer.DeliveryID]struct{}{}
	}
	return f, nil
}

// allow waits until the member may be sent more, and returns how many,
// at most n.
func (f *consumeFlow) allow(ctx context.Context, n int) (int, error) {
	for {
		f.mu.Lock()
		k := n
		if f.limit {
			k = min(k, f.left)
		}
		if f.window > 0 {
			k = min(k, f.window-len(f.out))
		}
		f.mu.Unlock()
		if k > 0 {
			return k, nil
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// sent records deliveries sent.
func (f *consumeFlow) sent(ds []consumer.Delivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left -= len(ds)
	if f.window > 0 {
		for _, d := range ds {
			f.out[d.ID] = struct{}{}
		}
	}
}

// handled takes out of acks those of at-most-once deliveries still
// outstanding (they only report them handled: a slot of the window frees)
// and returns the others.
func (f *consumeFlow) handled(acks []uint64) []uint64 {
	if f.window == 0 {
		return acks
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rest := acks[:0:0]
	freed := false
	for _, id := range acks {
		if _, ok := f.out[consumer.DeliveryID(id)]; ok {
			delete(f.out, consumer.DeliveryID(id))
			freed = true
			continue
		}
		rest = append(rest, id)
	}
	if freed {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
	return rest
}
