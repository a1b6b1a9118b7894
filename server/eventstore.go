package server

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/internal/apiconv"
	"github.com/rewindhq/rewind/internal/buildinfo"
	"github.com/rewindhq/rewind/store"
)

// Page bounds for ReadStream and ReadAll: a page holds at most maxPage
// events, and stops growing once it holds pageBytes of data.
const (
	defaultPage = 1000
	maxPage     = 10_000
	pageBytes   = 4 << 20
)

// eventStore implements the EventStoreService.
type eventStore struct{ s *Server }

// authorize fails with PermissionDenied unless the request's token allows
// action on stream. The message names the scope that would allow it.
func authorize(ctx context.Context, action auth.Action, stream string) error {
	tok := tokenFrom(ctx)
	if tok != nil && tok.Allows(action, stream) {
		return nil
	}
	name := "(none)"
	if tok != nil {
		name = tok.Name
	}
	return apiconv.Errorf(rewind.CodePermissionDenied,
		"rewind: permission denied: token %q may not %s stream %q; it needs a scope such as %s:%s", name, action, stream,
		action, stream)
}

func (e *eventStore) Append(ctx context.Context, req *connect.Request[rewindv1.AppendRequest]) (*connect.Response[rewindv1.AppendResponse], error) {
	res, err := e.appendOne(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

// appendOne checks, authorizes and performs one append.
func (e *eventStore) appendOne(ctx context.Context, m *rewindv1.AppendRequest) (*rewindv1.AppendResponse, error) {
	start := time.Now()
	if err := store.ValidateStreamName(m.GetStream()); err != nil {
		return nil, err
	}
	if err := refuseSystemStream(m.GetStream()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, auth.Write, m.GetStream()); err != nil {
		return nil, err
	}
	if err := checkRevoked(ctx); err != nil { // AppendStream: the token may be revoked since it opened
		return nil, err
	}
	expected, err := apiconv.AppendExpected(m)
	if err != nil {
		return nil, err
	}
	events := make([]rewind.Event, len(m.GetEvents()))
	bytes, cost := 0, int64(len(m.GetStream()))
	for i, p := range m.GetEvents() {
		if events[i], err = apiconv.EventFromProto(i, p); err != nil {
			return nil, err
		}
		bytes += len(p.GetData())
		for k, v := range p.GetMetadata() {
			bytes += len(k) + len(v)
		}
		cost += int64(len(p.GetType()) + eventOverhead)
	}
	cost += int64(bytes)
	if err := e.s.budget.acquire(cost); err != nil { // the server-wide bound on appends in progress
		return nil, err
	}
	defer e.s.budget.release(cost)
	res, err := e.s.store.Append(ctx, m.GetStream(), expected, events...)
	if err != nil {
		return nil, err
	}
	if !res.Duplicate {
		e.s.metrics.appendEvents.Add(float64(len(events)))
		e.s.metrics.appendBytes.Add(float64(bytes))
	}
	e.s.metrics.appendDuration.Observe(time.Since(start).Seconds())
	return apiconv.AppendResultToProto(res), nil
}

// pageLimit reads a page's limit; unit says what the page counts (events,
// streams) and hint how to get the next page.
func pageLimit(limit uint32, unit, hint string) (int, error) {
	switch {
	case limit == 0:
		return defaultPage, nil
	case limit > maxPage:
		return 0, &rewind.LimitError{Limit: unit + " per page (limit)", Max: maxPage, Got: int64(limit), Hint: hint}
	}
	return int(limit), nil
}

// Hints for the next page.
const (
	nextStreamPage = "read in pages: continue from the version after the last event you got"
	nextLogPage    = "read in pages: continue from next_position"
	nextListPage   = "list in pages: continue with after set to the last stream you got"
)

func (e *eventStore) ReadStream(ctx context.Context, req *connect.Request[rewindv1.ReadStreamRequest]) (*connect.Response[rewindv1.ReadStreamResponse], error) {
	m := req.Msg
	if err := store.ValidateStreamName(m.GetStream()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, auth.Read, m.GetStream()); err != nil {
		return nil, err
	}
	limit, err := pageLimit(m.GetLimit(), "events", nextStreamPage)
	if err != nil {
		return nil, err
	}
	// Read one more than the page to learn whether the stream goes on.
	evs, err := e.s.store.ReadStream(ctx, m.GetStream(),
		rewind.ReadStreamOptions{From: m.GetFromVersion(), Backward: m.GetBackward(), Limit: limit + 1})
	if err != nil && (len(evs) == 0 || ctx.Err() != nil) {
		return nil, err
	}
	// The events read before a damaged one are intact: the page ends with
	// them, and the next one, from the version after them, meets the error
	// with nothing before it.
	res := &rewindv1.ReadStreamResponse{EndOfStream: err == nil && len(evs) <= limit}
	size := 0
	for i := range evs {
		if i == limit || i > 0 && size >= pageBytes {
			res.EndOfStream = false
			break
		}
		res.Events = append(res.Events, apiconv.RecordedToProto(&evs[i]))
		size += len(evs[i].Data)
	}
	if m.GetBackward() && err == nil && len(res.Events) > 0 && res.Events[len(res.Events)-1].Version <= 1 {
		res.EndOfStream = true
	}
	return connect.NewResponse(res), nil
}

func (e *eventStore) ReadAll(ctx context.Context, req *connect.Request[rewindv1.ReadAllRequest]) (*connect.Response[rewindv1.ReadAllResponse], error) {
	m := req.Msg
	limit, err := pageLimit(m.GetLimit(), "events", nextLogPage)
	if err != nil {
		return nil, err
	}
	from, err := apiconv.TimeFromProto("from_time", m.GetFromTime())
	if err != nil {
		return nil, err
	}
	tok := tokenFrom(ctx)
	readsAll := tok.AllowsAll(auth.Read)
	// Taken before the read, which goes at least this far when it reaches
	// the end: a page that skipped everything still moves the reader on.
	var last uint64
	if lp, ok := e.s.store.(rewind.LastPositioner); ok {
		p, err := lp.LastPosition(ctx)
		if err != nil {
			return nil, err
		}
		last = uint64(p)
	}
	res := &rewindv1.ReadAllResponse{EndOfLog: true}
	var seen uint64
	size := 0
	opts := rewind.ReadAllOptions{From: rewind.Position(m.GetFromPosition()), FromTime: from,
		Filter: apiconv.FilterFromProto(m.GetFilter()), Epoch: m.GetEpoch()}
	if h, ok := e.s.storeHealth(ctx); ok {
		res.Epoch = h.Epoch
	}
	for ev, err := range e.s.store.ReadAll(ctx, opts) {
		if err != nil {
			if seen == 0 || ctx.Err() != nil {
				return nil, err
			}
			// The events read before a damaged record are intact: the page
			// ends with them, and the next one, from next_position, meets
			// the error with nothing before it.
			res.EndOfLog = false
			break
		}
		if len(res.Events) == limit || len(res.Events) > 0 && size >= pageBytes {
			res.EndOfLog = false
			break
		}
		seen = uint64(ev.Position)
		if !readsAll && !tok.Allows(auth.Read, ev.Stream) {
			continue // events of streams the token may not read are skipped, never sent
		}
		c := ev.Clone()
		res.Events = append(res.Events, apiconv.RecordedToProto(&c))
		size += len(c.Data)
	}
	if res.EndOfLog {
		seen = max(seen, last)
	}
	res.NextPosition = max(seen+1, m.GetFromPosition())
	return connect.NewResponse(res), nil
}

func (e *eventStore) GetStreamInfo(ctx context.Context, req *connect.Request[rewindv1.GetStreamInfoRequest]) (*connect.Response[rewindv1.GetStreamInfoResponse], error) {
	stream := req.Msg.GetStream()
	if err := store.ValidateStreamName(stream); err != nil {
		return nil, err
	}
	if err := authorize(ctx, auth.Read, stream); err != nil {
		return nil, err
	}
	info, err := e.s.store.StreamInfo(ctx, stream)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewindv1.GetStreamInfoResponse{Info: apiconv.StreamInfoToProto(info)}), nil
}

func (e *eventStore) ListStreams(ctx context.Context, req *connect.Request[rewindv1.ListStreamsRequest]) (*connect.Response[rewindv1.ListStreamsResponse], error) {
	m := req.Msg
	limit, err := pageLimit(m.GetLimit(), "streams", nextListPage)
	if err != nil {
		return nil, err
	}
	tok := tokenFrom(ctx)
	res := &rewindv1.ListStreamsResponse{}
	after := m.GetAfter()
	// Streams the token may not read are left out; page on until the page
	// is full or the names run out.
	for len(res.Streams) < limit {
		infos, err := e.s.store.ListStreams(ctx, rewind.ListStreamsOptions{Prefix: m.GetPrefix(), After: after,
			Limit: limit, IncludeDeleted: m.GetIncludeDeleted()})
		if err != nil {
			return nil, err
		}
		for _, i := range infos {
			if tok.Allows(auth.Read, i.Stream) && len(res.Streams) < limit {
				res.Streams = append(res.Streams, apiconv.StreamInfoToProto(i))
			}
		}
		if len(infos) < limit {
			break
		}
		after = infos[len(infos)-1].Stream
	}
	return connect.NewResponse(res), nil
}

func (e *eventStore) DeleteStream(ctx context.Context, req *connect.Request[rewindv1.DeleteStreamRequest]) (*connect.Response[rewindv1.DeleteStreamResponse], error) {
	m := req.Msg
	if err := store.ValidateStreamName(m.GetStream()); err != nil {
		return nil, err
	}
	if err := refuseSystemStream(m.GetStream()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, auth.Admin, m.GetStream()); err != nil {
		return nil, err
	}
	expected, err := apiconv.DeleteExpected(m)
	if err != nil {
		return nil, err
	}
	pos, err := e.s.store.DeleteStream(ctx, m.GetStream(), expected)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewindv1.DeleteStreamResponse{Position: uint64(pos)}), nil
}

