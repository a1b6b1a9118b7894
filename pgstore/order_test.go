package pgstore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
)

var orderTxns = flag.Int("pgstore.txns", 10_000, "pgstore: transactions of the global-order test (all writers together)")

// orderTarget is what the global-order test drives: the real store, or a
// naive log (bigserial positions, a reader of position > checkpoint) that
// shows the test can fail.
type orderTarget interface {
	// append appends evs in one transaction whose end follows f; a
	// rollback returns errRolledBack.
	append(ctx context.Context, stream string, evs []rewind.Event, f fate) error
	// subscribe returns a reader of the log from its start.
	subscribe(ctx context.Context) (func(ctx context.Context) (pos int64, id uuid.UUID, err error), error)
	// gapless says whether positions must run without gaps.
	gapless() bool
}

var errRolledBack = errTestRollback

// orderOutcome is what the writers did and the subscriber saw.
type orderOutcome struct {
	committed  map[uuid.UUID]bool
	rolledBack map[uuid.UUID]bool
	delivered  []delivery
}

type delivery struct {
	pos int64
	id  uuid.UUID
}

// runOrder runs txns appends from 8 writers against target, 3% rolled back
// and 3% slow (held open 1–10 ms before their commit), while a
// subscriber reads from the start; once the writers are done it waits until
// the subscriber has seen as many events as were committed, or stops
// seeing new ones for quietFor.
func runOrder(t *testing.T, target orderTarget, txns int, seed uint64, quietFor time.Duration) orderOutcome {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next, err := target.subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := orderOutcome{committed: map[uuid.UUID]bool{}, rolledBack: map[uuid.UUID]bool{}}
	var mu sync.Mutex
	var started atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for started.Add(1) <= int64(txns) {
				evs := make([]rewind.Event, 1+rng.IntN(3))
				for i := range evs {
					evs[i] = rewind.Event{ID: uuid.New(), Type: "T", Data: []byte(`{}`)}
				}
				var f fate
				switch r := rng.IntN(100); {
				case r < 3:
					// A rollback takes the whole group transaction of the
					// store's committer with it: about 10% of the events.
					f.rollback = true
				case r < 6:
					f.sleep = time.Duration(1+rng.IntN(10)) * time.Millisecond
				}
				err := target.append(ctx, fmt.Sprintf("order-%d", rng.IntN(20)), evs, f)
				mu.Lock()
				for _, e := range evs {
					switch {
					case err == nil:
						out.committed[e.ID] = true
					case errors.Is(err, errRolledBack):
						out.rolledBack[e.ID] = true
					}
				}
				mu.Unlock()
				if err != nil && !errors.Is(err, errRolledBack) {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	got := make(chan delivery, 1024)
	readerDone := make(chan error, 1)
	go func() {
		for {
			pos, id, err := next(ctx)
			if err != nil {
				readerDone <- err
				return
			}
			got <- delivery{pos, id}
		}
	}()
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	// quiet fires when the subscriber has delivered nothing for a while
	// after the writers are done.
	quiet := time.NewTicker(quietFor)
	defer quiet.Stop()
	lastCount := -1
	for {
		select {
		case d := <-got:
			out.delivered = append(out.delivered, d)
		case <-writersDone:
			writersDone = nil
		case <-quiet.C:
			if writersDone != nil || len(out.delivered) != lastCount {
				lastCount = len(out.delivered)
				continue
			}
			t.Logf("the subscriber saw nothing new for %v: %d delivered, %d committed", quietFor, len(out.delivered), len(out.committed))
			return out
		case err := <-readerDone:
			t.Fatalf("subscriber: %v", err)
		}
		if writersDone == nil && len(out.delivered) >= len(out.committed) {
			// All due are in; a moment more to catch extra deliveries.
			time.Sleep(50 * time.Millisecond)
			for {
				select {
				case d := <-got:
					out.delivered = append(out.delivered, d)
					continue
				default:
				}
				return out
			}
		}
	}
}

// check lists every way the deliveries break the promise: every committed
// event exactly once, in position order, none that rolled back.
func (o orderOutcome) check(gapless bool) []string {
	var problems []string
	seen := map[uuid.UUID]int{}
	for i, d := range o.delivered {
		if i > 0 && d.pos <= o.delivered[i-1].pos {
			problems = append(problems, fmt.Sprintf("position %d delivered after %d", d.pos, o.delivered[i-1].pos))
		}
		if gapless && d.pos != int64(i+1) {
			problems = append(problems, fmt.Sprintf("delivery %d has position %d: a gap", i+1, d.pos))
		}
		if seen[d.id]++; seen[d.id] == 2 {
			problems = append(problems, fmt.Sprintf("event %s delivered twice", d.id))
		}
		if o.rolledBack[d.id] {
			problems = append(problems, fmt.Sprintf("event %s at %d was rolled back but delivered", d.id, d.pos))
		} else if !o.committed[d.id] {
			problems = append(problems, fmt.Sprintf("event %s at %d was never appended", d.id, d.pos))
		}
	}
	var missed []uuid.UUID
	for id := range o.committed {
		if seen[id] == 0 {
			missed = append(missed, id)
		}
	}
	if len(missed) > 0 {
		problems = append(problems, fmt.Sprintf("%d committed events never delivered (skipped), such as %s", len(missed), missed[0]))
	}
	return problems
}

// TestGlobalOrder is the evidence for the global-order promise: writers
// with random rollbacks and slow transactions, and a subscriber that must
// see every committed event exactly once, in order, without gaps, and none
// that rolled back. -pgstore.txns sets the transactions (10,000 by default).
func TestGlobalOrder(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	installFates(s)
	seed := uint64(time.Now().UnixNano())
	// The store's subscriber ends the wait as soon as it has every
	// committed event; the long quiet period only bounds a failing run.
	out := runOrder(t, storeTarget{s}, *orderTxns, seed, 15*time.Second)
	if problems := out.check(true); len(problems) > 0 {
		t.Fatalf("seed %d: %d problems, first: %v", seed, len(problems), problems[:min(5, len(problems))])
	}
	if len(out.committed) == 0 || len(out.rolledBack) == 0 {
		t.Fatalf("committed %d events, rolled back %d: the test tested nothing", len(out.committed), len(out.rolledBack))
	}
	if s.grouped.Load() == 0 {
		t.Fatal("no group transaction held more than one append: the test did not exercise group commit")
	}
	t.Logf("%d appends: %d events committed and delivered in order, %d rolled back; %d group transactions of several appends",
		*orderTxns, len(out.committed), len(out.rolledBack), s.grouped.Load())
}

// TestGlobalOrderNaive runs the same test against the naive log every
// PostgreSQL event store starts with, and checks that it fails: positions
// from a bigserial are taken at insert and become visible at commit, so a
// reader of position > checkpoint passes the positions of slow
// transactions and never comes back for them.
func TestGlobalOrderNaive(t *testing.T) {
	db := newTestDB(t)
	db.Exec(t, `CREATE TABLE naive (position bigserial PRIMARY KEY, id uuid NOT NULL, stream text NOT NULL)`)
	seed := uint64(time.Now().UnixNano())
	out := runOrder(t, naiveTarget{db: db}, min(*orderTxns, 3000), seed, 3*time.Second)
	problems := out.check(false)
	if len(problems) == 0 {
		t.Fatalf("seed %d: the naive log passed the global-order test: the test cannot tell a reader that skips", seed)
	}
	t.Logf("the naive log fails as it must: %v", problems[:min(3, len(problems))])
}

type storeTarget struct{ s *Store }

func (st storeTarget) append(ctx context.Context, stream string, evs []rewind.Event, f fate) error {
	_, err := st.s.Append(withFate(ctx, f), stream, rewind.Any, evs...)
	return err
}

func (st storeTarget) subscribe(ctx context.Context) (func(context.Context) (int64, uuid.UUID, error), error) {
	sub, err := st.s.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (int64, uuid.UUID, error) {
		ev, err := sub.Next(ctx)
		if err != nil {
			return 0, uuid.UUID{}, err
		}
		return int64(ev.Position), ev.ID, nil
	}, nil
}

func (storeTarget) gapless() bool { return true }

type naiveTarget struct{ db *testDB }

func (n naiveTarget) append(ctx context.Context, stream string, evs []rewind.Event, f fate) error {
	return pgx.BeginFunc(ctx, n.db.Pool, func(tx pgx.Tx) error {
		ids := make([]uuid.UUID, len(evs))
		for i := range evs {
			ids[i] = evs[i].ID
		}
		if _, err := tx.Exec(ctx, `INSERT INTO naive (id, stream) SELECT unnest($1::uuid[]), $2`, ids, stream); err != nil {
			return err
		}
		if f.sleep > 0 {
			if _, err := tx.Exec(ctx, "SELECT pg_sleep($1::float8)", f.sleep.Seconds()); err != nil {
				return err
			}
		}
		if f.rollback {
			return errRolledBack
		}
		return nil
	})
}

func (n naiveTarget) subscribe(ctx context.Context) (func(context.Context) (int64, uuid.UUID, error), error) {
	var checkpoint int64
	var buf []delivery
	return func(ctx context.Context) (int64, uuid.UUID, error) {
		for len(buf) == 0 {
			rows, err := n.db.Pool.Query(ctx, `SELECT position, id FROM naive WHERE position > $1 ORDER BY position LIMIT 500`, checkpoint)
			if err != nil {
				return 0, uuid.UUID{}, err
			}
			for rows.Next() {
				var d delivery
				if err := rows.Scan(&d.pos, &d.id); err != nil {
					return 0, uuid.UUID{}, err
				}
				buf = append(buf, d)
			}
			if err := rows.Err(); err != nil {
				return 0, uuid.UUID{}, err
			}
			if len(buf) == 0 {
				select {
				case <-ctx.Done():
					return 0, uuid.UUID{}, ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
		}
		d := buf[0]
		buf = slices.Delete(buf, 0, 1)
		checkpoint = d.pos
		return d.pos, d.id, nil
	}, nil
}

func (naiveTarget) gapless() bool { return false }
