package server_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// TestInflightAppendBudget holds an append in its group commit and checks
// that the server-wide budget of bytes in progress refuses the appends
// that do not fit, over unary calls, AppendStream and plain HTTP, with
// ResourceExhausted and a retry hint, and takes them once it is free.
func TestInflightAppendBudget(t *testing.T) {
	t.Parallel()
	var held atomic.Pointer[chan struct{}]
	hold := make(chan struct{})
	cfg := server.Config{MaxRequestBytes: 64 << 10, MaxInflightAppendBytes: 100 << 10,
		Store: store.Config{Log: eventlog.Config{OnFlush: func(eventlog.FlushInfo) {
			if ch := held.Load(); ch != nil {
				<-*ch
			}
		}}}}
	_, c, b := setup(t, cfg)
	streamer := newStreamClient(t, b.url, b.admin)
	big := strings.Repeat("x", 60<<10)

	held.Store(&hold)
	first := make(chan error, 1)
	go func() {
		_, err := c.Append(ctx, "a", rewind.Any, ev("Big", big))
		first <- err
	}()
	waitFor(t, func() bool { return inflightBytes(t, b.url) >= 60<<10 })

	_, err := c.Append(ctx, "b", rewind.Any, ev("Big", big))
	var le *rewind.LimitError
	if !errors.As(err, &le) || !strings.Contains(le.Hint, "retry") || le.Max != 100<<10 {
		t.Fatalf("an append beyond the budget: %v, want a limit error with a retry hint", err)
	}
	if _, err := streamer.Append(ctx, "b", rewind.Any, ev("Big", big)); !errors.Is(err, rewind.ErrLimitExceeded) {
		t.Fatalf("an append beyond the budget over AppendStream: %v, want limit exceeded", err)
	}
	status, body := do(t, b, "POST", "Append", "", `{"stream":"b","events":[{"type":"T","data":"`+
		strings.Repeat("QUFB", 15<<10)+`"}]}`, 0)
	if status != 429 || !strings.Contains(string(body), "retry") {
		t.Fatalf("over HTTP: %d %s, want 429 with a retry hint", status, body)
	}

	// gRPC clients get the standard RetryInfo detail.
	grpc := rawGRPCAppend(t, b, big)
	var ce *connect.Error
	if !errors.As(grpc, &ce) || ce.Code() != connect.CodeResourceExhausted || retryDelay(ce) <= 0 {
		t.Fatalf("over gRPC: %v, want ResourceExhausted with RetryInfo", grpc)
	}

	held.Store(nil)
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, "b", rewind.Any, ev("Big", big)); err != nil {
		t.Fatalf("the retry once the budget is free: %v", err)
	}
	waitFor(t, func() bool { return inflightBytes(t, b.url) == 0 })
}

func newStreamClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(url, client.Config{Token: token, StreamAppends: true, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func inflightBytes(t *testing.T, url string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, url), "\n") {
		if v, ok := strings.CutPrefix(line, "rewind_append_inflight_bytes "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	t.Fatal("no rewind_append_inflight_bytes in /metrics")
	return 0
}

func retryDelay(ce *connect.Error) time.Duration {
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				return ri.GetRetryDelay().AsDuration()
			}
		}
	}
	return 0
}

// rawGRPCAppend appends over gRPC with a plain connect client, which keeps
// the error's details as the server sent them.
func rawGRPCAppend(t *testing.T, b *bundle, data string) error {
	t.Helper()
	events := rewindv1connect.NewEventStoreServiceClient(h2c(), b.url, connect.WithGRPC())
	req := connect.NewRequest(&rewindv1.AppendRequest{Stream: "b", Events: []*rewindv1.Event{{Type: "Big", Data: []byte(data)}}})
	req.Header().Set("Authorization", "Bearer "+b.admin)
	_, err := events.Append(ctx, req)
	return err
}
