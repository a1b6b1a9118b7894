package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
	"github.com/rewindhq/rewind/server"
)

// member is a raw Consume stream, so that a test controls exactly what a
// member receives and settles, and can kill it mid-batch.
type member struct {
	t      *testing.T
	stream *connect.BidiStreamForClient[rewindv1.ConsumeRequest, rewindv1.ConsumeResponse]
	cancel context.CancelFunc
	id     uint64
	conns  *connList
}

// connList records the connections of a member's own transport, so that
// a test can kill the member as a dying process would: its connection
// closes under it.
type connList struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connList) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

type authHeader string

func (a authHeader) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(a))
		return next(ctx, req)
	}
}

func (a authHeader) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(a))
		return conn
	}
}

func (a authHeader) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// join opens a Consume stream and waits for its confirmation; it fails
// the test if the join fails.
func join(t *testing.T, b *bundle, token, group string, maxAckPending uint32) *member {
	t.Helper()
	m, err := tryJoin(t, b, token, group, maxAckPending)
	if err != nil {
		t.Fatalf("join %s: %v", group, err)
	}
	return m
}

func tryJoin(t *testing.T, b *bundle, token, group string, maxAckPending uint32) (*member, error) {
	t.Helper()
	return tryJoinWith(t, b, token, group, maxAckPending, connect.WithGRPC())
}

// tryJoinWith is tryJoin over the protocol and codec opts choose.
func tryJoinWith(t *testing.T, b *bundle, token, group string, maxAckPending uint32, opts ...connect.ClientOption) (*member, error) {
	t.Helper()
	sctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conns := &connList{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			conns.mu.Lock()
			conns.conns = append(conns.conns, c)
			conns.mu.Unlock()
		}
		return c, err
	}}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(func() { conns.kill() })
	if token != "" {
		opts = append(opts, connect.WithInterceptors(authHeader(token)))
	}
	s := rewindv1connect.NewConsumerGroupServiceClient(&http.Client{Transport: tr}, b.url, opts...).Consume(sctx)
	if err := s.Send(&rewindv1.ConsumeRequest{Start: &rewindv1.ConsumeStart{Group: group, MaxAckPending: maxAckPending}}); err != nil && !errors.Is(err, io.EOF) {
		cancel()
		return nil, err
	}
	msg, err := s.Receive()
	if err != nil {
		cancel()
		return nil, err
	}
	if msg.GetStarted() == nil {
		cancel()
		return nil, fmt.Errorf("first message is not started: %v", msg)
	}
	return &member{t: t, stream: s, cancel: cancel, id: msg.GetStarted().GetMemberId(), conns: conns}, nil
}

// recv returns the next message, failing the test after a while.
func (m *member) recv() *rewindv1.ConsumeResponse {
	m.t.Helper()
	type res struct {
		msg *rewindv1.ConsumeResponse
		err error
	}
	ch := make(chan res, 1)
	go func() {
		msg, err := m.stream.Receive()
		ch <- res{msg, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			m.t.Fatalf("receive: %v", r.err)
		}
		return r.msg
	case <-time.After(10 * time.Second):
		m.t.Fatal("no message within 10s")
	}
	return nil
}

// deliveries receives until it has n deliveries.
func (m *member) deliveries(n int) []*rewindv1.Delivery {
	m.t.Helper()
	var out []*rewindv1.Delivery
	for len(out) < n {
		msg := m.recv()
		if len(msg.GetErrors()) > 0 {
			m.t.Fatalf("unexpected errors: %v", msg.GetErrors())
		}
		out = append(out, msg.GetDeliveries()...)
	}
	if len(out) != n {
		m.t.Fatalf("got %d deliveries, want %d", len(out), n)
	}
	return out
}

func (m *member) send(req *rewindv1.ConsumeRequest) {
	m.t.Helper()
	if err := m.stream.Send(req); err != nil {
		m.t.Fatalf("send: %v", err)
	}
}

func appendN(t *testing.T, c *client.Client, stream string, n int) {
	t.Helper()
	evs := make([]rewind.Event, n)
	for i := range evs {
		evs[i] = ev("E", fmt.Sprintf(`{"i":%d}`, i))
	}
	if _, err := c.Append(ctx, stream, rewind.Any, evs...); err != nil {
		t.Fatal(err)
	}
}

