package server_test

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/rewindhq/rewind/server"
)

// TestHTTP2SettingsAreOurs reads the SETTINGS frame the server opens an
// HTTP/2 connection with: each limit is the one the server package sets
// and docs/server.md documents, not whatever net/http defaults to.
func TestHTTP2SettingsAreOurs(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(answerDeadline))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: server.HTTP2MaxConcurrentStreams,
		http2.SettingMaxFrameSize:         server.HTTP2MaxReadFrameSize,
		http2.SettingInitialWindowSize:    server.HTTP2MaxReceiveBufferPerStream,
	}
	for id, v := range want {
		if got, ok := sf.Value(id); !ok || got != v {
			t.Errorf("%s = %d (sent: %v), want %d", id, got, ok, v)
		}
	}
	if got, ok := sf.Value(http2.SettingMaxHeaderListSize); !ok || got < server.MaxHeaderBytes ||
		got > server.MaxHeaderBytes+4<<10 {
		t.Errorf("MAX_HEADER_LIST_SIZE = %d (sent: %v), want about %d", got, ok, server.MaxHeaderBytes)
	}
}

// TestHTTPLimitsAreDocumented checks that docs/server.md names every limit
// of the HTTP layer.
func TestHTTPLimitsAreDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/server.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SETTINGS_MAX_CONCURRENT_STREAMS", "SETTINGS_MAX_FRAME_SIZE",
		"SETTINGS_INITIAL_WINDOW_SIZE", "SETTINGS_HEADER_TABLE_SIZE", "SETTINGS_MAX_HEADER_LIST_SIZE",
		"connection window", "read_header_timeout", "idle keep-alive", "ping", "request headers",
		"slow_subscriber_timeout", "drain_delay"} {
		if !strings.Contains(string(doc), s) {
			t.Errorf("docs/server.md does not document %s", s)
		}
	}
}
