package cli

import (
	"context"
	"iter"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

// eventStore is what the data commands (append, read, tail, streams, stat)
// need. The embedded store provides it; so does the server client, which
// the commands use when --server is given.
type eventStore interface {
	Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error)
	ReadStream(ctx context.Context, stream string, opts rewind.ReadStreamOptions) ([]rewind.RecordedEvent, error)
	ReadAll(ctx context.Context, opts rewind.ReadAllOptions) iter.Seq2[*rewind.RecordedEvent, error]
	Subscribe(ctx context.Context, opts rewind.SubscribeOptions) (subscription, error)
	StreamInfo(ctx context.Context, stream string) (rewind.StreamInfo, error)
	ListStreams(ctx context.Context, opts rewind.ListStreamsOptions) ([]rewind.StreamInfo, error)
	DeleteStream(ctx context.Context, stream string, expected rewind.ExpectedVersion) (rewind.Position, error)
	// Stat describes the store as a whole.
	Stat(ctx context.Context) (storeStat, error)
	Close() error
}

// subscription is a catch-up-then-live subscription.
type subscription interface {
	// Next waits for the next event; it is valid until the next call.
	Next(ctx context.Context) (*rewind.RecordedEvent, error)
	// Position is the last position delivered or skipped by the filter.
	Position() rewind.Position
	Close() error
}

// storeStat is what `rewind stat` prints.
type storeStat struct {
	Target        string          `json:"target"` // data directory or server URL
	Durability    string          `json:"durability"`
	FirstPosition rewind.Position `json:"first_position"`
	LastPosition  rewind.Position `json:"last_position"`
	Streams       int             `json:"streams"`
	Segments      int             `json:"segments,omitempty"`
	Bytes         int64           `json:"bytes,omitempty"`
}

// openStore opens the embedded store in --data-dir, or a client of
// --server when one is given.
func (a *app) openStore(ctx context.Context) (eventStore, error) {
	if a.server != "" {
		return a.openRemote()
	}
	s, err := store.Open(a.dataDir, store.Config{})
	if err != nil {
		return nil, err
	}
	return embedded{s}, nil
}

// embedded adapts *store.Store to eventStore.
type embedded struct{ *store.Store }

func (e embedded) Subscribe(ctx context.Context, opts rewind.SubscribeOptions) (subscription, error) {
	return e.Store.Subscribe(ctx, opts)
}

func (e embedded) Stat(ctx context.Context) (storeStat, error) {
	i := e.Info()
	return storeStat{Target: i.Dir, Durability: i.Durability, FirstPosition: i.FirstPosition, LastPosition: i.LastPosition,
		Streams: i.Streams, Segments: i.Segments, Bytes: i.Bytes}, nil
}