func waitInfo(t *testing.T, c *client.Client, group string, ok func(consumer.GroupInfo) bool) consumer.GroupInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err := c.GroupInfo(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if ok(in) {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s never reached the expected state: %+v", group, in)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMemberKilledMidBatch: a member takes a batch, acks half of it and
// dies. Each of its un-acked events is delivered to another member at
// once (the ack wait is an hour), and none it acked ever is.
func TestMemberKilledMidBatch(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "billing", AckWait: time.Hour,
		Filter: rewind.Filter{StreamPrefix: "orders-"}}); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, "orders-1", 20)
	a := join(t, b, b.admin, "billing", 20)
	batch := a.deliveries(20)
	acked := map[uint64]bool{}
	var ids []uint64
	for i, d := range batch {
		if i%2 == 0 {
			acked[d.GetEvent().GetPosition()] = true
			ids = append(ids, d.GetId())
		}
	}
	a.send(&rewindv1.ConsumeRequest{Acks: ids})
	waitInfo(t, c, "billing", func(in consumer.GroupInfo) bool { return in.Acked == 10 })
	a.conns.kill() // killed: its connection drops, no goodbye

	bm := join(t, b, b.admin, "billing", 100)
	in0 := waitInfo(t, c, "billing", func(in consumer.GroupInfo) bool { return in.Members == 1 })
	t.Logf("after the kill: %+v", in0)
	again := bm.deliveries(10)
	for _, d := range again {
		p := d.GetEvent().GetPosition()
		if acked[p] {
			t.Errorf("acked event at position %d delivered again", p)
		}
		if d.GetAttempt() != 2 {
			t.Errorf("event %d: attempt %d, want 2", p, d.GetAttempt())
		}
		acked[p] = true
	}
	if len(acked) != 20 {
		t.Fatalf("%d distinct events delivered, want 20", len(acked))
	}
	ids = ids[:0]
	for _, d := range again {
		ids = append(ids, d.GetId())
	}
	bm.send(&rewindv1.ConsumeRequest{Acks: ids})
	in := waitInfo(t, c, "billing", func(in consumer.GroupInfo) bool { return in.Acked == 20 })
	if in.Redeliveries != 10 || in.InFlight != 0 || in.Pending != 0 || in.Timeouts != 0 {
		t.Fatalf("info after the redeliveries: %+v", in)
	}
	// Nothing more comes: every event was acked.
	appendN(t, c, "orders-2", 1)
	if d := bm.deliveries(1); d[0].GetEvent().GetStream() != "orders-2" {
		t.Fatalf("delivered %v, want the new event", d[0].GetEvent())
	}
}

