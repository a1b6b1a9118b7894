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
)

// rollback plans then applies a rollback of run id and fails the test on
// error.
func (b *bundle) rollback(t *testing.T, id string, o backfill.RollbackOptions) (*backfill.RollbackPlan, *backfill.RollbackResult) {
	t.Helper()
	ctx := context.Background()
	plan, err := b.runner.PlanRollback(ctx, id, o)
	if err != nil {
		t.Fatalf("plan the rollback of %s: %v", id, err)
	}
	res, err := b.runner.Rollback(ctx, id, o)
	if err != nil {
		t.Fatalf("roll back %s: %v", id, err)
	}
	return plan, res
}

// A set job rolled back leaves the table as it was before the run,
// checksum for checksum; the plan says so first, without writing; the
// ledger tells the story; rolling back again is refused.
func TestRollbackOfASetJobRestoresTheTable(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := context.Background()
	before := b.db.Checksum(t, "items", "id")
	res := b.apply(t, doubleJob(), backfill.ApplyOptions{})
	if res.RowsChanged != 1000 {
		t.Fatalf("apply: %+v", res)
	}
	applied := b.db.Checksum(t, "items", "id")
	plan, err := b.runner.PlanRollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Rows != 1000 || plan.Restore != 1000 || plan.Conflicts != 0 || plan.ChunksToUndo != 10 || len(plan.Diffs) == 0 {
		t.Fatalf("plan: %+v", plan)
	}
	d := plan.Diffs[0]
	if d.Key.String() != "1" || d.Now["val"] != "2" || d.Before["val"] != "1" || d.Written["val"] != "2" {
		t.Fatalf("first diff: %+v", d)
	}
	if got := b.db.Checksum(t, "items", "id"); got != applied {
		t.Fatal("the plan changed the table")
	}
	rb, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Restored != 1000 || rb.Chunks != 10 || rb.Conflicts != 0 {
		t.Fatalf("rollback: %+v", rb)
	}
	if got := b.db.Checksum(t, "items", "id"); got != before {
		t.Fatal("the table differs from before the run")
	}
	kinds := b.auditKinds(t, rb.Run.ID)
	if kinds["backfill.rollback.started"] != 1 || kinds["backfill.rollback.chunk"] != 10 || kinds["backfill.rollback.finished"] != 1 {
		t.Fatalf("rollback entries: %v", kinds)
	}
	if k := b.auditKinds(t, res.Run.ID); k["backfill.run.rolled_back"] != 1 || k["backfill.rollback.planned"] != 1 {
		t.Fatalf("entries of the run rolled back: %v", k)
	}
	st, err := b.runner.Status(ctx, res.Run.ID)
	if err != nil || len(st.Rollbacks) != 1 || st.Rollbacks[0].Run != rb.Run.ID || st.Rollbacks[0].State != backfill.Finished ||
		st.Rollbacks[0].Restored != 1000 || st.Images == nil || st.Images.Undone != 10 || st.Images.Rows != 1000 {
		t.Fatalf("status of the run rolled back: %+v %+v, %v", st, st.Images, err)
	}
	rst, err := b.runner.Status(ctx, rb.Run.ID)
	if err != nil || rst.Kind != "rollback" || rst.Undoes != res.Run.ID || rst.RowsChanged != 1000 {
		t.Fatalf("status of the rollback: %+v, %v", rst, err)
	}
	// Verify of the run says why its rows changed since.
	rep, err := b.runner.Verify(ctx, res.Run.ID, doubleJob(), backfill.VerifyOptions{})
	if err != nil || !strings.Contains(strings.Join(rep.Notes, " "), "rollback "+rb.Run.ID+" put back 10 chunk(s)") {
		t.Fatalf("verify of a rolled-back run: %+v, %v", rep, err)
	}
	// Twice: refused, clearly, and nothing changes.
	_, err = b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if !errors.Is(err, backfill.ErrNothingToRollBack) || !strings.Contains(err.Error(), rb.Run.ID) {
		t.Fatalf("second rollback: %v", err)
	}
	if got := b.db.Checksum(t, "items", "id"); got != before {
		t.Fatal("the refused rollback changed the table")
	}
}

