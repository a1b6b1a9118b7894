package backfill

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

// AppendedEvent is an event a run appended through a StoreSink, as its
// chunk recorded it in the chunk's transaction.
type AppendedEvent struct {
	Chunk  int64  `json:"chunk"`
	Stream string `json:"stream"`
	ID     string `json:"id"`
	Type   string `json:"type"`
}

// AppendedEvents lists the events run id appended to an event store, in
// the order its chunks appended them. An event store is append-only: no
// rollback takes them back, and a rollback of the run says so. What undoes
// them is the application's own compensating events (CompensatingJob).
func (r *Runner) AppendedEvents(ctx context.Context, id string) ([]AppendedEvent, error) {
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	var have bool
	if err := r.cfg.DB.QueryRow(ctx, "SELECT to_regclass('rewind.backfill_images') IS NOT NULL").Scan(&have); err != nil || !have {
		return nil, err
	}
	rows, err := r.cfg.DB.Query(ctx, `SELECT im.seq, u.k::text[], ARRAY[u.a] FROM rewind.backfill_images im,
		unnest(im.keys, im.after) WITH ORDINALITY AS u(k, a, n) WHERE im.run_id = $1 AND im.kind = 'events' ORDER BY im.seq, im.part, u.n`, run.ID)
	if err != nil {
		return nil, fmt.Errorf("read the events run %s appended: %w", run.ID, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (AppendedEvent, error) {
		var e AppendedEvent
		var k, a []string
		if err := row.Scan(&e.Chunk, &k, &a); err != nil {
			return e, err
		}
		if len(k) != 2 || len(a) != 1 {
			return e, fmt.Errorf("backfill: damaged event image of run %s, chunk %d", run.ID, e.Chunk)
		}
		e.Stream, e.ID, e.Type = k[0], k[1], a[0]
		return e, nil
	})
}

// CompensatingJob returns a job that compensates what run id appended to
// store: it reads back the events the run appended (only those, in log
// order, chunk by chunk), hands them to fn, and appends the events fn
// returns to store through a StoreSink — a Go job like any other, planned
// and applied with Plan and Apply, exactly once per chunk. fn decides
// what undoes an event in the application's terms (an OrderCancelled for
// an OrderPlaced, say); returning no change for an event leaves it be.
func (r *Runner) CompensatingJob(ctx context.Context, id string, store rewind.Store, fn ProcessFunc) (*Job, error) {
	if store == nil || fn == nil {
		return nil, &rewind.ValidationError{Field: "compensating job", Reason: "needs the store and a process function"}
	}
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	evs, err := r.AppendedEvents(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("%w: run %s appended no events (a run of an earlier version recorded none)", ErrNothingToRollBack, run.ID)
	}
	ids := map[uuid.UUID]bool{}
	streams := map[string]bool{}
	for _, e := range evs {
		u, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, fmt.Errorf("backfill: damaged event image of run %s: %w", run.ID, err)
		}
		ids[u], streams[e.Stream] = true, true
	}
	var first, last rewind.Position
	for s := range streams {
		got, err := store.ReadStream(ctx, s, rewind.ReadStreamOptions{})
		if errors.Is(err, rewind.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", s, err)
		}
		for _, ev := range got {
			if ids[ev.ID] {
				if first == 0 || ev.Position < first {
					first = ev.Position
				}
				last = max(last, ev.Position)
			}
		}
	}
	if first == 0 {
		return nil, fmt.Errorf("%w: none of the %d events run %s appended is in this store", ErrNothingToRollBack, len(evs), run.ID)
	}
	return &Job{Name: "compensate-" + run.ID, Version: "1", Source: &Events{Store: store, From: first, To: last},
		Process: func(ctx context.Context, items []Item) ([]Change, error) {
			var mine []Item
			for _, it := range items {
				if it.Event != nil && ids[it.Event.ID] {
					mine = append(mine, it)
				}
			}
			if len(mine) == 0 {
				return nil, nil
			}
			return fn(ctx, mine)
		},
		Sink: &StoreSink{Store: store}}, nil
}
