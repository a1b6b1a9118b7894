package cli

import (
	"context"
	"fmt"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/store"
)

// The data commands (append, read, tail, streams, stat) work on the
// rewind.Store contract, which the embedded store and the server client
// both keep.
type (
	eventStore   = rewind.Store
	subscription = rewind.Subscription
)

// storeStat is what `rewind stat` prints.
type storeStat struct {
	Target        string          `json:"target"` // data directory or server URL
	Durability    string          `json:"durability"`
	FirstPosition rewind.Position `json:"first_position"`
	LastPosition  rewind.Position `json:"last_position"`
	Streams       int             `json:"streams"`
	Segments      int             `json:"segments,omitempty"`
	Bytes         int64           `json:"bytes,omitempty"`
	// Health: whether the store can write, its epoch, and what recovery
	// found when it was opened.
	Health *rewind.Health `json:"health,omitempty"`
	// Horizon, for a PostgreSQL store: the last committed position and the
	// append transaction holding the others back, if any.
	Horizon *pgstore.Horizon `json:"horizon,omitempty"`
}

// stat describes the store as a whole, through its rewind.Describer.
func stat(ctx context.Context, s eventStore) (storeStat, error) {
	d, ok := s.(rewind.Describer)
	if !ok {
		return storeStat{}, fmt.Errorf("this store cannot describe itself (%T)", s)
	}
	i, err := d.Describe(ctx)
	if err != nil {
		return storeStat{}, err
	}
	st := storeStat{Target: i.Location, Durability: i.Durability, FirstPosition: i.FirstPosition,
		LastPosition: i.LastPosition, Streams: i.Streams, Segments: i.Segments, Bytes: i.Bytes}
	if hr, ok := s.(rewind.HealthReporter); ok {
		h, err := hr.Health(ctx)
		if err != nil {
			return storeStat{}, err
		}
		st.Health = &h
	}
	if ps, ok := s.(*pgstore.Store); ok {
		h, err := ps.Horizon(ctx)
		if err != nil {
			return storeStat{}, err
		}
		st.Horizon = &h
	}
	return st, nil
}

// openStore opens the embedded store in --data-dir, a client of --server
// when one is given, or the PostgreSQL store of --store.
func (a *app) openStore(ctx context.Context) (eventStore, error) {
	if a.server != "" {
		return a.openRemote()
	}
	if a.storeURL != "" {
		if a.storeSchema == "" {
			return nil, emptySchema("store-schema")
		}
		return pgstore.Open(ctx, a.storeURL, pgstore.Config{Schema: a.storeSchema})
	}
	s, err := store.Open(a.dataDir, store.Config{})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// emptySchema is the error of a schema flag given empty: pgstore.Config
// would read it as the default, which the user did not ask for.
func emptySchema(flag string) error {
	return invalidFlag(flag, "", "must name a schema; leave the flag out for the default, "+pgstore.DefaultSchema)
}
