package server_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/server"
)

// fillLog appends n events of size bytes to the stream "big".
func fillLog(t *testing.T, b *bundle, n, size int) {
	t.Helper()
	c := newClient(t, b.url, b.admin)
	data := strings.Repeat("x", size)
	for range n {
		if _, err := c.Append(ctx, "big", rewind.Any, ev("Big", data)); err != nil {
			t.Fatal(err)
		}
	}
}

// deafSubscriber opens a subscription from the start of the log over
// HTTP/2 with a plain connect client and reads only its first message.
func deafSubscriber(t *testing.T, b *bundle, opts ...connect.ClientOption) *connect.ServerStreamForClient[rewindv1.SubscribeResponse] {
	t.Helper()
	// A small window, as gRPC's own clients start with: the server's writes
	// block soon.
	tr := &http.Transport{HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10,
		MaxReceiveBufferPerConnection: 64 << 10}}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	events := rewindv1connect.NewEventStoreServiceClient(&http.Client{Transport: tr}, b.url, opts...)
	req := connect.NewRequest(&rewindv1.SubscribeRequest{})
	req.Header().Set("Authorization", "Bearer "+b.admin)
	stream, err := events.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stream.Close() })
	if !stream.Receive() {
		t.Fatalf("the subscription did not start: %v", stream.Err())
	}
	return stream
}

// drain reads the rest of a stream and returns how it ended.
func drain(stream *connect.ServerStreamForClient[rewindv1.SubscribeResponse]) error {
	for stream.Receive() {
	}
	return stream.Err()
}

// TestShutdownEndsDeafSubscribersWithUnavailable subscribes over gRPC and
// over Connect (HTTP/2) and reads nothing while the server has far more to
// send than flow control lets through. A graceful stop must end those
// streams with Unavailable, which clients retry, not Internal, and must
// not wait out its timeout (ten minutes) for them.
func TestShutdownEndsDeafSubscribersWithUnavailable(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{ShutdownTimeout: 10 * time.Minute})
	fillLog(t, b, 48, 256<<10) // 12 MiB: beyond the client's 4 MiB stream window
	streams := map[string]*connect.ServerStreamForClient[rewindv1.SubscribeResponse]{
		"grpc":    deafSubscriber(t, b, connect.WithGRPC()),
		"connect": deafSubscriber(t, b),
	}
	// Let the server fill the windows and block in its writes.
	waitFor(t, func() bool { return strings.Contains(scrape(t, b.url), "rewind_subscriptions_active 2") })
	time.Sleep(200 * time.Millisecond)

	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(answerDeadline):
		t.Fatal("shutdown waits for subscribers that do not read")
	}
	for name, stream := range streams {
		err := drain(stream)
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("%s: the deaf subscription ended with %v, want unavailable", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

// rawH2Subscriber is a gRPC client written with http2's framer, so that
// it can do what no client library does: open a subscription, grant the
// server no more than HTTP/2's initial 64 KiB window, and never read.
type rawH2Subscriber struct {
	conn net.Conn
	fr   *http2.Framer
}

func newRawH2Subscriber(t *testing.T, b *bundle) *rawH2Subscriber {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "rewind"},
		{":path", pSubscribe}, {"content-type", "application/grpc+json"}, {"te", "trailers"},
		{"authorization", "Bearer " + b.admin}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(),
		EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, []byte(env(0, `{"afterPosition":"0"}`))); err != nil {
		t.Fatal(err)
	}
	return &rawH2Subscriber{conn: conn, fr: fr}
}

