package backfill_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind/backfill"
)

var imageRaces = flag.Int("image-races", 50, "how many trials the racing-writer before-image test runs")

// pathLog records how each chunk of a set job took its before-images: the
// runner's debug record "backfill: chunk before-images" (path one-pass
// or join, and why the join). Other records at info and above go to the
// test's output.
type pathLog struct {
	mu    sync.Mutex
	paths []string // "one-pass", or "join: why", in the order logged
	out   slog.Handler
}

func newPathLog(t *testing.T) *pathLog {
	return &pathLog{out: slog.NewTextHandler(t.Output(), nil)}
}

// use makes the runner log to l.
func (l *pathLog) use(c *backfill.Config) { c.Logger = slog.New(l) }

func (l *pathLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *pathLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *pathLog) WithGroup(string) slog.Handler            { return l }

func (l *pathLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "backfill: chunk before-images" {
		if r.Level >= slog.LevelInfo {
			return l.out.Handle(ctx, r)
		}
		return nil
	}
	var path, why string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "path":
			path = a.Value.String()
		case "why":
			why = a.Value.String()
		}
		return true
	})
	if why != "" {
		path += ": " + why
	}
	l.mu.Lock()
	l.paths = append(l.paths, path)
	l.mu.Unlock()
	return nil
}

// taken returns the paths logged since the last call.
func (l *pathLog) taken() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.paths
	l.paths = nil
	return p
}

// column reads an integer column of items by id.
func (b *bundle) column(t *testing.T, col string) map[int64]int64 {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), "SELECT id, "+col+" FROM items")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]int64{}
	var id, v int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &v}, func() error { out[id] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// countPaths counts the paths that begin with prefix.
func countPaths(paths []string, prefix string) int {
	n := 0
	for _, p := range paths {
		if strings.HasPrefix(p, prefix) {
			n++
		}
	}
	return n
}

// openXact opens a transaction that has written (so has a transaction
// id) and stays open until the test ends or the returned func is called:
// every row written after it began looks new to a chunk's statement.
func openXact(t *testing.T, b *bundle) func() {
	t.Helper()
	ctx := context.Background()
	tx, err := b.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	end := func() { once.Do(func() { tx.Rollback(context.WithoutCancel(ctx)) }) }
	t.Cleanup(end)
	return end
}

// constJob sets n = n + 1 (so that a row changed twice shows) and val to
// a constant: the values it writes do not depend on val, so the output
// checksum cannot tell which version of val a row had when the chunk
// wrote it; only the before-image can, and it must be the version the
// chunk replaced.
func constJob(name string) *backfill.Job {
	return &backfill.Job{Name: name, Version: "1", ChunkSize: 100,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Set:    map[string]string{"n": "n + 1", "val": "-1"}}
}

// A writer that keeps changing val, holding each row's lock for a moment,
// races constJob's chunks: a chunk whose UPDATE meets a row the writer
// changed after the chunk's snapshot must not save the older version as
// the row's before-image. Every row is changed once by the run, and a
// rollback then puts back exactly the value the run replaced (the
// writer's last value before the run's write), leaving as conflicts
// exactly the rows the writer changed after the run's write. Every other
// trial runs with a transaction left open, so that the rows the writer
// wrote look new to the chunks (checked by ctid). Removing the one-pass
// UPDATE's xmin check, or its ctid check of rows that look new, makes this
// test fail.
func TestOnePassImagesUnderARacingWriter(t *testing.T) {
	t.Parallel()
	paths := newPathLog(t)
	b := setup(t, 300, paths.use)
	ctx := context.Background()
	var races int
	for trial := range *imageRaces {
		var endXact func()
		if trial%2 == 1 {
			endXact = openXact(t, b)
		}
		b.db.Exec(t, "UPDATE items SET val = id % 97, n = 0")
		writes := map[int64]int64{} // committed writes per id
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var werr error
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := rand.Int64N(300) + 1
				werr = pgx.BeginFunc(ctx, b.db.Pool, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "UPDATE items SET val = val + 1000 WHERE id = $1", id)
					if err == nil {
						_, err = tx.Exec(ctx, "SELECT pg_sleep($1)", rand.Float64()*0.003)
					}
					return err
				})
				if werr != nil {
					return
				}
				writes[id]++
			}
		})
		res, err := b.runner.Apply(ctx, constJob(fmt.Sprintf("race-%d", trial)), backfill.ApplyOptions{})
		close(stop)
		wg.Wait()
		if endXact != nil {
			endXact()
		}
		if err != nil || werr != nil {
			t.Fatalf("trial %d: apply: %v; writer: %v", trial, err, werr)
		}
		races += b.auditKinds(t, res.Run.ID)["backfill.chunk.retried"]
		// Each row changed once by the run (n = 1), its val -1 then
		// raised by the writer's writes after the run's.
		ns, vals := b.column(t, "n"), b.column(t, "val")
		for id := int64(1); id <= 300; id++ {
			if after := (vals[id] + 1) / 1000; ns[id] != 1 || (vals[id]+1)%1000 != 0 || after > writes[id] {
				t.Fatalf("trial %d: row %d has n = %d, val = %d after the run (%d writes by the writer)", trial, id, ns[id], vals[id], writes[id])
			}
		}
		_, rb := b.rollback(t, res.Run.ID, backfill.RollbackOptions{})
		var conflicts int64
		ns, vals = b.column(t, "n"), b.column(t, "val")
		for id := int64(1); id <= 300; id++ {
			switch {
			case ns[id] == 0 && vals[id] == id%97+1000*writes[id]: // restored to the version the run replaced
			case ns[id] == 1 && (vals[id]+1)%1000 == 0 && vals[id] >= 999: // the writer wrote after the run: a conflict, left
				conflicts++
			default:
				t.Fatalf("trial %d: row %d has n = %d, val = %d after the rollback, want n = 0, val = %d "+
					"(%d writes by the writer): its before-image was not the version the run replaced",
					trial, id, ns[id], vals[id], id%97+1000*writes[id], writes[id])
			}
		}
		if conflicts != rb.Conflicts || rb.Restored+rb.Conflicts != 300 {
			t.Fatalf("trial %d: rollback %+v, %d rows left as the run wrote them", trial, rb, conflicts)
		}
	}
	taken := paths.taken()
	if countPaths(taken, "one-pass") == 0 || countPaths(taken, "join") != 0 {
		t.Fatalf("the chunks took their images by %v, want one pass only", taken)
	}
	t.Logf("%d trials, %d chunks retried after a racing write, %d chunk statements", *imageRaces, races, len(taken))
}