// pairsSetup creates pairs, keyed by (tenant, id), with a json column, a
// generated column and an identity column, values whose text form is
// easy to get wrong (a float -0, numeric trailing zeros, a timestamptz),
// and every id even, so that statements can insert the odd ones.
func pairsSetup(t *testing.T) *bundle {
	b := setup(t, 1)
	b.db.Exec(t, `CREATE TABLE pairs (tenant int NOT NULL, id int NOT NULL, v text, n int NOT NULL DEFAULT 0, doc json,
		f float8, amount numeric(10,2), at timestamptz, total int GENERATED ALWAYS AS (n * 2) STORED,
		serial bigint GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (tenant, id))`)
	b.db.Exec(t, `INSERT INTO pairs (tenant, id, v, n, doc, f, amount, at)
		SELECT t, 2 * i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'v' || t || '-' || i END, i % 5,
			('{"b":  ' || i || ', "a": [1,  2]}')::json, CASE WHEN i % 2 = 0 THEN '-0'::float8 ELSE 0.1 + 0.2 END,
			(i || '.50')::numeric, '2031-01-02 03:04:05.123456+02'::timestamptz + i * interval '1 hour'
		FROM generate_series(1, 3) t, generate_series(1, 120) i`)
	return b
}

func pairsJob(name, statement string) *backfill.Job {
	return &backfill.Job{Name: name, Version: "1", ChunkSize: 50,
		Source:    &backfill.Table{Name: "pairs", Key: []string{"tenant", "id"}},
		Statement: statement}
}

const inChunk = "(tenant, id) BETWEEN (@lo_tenant, @lo_id) AND (@hi_tenant, @hi_id)"

// Statement jobs — UPDATE, DELETE, INSERT, INSERT … ON CONFLICT DO
// UPDATE — on a composite key, rolled back, leave the table as it was
// before the run, checksum for checksum (json text, -0, generated and
// identity columns included).
func TestRollbackOfStatementJobsRestoresTheTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, statement string }{
		{"update", "UPDATE pairs SET v = upper(v) || '!', n = n + 1, doc = '{\"x\":1}', f = 1.5, at = now() WHERE " + inChunk},
		{"delete", "DELETE FROM pairs WHERE " + inChunk + " AND n % 2 = 0"},
		{"insert", "INSERT INTO pairs (tenant, id, v, doc) SELECT tenant, id + 1, 'new', '{}' FROM pairs WHERE " + inChunk +
			" AND (tenant, id + 1) <= (@hi_tenant, @hi_id)"},
		{"upsert", "INSERT INTO pairs (tenant, id, v) SELECT tenant, id + (id % 4) / 2, 'upserted' FROM pairs WHERE " + inChunk +
			" AND (tenant, id + (id % 4) / 2) <= (@hi_tenant, @hi_id) ON CONFLICT (tenant, id) DO UPDATE SET v = EXCLUDED.v || pairs.v, amount = 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := pairsSetup(t)
			before := b.db.Checksum(t, "pairs", "tenant, id")
			res := b.apply(t, pairsJob("pairs-"+tc.name, tc.statement), backfill.ApplyOptions{})
			if res.RowsChanged == 0 || b.db.Checksum(t, "pairs", "tenant, id") == before {
				t.Fatalf("the job changed nothing: %+v", res)
			}
			plan, rb := b.rollback(t, res.Run.ID, backfill.RollbackOptions{})
			if plan.Conflicts != 0 || plan.Restore != res.RowsChanged || rb.Restored != res.RowsChanged || rb.Conflicts != 0 {
				t.Fatalf("changed %d rows; plan %+v; rollback %+v", res.RowsChanged, plan, rb)
			}
			if got := b.db.Checksum(t, "pairs", "tenant, id"); got != before {
				t.Fatal("the table differs from before the run")
			}
		})
	}
}