// next reads frames, acknowledging settings and pings, until one that
// ends stream 1 or the connection; it returns how it ended: "trailers"
// with the gRPC status, "rst CODE", or "closed" (GOAWAY, EOF). data counts
// the DATA bytes received on the way.
func (r *rawH2Subscriber) next(t *testing.T, data *int, until func() bool) string {
	t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(answerDeadline))
	dec := hpack.NewDecoder(4096, nil)
	for !until() {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return "closed"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				r.fr.WritePing(true, f.Data)
			}
		case *http2.DataFrame:
			*data += len(f.Data())
		case *http2.RSTStreamFrame:
			return "rst " + f.ErrCode.String()
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			if f.StreamEnded() {
				status, msg := "", ""
				for _, hf := range fields {
					switch hf.Name {
					case "grpc-status":
						status = hf.Value
					case "grpc-message":
						msg, _ = url.PathUnescape(hf.Value)
					}
				}
				return "trailers " + status + " " + msg
			}
		}
	}
	return ""
}

// TestShutdownEndsBlockedGRPCStreamsWithUnavailable subscribes with a
// client that grants the server only HTTP/2's initial window and never
// reads, so that the server's write of the subscription blocks on flow
// control. A graceful stop must end that stream in a way gRPC clients
// take as Unavailable (trailers with status 14, or the connection closed
// after GOAWAY), never with RST_STREAM INTERNAL_ERROR (Internal), and must
// not wait out its timeout.
func TestShutdownEndsBlockedGRPCStreamsWithUnavailable(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{ShutdownTimeout: 10 * time.Minute})
	fillLog(t, b, 8, 64<<10)
	sub := newRawH2Subscriber(t, b)
	data := 0
	if end := sub.next(t, &data, func() bool { return data >= 65535-5 }); end != "" {
		t.Fatalf("the subscription ended before it filled the window: %s", end)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	end := sub.next(t, &data, func() bool { return false })
	if end != "closed" && !strings.HasPrefix(end, "trailers 14 ") {
		t.Errorf("the blocked stream ended with %q; want trailers with status 14 (unavailable) or the "+
			"connection closed", end)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(answerDeadline):
		t.Fatal("shutdown waits for a stream blocked on flow control")
	}
}

// TestReadinessTurnsUnreadyBeforeTheListenerCloses starts a graceful stop
// with a drain delay: while the listener still accepts, /readyz must say
// 503 "draining" and gRPC health NOT_SERVING, and other requests are
// still served.
func TestReadinessTurnsUnreadyBeforeTheListenerCloses(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{DrainDelay: 3 * time.Second})
	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	waitFor(t, func() bool {
		status, body := get(t, b.url+"/readyz")
		if status == http.StatusServiceUnavailable && !strings.Contains(body, "draining") {
			t.Fatalf("/readyz: %d %s; want the reason draining", status, body)
		}
		return status == http.StatusServiceUnavailable
	})
	hc := grpchealth.NewClient(h2c(), b.url, connect.WithGRPC())
	res, err := hc.Check(ctx, &grpchealth.CheckRequest{})
	if err != nil || res.Status != grpchealth.StatusNotServing {
		t.Fatalf("gRPC health while draining: %+v %v; want NOT_SERVING", res, err)
	}
	if _, err := c.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatalf("an append while draining: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSlowSubscribersCostLittleMemory opens 50 subscriptions whose
// clients grant only HTTP/2's initial window and never read, over a log
// far larger than that, and checks the server's live heap grows by less
// than slowSubscriberBound each: what a subscriber the client does not
// read holds is bounded, whatever the log holds.
func TestSlowSubscribersCostLittleMemory(t *testing.T) {
	_, _, b := setup(t, server.Config{MaxSubscriptionsPerToken: 100})
	fillLog(t, b, 64, 128<<10) // 8 MiB
	before := heapInUse()
	const n = 50
	for range n {
		sub := newRawH2Subscriber(t, b)
		data := 0
		if end := sub.next(t, &data, func() bool { return data >= 65535-5 }); end != "" {
			t.Fatalf("a subscription ended before it filled the window: %s", end)
		}
	}
	waitFor(t, func() bool { return strings.Contains(scrape(t, b.url), "rewind_subscriptions_active 50") })
	time.Sleep(500 * time.Millisecond) // let every one block in its write
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %d KiB for %d deaf subscribers: %d KiB each", grown>>10, n, grown/n>>10)
	if per := grown / n; per > slowSubscriberBound {
		t.Errorf("each deaf subscriber holds %d KiB of heap, more than %d KiB", per>>10, slowSubscriberBound>>10)
	}
}

// slowSubscriberBound is the memory docs/server.md promises a subscriber
// that does not read costs at most, with room for the connection's own
// buffers.
const slowSubscriberBound = 1 << 20

// TestTooSlowSubscriberEndsWithResourceExhausted subscribes with a client
// that stops reading for longer than SlowSubscriberTimeout, then reads
// again: the subscription must end, once the waiting message is through,
// with ResourceExhausted saying the subscriber is too slow and where to
// resume, rather than be buffered for.
func TestTooSlowSubscriberEndsWithResourceExhausted(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{SlowSubscriberTimeout: 300 * time.Millisecond})
	fillLog(t, b, 8, 64<<10)
	sub := newRawH2Subscriber(t, b)
	data := 0
	if end := sub.next(t, &data, func() bool { return data >= 65535-5 }); end != "" {
		t.Fatalf("the subscription ended before it filled the window: %s", end)
	}
	time.Sleep(time.Second) // reads nothing, longer than the timeout
	if err := sub.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := sub.fr.WriteWindowUpdate(1, 1<<30); err != nil {
		t.Fatal(err)
	}
	end := sub.next(t, &data, func() bool { return false })
	if !strings.HasPrefix(end, "trailers 8 ") || !strings.Contains(end, "too slow") ||
		!strings.Contains(end, "after_position") {
		t.Fatalf("the slow subscription ended with %q; want trailers with status 8 (resource exhausted) "+
			"saying it is too slow and where to resume", end)
	}
	t.Log(end)
}