// TestConsumeWireForms: the deliveries the server writes itself (see
// apiconv.AppendConsumeDeliveries) read the same in every form a client
// may ask for — binary protobuf over gRPC, JSON over the Connect protocol,
// and the Go client's own reader — and equal the events as read.
func TestConsumeWireForms(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	evs := []rewind.Event{ev("Plain", `{"i":1}`), ev("Rich", `{"i":2}`)}
	evs[1].Metadata = map[string]string{"correlation-id": "c-1", "actor": "ü"}
	evs[1].OccurredAt = time.Date(2020, 2, 3, 4, 5, 6, 789, time.UTC)
	evs[1].SchemaVersion = 3
	if _, err := c.Append(ctx, "orders-1", rewind.Any, evs...); err != nil {
		t.Fatal(err)
	}
	want, err := c.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{})
	if err != nil || len(want) != 2 {
		t.Fatalf("read: %v, %d events", err, len(want))
	}
	check := func(form string, got []rewind.RecordedEvent) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", form, len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("%s: event %d\n got %+v\nwant %+v", form, i, got[i], want[i])
			}
		}
	}
	for form, opts := range map[string][]connect.ClientOption{
		"grpc+proto":    {connect.WithGRPC()},
		"connect+json":  {connect.WithProtoJSON()},
		"connect+proto": nil,
	} {
		group := "g-" + strings.ReplaceAll(form, "+", "-")
		if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: group, AckWait: time.Hour}); err != nil {
			t.Fatal(err)
		}
		m, err := tryJoinWith(t, b, b.admin, group, 10, opts...)
		if err != nil {
			t.Fatalf("%s: join: %v", form, err)
		}
		var got []rewind.RecordedEvent
		var ids []uint64
		for _, d := range m.deliveries(2) {
			e, err := apiconv.RecordedFromProto(d.GetEvent())
			if err != nil {
				t.Fatalf("%s: %v", form, err)
			}
			got, ids = append(got, e), append(ids, d.GetId())
		}
		check(form, got)
		m.send(&rewindv1.ConsumeRequest{Acks: ids})
		waitInfo(t, c, group, func(in consumer.GroupInfo) bool { return in.Acked == 2 })
	}

	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g-client", AckWait: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []rewind.RecordedEvent
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(cctx, "g-client", func(_ context.Context, m *consumer.Message) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, *m.Event)
			return nil
		}, client.ConsumeOptions{})
	}()
	waitInfo(t, c, "g-client", func(in consumer.GroupInfo) bool { return in.Acked == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	check("client.Consume", got)
}

// TestDisconnectReleasesAtOnce: a member that closes its stream cleanly
// releases its in-flight events at once, and the group's description
// shows it gone.
func TestDisconnectReleasesAtOnce(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", AckWait: time.Hour}); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, "s-1", 5)
	a := join(t, b, b.admin, "g", 0)
	a.deliveries(5)
	in := waitInfo(t, c, "g", func(in consumer.GroupInfo) bool { return in.InFlight == 5 })
	if in.Members != 1 || in.MemberList[0].InFlight != 5 {
		t.Fatalf("info: %+v", in)
	}
	if err := a.stream.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	in = waitInfo(t, c, "g", func(in consumer.GroupInfo) bool { return in.Members == 0 })
	if in.InFlight != 0 || in.Pending != 5 || in.Status != consumer.StatusNoMembers {
		t.Fatalf("after the member left: %+v", in)
	}
}

// TestMemberMaxInFlight: the server never hands a member more un-acked
// deliveries than its max ack pending; an ack makes room for one more.
func TestMemberMaxInFlight(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", MemberMaxAckPending: 10}); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, "s-1", 50)
	m := join(t, b, b.admin, "g", 3)
	ds := m.deliveries(3)
	in := waitInfo(t, c, "g", func(in consumer.GroupInfo) bool { return in.Pending == 47 })
	if in.InFlight != 3 || in.MemberList[0].MaxAckPending != 3 {
		t.Fatalf("info: %+v", in)
	}
	m.send(&rewindv1.ConsumeRequest{Acks: []uint64{ds[0].GetId()}})
	next := m.deliveries(1)
	if want := ds[2].GetEvent().GetPosition() + 1; next[0].GetEvent().GetPosition() != want {
		t.Fatalf("next delivery at %d, want %d", next[0].GetEvent().GetPosition(), want)
	}
	if _, err := tryJoin(t, b, b.admin, "g", 11); rewind.CodeOf(fromConnect(err)) != rewind.CodeLimitExceeded {
		t.Fatalf("a member asking for more than member_max_ack_pending: %v", err)
	}
}

func fromConnect(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		for _, d := range ce.Details() {
			if v, derr := d.Value(); derr == nil {
				if ed, ok := v.(*rewindv1.ErrorDetail); ok {
					return codeErr(ed.GetCode())
				}
			}
		}
	}
	return err
}

type codeErr string

func (e codeErr) Error() string { return string(e) }

func (e codeErr) Is(target error) bool { return rewind.CodeOf(target) == rewind.Code(e) }

// TestBadSettlementsChangeNothing: acking a foreign, stale or unknown
// delivery, and a nak with a bad delay, are answered in band with their
// kind, the stream goes on, and the group is unchanged.
func TestBadSettlementsChangeNothing(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", AckWait: time.Hour}); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, "s-1", 4)
	a := join(t, b, b.admin, "g", 2)
	da := a.deliveries(2)
	o := join(t, b, b.admin, "g", 2)
	do := o.deliveries(2)
	a.send(&rewindv1.ConsumeRequest{Acks: []uint64{da[0].GetId()}})
	waitInfo(t, c, "g", func(in consumer.GroupInfo) bool { return in.Acked == 1 })
	before, _ := c.GroupInfo(ctx, "g")

	a.send(&rewindv1.ConsumeRequest{
		Acks:       []uint64{do[0].GetId(), da[0].GetId(), do[1].GetId() + 1<<40},
		Naks:       []*rewindv1.ConsumeNak{{DeliveryId: da[1].GetId(), Delay: durationpbOf(-time.Second)}},
		InProgress: []uint64{do[1].GetId()},
		Terms:      []*rewindv1.ConsumeTerm{{DeliveryId: do[1].GetId(), Reason: "nope"}},
	})
	msg := a.recv()
	var kinds []string
	for _, e := range msg.GetErrors() {
		kinds = append(kinds, e.GetOp()+":"+e.GetKind())
		if e.GetCode() != "invalid_argument" || e.GetMessage() == "" || e.GetDetail().GetCode() != "invalid_argument" {
			t.Errorf("error %v: want code invalid_argument with a message and a detail", e)
		}
	}
	want := "ack:foreign ack:stale ack:unknown nak:invalid in-progress:foreign term:foreign"
	if strings.Join(kinds, " ") != want {
		t.Fatalf("errors %q, want %q", strings.Join(kinds, " "), want)
	}
	after := waitInfo(t, c, "g", func(consumer.GroupInfo) bool { return true })
	if after.Acked != before.Acked || after.InFlight != 3 || after.Parked != 0 || after.Redeliveries != 0 {
		t.Fatalf("bad settlements changed the group: before %+v after %+v", before, after)
	}
	// Too many settlements in one message (an outside test sent millions
	// of unknown ids: gigabytes to answer one by one): one error, none
	// applied, a good one among them included.
	many := make([]uint64, server.MaxSettlementsPerMessage)
	for i := range many {
		many[i] = 1<<50 + uint64(i)
	}
	a.send(&rewindv1.ConsumeRequest{Acks: append(many, da[1].GetId())})
	if msg := a.recv(); len(msg.GetErrors()) != 1 || msg.GetErrors()[0].GetOp() != "settle" ||
		msg.GetErrors()[0].GetCode() != "invalid_argument" || !strings.Contains(msg.GetErrors()[0].GetMessage(), "10000") {
		t.Fatalf("too many settlements: %v", msg.GetErrors())
	}
	if in := waitInfo(t, c, "g", func(consumer.GroupInfo) bool { return true }); in.Acked != before.Acked {
		t.Fatalf("a refused message acked: %+v", in)
	}
	// The stream goes on: a good ack works.
	a.send(&rewindv1.ConsumeRequest{Acks: []uint64{da[1].GetId()}})
	waitInfo(t, c, "g", func(in consumer.GroupInfo) bool { return in.Acked == 2 })
}