// A row changed after the run wrote it is a conflict: the plan and the
// rollback report it by key with its value now, the value the run wrote
// and the value before; the rollback leaves it; --force then overwrites
// it. A set job's row deleted since cannot be put back, forced or not.
func TestRollbackConflictsAreReportedAndForceOverwritesThem(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := context.Background()
	sumBut8 := func() int64 {
		return b.scalar(t, "SELECT sum(hashtextextended(t::text, 0)) % 1000000007 FROM items t WHERE id <> 8")
	}
	before := sumBut8()
	res := b.apply(t, doubleJob(), backfill.ApplyOptions{})
	b.db.Exec(t, "UPDATE items SET val = 999 WHERE id = 7")
	b.db.Exec(t, "DELETE FROM items WHERE id = 8")
	plan, err := b.runner.PlanRollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Restore != 998 || plan.Conflicts != 1 || plan.Deleted != 1 || len(plan.ConflictRows) != 2 {
		t.Fatalf("plan: %+v", plan)
	}
	c := plan.ConflictRows[0]
	if c.Key.String() != "7" || c.Action != "conflict" || c.Now["val"] != "999" || c.Written["val"] != "14" || c.Before["val"] != "7" {
		t.Fatalf("conflict: %+v", c)
	}
	if d := plan.ConflictRows[1]; d.Key.String() != "8" || d.Action != "deleted" || !strings.Contains(d.Reason, "cannot be put back") {
		t.Fatalf("deleted row: %+v", d)
	}
	rb, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Restored != 998 || rb.Conflicts != 1 || rb.Deleted != 1 || len(rb.ConflictRows) != 2 ||
		!strings.Contains(rb.Message, "--force") {
		t.Fatalf("rollback: %+v", rb)
	}
	if v := b.scalar(t, "SELECT val FROM items WHERE id = 7"); v != 999 {
		t.Fatalf("the conflicting row was overwritten: val %d", v)
	}
	q, err := b.runner.Quarantine(ctx, rb.Run.ID)
	if err != nil || len(q) != 2 || q[0].Code != "conflict" || q[0].Key.String() != "7" || q[1].Code != "deleted" {
		t.Fatalf("the rollback's quarantine: %+v, %v", q, err)
	}
	// Again without --force: nothing to do, and it says how to go on.
	if _, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{}); !errors.Is(err, backfill.ErrNothingToRollBack) ||
		!strings.Contains(err.Error(), "--force") {
		t.Fatalf("rollback again: %v", err)
	}
	plan, err = b.runner.PlanRollback(ctx, res.Run.ID, backfill.RollbackOptions{Force: true})
	if err != nil || plan.Pending != 1 || plan.ChunksToUndo != 0 {
		t.Fatalf("forced plan: %+v, %v", plan, err)
	}
	forced, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{Force: true})
	if err != nil || forced.Restored != 1 {
		t.Fatalf("forced rollback: %+v, %v", forced, err)
	}
	if got := sumBut8(); got != before {
		t.Fatal("after --force, the table differs from before the run")
	}
	q, _ = b.runner.Quarantine(ctx, rb.Run.ID)
	if q[0].Resolved == nil || q[1].Resolved != nil {
		t.Fatalf("the forced rollback should resolve the conflict, not the deleted row: %+v", q)
	}
}

// Whole-row images: a row updated by the run and deleted since, and a row
// the run deleted and that was inserted again since, are conflicts;
// --force puts both back as they were before the run.
func TestRollbackOfAStatementJobForcesDeletedAndReinsertedRows(t *testing.T) {
	t.Parallel()
	b := pairsSetup(t)
	ctx := context.Background()
	before := b.db.Checksum(t, "pairs", "tenant, id")
	serial := b.scalar(t, "SELECT serial FROM pairs WHERE (tenant, id) = (1, 10)")
	res := b.apply(t, pairsJob("pairs-mixed", "DELETE FROM pairs WHERE "+inChunk+" AND n = 0"), backfill.ApplyOptions{})
	if res.RowsChanged == 0 {
		t.Fatal("deleted nothing")
	}
	// (1, 10) had n = 0: the run deleted it. Inserted again, with its
	// identity value (an UPDATE cannot restore a GENERATED ALWAYS one).
	b.db.Exec(t, "INSERT INTO pairs (tenant, id, v, serial) OVERRIDING SYSTEM VALUE VALUES (1, 10, 'again', $1)", serial)
	plan, err := b.runner.PlanRollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil || plan.Conflicts != 1 || plan.ConflictRows[0].Key.String() != "(1, 10)" ||
		plan.ConflictRows[0].Now["v"] != "again" || plan.ConflictRows[0].Before["v"] != "v1-5" {
		t.Fatalf("plan: %+v, %v", plan, err)
	}
	if _, err := b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := b.db.Checksum(t, "pairs", "tenant, id"); got != before {
		t.Fatal("the table differs from before the run")
	}
}

