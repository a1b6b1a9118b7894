package pgstore

import (
	"context"
	"errors"
	"iter"
	"sync/atomic"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/storetest"
)

// twoNodes is one log served by two Stores on the same schema, as two
// servers on one database are: each call goes to the next of them in
// turn, so that concurrent calls of the conformance suite run on both at
// once and a call sees what the other node wrote just before.
type twoNodes struct {
	nodes [2]*Store
	turn  atomic.Uint64
}

var _ interface {
	rewind.Store
	rewind.LastPositioner
	rewind.Describer
	rewind.HealthReporter
} = (*twoNodes)(nil)

func (n *twoNodes) next() *Store { return n.nodes[n.turn.Add(1)%2] }

func (n *twoNodes) Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error) {
	return n.next().Append(ctx, stream, expected, events...)
}

func (n *twoNodes) ReadStream(ctx context.Context, stream string, opts rewind.ReadStreamOptions) ([]rewind.RecordedEvent, error) {
	return n.next().ReadStream(ctx, stream, opts)
}

func (n *twoNodes) ReadAll(ctx context.Context, opts rewind.ReadAllOptions) iter.Seq2[*rewind.RecordedEvent, error] {
	return n.next().ReadAll(ctx, opts)
}

func (n *twoNodes) StreamInfo(ctx context.Context, stream string) (rewind.StreamInfo, error) {
	return n.next().StreamInfo(ctx, stream)
}

func (n *twoNodes) ListStreams(ctx context.Context, opts rewind.ListStreamsOptions) ([]rewind.StreamInfo, error) {
	return n.next().ListStreams(ctx, opts)
}

func (n *twoNodes) DeleteStream(ctx context.Context, stream string, expected rewind.ExpectedVersion) (rewind.Position, error) {
	return n.next().DeleteStream(ctx, stream, expected)
}

func (n *twoNodes) Subscribe(ctx context.Context, opts rewind.SubscribeOptions) (rewind.Subscription, error) {
	return n.next().Subscribe(ctx, opts)
}

func (n *twoNodes) LastPosition(ctx context.Context) (rewind.Position, error) {
	return n.next().LastPosition(ctx)
}

func (n *twoNodes) Describe(ctx context.Context) (rewind.StoreInfo, error) {
	return n.next().Describe(ctx)
}

func (n *twoNodes) Health(ctx context.Context) (rewind.Health, error) {
	return n.next().Health(ctx)
}

func (n *twoNodes) Close() error {
	return errors.Join(n.nodes[0].Close(), n.nodes[1].Close())
}

// TestConformanceTwoNodes runs the conformance suite — expected versions,
// idempotent retries, the global order, subscriptions, linearizability of
// concurrent calls — on two Stores of one schema taking turns, as two
// servers on one database: what one node appends, the other orders after
// it, checks expected versions against and recognises as a duplicate.
func TestConformanceTwoNodes(t *testing.T) {
	db := newTestDB(t)
	open := func(t *testing.T, schema string) *Store {
		s, err := Open(context.Background(), db.DSN, Config{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	storetest.Run(t, func(t *testing.T) rewind.Store {
		schema := db.schema(t, true)
		return &twoNodes{nodes: [2]*Store{open(t, schema), open(t, schema)}}
	}, storetest.Features{
		Reopen: func(t *testing.T, s rewind.Store) rewind.Store {
			schema := s.(*twoNodes).nodes[0].cfg.Schema
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return &twoNodes{nodes: [2]*Store{open(t, schema), open(t, schema)}}
		},
	})
}
