package server_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/server"
)

// TestSubscriptionAcrossLiveSwitchAndRestart subscribes from the start of
// a log that writers keep appending to, so delivery crosses from catch-up
// to live while appends race with it; midway the server shuts down
// gracefully and a new one starts on the same address and data
// directory. The subscriber must see every position exactly once, in
// order, and every acknowledged append must be there after the restart.
func TestSubscriptionAcrossLiveSwitchAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}
	s1, b := start(t, cfg)
	cfg.Addr = s1.Addr().String()
	admin := b.admin
	patient := func(streamAppends bool) *client.Client {
		c, err := client.New(b.url, client.Config{Token: admin, MaxRetries: 200, MaxBackoff: 50 * time.Millisecond,
			StreamAppends: streamAppends})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	const writers, batches, batchSize = 4, 60, 10
	pre := patient(false)
	for i := range 50 {
		if _, err := pre.Append(ctx, fmt.Sprintf("pre-%d", i%5), rewind.Any, ev("Pre", "{}"), ev("Pre", "{}")); err != nil {
			t.Fatal(err)
		}
	}

	var acked sync.Map // event id -> true once its append was acknowledged
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := patient(w%2 == 0) // half the writers stream their appends
			for i := range batches {
				evs := make([]rewind.Event, batchSize)
				for j := range evs {
					evs[j] = ev("Live", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
					evs[j].ID = uuid.Must(uuid.NewV7())
				}
				if _, err := c.Append(ctx, fmt.Sprintf("w-%d", w), rewind.Any, evs...); err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, i, err)
					return
				}
				for _, e := range evs {
					acked.Store(e.ID, true)
				}
				done.Add(1)
			}
		}()
	}

	sub, err := patient(false).Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	seen := map[uuid.UUID]bool{}
	next := rewind.Position(1)
	restarted := false
	total := rewind.Position(100 + writers*batches*batchSize)
	for next <= total {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("next after position %d: %v", next-1, err)
		}
		if e.Position != next {
			t.Fatalf("got position %d, want %d: a gap or a duplicate", e.Position, next)
		}
		if seen[e.ID] {
			t.Fatalf("event %s delivered twice", e.ID)
		}
		seen[e.ID] = true
		next++
		if !restarted && done.Load() >= writers*batches/3 {
			restarted = true
			if err := b.stop(); err != nil {
				t.Fatalf("graceful shutdown: %v", err)
			}
			start(t, cfg)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !restarted {
		t.Fatal("the server was never restarted")
	}
	missing := 0
	acked.Range(func(k, _ any) bool {
		if !seen[k.(uuid.UUID)] {
			missing++
		}
		return true
	})
	if missing > 0 {
		t.Fatalf("%d acknowledged events are missing after the restart", missing)
	}
}

