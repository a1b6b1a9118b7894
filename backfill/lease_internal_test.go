package backfill

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/pgtest"
)

// A lease whose connection broke (here: its backend killed) is still
// released before release returns, so a status read right after a run
// returns never sees the run as held.
func TestLeaseReleaseWaitsForABrokenConnection(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	r, err := New(Config{DB: db.Pool, Actor: "tester", Binary: "test-binary", Heartbeat: time.Hour, LeaseTimeout: 3 * time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ledger.setup(ctx); err != nil {
		t.Fatal(err)
	}
	run := &Run{ID: "0190aaaa-0000-7000-8000-000000000001"}
	run.lockObj = lockObj(run.ID)
	held := func() bool {
		var n int64
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
			AND classid = $1 AND objid::bigint = $2 AND objsubid = 2 AND granted`, leaseClass, run.lockObj).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	for _, kill := range []bool{false, true} {
		l, err := r.lock(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		if !held() {
			t.Fatal("the lease holds no lock")
		}
		if kill {
			pid := l.conn.PgConn().PID()
			if _, err := db.Pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
				t.Fatal(err)
			}
		}
		l.release()
		if held() {
			t.Fatalf("kill=%v: the lock is still held after release returned", kill)
		}
	}
}

// The reason a disabled job's runs pause with ends with the operator's
// reason, and with no dangling colon when none was given.
func TestDisabledDetail(t *testing.T) {
	if got := disabledDetail("count", ""); got != "job count disabled" {
		t.Errorf("no reason: %q", got)
	}
	if got := disabledDetail("count", "bad data"); got != "job count disabled: bad data" {
		t.Errorf("with a reason: %q", got)
	}
}
