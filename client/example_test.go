package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/server"
)

// exampleServer starts a server for the examples and returns its URL, an
// admin token and a function that stops it.
func exampleServer() (string, string, func()) {
	dir, _ := os.MkdirTemp("", "rewind-example-")
	s, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	return s.URL(), s.AdminSecret(), func() { cancel(); <-done; os.RemoveAll(dir) }
}

func ExampleClient_Append() {
	url, token, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c, err := client.New(url, client.Config{Token: token})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	res, err := c.Append(ctx, "orders-1", rewind.NoStream,
		rewind.Event{Type: "OrderPlaced", Data: []byte(`{"total":12}`)})
	if err != nil {
		panic(err)
	}
	fmt.Println("appended at version", res.LastVersion)

	// Optimistic concurrency: the stream is no longer new.
	_, err = c.Append(ctx, "orders-1", rewind.NoStream, rewind.Event{Type: "OrderPlaced"})
	var wev *rewind.WrongExpectedVersionError
	if errors.As(err, &wev) {
		fmt.Println("conflict: the stream is at version", wev.Actual)
	}
	// Output:
	// appended at version 1
	// conflict: the stream is at version 1
}

func ExampleClient_Subscribe() {
	url, token, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, _ := client.New(url, client.Config{Token: token})
	defer c.Close()
	c.Append(ctx, "orders-1", rewind.Any, rewind.Event{Type: "OrderPlaced"}, rewind.Event{Type: "OrderPaid"})

	// Catch up from the start, then follow live; after a disconnect the
	// subscription resumes after the last position it received.
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{Filter: rewind.Filter{StreamPrefix: "orders-"}})
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	go c.Append(ctx, "orders-2", rewind.Any, rewind.Event{Type: "OrderPlaced"})
	for range 3 {
		ev, err := sub.Next(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(ev.Position, ev.Stream, ev.Type)
	}
	// Output:
	// 1 orders-1 OrderPlaced
	// 2 orders-1 OrderPaid
	// 3 orders-2 OrderPlaced
}

func ExampleAppender() {
	url, token, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, _ := client.New(url, client.Config{Token: token})
	defer c.Close()

	// Many small appends become few large ones, with at most 4 in flight.
	app := c.NewAppender(client.AppenderConfig{MaxBatch: 100, MaxInFlight: 4})
	var last *client.Pending
	for i := range 1000 {
		p, err := app.Append(ctx, "clicks", rewind.Event{Type: "Clicked", Data: []byte(fmt.Sprint(i))})
		if err != nil {
			panic(err)
		}
		last = p
	}
	if err := app.Close(ctx); err != nil {
		panic(err)
	}
	pos, _ := last.Wait(ctx)
	fmt.Println("last event at position", pos)
	// Output:
	// last event at position 1000
}
