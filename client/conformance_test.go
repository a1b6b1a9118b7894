package client_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
	"github.com/rewindhq/rewind/storetest"
)

// The client passes the conformance suite against a live server in this
// process, over gRPC: restarts are restarts of the server, crashes are
// copies of its data directory taken while it runs.
func TestConformance(t *testing.T) {
	t.Parallel()
	h := &remoteHarness{nodes: map[rewind.Store]*node{}}
	storetest.Run(t, h.open, storetest.Features{Reopen: h.reopen, Crash: h.crash,
		ModelOps:     storetest.DefaultModelOps() / 10, // every append is an RPC and waits for an fsync; restarts take seconds
		MaxEventSize: 1<<20 - 1<<10})                   // the limit 1 MiB segments allow
}

const adminSecret = "conformance-admin-secret-0123456789"

// node is one server and the client of it under test.
type node struct {
	dir  string
	stop context.CancelFunc
	done chan error
}

type remoteHarness struct {
	mu    sync.Mutex
	nodes map[rewind.Store]*node
}

// start serves dir and returns a client of it; the server stops when the
// test ends (or at a reopen). Segments of 1 MiB start much faster than the
// default 64 MiB ones under the race detector.
func (h *remoteHarness) start(t *testing.T, dir string) rewind.Store {
	t.Helper()
	s, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, AdminToken: adminSecret,
		Logger: slog.New(slog.DiscardHandler), Store: store.Config{DedupWindow: 24 * time.Hour, Log: eventlog.Config{SegmentSize: 1 << 20}}})
	if err != nil {
		t.Fatalf("start a server on %s: %v", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{dir: dir, stop: cancel, done: make(chan error, 1)}
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(func() { n.stop(); <-n.done })
	c, err := client.New(s.URL(), client.Config{Token: adminSecret, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.nodes[c] = n
	h.mu.Unlock()
	return c
}

func (h *remoteHarness) open(t *testing.T) rewind.Store { return h.start(t, t.TempDir()) }

func (h *remoteHarness) node(s rewind.Store) *node {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[s]
}

// reopen closes the client, stops its server gracefully and starts a new
// server on the same directory.
func (h *remoteHarness) reopen(t *testing.T, s rewind.Store) rewind.Store {
	t.Helper()
	n := h.node(s)
	s.Close()
	n.stop()
	if err := <-n.done; err != nil {
		t.Fatalf("server shutdown: %v", err)
	}
	n.done <- nil // for the cleanup's receive
	return h.start(t, n.dir)
}

// crash copies the server's directory while it runs.
func (h *remoteHarness) crash(t *testing.T, s rewind.Store) func(t *testing.T) rewind.Store {
	t.Helper()
	image := t.TempDir()
	copyDir(t, image, h.node(s).dir)
	return func(t *testing.T) rewind.Store { return h.start(t, image) }
}

// copyDir copies the files of src into dst (not the store's lock).
func copyDir(t *testing.T, dst, src string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "LOCK" || e.IsDir() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