// state is what a refused rollback must leave as it was: the table, the
// runs and the audit ledger.
func (b *bundle) state(t *testing.T) string {
	return b.db.Checksum(t, "items", "id") + "|" + fmt.Sprint(b.scalar(t, "SELECT count(*) FROM rewind.backfill_runs")) + "|" +
		fmt.Sprint(b.scalar(t, "SELECT count(*) FROM rewind.audit_log")) + "|" +
		fmt.Sprint(b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"))
}

// Bad input gets a clear error and changes nothing: an unknown run, a run
// still running, chunks out of range or malformed, a run whose job kept no
// before-images, a rollback of a rollback.
func TestRollbackBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	done := b.apply(t, doubleJob(), backfill.ApplyOptions{})
	// The other jobs work on another table, so that the rollback of
	// doubleJob's run finds no conflict.
	b.db.Exec(t, "CREATE TABLE other (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)")
	b.db.Exec(t, "INSERT INTO other (id) SELECT generate_series(1, 300)")
	noImages := &backfill.Job{Name: "no-images", Version: "1", ChunkSize: 100, NoRollback: true,
		Source: &backfill.Table{Name: "other", Key: []string{"id"}}, Set: map[string]string{"n": "n + 1"}}
	opted := b.apply(t, noImages, backfill.ApplyOptions{})

	// A run held by a runner in the middle of a chunk.
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	blocking := processIncrement()
	blocking.Name = "blocking"
	blocking.Source = &backfill.Table{Name: "other", Key: []string{"id"}, Columns: []string{"id", "n"}}
	blocking.Sink = &backfill.TableSink{Table: "other", Key: []string{"id"}}
	process := blocking.Process
	blocking.Process = func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return process(ctx, items)
	}
	applied := make(chan error, 1)
	go func() { _, err := b.runner.Apply(ctx, blocking, backfill.ApplyOptions{}); applied <- err }()
	<-entered
	var running string
	if err := b.db.Pool.QueryRow(ctx, "SELECT id FROM rewind.backfill_runs WHERE job_name = 'blocking'").Scan(&running); err != nil {
		t.Fatal(err)
	}
	before := b.state(t)
	for _, tc := range []struct {
		name string
		id   string
		o    backfill.RollbackOptions
		want error
		says string
	}{
		{"unknown run", "ffffffff-0000", backfill.RollbackOptions{}, backfill.ErrRunNotFound, "no run id starts with ffffffff-0000"},
		{"short id", "ab", backfill.RollbackOptions{}, rewind.ErrInvalidArgument, "at least 4 characters"},
		{"running", running, backfill.RollbackOptions{}, backfill.ErrRunOpen, "is running"},
		{"chunks past the end", done.Run.ID, backfill.RollbackOptions{Chunks: backfill.ChunkRange{From: 4, To: 11}},
			rewind.ErrInvalidArgument, "out of range: run " + done.Run.ID + " has chunks 1 to 3"},
		{"chunk after the last", done.Run.ID, backfill.RollbackOptions{Chunks: backfill.ChunkRange{From: 9}},
			rewind.ErrInvalidArgument, "has chunks 1 to 3"},
		{"rollback: false", opted.Run.ID, backfill.RollbackOptions{}, backfill.ErrNoImages, "rollback: false"},
	} {
		for _, plan := range []bool{true, false} {
			var err error
			if plan {
				_, err = b.runner.PlanRollback(ctx, tc.id, tc.o)
			} else {
				_, err = b.runner.Rollback(ctx, tc.id, tc.o)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s (plan %v): %v, want %v saying %q", tc.name, plan, err, tc.want, tc.says)
			}
			if got := b.state(t); got != before {
				t.Fatalf("%s (plan %v) changed something: %s → %s", tc.name, plan, before, got)
			}
		}
	}
	for _, s := range []string{"", "0", "x", "3-1", "1-x", "-2", "1-2-3", "1,2"} {
		if _, err := backfill.ParseChunkRange(s); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("ParseChunkRange(%q) = %v, want a validation error", s, err)
		}
	}
	for s, want := range map[string]backfill.ChunkRange{"7": {From: 7, To: 7}, "3-9": {From: 3, To: 9}, "3-": {From: 3}} {
		if got, err := backfill.ParseChunkRange(s); err != nil || got != want {
			t.Errorf("ParseChunkRange(%q) = %v, %v", s, got, err)
		}
	}
	close(release)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	rb, err := b.runner.Rollback(ctx, done.Run.ID, backfill.RollbackOptions{Chunks: backfill.ChunkRange{From: 2, To: 2}})
	if err != nil || rb.Restored != 100 {
		t.Fatalf("rollback of chunk 2: %+v, %v", rb, err)
	}
	if _, err := b.runner.Rollback(ctx, rb.Run.ID, backfill.RollbackOptions{}); !errors.Is(err, rewind.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "is a rollback") {
		t.Fatalf("rollback of a rollback: %v", err)
	}
	// Resume of a rollback continues it as Rollback does; this one ended.
	if _, err := b.runner.Resume(ctx, rb.Run.ID, doubleJob(), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunEnded) ||
		!strings.Contains(err.Error(), "rewind backfill rollback "+done.Run.ID) {
		t.Fatalf("resume of a rollback: %v", err)
	}
	// The rest of the run, later: chunk 2 is not undone twice.
	rest, err := b.runner.Rollback(ctx, done.Run.ID, backfill.RollbackOptions{})
	if err != nil || rest.Restored != 200 || rest.Chunks != 2 {
		t.Fatalf("rollback of the rest: %+v, %v", rest, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE done"); n != 0 {
		t.Fatalf("%d rows still done after both rollbacks", n)
	}
}

