package server

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// appendWindow bounds the appends of one AppendStream in progress at
// once; beyond it the server stops reading the stream, and HTTP/2 flow
// control holds the client back.
const appendWindow = 1024

// AppendStream performs the appends of one stream concurrently, so that
// they share group commits, and answers each when it is acknowledged. One
// goroutine sends the answers: each message carries every answer ready by
// then, so that answers cost few writes however many appends there are.
// On shutdown it stops taking appends, answers those in progress and ends
// with Unavailable; appends sent but not answered were not taken, and the
// client resends them (with the same ids, so a resend is safe).
func (e *eventStore) AppendStream(ctx context.Context, stream *connect.BidiStream[rewindv1.AppendStreamRequest, rewindv1.AppendStreamResponse]) error {
	if e.s.draining.Load() {
		return apiconv.Errorf(rewind.CodeClosed, "rewind: the server is shutting down; send the appends to its successor")
	}
	out := make(chan *rewindv1.AppendStreamResult, appendWindow)
	sendErr := make(chan error, 1)
	go func() { // the stream's only sender
		var err error
		for r := range out {
			// A group commit acknowledges many appends at once: let the
			// others of the burst queue their answers first.
			runtime.Gosched()
			msg := &rewindv1.AppendStreamResponse{Results: []*rewindv1.AppendStreamResult{r}}
		more:
			for len(msg.Results) < appendWindow {
				select {
				case r, ok := <-out:
					if !ok {
						break more
					}
					msg.Results = append(msg.Results, r)
				default:
					break more
				}
			}
			if err == nil {
				err = stream.Send(msg)
			}
		}
		sendErr <- err
	}()

	var (
		mu        sync.Mutex // guards accepting, inUse, and wg.Add against wg.Wait
		accepting = true
		// inUse holds the ids of the appends awaiting their answer: the
		// client tells answers apart by id, so two at once cannot share one.
		inUse = map[uint64]bool{}
		wg    sync.WaitGroup
		slots = make(chan struct{}, appendWindow)
	)
	recvDone := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Receive()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				recvDone <- err
				return
			}
			for _, item := range req.GetAppends() {
				slots <- struct{}{}
				id := item.GetId()
				mu.Lock()
				if !accepting {
					mu.Unlock()
					recvDone <- nil
					return
				}
				if inUse[id] {
					mu.Unlock()
					recvDone <- apiconv.Errorf(rewind.CodeInvalidArgument, "rewind: AppendStream item id %d is "+
						"already used by an append awaiting its answer; ids must be unique among the appends in "+
						"progress. This append and the ones sent after it were not taken: resend them with ids of "+
						"their own", id)
					return
				}
				inUse[id] = true
				wg.Add(1)
				mu.Unlock()
				go func() {
					defer wg.Done()
					res := &rewindv1.AppendStreamResult{Id: id}
					if ok, err := e.appendOne(ctx, item.GetAppend()); err != nil {
						res.Result = &rewindv1.AppendStreamResult_Error{Error: e.s.appendError(ctx, err)}
					} else {
						res.Result = &rewindv1.AppendStreamResult_Ok{Ok: ok}
					}
					mu.Lock()
					delete(inUse, id) // answered: the client may use the id again once it has the answer
					mu.Unlock()
					out <- res
					<-slots
				}()
			}
		}
	}()

	var err error
	select {
	case err = <-recvDone:
	case <-e.s.stopSubs.Done():
		err = apiconv.Errorf(rewind.CodeClosed,
			"rewind: the server is shutting down; resend the appends that got no answer (same ids) to its successor")
	case <-ctx.Done():
		err = ctx.Err()
	}
	mu.Lock()
	accepting = false
	mu.Unlock()
	wg.Wait()
	close(out)
	if serr := <-sendErr; serr != nil && err == nil {
		err = serr
	}
	return err
}

// appendError is the in-band answer of a failed append, mapped and
// logged as observe does for unary calls.
func (s *Server) appendError(ctx context.Context, err error) *rewindv1.AppendError {
	ri := infoFrom(ctx)
	var ce *connect.Error
	if !errors.As(err, &ce) {
		if rewind.CodeOf(err) == rewind.CodeInternal {
			s.log.Error("append failed", "request_id", ri.id, "procedure", "AppendStream", "err", err)
			ce = apiconv.Errorf(rewind.CodeInternal, "rewind: internal error; the server logged it with request id %s", ri.id)
		} else {
			ce = apiconv.ToConnect(err)
		}
	}
	out := &rewindv1.AppendError{Code: ce.Code().String(), Message: ce.Message()}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ed, ok := v.(*rewindv1.ErrorDetail); ok {
				out.Detail = ed
			}
		}
	}
	return out
}
