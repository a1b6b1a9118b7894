package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/server"
)

var ctx = context.Background()

// bundle is what setup returns besides the server.
type bundle struct {
	url   string
	admin string // admin token secret
	dir   string
	cfg   server.Config
	stop  func() error // graceful shutdown; returns Run's error
}

// setup starts a server on a free loopback port, serving a fresh data
// directory, and returns it with an admin client.
func setup(t *testing.T, cfg server.Config) (*server.Server, *client.Client, *bundle) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, b := start(t, cfg)
	c := newClient(t, b.url, b.admin)
	return s, c, b
}

func setupB(b *testing.B, cfg server.Config) (*server.Server, *client.Client, *bundle) {
	cfg.DataDir, cfg.Addr, cfg.Logger = b.TempDir(), "127.0.0.1:0", slog.New(slog.DiscardHandler)
	s, bb := start(b, cfg)
	c, err := client.New(bb.url, client.Config{Token: bb.admin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return s, c, bb
}

func start(t testing.TB, cfg server.Config) (*server.Server, *bundle) {
	t.Helper()
	s, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return s, &bundle{url: s.URL(), admin: s.AdminSecret(), dir: cfg.DataDir, cfg: cfg, stop: stop}
}

func newClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(url, client.Config{Token: token, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ev(typ, data string) rewind.Event { return rewind.Event{Type: typ, Data: []byte(data)} }

func TestClientEndToEnd(t *testing.T) {
	t.Parallel()
	_, c, _ := setup(t, server.Config{})
	res, err := c.Append(ctx, "orders-1", rewind.NoStream, ev("Placed", `{"n":1}`), ev("Paid", `{}`))
	if err != nil || res.FirstPosition != 1 || res.LastPosition != 2 || res.LastVersion != 2 {
		t.Fatalf("append: %+v %v", res, err)
	}
	if _, err := c.Append(ctx, "users-1", rewind.Any, ev("Registered", `{}`)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Append(ctx, "orders-1", rewind.Exactly(1), ev("Shipped", `{}`))
	var wev *rewind.WrongExpectedVersionError
	if !errors.As(err, &wev) || wev.Actual != 2 || wev.Stream != "orders-1" || rewind.CodeOf(err) != rewind.CodeWrongExpectedVersion {
		t.Fatalf("wrong expected version: %v", err)
	}

	// Idempotent retry: the same ids write nothing and return the original positions.
	again := []rewind.Event{ev("A", "1"), ev("B", "2")}
	for i := range again {
		again[i].ID = uuidV7(t)
	}
	first, err := c.Append(ctx, "orders-2", rewind.Any, again...)
	if err != nil {
		t.Fatal(err)
	}
	dup, err := c.Append(ctx, "orders-2", rewind.Any, again...)
	if err != nil || !dup.Duplicate || dup.FirstPosition != first.FirstPosition {
		t.Fatalf("retried append: %+v %v (first %+v)", dup, err, first)
	}

	evs, err := c.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{})
	if err != nil || len(evs) != 2 || evs[0].Type != "Placed" || string(evs[0].Data) != `{"n":1}` || evs[1].Version != 2 {
		t.Fatalf("read stream: %v %+v", err, evs)
	}
	back, err := c.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{Backward: true, Limit: 1})
	if err != nil || len(back) != 1 || back[0].Version != 2 {
		t.Fatalf("read backward: %v %+v", err, back)
	}
	var types []string
	for e, err := range c.ReadAll(ctx, rewind.ReadAllOptions{Filter: rewind.Filter{StreamPrefix: "orders-"}}) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "Placed,Paid,A,B" {
		t.Fatalf("read all orders: %v", types)
	}
	info, err := c.StreamInfo(ctx, "orders-1")
	if err != nil || info.Version != 2 || info.Count != 2 {
		t.Fatalf("stream info: %+v %v", info, err)
	}
	list, err := c.ListStreams(ctx, rewind.ListStreamsOptions{Prefix: "orders-"})
	if err != nil || len(list) != 2 {
		t.Fatalf("list streams: %+v %v", list, err)
	}
	if _, err := c.DeleteStream(ctx, "orders-1", rewind.Exactly(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Fatalf("read deleted stream: %v", err)
	}
	si, err := c.ServerInfo(ctx)
	if err != nil || si.Durability != "sync" || si.LastPosition != 6 || si.FirstPosition != 1 {
		t.Fatalf("server info: %+v %v", si, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// Subscribe: catch up on the 6 records, then receive a live one.
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for want := rewind.Position(1); want <= 6; want++ {
		e, err := sub.Next(ctx)
		if err != nil || e.Position != want {
			t.Fatalf("catch-up event %d: %+v %v", want, e, err)
		}
	}
	go c.Append(ctx, "live", rewind.Any, ev("Live", "x"))
	e, err := sub.Next(ctx)
	if err != nil || e.Position != 7 || e.Stream != "live" {
		t.Fatalf("live event: %+v %v", e, err)
	}
	// Next honours its ctx and then resumes where it stood.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := sub.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next with a short ctx: %v", err)
	}
	go c.Append(ctx, "live", rewind.Any, ev("Live", "y"))
	if e, err := sub.Next(ctx); err != nil || e.Position != 8 {
		t.Fatalf("event after an interrupted next: %+v %v", e, err)
	}
}

func TestHTTPJSONEndToEnd(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{})
	call := func(method, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", b.url+"/rewind.v1.EventStoreService/"+method, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+b.admin)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatalf("%s: decode response: %v", method, err)
		}
		return res.StatusCode, out
	}
	status, out := call("Append", `{"stream":"orders-1","expectedState":"EXPECTED_STATE_NO_STREAM",
		"events":[{"type":"Placed","data":"eyJuIjoxfQ=="},{"type":"Paid"}]}`)
	if status != 200 || out["firstPosition"] != "1" || out["lastPosition"] != "2" {
		t.Fatalf("append: %d %v", status, out)
	}
	status, out = call("Append", `{"stream":"orders-1","expected_version":"5","events":[{"type":"X"}]}`)
	details, _ := out["details"].([]any)
	if status != 409 || out["code"] != "aborted" || !strings.Contains(out["message"].(string), "actual version 2") || len(details) != 1 {
		t.Fatalf("wrong expected version over JSON: %d %v", status, out)
	}
	status, out = call("ReadStream", `{"stream":"orders-1"}`)
	evs, _ := out["events"].([]any)
	if status != 200 || len(evs) != 2 || evs[0].(map[string]any)["data"] != "eyJuIjoxfQ==" || out["endOfStream"] != true {
		t.Fatalf("read stream: %d %v", status, out)
	}
	status, out = call("ReadAll", `{"fromPosition":"2"}`)
	if evs, _ := out["events"].([]any); status != 200 || len(evs) != 1 || out["nextPosition"] != "3" {
		t.Fatalf("read all: %d %v", status, out)
	}
	status, out = call("GetStreamInfo", `{"stream":"nope"}`)
	if status != 404 || out["code"] != "not_found" {
		t.Fatalf("info of a missing stream: %d %v", status, out)
	}

	// Subscribe over Connect's streaming JSON: enveloped messages.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body := envelope([]byte(`{"afterPosition":"1"}`))
	req, _ := http.NewRequestWithContext(sctx, "POST", b.url+"/rewind.v1.EventStoreService/Subscribe", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Authorization", "Bearer "+b.admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var msgs []string
	for len(msgs) < 2 {
		msg, err := readEnvelope(res.Body)
		if err != nil {
			t.Fatalf("read subscription message: %v (got %v)", err, msgs)
		}
		msgs = append(msgs, string(msg))
	}
	if !strings.Contains(msgs[0], `"position":"1"`) || !strings.Contains(msgs[1], `"position":"2"`) ||
		!strings.Contains(msgs[1], `"type":"Paid"`) {
		t.Fatalf("subscription messages: %v", msgs)
	}
}

func envelope(msg []byte) []byte {
	out := []byte{0, 0, 0, 0, 0}
	n := len(msg)
	out[1], out[2], out[3], out[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return append(out, msg...)
}

func readEnvelope(r io.Reader) ([]byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(h[1])<<24 | int(h[2])<<16 | int(h[3])<<8 | int(h[4])
	msg := make([]byte, n)
	_, err := io.ReadFull(r, msg)
	if h[0]&2 != 0 {
		return nil, fmt.Errorf("end of stream: %s", msg)
	}
	return msg, err
}

func uuidV7(t *testing.T) uuid.UUID {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