// A Go job's TableSink rows are imaged whole: rows it updated get their
// values back, rows it inserted (upsert) are deleted.
func TestRollbackOfATableSinkRestoresItsTable(t *testing.T) {
	t.Parallel()
	b := setup(t, 400)
	b.db.Exec(t, "CREATE TABLE totals (id bigint PRIMARY KEY, total int NOT NULL, note text)")
	b.db.Exec(t, "INSERT INTO totals SELECT g, 0, 'old ' || g FROM generate_series(1, 400, 3) g")
	before := b.db.Checksum(t, "totals", "id")
	job := &backfill.Job{Name: "totals", Version: "1", ChunkSize: 64,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			out := make([]backfill.Change, len(items))
			for i, it := range items {
				out[i] = backfill.Change{Key: it.Key, Row: map[string]any{"id": it.Row["id"], "total": it.Row["val"].(int32) * 2}}
			}
			return out, nil
		},
		Sink: &backfill.TableSink{Table: "totals", Key: []string{"id"}, Upsert: true}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	if n := b.scalar(t, "SELECT count(*) FROM totals"); res.RowsChanged == 0 || n != 400 {
		t.Fatalf("apply: %+v, %d rows", res, n)
	}
	_, rb := b.rollback(t, res.Run.ID, backfill.RollbackOptions{})
	if rb.Restored != res.RowsChanged || rb.Conflicts != 0 {
		t.Fatalf("rollback %+v after %d rows written", rb, res.RowsChanged)
	}
	if got := b.db.Checksum(t, "totals", "id"); got != before {
		t.Fatal("totals differs from before the run")
	}
}