// A row that looks new (written after a transaction still open began) but
// that no one changed since the chunk's snapshot is written in one pass
// (by its ctid); a row that looks new and is changed while the chunk
// waits for it is left out, and the chunk is tried again: the rollback
// then puts back the other transaction's value. Removing the ctid check
// (letting rows that look new through) makes the rollback restore the
// older value.
func TestOnePassChecksRowsThatLookNewByCtid(t *testing.T) {
	t.Parallel()
	paths := newPathLog(t)
	b := setup(t, 300, paths.use)
	ctx := context.Background()
	openXact(t, b)
	b.db.Exec(t, "UPDATE items SET val = val + 1 WHERE id IN (10, 50)") // both look new now
	other, err := b.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, "UPDATE items SET val = 1000 WHERE id = 50"); err != nil {
		t.Fatal(err)
	}
	applied := make(chan *backfill.Result, 1)
	go func() {
		res, err := b.runner.Apply(ctx, constJob("ctid"), backfill.ApplyOptions{})
		if err != nil {
			t.Error(err)
		}
		applied <- res
	}()
	for b.scalar(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
		AND query LIKE 'WITH _rw_%'`) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-applied
	if res == nil || res.RowsChanged != 300 {
		t.Fatalf("apply: %+v", res)
	}
	if k := b.auditKinds(t, res.Run.ID); k["backfill.chunk.retried"] != 1 {
		t.Fatalf("entries: %v", k)
	}
	if p := paths.taken(); countPaths(p, "one-pass") != 4 || countPaths(p, "join") != 0 { // 3 chunks, the first twice
		t.Fatalf("paths: %v", p)
	}
	b.rollback(t, res.Run.ID, backfill.RollbackOptions{})
	if v := b.scalar(t, "SELECT val FROM items WHERE id = 50"); v != 1000 {
		t.Fatalf("row 50 restored to val %d, want 1000 (the other transaction's value)", v)
	}
	if v := b.scalar(t, "SELECT val FROM items WHERE id = 10"); v != 11 {
		t.Fatalf("row 10 restored to val %d, want 11", v)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE id NOT IN (10, 50) AND (val <> id % 97 OR done OR n <> 0)"); n != 0 {
		t.Fatalf("%d other rows not restored", n)
	}
}

// What one pass cannot prove right takes the join, each chunk, and the
// rollback restores the table: a volatile or subquery set expression, a
// volatile where, a BEFORE UPDATE row trigger on the table or on a child
// of it, and more rows that look new than one pass checks by ctid (then
// for the chunk and the next 32). Removing any of these conditions makes
// its case fail.
func TestImagesTakeTheJoinWhenOnePassCannotProveThem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		setup []string
		job   func(*backfill.Job)
		chunk int
		xact  bool // rows written with a transaction left open
		why   []string
	}{
		{name: "volatile set", job: func(j *backfill.Job) { j.Set["n"] = "n + 1 + floor(random() * 0)::int" },
			why: []string{"a set expression calls a volatile function"}},
		{name: "subquery in set", job: func(j *backfill.Job) { j.Set["n"] = "n + (SELECT 1)" },
			why: []string{"a set expression has a subquery"}},
		{name: "volatile where", job: func(j *backfill.Job) { j.Source.(*backfill.Table).Where = "NOT done AND random() >= 0" },
			why: []string{"the where calls random(), a volatile function"}},
		{name: "BEFORE UPDATE trigger",
			setup: []string{`CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$`,
				`CREATE TRIGGER keep BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION keep()`},
			why: []string{"the table has BEFORE trigger keep on items"}},
		{name: "trigger on a child",
			setup: []string{`CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$`,
				`CREATE TABLE items_child () INHERITS (items)`,
				`CREATE TRIGGER keep BEFORE UPDATE OF n ON items_child FOR EACH ROW EXECUTE FUNCTION keep()`},
			why: []string{"the table has BEFORE trigger keep on items_child"}},
		{name: "many rows look new", chunk: 150, xact: true,
			why: []string{"150 rows of the chunk looked new", "more than 128 rows of a recent chunk looked new"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			paths := newPathLog(t)
			b := setup(t, 300, paths.use)
			for _, s := range c.setup {
				b.db.Exec(t, s)
			}
			if c.xact {
				openXact(t, b)
				b.db.Exec(t, "UPDATE items SET val = val")
			}
			before := b.db.Checksum(t, "items", "id")
			job := doubleJob()
			if c.chunk > 0 {
				job.ChunkSize = c.chunk
			}
			if c.job != nil {
				c.job(job)
			}
			res := b.apply(t, job, backfill.ApplyOptions{})
			if res.RowsChanged != 300 {
				t.Fatalf("apply: %+v", res)
			}
			p := paths.taken()
			if len(p) != int(res.Chunks) || countPaths(p, "join") != len(p) {
				t.Fatalf("%d chunks took their images by %v, want the join", res.Chunks, p)
			}
			for i, want := range c.why {
				if i < len(p) && !strings.Contains(p[i], want) {
					t.Fatalf("chunk %d: %q, want it to say %q", i+1, p[i], want)
				}
			}
			b.rollback(t, res.Run.ID, backfill.RollbackOptions{})
			if got := b.db.Checksum(t, "items", "id"); got != before {
				t.Fatal("the table differs from before the run")
			}
		})
	}
}

// A set expression declared STABLE that gives another value at each call
// makes the UPDATE write other values than the one-pass images computed
// from the rows read: the output checksum shows it, the chunk is tried
// again by join (as are the run's next chunks), and the rollback restores
// the table. Without the check, the images would hold values the run did
// not write, and the rollback would leave every row as a conflict.
func TestWrittenDiffersRetriesTheChunkByJoin(t *testing.T) {
	t.Parallel()
	paths := newPathLog(t)
	b := setup(t, 300, paths.use)
	b.db.Exec(t, `CREATE FUNCTION flaky(x int) RETURNS int STABLE LANGUAGE plpgsql AS $$BEGIN RETURN x + 1 + floor(random() * 1000000)::int; END$$`)
	before := b.db.Checksum(t, "items", "id")
	job := doubleJob()
	job.Set["n"] = "flaky(n)"
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsChanged != 300 {
		t.Fatalf("apply: %+v", res)
	}
	if k := b.auditKinds(t, res.Run.ID); k["backfill.chunk.retried"] != 1 {
		t.Fatalf("entries: %v", k)
	}
	p := paths.taken()
	if len(p) != 4 || p[0] != "one-pass" || countPaths(p[1:], "join: a chunk of the run wrote other values") != 3 {
		t.Fatalf("paths: %v", p)
	}
	_, rb := b.rollback(t, res.Run.ID, backfill.RollbackOptions{})
	if rb.Restored != 300 || rb.Conflicts != 0 {
		t.Fatalf("rollback: %+v", rb)
	}
	if got := b.db.Checksum(t, "items", "id"); got != before {
		t.Fatal("the table differs from before the run")
	}
}
