package logcopy_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/logcopy"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/store"
)

var events = flag.Int("logcopy.events", 3000, "appends written into the source of the round-trip tests")

type side interface {
	logcopy.Target
	rewind.Store
	rewind.LastPositioner
}

func openDir(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPG(t *testing.T, db *pgtest.DB, schema string) *pgstore.Store {
	t.Helper()
	ctx := context.Background()
	if _, err := pgstore.Migrate(ctx, db.DSN, pgstore.Config{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	s, err := pgstore.Open(ctx, db.DSN, pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fill writes a history with every kind of record a copy must keep: batches
// of several events, client and generated ids, metadata, occurred-at times,
// deletes, and streams written again after their delete.
func fill(t *testing.T, s rewind.Store, n int, seed uint64) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range n {
		stream := fmt.Sprintf("s-%d", rng.IntN(40))
		if rng.IntN(25) == 0 {
			if _, err := s.DeleteStream(ctx, stream, rewind.Any); err != nil && !errors.Is(err, rewind.ErrStreamNotFound) {
				t.Fatal(err)
			}
			continue
		}
		evs := make([]rewind.Event, 1+rng.IntN(4))
		for j := range evs {
			e := rewind.Event{Type: fmt.Sprintf("T%d", rng.IntN(3)), Data: []byte(fmt.Sprintf(`{"i":%d,"j":%d}`, i, j))}
			if rng.IntN(3) > 0 {
				e.ID = uuid.New()
			}
			if rng.IntN(2) == 0 {
				e.Metadata = map[string]string{"by": "test", "n": fmt.Sprint(i)}
			}
			if rng.IntN(2) == 0 {
				e.OccurredAt = time.Unix(1_700_000_000, int64(rng.IntN(1e9))).UTC()
			}
			if rng.IntN(5) == 0 {
				e.SchemaVersion = 2
				e.ContentType = "application/octet-stream"
				e.Data = []byte{0, 1, 2, byte(i)}
			}
			evs[j] = e
		}
		if _, err := s.Append(ctx, stream, rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
}

// sameContent checks, through the public contract alone (not through
// logcopy's own comparison), that two stores hold the same log and streams.
func sameContent(t *testing.T, a, b rewind.Store, precision time.Duration) {
	t.Helper()
	ctx := context.Background()
	// ReadAll's events may share buffers with the next: keep copies.
	keep := func(e *rewind.RecordedEvent) rewind.RecordedEvent {
		c := *e
		c.Data = slices.Clone(e.Data)
		c.Metadata = maps.Clone(e.Metadata)
		return c
	}
	var ea, eb []rewind.RecordedEvent
	for e, err := range a.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		ea = append(ea, keep(e))
	}
	for e, err := range b.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		eb = append(eb, keep(e))
	}
	if len(ea) != len(eb) {
		t.Fatalf("%d records against %d", len(ea), len(eb))
	}
	for i := range ea {
		x, y := ea[i], eb[i]
		if !x.RecordedAt.Truncate(precision).Equal(y.RecordedAt.Truncate(precision)) {
			t.Fatalf("position %d: recorded at %v against %v", x.Position, x.RecordedAt, y.RecordedAt)
		}
		x.RecordedAt, y.RecordedAt = time.Time{}, time.Time{}
		if len(x.Data) == 0 && len(y.Data) == 0 {
			x.Data, y.Data = nil, nil
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("position %d differs:\n%+v\n%+v", ea[i].Position, x, y)
		}
	}
	la, err := a.ListStreams(ctx, rewind.ListStreamsOptions{IncludeDeleted: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.ListStreams(ctx, rewind.ListStreamsOptions{IncludeDeleted: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(la, lb) {
		t.Fatalf("streams differ:\n%+v\n%+v", la, lb)
	}
}

// TestRoundTrip: a data directory copied into PostgreSQL and back into
// another data directory keeps every record; the copies then behave as the
// source: a retried append is a duplicate answered with its original
// positions, and new appends continue positions and versions.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	src := openDir(t, filepath.Join(t.TempDir(), "src"))
	fill(t, src, *events, 1)
	pg := openPG(t, db, "copy")
	opts := logcopy.Options{Batch: 777, TimePrecision: time.Microsecond}
	res, err := logcopy.Copy(ctx, src, pg, opts)
	if err != nil {
		t.Fatal(err)
	}
	last, _ := src.LastPosition(ctx)
	if res.End != last || res.Copied != int64(last) || res.Verified == nil || !res.Verified.Equal {
		t.Fatalf("dir -> pg: %+v (source at %d)", res, last)
	}
	sameContent(t, src, pg, time.Microsecond)
	back := openDir(t, filepath.Join(t.TempDir(), "back"))
	if res, err = logcopy.Copy(ctx, pg, back, logcopy.Options{Batch: 500}); err != nil || res.Copied != int64(last) {
		t.Fatalf("pg -> dir: %+v %v", res, err)
	}
	sameContent(t, pg, back, time.Nanosecond) // PostgreSQL's microseconds are kept exactly
	sameContent(t, src, back, time.Microsecond)
	if _, err := logcopy.Verify(ctx, src, back, 0, opts); err != nil {
		t.Fatal(err)
	}

	// A retry of an append of the source is a duplicate in both copies.
	var first *rewind.RecordedEvent
	for e, err := range src.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != rewind.TypeStreamDeleted && e.Version == 1 {
			recs, _ := src.ExportLog(ctx, e.Position, 1)
			if !recs[0].GeneratedID && recs[0].BatchEnd {
				c := recs[0].RecordedEvent // the caller's to keep, unlike e
				first = &c
				break
			}
		}
	}
	if first == nil {
		t.Fatal("no single-event first append with a client id in the source")
	}
	for _, s := range []rewind.Store{src, pg, back} {
		r, err := s.Append(ctx, first.Stream, rewind.NoStream, first.Event)
		if err != nil || !r.Duplicate || r.FirstPosition != first.Position {
			t.Fatalf("%T: retry of position %d: %+v %v", s, first.Position, r, err)
		}
	}
	// New appends continue the copied positions and versions alike.
	want, err := src.Append(ctx, "s-1", rewind.Any, rewind.Event{Type: "After"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []rewind.Store{pg, back} {
		r, err := s.Append(ctx, "s-1", rewind.Any, rewind.Event{Type: "After"})
		if err != nil || r.FirstPosition != want.FirstPosition || r.FirstVersion != want.FirstVersion {
			t.Fatalf("%T: append after the copy: %+v %v; want %+v", s, r, err, want)
		}
	}
}

// TestResume: a copy stopped after some imports is run again and goes on
// from where the target stands, in both directions, without duplicating a
// record; one run more copies nothing.
func TestResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	src := openDir(t, filepath.Join(t.TempDir(), "src"))
	fill(t, src, *events, 2)
	last, _ := src.LastPosition(ctx)
	pg := openPG(t, db, "resume")
	back := openDir(t, filepath.Join(t.TempDir(), "back"))
	for _, c := range []struct {
		name     string
		from, to logcopy.Target
	}{{"dir to pg", src, pg}, {"pg to dir", pg, back}} {
		for round := 0; ; round++ {
			cctx, cancel := context.WithCancel(ctx)
			imports := 0
			res, err := logcopy.Copy(cctx, c.from, c.to, logcopy.Options{Batch: 300, TimePrecision: time.Microsecond,
				Progress: func(done, end rewind.Position) {
					if imports++; imports == 2 {
						cancel() // stop after two imports
					}
				}})
			cancel()
			if err == nil {
				if res.Verified == nil || !res.Verified.Equal || res.End != last {
					t.Fatalf("%s: last run: %+v", c.name, res)
				}
				break
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s round %d: %v", c.name, round, err)
			}
			if round > 100 {
				t.Fatalf("%s: no end after %d rounds", c.name, round)
			}
		}
		res, err := logcopy.Copy(ctx, c.from, c.to, logcopy.Options{TimePrecision: time.Microsecond})
		if err != nil || res.Copied != 0 || res.TargetBefore != last {
			t.Fatalf("%s: a run after the end: %+v %v", c.name, res, err)
		}
	}
	sameContent(t, src, back, time.Microsecond)
}

// TestRefused: targets that hold another log, or more than the source, and
// the same store on both sides are refused before anything is written.
func TestRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	src := openDir(t, filepath.Join(t.TempDir(), "src"))
	fill(t, src, 200, 3)
	other := openPG(t, db, "other")
	fill(t, other, 50, 4) // another log
	ahead := openDir(t, filepath.Join(t.TempDir(), "ahead"))
	if _, err := logcopy.Copy(ctx, src, ahead, logcopy.Options{}); err != nil {
		t.Fatal(err)
	}
	fill(t, ahead, 10, 5) // the source's log, and more
	diverged := openPG(t, db, "diverged")
	if _, err := logcopy.Copy(ctx, src, diverged, logcopy.Options{TimePrecision: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	fill(t, src, 10, 6)
	fill(t, diverged, 10, 7) // the source's log up to a point, then another
	for _, c := range []struct {
		name string
		dst  side
	}{{"another log", other}, {"target ahead", ahead}, {"diverged", diverged}, {"same store", src}} {
		before, _ := c.dst.LastPosition(ctx)
		_, err := logcopy.Copy(ctx, src, c.dst, logcopy.Options{TimePrecision: time.Microsecond})
		var re *logcopy.RefusedError
		if !errors.As(err, &re) || !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Fatalf("%s: %v; want a *RefusedError", c.name, err)
		}
		if after, _ := c.dst.LastPosition(ctx); after != before {
			t.Fatalf("%s: the target moved from %d to %d", c.name, before, after)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

// TestVerifyNamesFirstDifference: two logs that differ are told apart at
// the first differing position, also when one is shorter.
func TestVerifyNamesFirstDifference(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := openDir(t, filepath.Join(t.TempDir(), "a"))
	fill(t, a, 300, 8)
	b := openDir(t, filepath.Join(t.TempDir(), "b"))
	if _, err := logcopy.Copy(ctx, a, b, logcopy.Options{}); err != nil {
		t.Fatal(err)
	}
	end, _ := a.LastPosition(ctx)
	r, err := a.Append(ctx, "x", rewind.Any, rewind.Event{Type: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, "x", rewind.Any, rewind.Event{Type: "B"}); err != nil {
		t.Fatal(err)
	}
	if v, err := logcopy.Verify(ctx, a, b, end, logcopy.Options{}); err != nil || !v.Equal || v.SourceDigest != v.TargetDigest {
		t.Fatalf("the common range: %+v %v", v, err)
	}
	v, err := logcopy.Verify(ctx, a, b, 0, logcopy.Options{})
	var me *logcopy.MismatchError
	if !errors.As(err, &me) || me.Position != r.FirstPosition || v.Equal || v.SourceDigest == v.TargetDigest {
		t.Fatalf("differing last record: %+v %v; want a mismatch at %d", v, err, r.FirstPosition)
	}
	c := openDir(t, filepath.Join(t.TempDir(), "c")) // empty
	if _, err := logcopy.Verify(ctx, a, c, 0, logcopy.Options{}); !errors.As(err, &me) || me.Position != 1 {
		t.Fatalf("empty target: %v; want a mismatch at 1", err)
	}
}

// TestReaderSeesNoGap: a subscription to a PostgreSQL target, reading while
// a copy imports, sees every position once, in order, and never one with
// the positions before it missing.
func TestReaderSeesNoGap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	src := openDir(t, filepath.Join(t.TempDir(), "src"))
	fill(t, src, *events, 9)
	end, _ := src.LastPosition(ctx)
	pg := openPG(t, db, "gap")
	sub, err := pg.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := logcopy.Copy(ctx, src, pg, logcopy.Options{Batch: 50, TimePrecision: time.Microsecond})
		errc <- err
	}()
	for want := rewind.Position(1); want <= end; want++ {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Position != want {
			t.Fatalf("the subscription got position %d; want %d", e.Position, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
