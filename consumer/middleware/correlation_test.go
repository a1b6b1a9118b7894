package middleware

import (
	"context"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
)

func TestCorrelation(t *testing.T) {
	t.Parallel()
	var out rewind.Event
	h := Correlation()(func(ctx context.Context, m *consumer.Message) error {
		out = Outgoing(ctx, rewind.Event{Type: "Next", Metadata: map[string]string{"actor": "x"}})
		return nil
	})
	// An event starting a conversation: its id is both ids.
	m := msg(nil)
	h(context.Background(), m)
	id := m.Event.ID.String()
	if out.Metadata[CorrelationKey] != id || out.Metadata[CausationKey] != id || out.Metadata["actor"] != "x" {
		t.Fatalf("metadata %v", out.Metadata)
	}
	// An event in one: the correlation id carries on.
	m = msg(map[string]string{CorrelationKey: "conv-1"})
	h(context.Background(), m)
	if out.Metadata[CorrelationKey] != "conv-1" || out.Metadata[CausationKey] != m.Event.ID.String() {
		t.Fatalf("metadata %v", out.Metadata)
	}
	// Without the middleware, Outgoing changes nothing.
	if ev := Outgoing(context.Background(), rewind.Event{Type: "X"}); ev.Metadata != nil {
		t.Fatalf("metadata %v", ev.Metadata)
	}
}