func (e *eventStore) GetServerInfo(ctx context.Context, req *connect.Request[rewindv1.GetServerInfoRequest]) (*connect.Response[rewindv1.GetServerInfoResponse], error) {
	var i rewind.StoreInfo
	if d, ok := e.s.store.(rewind.Describer); ok {
		var err error
		if i, err = d.Describe(ctx); err != nil {
			return nil, err
		}
	}
	res := &rewindv1.GetServerInfoResponse{
		Version: buildinfo.Get().String(), Durability: i.Durability,
		FirstPosition: uint64(i.FirstPosition), LastPosition: uint64(i.LastPosition),
		Streams: uint64(i.Streams), Segments: uint64(i.Segments), Bytes: uint64(i.Bytes),
	}
	if h, ok := e.s.storeHealth(ctx); ok {
		res.Health = apiconv.HealthToProto(h)
	}
	return connect.NewResponse(res), nil
}

func (e *eventStore) Health(ctx context.Context, req *connect.Request[rewindv1.HealthRequest]) (*connect.Response[rewindv1.HealthResponse], error) {
	res := &rewindv1.HealthResponse{Status: rewindv1.HealthResponse_STATUS_SERVING}
	if h, ok := e.s.storeHealth(ctx); ok && h.Failed != "" {
		res.Status, res.Reason = rewindv1.HealthResponse_STATUS_FAILED, h.Failed
	}
	if e.s.draining.Load() {
		res.Status, res.Reason = rewindv1.HealthResponse_STATUS_DRAINING, "the server is shutting down"
	}
	return connect.NewResponse(res), nil
}
