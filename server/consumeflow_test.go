package server

import (
	"errors"
	"net/http"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// TestConsumeFlowHeaders: the Consume stream's bounds are whole numbers
// from 1 to 1,000,000; anything else is refused with a validation error
// naming the header (the stream then ends before the member takes
// anything). The window applies to at-most-once groups only.
func TestConsumeFlowHeaders(t *testing.T) {
	t.Parallel()
	for _, name := range []string{apiconv.HeaderConsumeLimit, apiconv.HeaderConsumeWindow} {
		for _, v := range []string{"0", "-1", "x", "1.5", "1000001"} {
			h := http.Header{}
			h.Set(name, v)
			_, err := newConsumeFlow(h, consumer.AtMostOnce)
			var ve *rewind.ValidationError
			if !errors.As(err, &ve) || ve.Field != "header "+name {
				t.Errorf("%s: %q: %v, want a validation error naming the header", name, v, err)
			}
		}
	}
	h := http.Header{}
	h.Set(apiconv.HeaderConsumeWindow, "2")
	h.Set(apiconv.HeaderConsumeLimit, "5")
	if f, err := newConsumeFlow(h, consumer.AtLeastOnce); err != nil || f.window != 0 || !f.limit || f.left != 5 {
		t.Fatalf("at-least-once: %+v %v, want the limit and no window", f, err)
	}
	f, err := newConsumeFlow(h, consumer.AtMostOnce)
	if err != nil || f.window != 2 {
		t.Fatalf("at-most-once: %+v %v", f, err)
	}
	f.sent([]consumer.Delivery{{ID: 7}, {ID: 8}})
	if rest := f.handled([]uint64{7, 9}); len(rest) != 1 || rest[0] != 9 || len(f.out) != 1 {
		t.Fatalf("handled: rest %v out %v, want 9 left to ack and 8 outstanding", rest, f.out)
	}
}
