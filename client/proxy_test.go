package client_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyMode says what a proxy does with the connections it accepts.
type proxyMode int32

const (
	// forward passes bytes both ways between client and server.
	forward proxyMode = iota
	// mute passes the client's bytes to the server but drops the
	// server's: the server handles the requests, the client never hears.
	mute
	// reset reads the start of the request, then resets the connection
	// (RST), as the kernel does for a server killed with SIGKILL while
	// unread bytes wait.
	reset
	// eof reads the start of the request, then closes the connection
	// (FIN): a server killed with nothing left unread.
	eof
	// hole reads everything and never answers.
	hole
)

// proxy is a TCP proxy in front of a server, which breaks connections the
// way a crashing server or a broken network does.
type proxy struct {
	t        testing.TB
	ln       net.Listener
	backend  string
	mode     atomic.Int32
	accepted atomic.Int32

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newProxy(t testing.TB, backend string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.breakAll(false)
	})
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) setMode(m proxyMode) { p.mode.Store(int32(m)) }

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

// breakAll breaks every open connection, with a reset or a plain close.
func (p *proxy) breakAll(rst bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok && rst {
			tc.SetLinger(0)
		}
		c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		go p.handle(c)
	}
}

func (p *proxy) handle(c net.Conn) {
	if !p.track(c) {
		return
	}
	switch m := proxyMode(p.mode.Load()); m {
	case reset, eof:
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64<<10)
		c.Read(buf)
		time.Sleep(10 * time.Millisecond)
		if m == reset {
			c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
		return
	case hole:
		io.Copy(io.Discard, c)
		return
	}
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		return
	}
	if !p.track(b) {
		c.Close()
		return
	}
	mode := proxyMode(p.mode.Load())
	go func() {
		_, err := io.Copy(b, c)
		if err == nil || errors.Is(err, net.ErrClosed) {
			b.(*net.TCPConn).CloseWrite()
		}
	}()
	if mode == mute {
		io.Copy(io.Discard, b)
		return
	}
	io.Copy(c, b)
	c.(*net.TCPConn).CloseWrite()
}