// TestSlowHTTP1SubscribersCostLittleMemory is TestSlowSubscribersCostLittleMemory
// over HTTP/1.1, which has no flow control of its own: the server's writes
// block once the sockets' buffers are full. Each deaf subscriber must hold
// less than slowSubscriberBound of heap.
func TestSlowHTTP1SubscribersCostLittleMemory(t *testing.T) {
	_, _, b := setup(t, server.Config{MaxSubscriptionsPerToken: 100})
	fillLog(t, b, 64, 128<<10) // 8 MiB
	addr := strings.TrimPrefix(b.url, "http://")
	sub := env(0, `{"afterPosition":"0"}`)
	before := heapInUse()
	const n = 50
	for range n {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		if _, err := io.WriteString(conn, strings.ReplaceAll(post(pSubscribe, "application/connect+json", sub),
			"$TOKEN", b.admin)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(answerDeadline))
		if _, err := io.ReadFull(conn, make([]byte, 12)); err != nil {
			t.Fatalf("the subscription did not start: %v", err)
		}
	}
	waitFor(t, func() bool { return strings.Contains(scrape(t, b.url), "rewind_subscriptions_active 50") })
	// The server's socket buffers take megabytes before its writes block:
	// wait until no subscription moves any more, each blocked in a write.
	lags := func() string {
		var out []string
		for _, l := range strings.Split(scrape(t, b.url), "\n") {
			if strings.HasPrefix(l, "rewind_subscription_lag_events{") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	prev := lags()
	waitFor(t, func() bool {
		time.Sleep(500 * time.Millisecond)
		cur := lags()
		still := cur == prev
		prev = cur
		return still
	})
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %d KiB for %d deaf HTTP/1.1 subscribers: %d KiB each", grown>>10, n, grown/n>>10)
	if per := grown / n; per > slowSubscriberBound {
		t.Errorf("each deaf HTTP/1.1 subscriber holds %d KiB of heap, more than %d KiB", per>>10,
			slowSubscriberBound>>10)
	}
}
