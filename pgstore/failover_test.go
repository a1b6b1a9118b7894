package pgstore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/pgtest"
)

var outageAppends = flag.Int("pgstore.outage-appends", 150,
	"pgstore: appends acknowledged before and again after each outage of the failover and restart tests")

// load is writers appending to a store through an outage: each appends
// batches of two events with ids of its own and, when an append fails,
// retries the same batch until it is acknowledged, as a client should.
type load struct {
	t       *testing.T
	writers int

	mu      sync.Mutex
	acked   map[uuid.UUID]rewind.Position // every acknowledged event, at its acknowledged position
	batches int                           // acknowledged appends
	ackedAt []time.Time                   // when each append was acknowledged
	errs    map[string]int                // the failures seen, by class
	bad     []error                       // failures of no allowed class
	dups    int                           // retries answered as duplicates

	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(t *testing.T, writers int, store func() rewind.Store) *load {
	l := &load{t: t, writers: writers, acked: map[uuid.UUID]rewind.Position{}, errs: map[string]int{},
		stop: make(chan struct{})}
	for w := range writers {
		l.wg.Go(func() { l.write(w, store) })
	}
	return l
}

// errClass names an append's failure while PostgreSQL is gone: it must be
// typed — unavailable (nothing was written), outcome unknown, or the
// call's own deadline — never an untyped internal error.
func errClass(err error) (string, bool) {
	switch {
	case errors.Is(err, rewind.ErrOutcomeUnknown):
		return "outcome_unknown", true
	case errors.Is(err, rewind.ErrClosed):
		return "unavailable", true
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline", true
	}
	return string(rewind.CodeOf(err)), false
}

func (l *load) write(w int, store func() rewind.Store) {
	stream := fmt.Sprintf("w-%d", w)
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		evs := []rewind.Event{{ID: uuid.New(), Type: "T", Data: fmt.Appendf(nil, "%d-%d-a", w, i)},
			{ID: uuid.New(), Type: "T", Data: fmt.Appendf(nil, "%d-%d-b", w, i)}}
		deadline := time.Now().Add(3 * time.Minute)
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			res, err := store().Append(ctx, stream, rewind.Any, evs...)
			cancel()
			if err == nil {
				l.mu.Lock()
				for k, e := range evs {
					l.acked[e.ID] = res.FirstPosition + rewind.Position(k)
				}
				l.batches++
				l.ackedAt = append(l.ackedAt, time.Now())
				if res.Duplicate {
					l.dups++
				}
				l.mu.Unlock()
				break
			}
			class, ok := errClass(err)
			l.mu.Lock()
			l.errs[class]++
			if !ok && len(l.bad) < 10 {
				l.bad = append(l.bad, err)
			}
			l.mu.Unlock()
			if time.Now().After(deadline) {
				l.mu.Lock()
				l.bad = append(l.bad, fmt.Errorf("writer %d: an append failed for 3 minutes, last: %w", w, err))
				l.mu.Unlock()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// ackedCount returns the appends acknowledged so far.
func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.batches
}

// failures returns the failed attempts so far.
func (l *load) failures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.errs {
		n += c
	}
	return n
}

// waitAcked waits until n more appends are acknowledged than at the call.
func (l *load) waitAcked(n int) {
	l.t.Helper()
	want := l.ackedCount() + n
	deadline := time.Now().Add(3 * time.Minute)
	for l.ackedCount() < want {
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.t.Fatalf("%d appends acknowledged, want %d; failures %v %v", l.batches, want, l.errs, l.bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstAckAfter returns the time of the first acknowledgement after t0.
func (l *load) firstAckAfter(t0 time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	times := append([]time.Time(nil), l.ackedAt...)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for _, at := range times {
		if at.After(t0) {
			return at
		}
	}
	return time.Time{}
}

// finish stops the writers and checks that every failure was typed.
func (l *load) finish() {
	l.t.Helper()
	close(l.stop)
	l.wg.Wait()
	if len(l.bad) > 0 {
		l.t.Fatalf("appends failed with untyped errors (want unavailable, outcome unknown or the deadline): %v (classes %v)",
			l.bad, l.errs)
	}
}

// check reads the whole log of s and checks it against what was
// acknowledged: positions 1…n without a gap, every acknowledged event at
// its acknowledged position, each once, and nothing else (every append
// was retried until acknowledged, so a retry that wrote a second copy
// would show). It returns the acknowledged events missing (the RPO).
func (l *load) check(s rewind.Store) (lost int) {
	l.t.Helper()
	all := readAllOf(l.t, s)
	seen := map[uuid.UUID]bool{}
	for i, ev := range all {
		if ev.Position != rewind.Position(i+1) {
			l.t.Fatalf("event %d is at position %d: the log has a gap", i, ev.Position)
		}
		if seen[ev.ID] {
			l.t.Fatalf("event %s is twice in the log (again at %d)", ev.ID, ev.Position)
		}
		seen[ev.ID] = true
		if pos, ok := l.acked[ev.ID]; !ok {
			l.t.Errorf("event %s at %d was never acknowledged", ev.ID, ev.Position)
		} else if pos != ev.Position {
			l.t.Errorf("event %s acknowledged at %d is at %d", ev.ID, pos, ev.Position)
		}
	}
	for id := range l.acked {
		if !seen[id] {
			lost++
		}
	}
	return lost
}

// clusterDSN is a key=value DSN of database db on the given clusters, in
// order, that connects to the first of them that takes writes.
func clusterDSN(db string, cs ...*pgtest.Cluster) string {
	hosts, ports := "", ""
	for i, c := range cs {
		if i > 0 {
			hosts, ports = hosts+",", ports+","
		}
		hosts, ports = hosts+"127.0.0.1", ports+fmt.Sprint(c.Port)
	}
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable target_session_attrs=read-write "+
		"connect_timeout=2", hosts, ports, db)
}

// TestFailover: a primary with a synchronous standby; writers append
// through one Store whose DSN lists both hosts (target_session_attrs=
// read-write). The primary is stopped immediately (a crash) and the
// standby promoted; the same Store, never reopened, reconnects to it.
// Every acknowledged append is on the promoted one, at its position, once;
// retries of appends whose outcome was unknown wrote no second copy. The
// RPO (acknowledged events lost) and RTO (from the primary's loss to the
// first append acknowledged by the promoted one) are logged for
// docs/postgres.md; the RPO must be 0.
func TestFailover(t *testing.T) {
	t.Parallel()
	primary := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	primary.SQL("CREATE DATABASE failover")
	standby := primary.Standby(true)
	ctx := context.Background()
	if _, err := Migrate(ctx, primary.Database("failover"), Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, clusterDSN("failover", primary, standby), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := startLoad(t, 4, func() rewind.Store { return s })
	l.waitAcked(*outageAppends)
	// The RTO counts from the stop command to the first append
	// acknowledged after it returned (when the primary was surely gone):
	// an upper bound that includes pg_ctl's own wait.
	lostAt := time.Now()
	primary.Stop("immediate")
	gone := time.Now()
	standby.Promote()
	promoted := time.Since(gone)
	l.waitAcked(*outageAppends)
	l.finish()
	rto := l.firstAckAfter(gone).Sub(lostAt)

	check, err := Open(ctx, standby.Database("failover"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	lost := l.check(check)
	t.Logf("failover: %d appends acknowledged (%d answered as duplicates on retry), failures %v; RPO %d acknowledged "+
		"events lost; RTO %v (promotion took %v)", l.batches, l.dups, l.errs, lost, rto.Round(time.Millisecond),
		promoted.Round(time.Millisecond))
	if lost != 0 {
		t.Fatalf("%d acknowledged events lost in the failover to a synchronous standby", lost)
	}
}

// TestRestartUnderLoad: PostgreSQL is stopped (fast: a clean shutdown that
// ends the sessions; immediate: a crash) and started again while writers
// append and a subscriber follows the log, all on one Store that is never
// reopened. While it is down, appends fail with typed errors within their
// deadline; afterwards the store recovers by itself, no acknowledged
// append is lost or doubled, and the subscriber, which kept its
// subscription through the errors, saw every position once, in order.
func TestRestartUnderLoad(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := pgtest.NewCluster(t, pgtest.ClusterOptions{})
			ctx := context.Background()
			if _, err := Migrate(ctx, c.DSN, Config{}); err != nil {
				t.Fatal(err)
			}
			s, err := Open(ctx, c.DSN, Config{PollInterval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			subStop := make(chan struct{})
			subDone := make(chan error, 1)
			var stopSub sync.Once
			defer stopSub.Do(func() { close(subStop); <-subDone }) // before sub.Close
			var subPos atomic.Int64
			subErrs := map[string]int{}
			var subBad []error
			go func() {
				for {
					select {
					case <-subStop:
						subDone <- nil
						return
					default:
					}
					nctx, cancel := context.WithTimeout(ctx, time.Second)
					ev, err := sub.Next(nctx)
					cancel()
					if err != nil {
						class, ok := errClass(err)
						subErrs[class]++
						if !ok && len(subBad) < 10 {
							subBad = append(subBad, err)
						}
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if want := subPos.Load() + 1; int64(ev.Position) != want {
						subDone <- fmt.Errorf("the subscriber got position %d after %d", ev.Position, want-1)
						return
					}
					subPos.Store(int64(ev.Position))
				}
			}()

			l := startLoad(t, 4, func() rewind.Store { return s })
			l.waitAcked(*outageAppends)
			c.Stop(mode)
			before := l.failures()
			// Appends fail, and do not hang, while it is down.
			for deadline := time.Now().Add(time.Minute); ; {
				if l.failures() >= before+8 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("appends neither fail nor succeed while PostgreSQL is down: they hang (failures %v)", l.errs)
				}
				time.Sleep(10 * time.Millisecond)
			}
			c.Start()
			l.waitAcked(*outageAppends)
			l.finish()
			lost := l.check(s)
			if lost != 0 {
				t.Fatalf("%d acknowledged events lost over a restart (%s)", lost, mode)
			}
			last := int64(len(l.acked))
			for deadline := time.Now().Add(time.Minute); subPos.Load() < last; {
				if time.Now().After(deadline) {
					t.Fatalf("the subscriber stopped at %d of %d", subPos.Load(), last)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var subErr error
			stopSub.Do(func() { close(subStop); subErr = <-subDone })
			if subErr != nil {
				t.Fatal(subErr)
			}
			if len(subBad) > 0 {
				t.Fatalf("the subscriber failed with untyped errors: %v (classes %v)", subBad, subErrs)
			}
			t.Logf("restart (%s): %d appends, failures %v, subscriber failures %v", mode, l.batches, l.errs, subErrs)
		})
	}
}

// TestReadOnlyPrimaryLeavesThePool: the host the store writes to turns
// read-only without a restart (default_transaction_read_only, as a fenced
// old primary) while another host of the DSN takes writes. Appends on the
// pool's connections to it fail as unavailable, and each such connection
// is closed, so that the pool connects anew — to the host that takes
// writes (target_session_attrs=read-write) — instead of failing for as
// long as the connections live.
func TestReadOnlyPrimaryLeavesThePool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	b := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	for _, c := range []*pgtest.Cluster{a, b} {
		c.SQL("CREATE DATABASE events")
		if _, err := Migrate(ctx, c.Database("events"), Config{}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(ctx, clusterDSN("events", a, b), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Fill the pool with connections to a.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.Append(ctx, "ro", rewind.Any, rewind.Event{Type: "T"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	a.SQL("ALTER SYSTEM SET default_transaction_read_only = on")
	a.SQL("SELECT pg_reload_conf()")
	onB, err := Open(ctx, b.Database("events"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer onB.Close()
	onBHas := func(id uuid.UUID) bool {
		evs, _ := onB.ReadStream(ctx, "ro", rewind.ReadStreamOptions{})
		return len(evs) > 0 && evs[len(evs)-1].ID == id
	}
	// pg_reload_conf reaches a's backends asynchronously: an append may
	// still land on a, which is right while a takes writes. Go on with new
	// ids until one lands on b.
	var id uuid.UUID
	failures := 0
	for attempts := 0; ; attempts++ {
		id = uuid.New()
		_, err := s.Append(ctx, "ro", rewind.Any, rewind.Event{ID: id, Type: "T"})
		if err == nil && onBHas(id) {
			break
		}
		if err != nil && !errors.Is(err, rewind.ErrClosed) {
			t.Fatalf("append on a read-only host: %v, want unavailable", err)
		}
		if err != nil {
			failures++
		}
		if attempts > 100 {
			t.Fatalf("appends still fail or land on the read-only host after %d attempts (%d failed): the pool keeps "+
				"its connections to it: %v", attempts, failures, err)
		}
	}
	if evs, err := onB.ReadStream(ctx, "ro", rewind.ReadStreamOptions{}); err != nil || len(evs) != 1 || evs[0].ID != id {
		t.Fatalf("the append after a turned read-only: %d events on b (%v), want it alone", len(evs), err)
	}
}

// What is transient — PostgreSQL out of reach — is unavailable; a login
// it refuses is not, since retrying cannot help.
func TestUnavailableClasses(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.ConnectError{}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "25006"}, true},
		{fmt.Errorf("connect: %w", &pgconn.PgError{Code: "28P01"}), false},
		{&pgconn.PgError{Code: "3D000"}, false},
		{&pgconn.PgError{Code: "23505"}, false},
		{errors.New("something else"), false},
	} {
		if got := unavailable(c.err); got != c.want {
			t.Errorf("unavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
