package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"
)

// The words net/http and connect-go use for a connection that broke under a
// call, as CI saw them when a server was killed: each must be taken for a
// broken connection (retried, then unavailable), and the server's own
// answers and the caller's cancellation never.
func TestBrokenConnectionWords(t *testing.T) {
	t.Parallel()
	broken := []string{
		"http2: client connection force closed via ClientConn.Close",
		"http2: client connection lost",
		"http2: client conn is closed",
		"http2: server sent GOAWAY and closed the connection",
		"read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer",
		"stream error: stream ID 3; INTERNAL_ERROR; received from peer",
	}
	for _, msg := range broken {
		for _, code := range []connect.Code{connect.CodeInternal, connect.CodeUnknown, connect.CodeCanceled} {
			err := connect.NewError(code, fmt.Errorf("protocol error: incomplete envelope: %w", errors.New(msg)))
			if !brokenConnection(err) || !transient(asUnavailable(err)) {
				t.Errorf("%v %q: not taken for a broken connection", code, msg)
			}
		}
	}
	wire := connect.NewWireError(connect.CodeInternal, errors.New("http2: client connection force closed via ClientConn.Close"))
	if brokenConnection(wire) {
		t.Error("an error the server sent was taken for a broken connection")
	}
	canceled := connect.NewError(connect.CodeCanceled, fmt.Errorf("http2: client connection force closed: %w", context.Canceled))
	if brokenConnection(canceled) {
		t.Error("the caller's cancellation was taken for a broken connection")
	}
}