// TestSubscriptionEndsWithUnavailableOnShutdown checks what a subscriber
// that does not retry sees when the server shuts down: an Unavailable
// status whose message says where to resume.
func TestSubscriptionEndsWithUnavailableOnShutdown(t *testing.T) {
	t.Parallel()
	_, admin, b := setup(t, server.Config{})
	if _, err := admin.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(b.url, client.Config{Token: b.admin, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		b.stop()
	}()
	_, err = sub.Next(ctx)
	for err == nil { // a reconnect may not have been refused yet
		_, err = sub.Next(ctx)
	}
	if !errors.Is(err, rewind.ErrClosed) {
		t.Fatalf("subscription at shutdown: %v, want unavailable", err)
	}
	if !strings.Contains(err.Error(), "shutting down") && !strings.Contains(err.Error(), "connect") {
		t.Fatalf("the message does not say what happened: %v", err)
	}
}

// TestSubscriptionLimitPerToken checks the per-token cap.
func TestSubscriptionLimitPerToken(t *testing.T) {
	t.Parallel()
	_, c, _ := setup(t, server.Config{MaxSubscriptionsPerToken: 2})
	var subs []rewind.Subscription
	for range 2 {
		s, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if _, err := c.Subscribe(ctx, rewind.SubscribeOptions{}); !errors.Is(err, rewind.ErrLimitExceeded) {
		t.Fatalf("third subscription: %v, want limit exceeded", err)
	}
	subs[0].Close()
	var err error
	for range 50 { // the server notices the closed stream shortly after
		var s rewind.Subscription
		if s, err = c.Subscribe(ctx, rewind.SubscribeOptions{}); err == nil {
			s.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("subscription after closing one: %v", err)
	}
}

// A token is checked when a stream opens; revoking it must end the streams
// that are already open, not only refuse new requests.
func TestRevokedTokenEndsOpenStreams(t *testing.T) {
	t.Parallel()
	_, admin, b := setup(t, server.Config{})
	if _, err := admin.Append(ctx, "s", rewind.Any, ev("Before", "{}")); err != nil {
		t.Fatal(err)
	}
	_, readSecret, err := admin.CreateToken(ctx, "reader", "read:*")
	if err != nil {
		t.Fatal(err)
	}
	_, writeSecret, err := admin.CreateToken(ctx, "writer", "write:*")
	if err != nil {
		t.Fatal(err)
	}
	reader, err := client.New(b.url, client.Config{Token: readSecret, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	writer, err := client.New(b.url, client.Config{Token: writeSecret, MaxRetries: -1, StreamAppends: true})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	sub, err := reader.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if e, err := sub.Next(ctx); err != nil || e.Type != "Before" {
		t.Fatalf("first event: %v, %v", e, err)
	}
	if _, err := writer.Append(ctx, "w", rewind.Any, ev("Before", "{}")); err != nil { // opens the AppendStream
		t.Fatal(err)
	}

	for _, name := range []string{"reader", "writer"} {
		if _, err := admin.RevokeToken(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Append(ctx, "s", rewind.Any, ev("After", "{}")); err != nil {
		t.Fatal(err)
	}
	for { // w's first event came before the revocation
		e, err := sub.Next(ctx)
		if err == nil && e.Type == "Before" {
			continue
		}
		if !errors.Is(err, rewind.ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("subscription of a revoked token: event %v, err %v; want unauthenticated, token revoked", e, err)
		}
		break
	}
	if res, err := writer.Append(ctx, "w", rewind.Any, ev("After", "{}")); !errors.Is(err, rewind.ErrUnauthenticated) {
		t.Fatalf("append over the open stream of a revoked token: %+v, %v; want unauthenticated", res, err)
	}
	if info, err := admin.StreamInfo(ctx, "w"); err != nil || info.Version != 1 {
		t.Fatalf("stream w after the refused append: %+v, %v; want version 1", info, err)
	}
}

// TestExpiredTokenIsRefused creates a token with a TTL on a clock the test
// moves: once it has run out, the token is refused as a revoked one is,
// by new requests and by the streams it opened before.
func TestExpiredTokenIsRefused(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	_, admin, b := setup(t, server.Config{Now: now})
	if _, err := admin.Append(ctx, "s", rewind.Any, ev("Before", "{}")); err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []time.Duration{-time.Hour, time.Millisecond} {
		if _, _, err := admin.CreateExpiringToken(ctx, "bad", ttl, "read:*"); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("ttl %v: %v, want invalid", ttl, err)
		}
	}
	tok, secret, err := admin.CreateExpiringToken(ctx, "ci", time.Hour, "read:*", "write:*")
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ExpiresAt.Equal(now().Add(time.Hour)) {
		t.Fatalf("expires at %v, want %v", tok.ExpiresAt, now().Add(time.Hour))
	}
	c, err := client.New(b.url, client.Config{Token: secret, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := client.New(b.url, client.Config{Token: secret, MaxRetries: -1, StreamAppends: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if e, err := sub.Next(ctx); err != nil || e.Type != "Before" {
		t.Fatalf("first event: %v, %v", e, err)
	}
	if _, err := w.Append(ctx, "w", rewind.Any, ev("Before", "{}")); err != nil { // opens the AppendStream
		t.Fatal(err)
	}

	clock.Add(int64(time.Hour))
	if _, err := c.ServerInfo(ctx); !errors.Is(err, rewind.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a new request with an expired token: %v, want unauthenticated, expired", err)
	}
	if _, err := admin.Append(ctx, "s", rewind.Any, ev("After", "{}")); err != nil {
		t.Fatal(err)
	}
	for { // w's first event came before the expiry
		e, err := sub.Next(ctx)
		if err == nil && e.Type == "Before" {
			continue
		}
		if !errors.Is(err, rewind.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("subscription of an expired token: event %v, err %v; want unauthenticated, expired", e, err)
		}
		break
	}
	if _, err := w.Append(ctx, "w", rewind.Any, ev("After", "{}")); !errors.Is(err, rewind.ErrUnauthenticated) {
		t.Fatalf("append over the open stream of an expired token: %v, want unauthenticated", err)
	}
	live, err := admin.ListTokens(ctx, false)
	if err != nil || slices.ContainsFunc(live, func(t client.Token) bool { return t.Name == "ci" }) {
		t.Fatalf("ListTokens(false) lists the expired token: %+v %v", live, err)
	}
	all, err := admin.ListTokens(ctx, true)
	if i := slices.IndexFunc(all, func(t client.Token) bool { return t.Name == "ci" }); err != nil || i < 0 ||
		!all[i].ExpiresAt.Equal(tok.ExpiresAt) {
		t.Fatalf("ListTokens(true): %+v %v", all, err)
	}
}

// TestSubscriptionBatchesKeepTheirSize subscribes to a log of small and
// large events, with events the filter skips in between, and checks every
// message against the documented batch rule: at most 512 events and
// 128 KiB of data, or one larger event alone. Every event must arrive once,
// in order, and each message's position must be a place to resume from:
// at or after its last event, before the next message's first.
func TestSubscriptionBatchesKeepTheirSize(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	const batchEvents, batchBytes = 512, 128 << 10
	appendN := func(n, size int, typ string) {
		t.Helper()
		for n > 0 {
			k := min(n, 100)
			evs := make([]rewind.Event, k)
			for i := range evs {
				evs[i] = ev(typ, strings.Repeat("x", size))
			}
			if _, err := c.Append(ctx, "s", rewind.Any, evs...); err != nil {
				t.Fatal(err)
			}
			n -= k
		}
	}
	appendN(3, 2, "Small")
	appendN(1, 900_000, "Big") // would have joined the three before it
	for range 6 {
		appendN(50, 1<<10, "Small")
		appendN(1, 10, "Skipped")
	}
	appendN(1, 200<<10, "Big")
	appendN(1, 100<<10, "Big")
	appendN(1, 100<<10, "Big")
	appendN(600, 10, "Small")
	appendN(1, 10, "Skipped")
	appendN(1, 129<<10, "Big")
	const want = 3 + 1 + 300 + 3 + 600 + 1

	events := rewindv1connect.NewEventStoreServiceClient(http.DefaultClient, b.url)
	req := connect.NewRequest(&rewindv1.SubscribeRequest{Filter: &rewindv1.Filter{Types: []string{"Small", "Big"}}})
	req.Header().Set("Authorization", "Bearer "+b.admin)
	stream, err := events.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	got, last, resume := 0, uint64(0), uint64(0)
	for got < want && stream.Receive() {
		msg := stream.Msg()
		size := 0
		for _, e := range msg.GetEvents() {
			size += len(e.GetData())
			if e.GetPosition() <= last || e.GetPosition() <= resume {
				t.Fatalf("event at position %d after position %d and a message's position %d", e.GetPosition(), last, resume)
			}
			last = e.GetPosition()
		}
		n := len(msg.GetEvents())
		if n > batchEvents || n > 1 && size > batchBytes {
			t.Errorf("a message holds %d events and %d bytes of data; the batch rule allows %d events and %d bytes, "+
				"or one larger event alone", n, size, batchEvents, batchBytes)
		}
		if msg.GetPosition() < last {
			t.Fatalf("a message's position %d is before its last event %d", msg.GetPosition(), last)
		}
		resume = msg.GetPosition()
		got += n
	}
	if got != want {
		t.Fatalf("got %d events, want %d: %v", got, want, stream.Err())
	}
}

// TestAppendStreamRefusesAnIDInUse sends two appends with the same id in
// one AppendStream message: their answers could not be told apart. The
// first is taken and answered; the second is refused by ending the stream
// with InvalidArgument, naming the id, and is not taken.
func TestAppendStreamRefusesAnIDInUse(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	events := rewindv1connect.NewEventStoreServiceClient(h2c(), b.url, connect.WithGRPC())
	stream := events.AppendStream(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+b.admin)
	item := func(typ string) *rewindv1.AppendStreamItem {
		return &rewindv1.AppendStreamItem{Id: 7, Append: &rewindv1.AppendRequest{Stream: "s",
			Events: []*rewindv1.Event{{Type: typ}}}}
	}
	if err := stream.Send(&rewindv1.AppendStreamRequest{Appends: []*rewindv1.AppendStreamItem{item("A"), item("B")}}); err != nil {
		t.Fatal(err)
	}
	answers := 0
	var err error
	for {
		var res *rewindv1.AppendStreamResponse
		if res, err = stream.Receive(); err != nil {
			break
		}
		answers += len(res.GetResults())
		if answers == 2 {
			stream.CloseRequest()
		}
	}
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "id 7") {
		t.Errorf("the stream ended with %v; want InvalidArgument naming id 7", err)
	}
	if answers != 1 {
		t.Errorf("%d answers for id 7, want 1", answers)
	}
	info, err := c.StreamInfo(ctx, "s")
	if err != nil || info.Count != 1 {
		t.Errorf("stream s after the refusal: %+v %v; want one event", info, err)
	}
}
