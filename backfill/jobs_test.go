package backfill_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/store"
)

func TestCompositeKey(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.db.Exec(t, "CREATE TABLE pairs (a int NOT NULL, b text NOT NULL, v int NOT NULL, PRIMARY KEY (a, b))")
	b.db.Exec(t, "INSERT INTO pairs SELECT g / 10, 'k' || (g % 10), g FROM generate_series(0, 999) g")
	job := &backfill.Job{Name: "pairs", Version: "1", ChunkSize: 33,
		Source: &backfill.Table{Name: "pairs", Key: []string{"a", "b"}, Where: "v >= 0"},
		Set:    map[string]string{"v": "-v - 1"}}
	plan, err := b.runner.Plan(context.Background(), job, backfill.PlanOptions{})
	if err != nil || plan.Rows != 1000 || len(plan.FirstChunk.Hi) != 2 {
		t.Fatalf("plan %+v, %v", plan, err)
	}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsChanged != 1000 || res.Chunks != 31 {
		t.Fatalf("apply %+v", res)
	}
	if n := b.scalar(t, "SELECT count(*) FROM pairs WHERE v >= 0"); n != 0 {
		t.Fatalf("%d rows unchanged", n)
	}
}

func TestStatementJob(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	job := &backfill.Job{Name: "stmt", Version: "1", ChunkSize: 250,
		Source:    &backfill.Table{Name: "items", Key: []string{"id"}, Where: "NOT done"},
		Statement: `UPDATE items SET done = true, n = n + 1, val = val + length(@note) WHERE id BETWEEN @lo AND @hi AND NOT done`,
		Params:    backfill.Params{"note": {Type: "text", Value: "backfilled", Text: "backfilled"}}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsChanged != 1000 || res.Chunks != 4 {
		t.Fatalf("apply %+v", res)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE val <> id % 97 + 10"); n != 0 {
		t.Fatalf("%d rows without the parameter's length added", n)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed once", n)
	}
}

func TestProcessJobWithTableSink(t *testing.T) {
	t.Parallel()
	b := setup(t, 500)
	b.db.Exec(t, "CREATE TABLE totals (id bigint PRIMARY KEY, doubled int NOT NULL, label text)")
	b.db.Exec(t, "INSERT INTO totals VALUES (1, 2, 'one')") // already right: not written again
	job := &backfill.Job{Name: "totals", Version: "1", ChunkSize: 64,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}, Columns: []string{"id", "val"}},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			out := make([]backfill.Change, len(items))
			for i, it := range items {
				out[i] = backfill.Change{Key: it.Key, Row: map[string]any{"id": it.Row["id"], "doubled": it.Row["val"].(int32) * 2}}
			}
			return out, nil
		},
		Sink: &backfill.TableSink{Table: "totals", Key: []string{"id"}, Upsert: true}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsSeen != 500 || res.RowsChanged != 499 {
		t.Fatalf("apply %+v", res)
	}
	if n := b.scalar(t, "SELECT count(*) FROM totals t JOIN items i USING (id) WHERE t.doubled = i.val * 2"); n != 500 {
		t.Fatalf("%d totals right", n)
	}
	again := b.apply(t, job, backfill.ApplyOptions{NewRun: res.Run.ID})
	if again.RowsChanged != 0 {
		t.Fatalf("re-run wrote %d rows", again.RowsChanged)
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEventsSourceToTable(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.db.Exec(t, "CREATE TABLE seen (pos bigint PRIMARY KEY, stream text NOT NULL, amount int NOT NULL)")
	s := openStore(t)
	ctx := context.Background()
	for i := range 300 {
		typ := "Paid"
		if i%3 == 0 {
			typ = "Other"
		}
		if _, err := s.Append(ctx, fmt.Sprintf("order-%d", i%7), rewind.Any,
			rewind.Event{Type: typ, Data: fmt.Appendf(nil, `{"amount":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	job := &backfill.Job{Name: "project", Version: "1", ChunkSize: 50,
		Source: &backfill.Events{Store: s, From: 11, To: 250, Filter: rewind.Filter{Types: []string{"Paid"}}},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			var out []backfill.Change
			for _, it := range items {
				var amount int
				fmt.Sscanf(string(it.Event.Data), `{"amount":%d}`, &amount)
				out = append(out, backfill.Change{Key: it.Key, Row: map[string]any{
					"pos": uint64(it.Event.Position), "stream": it.Event.Stream, "amount": amount}})
			}
			return out, nil
		},
		Sink: &backfill.TableSink{Table: "seen", Key: []string{"pos"}, Upsert: true}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	// Positions 11…250 hold events 10…249; a third of them are "Other".
	want := int64(0)
	for i := 10; i <= 249; i++ {
		if i%3 != 0 {
			want++
		}
	}
	if res.RowsChanged != want || b.scalar(t, "SELECT count(*) FROM seen") != want {
		t.Fatalf("apply %+v, want %d rows", res, want)
	}
	if n := b.scalar(t, "SELECT count(*) FROM seen WHERE pos < 11 OR pos > 250"); n != 0 {
		t.Fatalf("%d events outside the window", n)
	}
}

// TestStoreSinkAppendsOnceWhenTheChunkRollsBack makes the checkpoint of
// chunk 2 fail twice after the sink appended its events: the retries must
// not append them again.
func TestStoreSinkAppendsOnceWhenTheChunkRollsBack(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	s := openStore(t)
	job := &backfill.Job{Name: "emit", Version: "1", ChunkSize: 100,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			var out []backfill.Change
			for _, it := range items {
				out = append(out, backfill.Change{Key: it.Key, Stream: fmt.Sprintf("item-%d", it.Row["id"].(int64)%5),
					Event: rewind.Event{Type: "Backfilled", Data: fmt.Appendf(nil, `{"id":%d}`, it.Row["id"])}})
			}
			return out, nil
		},
		Sink: &backfill.StoreSink{Store: s}}
	// The ledger exists after a dry run; then make chunk 2's checkpoint fail.
	if _, err := b.runner.Plan(context.Background(), job, backfill.PlanOptions{}); err != nil {
		t.Fatal(err)
	}
	b.db.Exec(t, "CREATE SEQUENCE inject")
	b.db.Exec(t, `CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.seq = 2 AND nextval('inject') <= 2 THEN RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure'; END IF; RETURN NEW; END $$`)
	b.db.Exec(t, "CREATE TRIGGER inject BEFORE INSERT ON rewind.backfill_chunks FOR EACH ROW EXECUTE FUNCTION inject()")
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsChanged != 300 {
		t.Fatalf("apply %+v", res)
	}
	if got := s.Info().LastPosition; got != 300 {
		t.Fatalf("the store holds %d events, want 300", got)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_intents"); n != 0 {
		t.Fatalf("%d intents left behind", n)
	}
}

func TestBadJobsWriteNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		job   func() *backfill.Job
		field string
		sql   string // run before the job
	}{
		{"unknown table", func() *backfill.Job { j := doubleJob(); j.Source.(*backfill.Table).Name = "itemz"; return j }, "table", ""},
		{"unknown key column", func() *backfill.Job { j := doubleJob(); j.Source.(*backfill.Table).Key = []string{"idd"}; return j }, "column", ""},
		{"key not unique", func() *backfill.Job { j := doubleJob(); j.Source.(*backfill.Table).Key = []string{"val"}; return j }, "key", ""},
		{"bad where", func() *backfill.Job {
			j := doubleJob()
			j.Source.(*backfill.Table).Where = "NOT done AN val > 1"
			return j
		}, "where", ""},
		{"unknown where column", func() *backfill.Job { j := doubleJob(); j.Source.(*backfill.Table).Where = "vall > 1"; return j }, "where", ""},
		{"unknown set column", func() *backfill.Job { j := doubleJob(); j.Set["vall"] = "1"; return j }, "set.vall", ""},
		{"bad set expression", func() *backfill.Job { j := doubleJob(); j.Set["val"] = "val *"; return j }, "set.val", ""},
		{"set of a key column", func() *backfill.Job { j := doubleJob(); j.Set["id"] = "id + 1"; return j }, "set.id", ""},
		{"statement without bounds", func() *backfill.Job {
			j := doubleJob()
			j.Set, j.Statement = nil, "UPDATE items SET n = 1"
			return j
		}, "statement", ""},
		{"no name", func() *backfill.Job { j := doubleJob(); j.Name = ""; return j }, "job name", ""},
		// An outside test found a view refused as "key columns must be
		// NOT NULL" and a job over pg_catalog.pg_class run to the end.
		{"a view", onTable("items_v"), "table", "CREATE VIEW items_v AS SELECT * FROM items"},
		{"a materialized view", onTable("items_m"), "table", "CREATE MATERIALIZED VIEW items_m AS SELECT * FROM items"},
		{"a system catalog", func() *backfill.Job {
			return &backfill.Job{Name: "cat", Version: "1", Source: &backfill.Table{Name: "pg_catalog.pg_class", Key: []string{"oid"}},
				Set: map[string]string{"relname": "relname"}}
		}, "table", ""},
		{"rewind's own schema", onTable("rewind.items"), "table",
			"CREATE SCHEMA rewind; CREATE TABLE rewind.items (LIKE public.items INCLUDING ALL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 10)
			if tt.sql != "" {
				b.db.Exec(t, tt.sql)
			}
			_, err := b.runner.Apply(context.Background(), tt.job(), backfill.ApplyOptions{})
			var ve *rewind.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Fatalf("apply = %v, want a validation error on %q", err, tt.field)
			}
			if tt.field == "table" && tt.name != "unknown table" && !strings.Contains(err.Error(), "a backfill") {
				t.Fatalf("apply = %v, want what the table must be", err)
			}
			if n := b.scalar(t, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = 'rewind' AND c.relname NOT LIKE 'items%'`); n != 0 {
				t.Fatal("a rejected job created the ledger")
			}
			if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 0"); n != 0 {
				t.Fatal("a rejected job changed rows")
			}
		})
	}
}

func TestEventsWindowByTime(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.db.Exec(t, "CREATE TABLE seen (pos bigint PRIMARY KEY)")
	s := openStore(t)
	ctx := context.Background()
	appendN := func(n int) {
		for range n {
			if _, err := s.Append(ctx, "s-1", rewind.Any, rewind.Event{Type: "T", Data: []byte("{}")}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	appendN(10)
	from := time.Now()
	appendN(20)
	to := time.Now()
	appendN(5)
	job := &backfill.Job{Name: "window", Version: "1", ChunkSize: 7,
		Source: &backfill.Events{Store: s, FromTime: from, ToTime: to},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			var out []backfill.Change
			for _, it := range items {
				out = append(out, backfill.Change{Key: it.Key, Row: map[string]any{"pos": uint64(it.Event.Position)}})
			}
			return out, nil
		},
		Sink: &backfill.TableSink{Table: "seen", Key: []string{"pos"}, Upsert: true}}
	b.apply(t, job, backfill.ApplyOptions{})
	if n, lo, hi := b.scalar(t, "SELECT count(*) FROM seen"), b.scalar(t, "SELECT min(pos) FROM seen"), b.scalar(t, "SELECT max(pos) FROM seen"); n != 20 || lo != 11 || hi != 30 {
		t.Fatalf("window processed %d events, %d…%d; want 20, 11…30", n, lo, hi)
	}
}

// onTable is doubleJob on another table.
func onTable(name string) func() *backfill.Job {
	return func() *backfill.Job { j := doubleJob(); j.Source.(*backfill.Table).Name = name; return j }
}

// TestSetJobOnTypesWithoutEquality: json has neither equality nor a hash
// function, so the change test and the checksums fall back to text.
func TestSetJobOnTypesWithoutEquality(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.db.Exec(t, "CREATE TABLE docs (id int PRIMARY KEY, doc json NOT NULL)")
	b.db.Exec(t, `INSERT INTO docs SELECT g, CASE WHEN g % 2 = 0 THEN '{"v":2}' ELSE '{"v":1}' END::json FROM generate_series(1, 300) g`)
	job := &backfill.Job{Name: "docs", Version: "1", ChunkSize: 64,
		Source: &backfill.Table{Name: "docs", Key: []string{"id"}},
		Set:    map[string]string{"doc": `'{"v":2}'::json`}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if res.RowsSeen != 300 || res.RowsChanged != 150 {
		t.Fatalf("apply %+v, want 300 seen and the 150 odd rows changed", res)
	}
	if n := b.scalar(t, `SELECT count(*) FROM docs WHERE doc::text <> '{"v":2}'`); n != 0 {
		t.Fatalf("%d rows unchanged", n)
	}
}
