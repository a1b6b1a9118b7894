package pgstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/pgtest"
)

// TestDumpRestore: pg_dump of a store's schema restored into another
// database (whose transaction ids, sequences and OIDs have nothing to do
// with the first's) is the same store: the same log, a retry of an old
// append is a duplicate, a subscription resumed from an old position goes
// on exactly there, and new appends continue the positions and versions.
// Nothing in the store depends on transaction ids, which a restore resets.
func TestDumpRestore(t *testing.T) {
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed: %v", tool, err)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx := context.Background()
	src := newTestDB(t)
	s := src.open(t, Config{})
	var batches [][]rewind.Event
	for i := range 30 {
		evs := []rewind.Event{{ID: uuid.New(), Type: "T", Data: []byte{byte(i)}}, {ID: uuid.New(), Type: "U",
			Metadata: map[string]string{"k": "v"}}}
		if _, err := s.Append(ctx, []string{"d-1", "d-2", "d-3"}[i%3], rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, evs)
	}
	if _, err := s.DeleteStream(ctx, "d-3", rewind.Any); err != nil {
		t.Fatal(err)
	}
	before := readAllOf(t, s)
	file := filepath.Join(t.TempDir(), "dump")
	if out, err := exec.Command("pg_dump", "--format=custom", "--schema="+s.cfg.Schema, "--file="+file, src.DSN).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v: %s", err, out)
	}
	t.Run("another database", func(t *testing.T) {
		dst := newTestDB(t)
		checkRestored(t, dst.DSN, file, s.cfg.Schema, before, batches)
	})
	t.Run("a fresh cluster", func(t *testing.T) {
		// A new cluster's transaction ids start low again, far below
		// those of the shared test cluster: what breaks an event store
		// that reads by transaction id (watermill-sql #576).
		dsn := freshCluster(t)
		xid := func(dsn string) int64 {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var x int64
			if err := conn.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&x); err != nil {
				t.Fatal(err)
			}
			return x
		}
		if old, fresh := xid(src.DSN), xid(dsn); fresh >= old {
			t.Fatalf("the fresh cluster's transaction ids (%d) are not below the old one's (%d): the test shows nothing", fresh, old)
		}
		checkRestored(t, dsn, file, s.cfg.Schema, before, batches)
	})
}