// TestGroupBadInput: every management RPC refuses bad input with a typed
// error, and nothing changes.
func TestGroupBadInput(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, "s-1", 3)
	cases := []struct {
		name string
		code rewind.Code
		call func() error
	}{
		{"info of an unknown group", rewind.CodeNotFound, func() error { _, err := c.GroupInfo(ctx, "nope"); return err }},
		{"delete an unknown group", rewind.CodeNotFound, func() error { return c.DeleteGroup(ctx, "nope") }},
		{"reset an unknown group", rewind.CodeNotFound, func() error {
			_, err := c.ResetGroup(ctx, "nope", consumer.ResetOptions{ShiftBy: -1, Execute: true})
			return err
		}},
		{"parked of an unknown group", rewind.CodeNotFound, func() error {
			_, err := c.Parked(ctx, "nope", consumer.ParkedOptions{})
			return err
		}},
		{"replay an unknown group", rewind.CodeNotFound, func() error {
			_, err := c.ReplayParked(ctx, "nope", consumer.ReplayOptions{})
			return err
		}},
		{"purge an unknown group", rewind.CodeNotFound, func() error {
			_, err := c.PurgeParked(ctx, "nope", consumer.PurgeOptions{})
			return err
		}},
		{"consume an unknown group", rewind.CodeNotFound, func() error {
			_, err := tryJoin(t, b, b.admin, "nope", 0)
			return fromConnect(err)
		}},
		{"a bad group name", rewind.CodeInvalidArgument, func() error { _, err := c.GroupInfo(ctx, "a b"); return err }},
		{"a filter on the engine's streams", rewind.CodeInvalidArgument, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x1", Filter: rewind.Filter{StreamPrefix: "_rewind."}})
			return err
		}},
		{"an empty event type", rewind.CodeInvalidArgument, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x2", Filter: rewind.Filter{Types: []string{""}}})
			return err
		}},
		{"an event type with a space", rewind.CodeInvalidArgument, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x6", Filter: rewind.Filter{Types: []string{"a b"}}})
			return err
		}},
		{"a stream prefix with a space", rewind.CodeInvalidArgument, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x7", Filter: rewind.Filter{StreamPrefix: "a b"}})
			return err
		}},
		{"a stream prefix no stream name starts with", rewind.CodeInvalidArgument, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x8", Filter: rewind.Filter{StreamPrefix: "$x"}})
			return err
		}},
		{"a bad order by", rewind.CodeInvalidArgument, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x3", OrderBy: "key"})
			return err
		}},
		{"an absurd max ack pending", rewind.CodeLimitExceeded, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x4", MaxAckPending: 50_000_000, MaxPending: 50_000_000})
			return err
		}},
		{"a start after the log's end", rewind.CodeInvalidArgument, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "x5",
				Start: consumer.Start{Kind: consumer.StartPosition, Position: 1000}})
			return err
		}},
		{"an existing group", rewind.CodeAlreadyExists, func() error {
			_, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", OrderBy: "stream"})
			return err
		}},
		{"a reset without a target", rewind.CodeInvalidArgument, func() error {
			_, err := c.ResetGroup(ctx, "g", consumer.ResetOptions{Execute: true})
			return err
		}},
		{"a reset beyond the log", rewind.CodeInvalidArgument, func() error {
			_, err := c.ResetGroup(ctx, "g", consumer.ResetOptions{ToPosition: 99, ToPositionSet: true, Execute: true})
			return err
		}},
		{"a parked page too large", rewind.CodeLimitExceeded, func() error {
			_, err := c.Parked(ctx, "g", consumer.ParkedOptions{Limit: 20_000})
			return err
		}},
		{"a member max above the group's", rewind.CodeLimitExceeded, func() error {
			_, err := tryJoin(t, b, b.admin, "g", 5000)
			return fromConnect(err)
		}},
	}
	// The group reads the three events on its own: take the snapshot
	// once it has, so that only the bad input could change it.
	var before []consumer.GroupInfo
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if before, err = c.Groups(ctx); err != nil {
			t.Fatal(err)
		}
		if len(before) == 1 && before[0].Pending == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not read the 3 events: %+v", before)
		}
	}
	for _, tc := range cases {
		err := tc.call()
		if got := rewind.CodeOf(err); got != tc.code {
			t.Errorf("%s: code %s (%v), want %s", tc.name, got, err, tc.code)
		}
	}
	after, err := c.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || len(before) != 1 || after[0].Config.OrderBy != "" || after[0].AckFloor != before[0].AckFloor ||
		after[0].Pending != before[0].Pending {
		t.Fatalf("bad input changed the groups: before %+v after %+v", before, after)
	}
}

