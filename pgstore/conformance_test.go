package pgstore

import (
	"context"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/storetest"
)

// TestConformance runs the whole storetest suite, each store in a schema of
// its own; Reopen closes the store and opens the same schema again.
func TestConformance(t *testing.T) {
	db := newTestDB(t)
	storetest.Run(t, func(t *testing.T) rewind.Store {
		s, err := Open(context.Background(), db.DSN, Config{Schema: db.schema(t, true)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Features{
		// A crash of the process using the store: PostgreSQL keeps what
		// it committed, and a new store on the schema takes over while
		// the old one still runs.
		Crash: func(t *testing.T, s rewind.Store) func(t *testing.T) rewind.Store {
			schema := s.(*Store).cfg.Schema
			return func(t *testing.T) rewind.Store {
				n, err := Open(context.Background(), db.DSN, Config{Schema: schema})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		},
		Reopen: func(t *testing.T, s rewind.Store) rewind.Store {
			ps := s.(*Store)
			schema := ps.cfg.Schema
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := Open(context.Background(), db.DSN, Config{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
	})
}