// checkRestored restores the dump file into the database dsn names and
// checks it is the same store.
func checkRestored(t *testing.T, dsn, file, schema string, before []rewind.RecordedEvent, batches [][]rewind.Event) {
	t.Helper()
	ctx := context.Background()
	if out, err := exec.Command("pg_restore", "--dbname="+dsn, file).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v: %s", err, out)
	}
	r, err := Open(ctx, dsn, Config{Schema: schema})
	if err != nil {
		t.Fatalf("open the restored store: %v", err)
	}
	defer r.Close()
	after := readAllOf(t, r)
	if len(after) != len(before) {
		t.Fatalf("restored log holds %d events, the original %d", len(after), len(before))
	}
	for i := range before {
		a, b := before[i], after[i]
		if a.ID != b.ID || a.Position != b.Position || a.Version != b.Version || a.Stream != b.Stream || !a.RecordedAt.Equal(b.RecordedAt) {
			t.Fatalf("event %d: %+v restored as %+v", i, a, b)
		}
	}
	res, err := r.Append(ctx, "d-1", rewind.Any, batches[3]...)
	if err != nil || !res.Duplicate || res.FirstPosition != 7 {
		t.Fatalf("retry of an old append after the restore: %+v, %v; want a duplicate at 7", res, err)
	}
	sub, err := r.Subscribe(ctx, rewind.SubscribeOptions{After: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if ev := next(t, sub); ev.Position != 41 || ev.ID != before[40].ID {
		t.Fatalf("subscription resumed after 40: %+v", ev)
	}
	res, err = r.Append(ctx, "d-1", rewind.Exactly(20), rewind.Event{Type: "T"})
	if err != nil || res.FirstPosition != 62 || res.FirstVersion != 21 {
		t.Fatalf("append after the restore: %+v, %v; want version 21 at position 62", res, err)
	}
	for range 20 {
		next(t, sub)
	}
	if ev := next(t, sub); ev.Position != 62 {
		t.Fatalf("subscription after the restore: position %d, want 62", ev.Position)
	}
	if res, err := r.Append(ctx, "d-3", rewind.NoStream, rewind.Event{Type: "T"}); err != nil || res.FirstVersion != 21 {
		t.Fatalf("recreate the deleted stream after the restore: %+v, %v", res, err)
	}
}

// freshCluster starts a new PostgreSQL cluster (initdb, as the postgres
// user when the test runs as root) on a free loopback port for the test,
// stopped and removed when it ends, and returns the DSN of its postgres
// database.
func freshCluster(t *testing.T) string {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin"
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		bin = strings.TrimSpace(string(out))
	}
	need := func(err error, what string) {
		if err == nil {
			return
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot start a fresh cluster: %s: %v", what, err)
		}
		t.Skipf("cannot start a fresh cluster: %s: %v", what, err)
	}
	_, err := os.Stat(filepath.Join(bin, "initdb"))
	need(err, "initdb")
	dir, err := os.MkdirTemp("", "rewind-pgstore-cluster-")
	need(err, "temporary directory")
	t.Cleanup(func() { os.RemoveAll(dir) })
	as := func(name string, args ...string) *exec.Cmd {
		if os.Geteuid() == 0 {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
		}
		return exec.Command(name, args...)
	}
	if os.Geteuid() == 0 {
		need(exec.Command("chown", "postgres", dir).Run(), "chown to postgres")
	}
	data := filepath.Join(dir, "data")
	if out, err := as(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres").CombinedOutput(); err != nil {
		need(fmt.Errorf("%w: %s", err, out), "initdb")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	need(err, "a free port")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir)
	if out, err := as(filepath.Join(bin, "pg_ctl"), "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start").CombinedOutput(); err != nil {
		need(fmt.Errorf("%w: %s", err, out), "pg_ctl start")
	}
	t.Cleanup(func() { as(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop").Run() })
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

func readAllOf(t *testing.T, s rewind.Store) []rewind.RecordedEvent {
	t.Helper()
	var out []rewind.RecordedEvent
	for ev, err := range s.ReadAll(context.Background(), rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Clone())
	}
	return out
}

// TestDumpRestoreConsumers: a consumer group (package consumer over the
// store) and a subscription resume where they were after the database is
// dumped with pg_dump and restored into a fresh cluster: the group
// delivers exactly the events it had not acked (none it had), then new
// ones; the subscription goes on after its position.
func TestDumpRestoreConsumers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	old.SQL("CREATE DATABASE events")
	if _, err := Migrate(ctx, old.Database("events"), Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, old.Database("events"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []uuid.UUID
	for i := range 100 {
		id := uuid.New()
		if _, err := s.Append(ctx, fmt.Sprintf("o-%d", i%7), rewind.Any, rewind.Event{ID: id, Type: "T"}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	group := consumer.GroupConfig{Name: "g", Filter: rewind.Filter{StreamPrefix: "o-"}}
	e, err := consumer.Open(ctx, s, consumer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateGroup(ctx, group); err != nil {
		t.Fatal(err)
	}
	m, err := e.Join(ctx, "g", consumer.MemberOptions{})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[uuid.UUID]bool{}
	for len(acked) < 40 {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ds, err := m.Fetch(fctx, 40-len(acked))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if err := m.Ack(ctx, d.ID); err != nil {
				t.Fatal(err)
			}
			acked[d.Event.ID] = true
		}
	}
	m.Leave()
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := e.Info("g")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		next(t, sub)
	}
	resumeAt := sub.Position()
	sub.Close()

	dump := old.Dump("events")
	fresh := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	fresh.Restore(dump, "events")
	r, err := Open(ctx, fresh.Database("events"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	e2, err := consumer.Open(ctx, r, consumer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close(ctx)
	after, err := e2.Info("g")
	if err != nil {
		t.Fatalf("the group after the restore: %v", err)
	}
	if after.AckFloor != before.AckFloor {
		t.Fatalf("ack floor %d after the restore, %d before", after.AckFloor, before.AckFloor)
	}
	var more []uuid.UUID
	for i := range 10 {
		id := uuid.New()
		if _, err := r.Append(ctx, fmt.Sprintf("o-%d", i), rewind.Any, rewind.Event{ID: id, Type: "T"}); err != nil {
			t.Fatal(err)
		}
		more = append(more, id)
	}
	m2, err := e2.Join(ctx, "g", consumer.MemberOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Leave()
	want := map[uuid.UUID]bool{}
	for _, id := range append(ids, more...) {
		if !acked[id] {
			want[id] = true
		}
	}
	got := map[uuid.UUID]bool{}
	for len(got) < len(want) {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ds, err := m2.Fetch(fctx, 100)
		cancel()
		if err != nil {
			t.Fatalf("fetch after the restore, %d of %d delivered: %v", len(got), len(want), err)
		}
		for _, d := range ds {
			switch {
			case acked[d.Event.ID]:
				t.Fatalf("event %s at %d, acked before the dump, delivered again after the restore", d.Event.ID, d.Event.Position)
			case !want[d.Event.ID] || got[d.Event.ID]:
				t.Fatalf("event %s at %d delivered twice or not of the group", d.Event.ID, d.Event.Position)
			}
			got[d.Event.ID] = true
			if err := m2.Ack(ctx, d.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ds, err := m2.TryFetch(ctx, 10); err != nil || len(ds) != 0 {
		t.Fatalf("more deliveries after every event was delivered: %d, %v", len(ds), err)
	}

	sub2, err := r.Subscribe(ctx, rewind.SubscribeOptions{After: resumeAt})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	all := readAllOf(t, r)
	if ev := next(t, sub2); ev.Position != resumeAt+1 || ev.ID != all[resumeAt].ID {
		t.Fatalf("the subscription resumed after %d at %+v, want the event at %d", resumeAt, ev, resumeAt+1)
	}
}
