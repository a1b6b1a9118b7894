package kv_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/projection/kv"
	"github.com/rewindhq/rewind/store"
)

var ctx = context.Background()

var cancelRounds = flag.Int("kv-cancel-rounds", 25, "runs cancelled at random in TestCancelledRunsApplyEachEventOnce")

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Config{Logger: slog.New(slog.DiscardHandler), Log: eventlog.Config{Durability: eventlog.None}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openDB(t *testing.T) *kv.DB {
	t.Helper()
	db, err := kv.Open(filepath.Join(t.TempDir(), "proj.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// counts counts the Added events per stream, and every applied event in
// the key "applied": an event applied twice shows there.
func counts(version int) kv.Projection {
	return kv.Projection{Name: "counts", Version: version, Handlers: map[string]kv.Handler{
		"Added": func(_ context.Context, tx *kv.Tx, ev *rewind.RecordedEvent) error {
			if string(ev.Data) == `"fail"` {
				tx.Put("stream/"+ev.Stream, []byte("garbage")) // rolled back with the event
				return fmt.Errorf("refusing %d", ev.Position)
			}
			n, _ := strconv.Atoi(string(tx.Get("stream/" + ev.Stream)))
			if err := tx.Put("stream/"+ev.Stream, []byte(strconv.Itoa(n+version))); err != nil {
				return err
			}
			a, _ := strconv.Atoi(string(tx.Get("applied")))
			return tx.Put("applied", []byte(strconv.Itoa(a+1)))
		},
	}}
}

func appendN(t *testing.T, s rewind.Store, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.Append(ctx, fmt.Sprint("s-", i%5), rewind.Any, rewind.Event{Type: "Added", Data: []byte(`{}`)},
			rewind.Event{Type: "Other", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

func dump(t *testing.T, db *kv.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := db.Scan("counts", "", func(k string, v []byte) bool { out[k] = string(v); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// A catch-up applies every event once, with the checkpoint at the log's
// end (past the filtered-out events after the last handled one); an event
// a handler fails on is parked with its error and its writes rolled back.
func TestCatchUpAndParking(t *testing.T) {
	t.Parallel()
	s, db := openStore(t), openDB(t)
	appendN(t, s, 50)
	if _, err := s.Append(ctx, "s-1", rewind.Any, rewind.Event{Type: "Added", Data: []byte(`"fail"`)},
		rewind.Event{Type: "Other", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	r, err := kv.New(db, counts(1), kv.Config{Store: s, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	got := dump(t, db)
	if got["applied"] != "50" || got["stream/s-1"] != "10" || len(got) != 6 {
		t.Fatalf("state: %v", got)
	}
	st, err := db.Status("counts")
	if err != nil || len(st) != 1 || st[0].Position != 102 || st[0].Parked != 1 || !st[0].Serving || st[0].Keys != 6 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	parked, err := db.Parked("counts", 1)
	if err != nil || len(parked) != 1 || parked[0].Position != 101 || parked[0].Error != "refusing 101" {
		t.Fatalf("parked: %+v, %v", parked, err)
	}
	if v, err := db.Get("counts", "stream/s-4"); err != nil || string(v) != "10" {
		t.Fatalf("get: %q, %v", v, err)
	}
	// Nothing new: the next catch-up applies nothing.
	if err := r.CatchUp(ctx); err != nil || dump(t, db)["applied"] != "50" {
		t.Fatalf("a second catch-up: %v %v", dump(t, db), err)
	}
}

// Runs cancelled at random moments while appends go on resume at their
// checkpoint: every event is applied exactly once, and the state equals a
// build from scratch in one go.
func TestCancelledRunsApplyEachEventOnce(t *testing.T) {
	t.Parallel()
	s, db := openStore(t), openDB(t)
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	total := 0
	for range *cancelRounds {
		n := 20 + rng.IntN(200)
		appendN(t, s, n)
		total += n
		r, err := kv.New(db, counts(1), kv.Config{Store: s, BatchSize: 1 + rng.IntN(50), PollInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
		if err := r.Run(c); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("run: %v", err)
		}
		cancel()
	}
	r, _ := kv.New(db, counts(1), kv.Config{Store: s})
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := openDB(t)
	r2, _ := kv.New(fresh, counts(1), kv.Config{Store: s, BatchSize: 10_000})
	if err := r2.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	got, want := dump(t, db), dump(t, fresh)
	if fmt.Sprint(got) != fmt.Sprint(want) || got["applied"] != strconv.Itoa(total) {
		t.Fatalf("after cancelled runs %v, from scratch %v (%d events)", got, want, total)
	}
}

// A new version is built beside the serving one and swapped in once it
// has caught up; readers switch at once; the old one is dropped after.
func TestVersionsSwapAndDrop(t *testing.T) {
	t.Parallel()
	s, db := openStore(t), openDB(t)
	appendN(t, s, 20)
	v1, _ := kv.New(db, counts(1), kv.Config{Store: s})
	if err := v1.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Swap("counts", 2); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("swap to a version that never ran: %v", err)
	}
	v2, _ := kv.New(db, counts(2), kv.Config{Store: s, BatchSize: 3})
	if err := v2.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 5)
	if err := v1.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Swap("counts", 2); !errors.Is(err, kv.ErrNotCaughtUp) || !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("swap to a version behind: %v", err)
	}
	if v, _ := db.Get("counts", "stream/s-0"); string(v) != "5" {
		t.Fatalf("version 1 serves %q", v)
	}
	if err := v2.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Swap("counts", 2); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.Get("counts", "stream/s-0"); string(v) != "10" {
		t.Fatalf("version 2 serves %q", v)
	}
	if err := db.Drop("counts", 2); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("drop of the serving version: %v", err)
	}
	if err := db.Drop("counts", 1); err != nil {
		t.Fatal(err)
	}
	if st, err := db.Status("counts"); err != nil || len(st) != 1 || st[0].Version != 2 {
		t.Fatalf("status after the drop: %+v %v", st, err)
	}
	if err := db.Drop("counts", 1); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a second drop: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	s, db := openStore(t), openDB(t)
	h := map[string]kv.Handler{"A": func(context.Context, *kv.Tx, *rewind.RecordedEvent) error { return nil }}
	for _, c := range []struct {
		name string
		p    kv.Projection
		cfg  kv.Config
	}{
		{"bad name", kv.Projection{Name: "Bad-Name", Version: 1, Handlers: h}, kv.Config{Store: s}},
		{"version 0", kv.Projection{Name: "x", Version: 0, Handlers: h}, kv.Config{Store: s}},
		{"no handlers", kv.Projection{Name: "x", Version: 1}, kv.Config{Store: s}},
		{"nil handler", kv.Projection{Name: "x", Version: 1, Handlers: map[string]kv.Handler{"A": nil}}, kv.Config{Store: s}},
		{"no store", kv.Projection{Name: "x", Version: 1, Handlers: h}, kv.Config{}},
	} {
		if _, err := kv.New(db, c.p, c.cfg); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := db.Get("nope", "k"); !errors.Is(err, rewind.ErrStreamNotFound) {
		t.Errorf("get of an unknown projection: %v", err)
	}
	if _, err := db.Status("nope"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("status of an unknown projection: %v", err)
	}
	// A key too long parks the event; the projection goes on.
	appendN(t, s, 3)
	long := kv.Projection{Name: "long", Version: 1, Handlers: map[string]kv.Handler{"Added": func(_ context.Context, tx *kv.Tx, ev *rewind.RecordedEvent) error {
		if ev.Position == 3 {
			return tx.Put(string(make([]byte, kv.MaxKey+1)), nil)
		}
		return tx.Put(fmt.Sprint(ev.Position), nil)
	}}}
	r, _ := kv.New(db, long, kv.Config{Store: s})
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := db.Parked("long", 1); err != nil || len(p) != 1 || p[0].Position != 3 {
		t.Fatalf("parked: %+v %v", p, err)
	}
}
