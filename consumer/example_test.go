package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/consumer/middleware"
	"github.com/rewindhq/rewind/store"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "consumer-example")
	defer os.RemoveAll(dir)
	s, _ := store.Open(dir, store.Config{Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	s.Append(ctx, "orders-1", rewind.NoStream, rewind.Event{Type: "OrderPlaced", Data: []byte(`{}`)},
		rewind.Event{Type: "OrderShipped", Data: []byte(`{}`)})

	e, _ := consumer.Open(ctx, s, consumer.Config{})
	defer e.Close(ctx)
	e.CreateGroup(ctx, consumer.GroupConfig{Name: "billing",
		Filter: rewind.Filter{StreamPrefix: "orders-"}, OrderBy: "stream"})
	m, _ := e.Join(ctx, "billing", consumer.MemberOptions{})
	defer m.Leave()

	runCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	seen := 0
	h := consumer.Chain(func(_ context.Context, msg *consumer.Message) error {
		fmt.Println(msg.Event.Stream, msg.Event.Version, msg.Event.Type)
		if seen++; seen == 2 {
			cancel()
		}
		return nil // ack
	}, middleware.Recover(), middleware.Correlation())
	consumer.Consume(runCtx, m, h, consumer.ConsumeOptions{})
	// Output:
	// orders-1 1 OrderPlaced
	// orders-1 2 OrderShipped
}
