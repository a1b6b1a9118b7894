package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"connectrpc.com/connect"
	"github.com/cenkalti/backoff/v5"

	"github.com/rewindhq/rewind"

	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
)

// pipeline sends appends over one AppendStream, many in flight at once,
// and hands each answer to the caller waiting for it. Appends queue up
// while a message is being sent, and the next message carries all of them,
// so one write carries many appends. When the stream breaks, every waiting
// append fails as Unavailable, which Append retries (on a new stream) with
// the same event ids.
type pipeline struct {
	c *Client

	mu      sync.Mutex // guards the fields below
	stream  *connect.BidiStreamForClient[rewindv1.AppendStreamRequest, rewindv1.AppendStreamResponse]
	cancel  context.CancelFunc
	gen     uint64
	next    uint64
	waiting map[uint64]chan pipeResult
	queue   []*rewindv1.AppendStreamItem // to send on the current stream
	kick    chan struct{}                // the current stream's sender has work
	closed  bool
}

type pipeResult struct {
	res *rewindv1.AppendResponse
	err error
}

func (p *pipeline) append(ctx context.Context, req *rewindv1.AppendRequest) (*rewindv1.AppendResponse, error) {
	ch := make(chan pipeResult, 1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, backoff.Permanent(fmt.Errorf("%w: the client is closed", rewind.ErrClosed))
	}
	if p.stream == nil {
		sctx, cancel := context.WithCancel(context.Background())
		p.stream, p.cancel = p.c.events.AppendStream(sctx), cancel
		p.gen++
		p.kick = make(chan struct{}, 1)
		if p.waiting == nil {
			p.waiting = map[uint64]chan pipeResult{}
		}
		go p.receive(p.stream, p.gen)
		go p.send(p.stream, p.gen, p.kick)
	}
	p.next++
	id := p.next
	p.waiting[id] = ch
	p.queue = append(p.queue, &rewindv1.AppendStreamItem{Id: id, Append: req})
	select {
	case p.kick <- struct{}{}:
	default:
	}
	p.mu.Unlock()
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.waiting, id)
		p.mu.Unlock()
		return nil, ctx.Err()
	}
}

// errStreamBroke marks the error of the appends a broken stream left
// without answer: they may have reached the server.
var errStreamBroke = errors.New("the append stream broke")

// unavailable is the error of the appends a broken stream leaves without
// answer: the server's own status when it refused or ended the stream
// (unauthenticated, shutting down…), else Unavailable, which is retried:
// also when connect-go reports the broken connection as Canceled, Unknown
// or Internal ("protocol error: incomplete envelope").
func unavailable(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Code() != connect.CodeUnknown && ce.Code() != connect.CodeCanceled && !brokenConnection(err) {
		return ce
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w: %w", errStreamBroke, err))
}

// send sends the queued appends of stream generation gen, all that are
// queued in one message, until the stream breaks.
func (p *pipeline) send(stream *connect.BidiStreamForClient[rewindv1.AppendStreamRequest, rewindv1.AppendStreamResponse], gen uint64, kick chan struct{}) {
	for range kick {
		// Appends tend to come in bursts (a group commit wakes many
		// callers at once): let the rest of the burst queue up first.
		runtime.Gosched()
		p.mu.Lock()
		if p.gen != gen || p.stream == nil {
			p.mu.Unlock()
			return
		}
		items := p.queue
		p.queue = nil
		p.mu.Unlock()
		if len(items) == 0 {
			continue
		}
		if err := stream.Send(&rewindv1.AppendStreamRequest{Appends: items}); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream; receive gets its status
				// (unauthenticated, shutting down…) and breaks with it.
				return
			}
			p.mu.Lock()
			p.breakLocked(gen, err)
			p.mu.Unlock()
			return
		}
	}
}

// receive dispatches the answers of one stream until it ends.
func (p *pipeline) receive(stream *connect.BidiStreamForClient[rewindv1.AppendStreamRequest, rewindv1.AppendStreamResponse], gen uint64) {
	for {
		msg, err := stream.Receive()
		if err != nil {
			p.mu.Lock()
			p.breakLocked(gen, err)
			p.mu.Unlock()
			return
		}
		for _, r := range msg.GetResults() {
			p.mu.Lock()
			ch := p.waiting[r.GetId()]
			delete(p.waiting, r.GetId())
			p.mu.Unlock()
			if ch == nil {
				continue // its caller gave up
			}
			switch r := r.GetResult().(type) {
			case *rewindv1.AppendStreamResult_Ok:
				ch <- pipeResult{res: r.Ok}
			case *rewindv1.AppendStreamResult_Error:
				ch <- pipeResult{err: errorFromAnswer(r.Error)}
			default:
				ch <- pipeResult{err: connect.NewError(connect.CodeInternal, errors.New("the server sent an empty answer"))}
			}
		}
	}
}

// breakLocked drops stream generation gen and fails its waiting appends.
func (p *pipeline) breakLocked(gen uint64, err error) {
	if p.gen != gen || p.stream == nil {
		return
	}
	p.cancel()
	p.stream.CloseRequest()
	p.stream = nil
	p.queue = nil
	close(p.kick) // ends the sender
	for id, ch := range p.waiting {
		ch <- pipeResult{err: unavailable(err)}
		delete(p.waiting, id)
	}
}

func (p *pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.breakLocked(p.gen, connect.NewError(connect.CodeCanceled, errors.New("the client is closed")))
}

// errorFromAnswer rebuilds the connect error of a failed append.
func errorFromAnswer(a *rewindv1.AppendError) error {
	var code connect.Code
	if err := code.UnmarshalText([]byte(a.GetCode())); err != nil {
		code = connect.CodeUnknown
	}
	ce := connect.NewError(code, errors.New(a.GetMessage()))
	if a.GetDetail() != nil {
		if d, err := connect.NewErrorDetail(a.GetDetail()); err == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}
