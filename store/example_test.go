package store_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "rewind-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := store.Open(dir, store.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Give events ids to make retries safe.
	placed := rewind.Event{ID: uuid.New(), Type: "OrderPlaced", Data: []byte(`{"total":12}`)}
	res, err := s.Append(ctx, "orders-1", rewind.NoStream, placed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("version", res.LastVersion, "at position", res.LastPosition)

	// A retry (say, after a timeout) writes nothing.
	again, _ := s.Append(ctx, "orders-1", rewind.NoStream, placed)
	fmt.Println("duplicate:", again.Duplicate, "position", again.LastPosition)

	// Optimistic concurrency: expecting the wrong version writes nothing.
	_, err = s.Append(ctx, "orders-1", rewind.Exactly(5), rewind.Event{Type: "OrderPaid"})
	fmt.Println(rewind.CodeOf(err))

	events, _ := s.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{})
	for _, e := range events {
		fmt.Println(e.Stream, e.Version, e.Type, string(e.Data))
	}
	// Output:
	// version 1 at position 1
	// duplicate: true position 1
	// wrong_expected_version
	// orders-1 1 OrderPlaced {"total":12}
}

func ExampleStore_Subscribe() {
	dir, _ := os.MkdirTemp("", "rewind-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, _ := store.Open(dir, store.Config{})
	defer s.Close()
	s.Append(ctx, "orders-1", rewind.Any, rewind.Event{Type: "OrderPlaced", Data: []byte(`{}`)})
	s.Append(ctx, "users-1", rewind.Any, rewind.Event{Type: "UserCreated", Data: []byte(`{}`)})

	// Catch up from the beginning, then follow live; keep Position to resume.
	sub, _ := s.Subscribe(ctx, rewind.SubscribeOptions{After: 0, Filter: rewind.Filter{StreamPrefix: "orders-"}})
	defer sub.Close()
	go s.Append(ctx, "orders-2", rewind.Any, rewind.Event{Type: "OrderPlaced", Data: []byte(`{}`)})
	for range 2 {
		ev, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Position, ev.Stream, ev.Type)
	}
	fmt.Println("resume after", sub.Position())
	// Output:
	// 1 orders-1 OrderPlaced
	// 3 orders-2 OrderPlaced
	// resume after 3
}

func ExampleStore_ReadAll() {
	dir, _ := os.MkdirTemp("", "rewind-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, _ := store.Open(dir, store.Config{})
	defer s.Close()
	for i := range 3 {
		s.Append(ctx, fmt.Sprintf("orders-%d", i), rewind.Any, rewind.Event{Type: "OrderPlaced", Data: []byte(`{}`)})
	}
	// The whole log from position 2; each event is only valid in its iteration.
	for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{From: 2}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Position, ev.Stream)
	}
	// Output:
	// 2 orders-1
	// 3 orders-2
}
