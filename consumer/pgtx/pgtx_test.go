package pgtx_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/consumer/pgtx"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/store"
)

// TestExactlyOnceAcrossRedeliveries: a sink whose effect is not
// idempotent (adding to a balance) gets every event at least once, and
// many twice or more — a member that dies after the commit and before its
// ack, ack waits running out — and still adds each amount exactly once.
func TestExactlyOnceAcrossRedeliveries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE balance (id int PRIMARY KEY, total bigint NOT NULL);
		INSERT INTO balance VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	sink := pgtx.New(db.Pool, "")
	if err := sink.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(t.TempDir(), store.Config{Logger: slog.New(slog.DiscardHandler),
		Log: eventlog.Config{Durability: eventlog.None, SegmentSize: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 60
	want := 0
	for i := range n {
		want += i
		ev := rewind.Event{Type: "Deposited", Data: fmt.Appendf(nil, `%d`, i)}
		if _, err := s.Append(ctx, "acct-1", rewind.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	e, err := consumer.Open(ctx, s, consumer.Config{Logger: slog.New(slog.DiscardHandler),
		TickInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	if _, err := e.CreateGroup(ctx, consumer.GroupConfig{Name: "ledger", AckWait: 200 * time.Millisecond,
		MaxDeliveries: -1, Backoff: []time.Duration{0}}); err != nil {
		t.Fatal(err)
	}
	h := sink.Handler(func(ctx context.Context, tx pgx.Tx, m *consumer.Message) error {
		var amount int
		fmt.Sscan(string(m.Event.Data), &amount)
		_, err := tx.Exec(ctx, `UPDATE balance SET total = total + $1 WHERE id = 1`, amount)
		return err
	})
	redelivered := 0
	for acked := 0; acked < n; {
		m, err := e.Join(ctx, "ledger", consumer.MemberOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ds, err := m.Fetch(fctx, 4)
		cancel()
		if err != nil {
			in, _ := e.Info("ledger")
			t.Fatalf("fetch: %v; acked %d; %+v", err, acked, in)
		}
		for _, d := range ds {
			if d.Attempt > 1 {
				redelivered++
			}
			if err := h(ctx, consumer.NewMessage("ledger", d)); err != nil {
				t.Fatal(err)
			}
			switch rand.IntN(6) {
			case 0, 1: // the member dies after the commit, before its ack
			case 2: // the ack is late: the ack wait runs out
				time.Sleep(250 * time.Millisecond)
				if err := m.Ack(ctx, d.ID); err == nil {
					acked++ // the tick had not come round yet
				}
			default:
				if err := m.Ack(ctx, d.ID); err == nil {
					acked++
				}
			}
		}
		m.Leave()
	}
	var total int
	if err := db.Pool.QueryRow(ctx, `SELECT total FROM balance`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	var rows int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM rewind_consumer_applied`).Scan(&rows)
	if total != want || rows != n {
		t.Fatalf("total %d, want %d; %d applied rows for %d events", total, want, rows, n)
	}
	if redelivered == 0 {
		t.Fatal("nothing was redelivered: the test proved nothing")
	}
	t.Logf("%d redeliveries, each applied once", redelivered)
}

// TestConcurrentDuplicates: two deliveries of one event handled at the
// same time apply it once.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	db.Pool.Exec(ctx, `CREATE TABLE hits (n int)`)
	sink := pgtx.New(db.Pool, "public.applied")
	if err := sink.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	h := sink.Handler(func(ctx context.Context, tx pgx.Tx, _ *consumer.Message) error {
		_, err := tx.Exec(ctx, `INSERT INTO hits VALUES (1)`)
		time.Sleep(10 * time.Millisecond) // hold the transaction open
		return err
	})
	ev := &rewind.RecordedEvent{Event: rewind.Event{ID: [16]byte{1}}, Position: 7}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h(ctx, consumer.NewMessage("g", consumer.Delivery{ID: 1, Event: ev})); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var hits int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM hits`).Scan(&hits)
	if hits != 1 {
		t.Fatalf("applied %d times", hits)
	}
	if ok, _ := sink.Applied(ctx, "g", ev.ID); !ok {
		t.Fatal("not recorded as applied")
	}
	if n, err := sink.Prune(ctx, "g", 7); n != 1 || err != nil {
		t.Fatalf("prune %d %v", n, err)
	}
}