// A run that appended events cannot be undone by a rollback: the plan and
// the refusal say so, list the events, and a compensating job hands the
// run's events (and only them) to the application's function.
func TestRollbackOfAStoreSinkRunSaysWhatItCannotUndo(t *testing.T) {
	t.Parallel()
	b := setup(t, 120)
	ctx := context.Background()
	s := openStore(t)
	if _, err := s.Append(ctx, "unrelated", rewind.Any, rewind.Event{Type: "Other", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	job := &backfill.Job{Name: "emit", Version: "1", ChunkSize: 50,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}},
		Process: func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
			var out []backfill.Change
			for _, it := range items {
				out = append(out, backfill.Change{Key: it.Key, Stream: fmt.Sprintf("item-%d", it.Row["id"].(int64)%3),
					Event: rewind.Event{Type: "Backfilled", Data: fmt.Appendf(nil, `{"id":%d}`, it.Row["id"])}})
			}
			return out, nil
		},
		Sink: &backfill.StoreSink{Store: s}}
	res := b.apply(t, job, backfill.ApplyOptions{})
	plan, err := b.runner.PlanRollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if err != nil || plan.Events != 120 || len(plan.Streams) != 3 || plan.Rows != 0 || !strings.Contains(strings.Join(plan.Notes, " "), "cannot take") {
		t.Fatalf("plan: %+v, %v", plan, err)
	}
	_, err = b.runner.Rollback(ctx, res.Run.ID, backfill.RollbackOptions{})
	if !errors.Is(err, backfill.ErrCannotUndo) || !strings.Contains(err.Error(), "appended 120 event(s)") ||
		!strings.Contains(err.Error(), "CompensatingJob") {
		t.Fatalf("rollback: %v", err)
	}
	evs, err := b.runner.AppendedEvents(ctx, res.Run.ID)
	if err != nil || len(evs) != 120 || evs[0].Type != "Backfilled" || evs[0].Chunk != 1 {
		t.Fatalf("appended events: %d, %v", len(evs), err)
	}
	var handed int
	comp, err := b.runner.CompensatingJob(ctx, res.Run.ID, s, func(ctx context.Context, items []backfill.Item) ([]backfill.Change, error) {
		var out []backfill.Change
		for _, it := range items {
			handed++
			if it.Event.Type != "Backfilled" {
				return nil, fmt.Errorf("handed an event the run did not append: %+v", it.Event)
			}
			out = append(out, backfill.Change{Key: it.Key, Stream: it.Event.Stream,
				Event: rewind.Event{Type: "BackfillUndone", Data: it.Event.Data}})
		}
		return out, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cres := b.apply(t, comp, backfill.ApplyOptions{}); cres.RowsChanged != 120 || handed != 120 {
		t.Fatalf("compensating job: %+v, %d events handed", cres, handed)
	}
	if got := s.Info().LastPosition; got != 241 {
		t.Fatalf("the store holds %d events, want 241", got)
	}
}

// A row another transaction changes while a chunk waits to write it: the
// chunk is tried again (its first attempt would have saved the older
// version as the before-image), the run changes the new version, and the
// rollback puts back the other transaction's value, not the older one.
func TestBeforeImageIsTheVersionTheChunkReplaced(t *testing.T) {
	t.Parallel()
	b := setup(t, 300, func(c *backfill.Config) { c.LockTimeout = time.Minute })
	ctx := context.Background()
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
		res, err := b.runner.Apply(ctx, doubleJob(), backfill.ApplyOptions{})
		if err != nil {
			t.Error(err)
		}
		applied <- res
	}()
	// The chunk's UPDATE waits for row 50 (the statement begins with its
	// CTEs; pg_stat_activity keeps its first 1,024 bytes).
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
	if v := b.scalar(t, "SELECT val FROM items WHERE id = 50"); v != 2000 {
		t.Fatalf("row 50 has val %d, want 2000 (the other transaction's value, doubled)", v)
	}
	if k := b.auditKinds(t, res.Run.ID); k["backfill.chunk.retried"] != 1 {
		t.Fatalf("entries: %v", k)
	}
	b.rollback(t, res.Run.ID, backfill.RollbackOptions{})
	if v := b.scalar(t, "SELECT val FROM items WHERE id = 50"); v != 1000 {
		t.Fatalf("row 50 restored to val %d, want 1000", v)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE id <> 50 AND (val <> id % 97 OR done OR n <> 0)"); n != 0 {
		t.Fatalf("%d other rows not restored", n)
	}
}
