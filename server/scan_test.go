package server_test

import (
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// A subscription whose filter rejects a long run of events reports its
// progress every few thousand of them: each report is where the server
// checks for cancellation and a revoked token, and what a resumed
// subscription starts from. Before, the server scanned to the next match or
// the end of the log in one go, seeing neither.
func TestSubscriptionReportsProgressWhileSkipping(t *testing.T) {
	t.Parallel()
	checkProgressReports(t, func(*testing.T, *client.Client, string) (*rewindv1.Filter, string) {
		return &rewindv1.Filter{StreamPrefix: "keep-"}, ""
	})
}

// The same when the token's scope, not the filter, rejects the events:
// outside testing found such a scan neither cancelled nor ended by a
// revocation until it reached the end of the log (6 s at 30M events).
func TestSubscriptionReportsProgressWhileTheScopeSkips(t *testing.T) {
	t.Parallel()
	checkProgressReports(t, func(t *testing.T, c *client.Client, _ string) (*rewindv1.Filter, string) {
		_, secret, err := c.CreateToken(ctx, "narrow", "read:keep-*")
		if err != nil {
			t.Fatal(err)
		}
		return nil, secret
	})
}

// checkProgressReports fills a log with events nothing will deliver, then
// subscribes with the filter and token setup gives (the admin's if none)
// and counts the position reports that come before the end.
func checkProgressReports(t *testing.T, setupSub func(*testing.T, *client.Client, string) (*rewindv1.Filter, string)) {
	_, c, b := setup(t, server.Config{Store: store.Config{Log: eventlog.Config{Durability: eventlog.None}}})
	const n = 20_000
	for i := 0; i < n; i += 1000 {
		batch := make([]rewind.Event, 1000)
		for j := range batch {
			batch[j] = ev("T", "x")
		}
		if _, err := c.Append(ctx, "skip-1", rewind.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	filter, secret := setupSub(t, c, b.admin)
	if secret == "" {
		secret = b.admin
	}
	raw := rewindv1connect.NewEventStoreServiceClient(http.DefaultClient, b.url)
	req := connect.NewRequest(&rewindv1.SubscribeRequest{Filter: filter})
	req.Header().Set("Authorization", "Bearer "+secret)
	stream, err := raw.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	reports := 0
	for stream.Receive() {
		m := stream.Msg()
		if len(m.GetEvents()) > 0 {
			t.Fatalf("nothing may be delivered, yet %d events came", len(m.GetEvents()))
		}
		if m.GetPosition() > 0 {
			reports++
		}
		if m.GetPosition() == n {
			break
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if reports < n/5000 {
		t.Fatalf("the subscription reported its progress %d times over %d skipped events, want at least %d", reports, n, n/5000)
	}
}