// TestSystemStreamsRefused: users cannot append to or delete the streams
// the server keeps the groups' state in, whatever their scopes.
func TestSystemStreamsRefused(t *testing.T) {
	t.Parallel()
	_, c, _ := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	before, err := c.StreamInfo(ctx, "_rewind.group.g")
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"_rewind.group.g", "_rewind.group.new", "_rewind.x"} {
		_, err := c.Append(ctx, stream, rewind.Any, ev("GroupCommit", `{"floor":99}`))
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != "stream" || !strings.Contains(ve.Reason, "only the server writes it") {
			t.Errorf("append to %s: %v, want a validation error of the stream", stream, err)
		}
	}
	if _, err := c.DeleteStream(ctx, "_rewind.group.g", rewind.Any); rewind.CodeOf(err) != rewind.CodeInvalidArgument {
		t.Errorf("delete of a state stream: %v", err)
	}
	after, err := c.StreamInfo(ctx, "_rewind.group.g")
	if err != nil || after.Version != before.Version || after.Deleted {
		t.Fatalf("the state stream changed: before %+v after %+v (%v)", before, after, err)
	}
}

// TestGroupScopes: each group RPC needs the scope documented for it, on
// the group's state stream name, and consuming or creating needs read on
// the group's streams.
func TestGroupScopes(t *testing.T) {
	t.Parallel()
	_, admin, b := setup(t, server.Config{})
	tok := func(name string, scopes ...string) *client.Client {
		_, sec, err := admin.CreateToken(ctx, name, scopes...)
		if err != nil {
			t.Fatal(err)
		}
		return newClient(t, b.url, sec)
	}
	if _, err := admin.CreateGroup(ctx, consumer.GroupConfig{Name: "billing", Filter: rewind.Filter{StreamPrefix: "orders-"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateGroup(ctx, consumer.GroupConfig{Name: "audit"}); err != nil {
		t.Fatal(err)
	}
	appendN(t, admin, "orders-1", 2)
	reader := tok("reader", "read:_rewind.group.billing")
	worker := tok("worker", "write:_rewind.group.billing", "read:orders-*")
	blind := tok("blind", "write:_rewind.group.*")
	manager := tok("manager", "admin:_rewind.group.*", "read:orders-*")
	denied := func(what string, err error) {
		t.Helper()
		if rewind.CodeOf(err) != rewind.CodePermissionDenied || !strings.Contains(err.Error(), "_rewind.group.") {
			t.Errorf("%s: %v, want permission denied naming the scope", what, err)
		}
	}
	allowed := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	_, err := reader.GroupInfo(ctx, "billing")
	allowed("reader: info", err)
	_, err = reader.ResetGroup(ctx, "billing", consumer.ResetOptions{ShiftBy: -1})
	allowed("reader: reset plan", err)
	_, err = reader.ResetGroup(ctx, "billing", consumer.ResetOptions{ShiftBy: -1, Execute: true})
	denied("reader: reset execute", err)
	_, err = reader.GroupInfo(ctx, "audit")
	denied("reader: info of another group", err)
	gs, err := reader.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Config.Name != "billing" {
		t.Errorf("reader: list shows %v (%v), want billing alone", gs, err)
	}
	_, err = reader.CreateGroup(ctx, consumer.GroupConfig{Name: "x"})
	denied("reader: create", err)
	denied("reader: delete", reader.DeleteGroup(ctx, "billing"))
	_, err = reader.ReplayParked(ctx, "billing", consumer.ReplayOptions{})
	denied("reader: replay", err)
	_, err = reader.PurgeParked(ctx, "billing", consumer.PurgeOptions{})
	denied("reader: purge", err)
	_, err = tryJoin(t, b, secretOf(t, admin, b, "reader2", "read:_rewind.group.billing", "read:orders-*"), "billing", 0)
	if rewind.CodeOf(fromConnect(err)) != rewind.CodePermissionDenied {
		t.Errorf("consume with read only: %v", err)
	}
	if _, err := tryJoin(t, b, secretOf(t, admin, b, "blind2", "write:_rewind.group.*"), "billing", 0); rewind.CodeOf(fromConnect(err)) != rewind.CodePermissionDenied {
		t.Errorf("consume without read on the group's streams: %v", err)
	}
	_ = blind
	m := join(t, b, secretOf(t, admin, b, "worker2", "write:_rewind.group.billing", "read:orders-*"), "billing", 0)
	m.deliveries(2)
	_ = worker
	_, err = manager.CreateGroup(ctx, consumer.GroupConfig{Name: "all"})
	if rewind.CodeOf(err) != rewind.CodePermissionDenied || !strings.Contains(err.Error(), "read:*") {
		t.Errorf("manager: a group of every stream (it reads orders-* only): %v", err)
	}
	_, err = manager.CreateGroup(ctx, consumer.GroupConfig{Name: "eu", Filter: rewind.Filter{StreamPrefix: "orders-eu-"}})
	allowed("manager: create", err)
	allowed("manager: delete", manager.DeleteGroup(ctx, "eu"))
}

func secretOf(t *testing.T, admin *client.Client, b *bundle, name string, scopes ...string) string {
	t.Helper()
	_, sec, err := admin.CreateToken(ctx, name, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

// TestGroupMetrics: /metrics reports each group's lag from the engine's
// counters, and a group stalled because it is full says so.
func TestGroupMetrics(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", MaxAckPending: 2, MaxPending: 2,
		AckWait: time.Hour}); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, "s-1", 5)
	m := join(t, b, b.admin, "g", 0)
	m.deliveries(2)
	in := waitInfo(t, c, "g", func(in consumer.GroupInfo) bool { return in.Status == consumer.StatusFull })
	if !strings.Contains(in.StatusReason, "max pending") {
		t.Fatalf("status reason %q", in.StatusReason)
	}
	res, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`rewind_consumer_group_in_flight_events{group="g"} 2`,
		`rewind_consumer_group_pending_events{group="g"} 0`,
		`rewind_consumer_group_stalled{group="g",reason="full"} 1`,
		`rewind_consumer_group_stalled{group="g",reason="no_members"} 0`,
		`rewind_consumer_group_parked_events{group="g"} 0`,
		`rewind_consumer_group_redeliveries_total{group="g"} 0`,
		`rewind_consumer_group_members{group="g"} 1`,
		`rewind_consumer_group_oldest_unacked_age_seconds{group="g"} `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func durationpbOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// TestConsumeEndsWhenTokenRevoked: revoking the token of a member ends its
// stream with Unauthenticated, and its deliveries go back at once.
func TestConsumeEndsWhenTokenRevoked(t *testing.T) {
	t.Parallel()
	_, admin, b := setup(t, server.Config{})
	if _, err := admin.CreateGroup(ctx, consumer.GroupConfig{Name: "g", AckWait: time.Hour}); err != nil {
		t.Fatal(err)
	}
	appendN(t, admin, "s-1", 3)
	m := join(t, b, secretOf(t, admin, b, "worker", "write:_rewind.group.g", "read:*"), "g", 0)
	m.deliveries(3)
	if _, err := admin.RevokeToken(ctx, "worker"); err != nil {
		t.Fatal(err)
	}
	_, err := m.stream.Receive()
	if rewind.CodeOf(fromConnect(err)) != rewind.CodeUnauthenticated {
		t.Fatalf("the stream after the revocation: %v", err)
	}
	in := waitInfo(t, admin, "g", func(in consumer.GroupInfo) bool { return in.Members == 0 })
	if in.InFlight != 0 || in.Pending != 3 {
		t.Fatalf("after the revocation: %+v", in)
	}
}

// TestConsumeEndsWhenGroupDeleted: deleting a group ends its members'
// streams with Unavailable.
func TestConsumeEndsWhenGroupDeleted(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, "s-1", 2)
	m := join(t, b, b.admin, "g", 0)
	m.deliveries(2)
	if err := c.DeleteGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	_, err := m.stream.Receive()
	if rewind.CodeOf(fromConnect(err)) != rewind.CodeClosed {
		t.Fatalf("the stream after the delete: %v", err)
	}
	if _, err := c.GroupInfo(ctx, "g"); rewind.CodeOf(err) != rewind.CodeNotFound {
		t.Fatalf("info after the delete: %v", err)
	}
}

// TestDeafMemberHoldsOneSmallBatch: a member that joins and never reads
// holds the server to one Consume batch bounded by bytes as a
// subscription's batches are (an event larger than the bound goes alone),
// not to its max ack pending of events of any size.
func TestDeafMemberHoldsOneSmallBatch(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g", AckWait: time.Hour}); err != nil {
		t.Fatal(err)
	}
	const n, size = 60, 300 << 10
	pad := strings.Repeat("x", size)
	for i := 0; i < n; i += 10 {
		evs := make([]rewind.Event, 10)
		for j := range evs {
			evs[j] = ev("E", fmt.Sprintf(`{"i":%d,"pad":%q}`, i+j, pad))
		}
		if _, err := c.Append(ctx, "big-1", rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	waitInfo(t, c, "g", func(in consumer.GroupInfo) bool { return in.Pending == n })
	join(t, b, b.admin, "g", 0) // and never reads again
	held := func() int64 {
		res, err := http.Get(b.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "rewind_consume_batch_bytes "); ok {
				var f float64
				fmt.Sscan(v, &f)
				return int64(f)
			}
		}
		t.Fatal("/metrics lacks rewind_consume_batch_bytes")
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for held() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server never held a batch for the member that does not read")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Let the sender try to go on, then look again: still one batch.
	time.Sleep(200 * time.Millisecond)
	if h := held(); h > size+100 {
		t.Fatalf("the server holds %d bytes for a member that does not read, want one event (%d)", h, size+100)
	}
	in := waitInfo(t, c, "g", func(consumer.GroupInfo) bool { return true })
	if in.InFlight >= n {
		t.Fatalf("the deaf member took all %d events: %+v", in.InFlight, in)
	}
}

// A member name with control or format characters is refused at join:
// groups info printed it raw, escape sequences included (outside test).
func TestMemberNameIsPlainText(t *testing.T) {
	t.Parallel()
	_, c, _ := setup(t, server.Config{})
	if _, err := c.CreateGroup(ctx, consumer.GroupConfig{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	h := func(context.Context, *consumer.Message) error { return nil }
	for _, name := range []string{"a\x1b[31mred", "a\x00b", "right\u202eleft", "zero\u200bwidth", "bad\xffutf8"} {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Consume(cctx, "g", h, client.ConsumeOptions{Name: name})
		cancel()
		if rewind.CodeOf(err) != rewind.CodeInvalidArgument {
			t.Errorf("member name %q: %v", name, err)
		}
	}
	if in, err := c.GroupInfo(ctx, "g"); err != nil || in.Members != 0 {
		t.Fatalf("after refused joins: %+v %v", in, err)
	}
}

// TestBoundedGroupZeroEndRefused: an end of the zero time
// (0001-01-01T00:00:00Z, the zero Timestamp's instant) or an end with
// neither a position nor a time is refused as invalid_argument, over
// HTTP/JSON and gRPC alike, and creates nothing. Both used to create an
// unbounded group: the zero End means no end.
func TestBoundedGroupZeroEndRefused(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.Append(context.Background(), "s", rewind.Any, rewind.Event{Type: "T"}); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"zero time":                 `{"config":{"name":"z1","end":{"time":"0001-01-01T00:00:00Z"}}}`,
		"zero time with an offset":  `{"config":{"name":"z2","end":{"time":"0001-01-01T01:00:00+01:00"}}}`,
		"an empty end":              `{"config":{"name":"z3","end":{}}}`,
		"position 0 and no time":    `{"config":{"name":"z4","end":{"position":"0"}}}`,
		"zero time and position 0":  `{"config":{"name":"z5","end":{"position":"0","time":"0001-01-01T00:00:00Z"}}}`,
		"zero time, start position": `{"config":{"name":"z6","start":{"kind":"position"},"end":{"time":"0001-01-01T00:00:00Z"}}}`,
	} {
		status, out := do(t, b, "POST", "/rewind.v1.ConsumerGroupService/CreateGroup", "", body, 0)
		if status != http.StatusBadRequest || !strings.Contains(string(out), "invalid_argument") ||
			!strings.Contains(string(out), "end") {
			t.Errorf("%s: %d %s, want 400 invalid_argument naming the end", name, status, out)
		}
	}
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	gc := rewindv1connect.NewConsumerGroupServiceClient(&http.Client{Transport: tr}, b.url, connect.WithGRPC(),
		connect.WithInterceptors(authHeader(b.admin)))
	zero := timestamppb.New(time.Time{})
	for name, end := range map[string]*rewindv1.GroupEnd{"zero time": {Time: zero}, "empty": {}} {
		_, err := gc.CreateGroup(context.Background(), connect.NewRequest(&rewindv1.CreateGroupRequest{
			Config: &rewindv1.GroupConfig{Name: "g1", End: end}}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "end") {
			t.Errorf("gRPC %s: %v, want InvalidArgument naming the end", name, err)
		}
	}
	gs, err := c.Groups(context.Background())
	if err != nil || len(gs) != 0 {
		t.Fatalf("refused creates left groups: %+v %v", gs, err)
	}
}

// TestGroupStartTimeNeedsItsKind: a start time is taken only with the
// start kind "time", as a start position only with "position": a time
// sent without it (or with another kind) is refused as invalid_argument
// naming the start time, over HTTP/JSON and gRPC alike, and creates
// nothing. An outside test found {"start":{"time":T}} created a group
// starting at the beginning of the log, delivering from position 1, and
// the same with an end time before the start time created a group too.
func TestGroupStartTimeNeedsItsKind(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	for range 3 {
		if _, err := c.Append(context.Background(), "s", rewind.Any, rewind.Event{Type: "T"}); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		"a time without kind":            `{"config":{"name":"h18","start":{"time":"2026-12-01T06:16:00Z"},"end":{"position":"3"}}}`,
		"a time without kind, unbounded": `{"config":{"name":"h19","start":{"time":"2026-12-01T06:16:00Z"}}}`,
		"an end time before a start time without kind": `{"config":{"name":"h20",` +
			`"start":{"time":"2026-12-01T07:00:00Z"},"end":{"time":"2026-12-01T06:00:00Z"}}}`,
		"a time with kind beginning": `{"config":{"name":"h21","start":{"kind":"beginning","time":"2026-12-01T06:16:00Z"}}}`,
		"a time with kind end":       `{"config":{"name":"h22","start":{"kind":"end","time":"2026-12-01T06:16:00Z"}}}`,
		"a time with kind position": `{"config":{"name":"h23",` +
			`"start":{"kind":"position","position":"1","time":"2026-12-01T06:16:00Z"}}}`,
		"the zero time without kind": `{"config":{"name":"h24","start":{"time":"0001-01-01T00:00:00Z"}}}`,
	} {
		status, out := do(t, b, "POST", "/rewind.v1.ConsumerGroupService/CreateGroup", "", body, 0)
		if status != http.StatusBadRequest || !strings.Contains(string(out), "invalid_argument") ||
			!strings.Contains(string(out), "start") || !strings.Contains(string(out), "time") {
			t.Errorf("%s: %d %s, want 400 invalid_argument naming the start time", name, status, out)
		}
	}
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	gc := rewindv1connect.NewConsumerGroupServiceClient(&http.Client{Transport: tr}, b.url, connect.WithGRPC(),
		connect.WithInterceptors(authHeader(b.admin)))
	at := timestamppb.New(time.Date(2026, 12, 1, 6, 16, 0, 0, time.UTC))
	for name, start := range map[string]*rewindv1.GroupStart{"no kind": {Time: at},
		"kind position": {Kind: "position", Position: 1, Time: at}} {
		_, err := gc.CreateGroup(context.Background(), connect.NewRequest(&rewindv1.CreateGroupRequest{
			Config: &rewindv1.GroupConfig{Name: "g1", Start: start}}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "start time") {
			t.Errorf("gRPC %s: %v, want InvalidArgument naming the start time", name, err)
		}
	}
	gs, err := c.Groups(context.Background())
	if err != nil || len(gs) != 0 {
		t.Fatalf("refused creates left groups: %+v %v", gs, err)
	}
	// With its kind the time is taken: a time after every event starts
	// at the end of the log.
	body := `{"config":{"name":"ok","start":{"kind":"time","time":"2999-01-01T00:00:00Z"}}}`
	do(t, b, "POST", "/rewind.v1.ConsumerGroupService/CreateGroup", "", body, http.StatusOK)
	if in, err := c.GroupInfo(context.Background(), "ok"); err != nil || in.Config.Start.Kind != consumer.StartTime ||
		in.AckFloor < 3 {
		t.Fatalf("a start time with its kind: %+v %v", in, err)
	}
}
