package backfill_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/backfill"
)

// statementDouble is doubleJob as a statement job.
func statementDouble() *backfill.Job {
	return &backfill.Job{Name: "double-stmt", Version: "1", ChunkSize: 100,
		Source:    &backfill.Table{Name: "items", Key: []string{"id"}, Where: "NOT done"},
		Statement: "UPDATE items SET val = val * 2, done = true, n = n + 1 WHERE id BETWEEN @lo AND @hi AND NOT done"}
}

// lastEntry returns the last audit entry of kind about run id.
func (b *bundle) lastEntry(t *testing.T, id, kind string) map[string]string {
	t.Helper()
	l, _ := auditpg.New(b.db.Pool, auditpg.Config{})
	var last map[string]string
	for e, err := range l.Entries(context.Background(), auditpg.Filter{Subject: id}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == "backfill."+kind {
			last = e.Attrs
			last["actor"] = e.Origin.Actor
			for k, n := range e.Counts {
				last["count."+k] = fmt.Sprint(n)
			}
		}
	}
	if last == nil {
		t.Fatalf("no %s entry for run %s", kind, id)
	}
	return last
}

func TestVerifyAfterACleanRunFindsNothing(t *testing.T) {
	t.Parallel()
	for _, job := range []func() *backfill.Job{doubleJob, statementDouble} {
		t.Run(job().Name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1000)
			ctx := context.Background()
			res := b.apply(t, job(), backfill.ApplyOptions{})
			before := b.db.Checksum(t, "items", "id")
			rep, err := b.runner.Verify(ctx, res.Run.ID[:8], job(), backfill.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Clean() || rep.Chunks != 10 || rep.Checked != 10 || rep.Discrepant != 0 || rep.Rate != 0 || rep.Interval != nil {
				t.Fatalf("verify of a clean run: %+v", rep)
			}
			if b.db.Checksum(t, "items", "id") != before {
				t.Fatal("verify changed the table")
			}
			e := b.lastEntry(t, res.Run.ID, "run.verified")
			if e["outcome"] != "clean" || e["count.checked"] != "10" || e["actor"] != "tester" {
				t.Fatalf("run.verified entry %v", e)
			}
		})
	}
}

// A Go process job's checkpoints are checked against the audit ledger;
// its output is not recomputed, which the report says.
func TestVerifyOfAGoJobChecksItsCheckpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, 200)
	ctx := context.Background()
	id := b.apply(t, processIncrement(), backfill.ApplyOptions{}).Run.ID
	rep, err := b.runner.Verify(ctx, id, processIncrement(), backfill.VerifyOptions{})
	if err != nil || !rep.Clean() || rep.Checked != 4 || !strings.Contains(strings.Join(rep.Notes, " "), "Go process job") {
		t.Fatalf("verify of a Go job: %+v, %v", rep, err)
	}
	b.db.Exec(t, "UPDATE rewind.backfill_chunks SET rows_changed = 7 WHERE run_id = $1 AND seq = 2", id)
	rep, err = b.runner.Verify(ctx, id, processIncrement(), backfill.VerifyOptions{})
	if f := findings(rep)["2/checkpoint_altered"]; err != nil || len(rep.Findings) != 1 ||
		!strings.Contains(f.Message, "rows_changed 7 in the checkpoint, 50 in the ledger") {
		t.Fatalf("verify of a Go job with an altered checkpoint: %+v, %v", rep.Findings, err)
	}
}

// findings indexes a report's findings by chunk and kind.
func findings(rep *backfill.VerifyReport) map[string]backfill.Finding {
	out := map[string]backfill.Finding{}
	for _, f := range rep.Findings {
		out[fmt.Sprintf("%d/%s", f.Chunk, f.Kind)] = f
	}
	return out
}

func keysOf(f backfill.Finding) []string {
	var out []string
	for _, k := range f.Keys {
		out = append(out, k.String())
	}
	return out
}

// Discrepancies planted after a run are found and named by chunk and key:
// a row changed since, a row matching the where again, a deleted row, a
// tampered checkpoint checksum, a deleted checkpoint.
func TestVerifyFindsPlantedDiscrepancies(t *testing.T) {
	t.Parallel()
	for _, job := range []func() *backfill.Job{doubleJob, statementDouble} {
		t.Run(job().Name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1000)
			ctx := context.Background()
			id := b.apply(t, job(), backfill.ApplyOptions{}).Run.ID
			b.db.Exec(t, "UPDATE items SET val = val + 1 WHERE id = 250")        // chunk 3: changed since
			b.db.Exec(t, "UPDATE items SET done = false WHERE id IN (420, 421)") // chunk 5: matches the where again
			b.db.Exec(t, "UPDATE rewind.backfill_chunks SET output_checksum = '42' WHERE run_id = $1 AND seq = 7", id)
			b.db.Exec(t, "DELETE FROM items WHERE id = 905") // chunk 10: a row gone
			b.db.Exec(t, "DELETE FROM rewind.backfill_chunks WHERE run_id = $1 AND seq = 9", id)
			before := b.db.Checksum(t, "items", "id")
			rep, err := b.runner.Verify(ctx, id, job(), backfill.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b.db.Checksum(t, "items", "id") != before {
				t.Fatal("verify changed the table")
			}
			fs := findings(rep)
			if f := fs["3/changed_since"]; !slices.Equal(keysOf(f), []string{"250"}) || f.Count != 1 ||
				!strings.Contains(f.Message, "not necessarily by a wrong backfill") {
				t.Errorf("chunk 3 changed since: %+v", f)
			}
			if f := fs["3/output_checksum"]; f.Recorded == "" || f.Recorded == f.Now || !strings.Contains(f.Message, "changed since") {
				t.Errorf("chunk 3 output: %+v", f)
			}
			if f := fs["5/still_matches"]; !slices.Equal(keysOf(f), []string{"420", "421"}) || f.Count != 2 {
				t.Errorf("chunk 5 still matching: %+v", f)
			}
			if f := fs["5/changed_since"]; !slices.Equal(keysOf(f), []string{"420", "421"}) {
				t.Errorf("chunk 5 changed since: %+v", f)
			}
			if f := fs["7/checkpoint_altered"]; !strings.Contains(f.Message, "output_checksum 42 in the checkpoint") {
				t.Errorf("chunk 7 tampered checkpoint: %+v", f)
			}
			if f := fs["7/output_checksum"]; f.Recorded != "42" || !strings.Contains(f.Message, "altered") {
				t.Errorf("chunk 7 output: %+v", f)
			}
			if f := fs["10/output_checksum"]; f.Count != 99 || !strings.Contains(f.Message, "deleted") {
				t.Errorf("chunk 10 output after a delete: %+v", f)
			}
			if f := fs["9/checkpoint_missing"]; !strings.Contains(f.Message, "keys 801 … 900") {
				t.Errorf("chunk 9 missing checkpoint: %+v", f)
			}
			// 3, 5, 7 and 10 of the 9 checkpoints left, and 9, whose checkpoint is gone.
			if rep.Chunks != 10 || rep.Checked != 10 || rep.Discrepant != 5 || len(rep.Findings) != 9 {
				for _, f := range rep.Findings {
					t.Logf("%d %s %v %s", f.Chunk, f.Kind, keysOf(f), f.Message)
				}
				t.Fatalf("report: chunks %d checked %d discrepant %d, %d findings", rep.Chunks, rep.Checked, rep.Discrepant, len(rep.Findings))
			}
			if e := b.lastEntry(t, id, "run.verified"); e["outcome"] != "discrepancies" || e["count.findings.changed_since"] != "2" {
				t.Fatalf("run.verified entry %v", e)
			}
		})
	}
}

// A row that already holds the set's new values needs nothing, even where
// the job's where still matches it; one that would be changed again is
// reported.
func TestVerifyReportsOnlyRowsTheSetWouldChange(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	job := func() *backfill.Job {
		return &backfill.Job{Name: "flag", Version: "1", ChunkSize: 100,
			Source: &backfill.Table{Name: "items", Key: []string{"id"}, Where: "val > 50"},
			Set:    map[string]string{"done": "true"}}
	}
	id := b.apply(t, job(), backfill.ApplyOptions{}).Run.ID
	b.db.Exec(t, "UPDATE items SET done = false WHERE id = 60") // val 60 > 50: the set would change it again
	rep, err := b.runner.Verify(ctx, id, job(), backfill.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fs := findings(rep)
	if f := fs["1/still_matches"]; !slices.Equal(keysOf(f), []string{"60"}) || len(rep.Findings) != 3 {
		t.Fatalf("findings %+v", rep.Findings)
	}
}

// A run that skipped failing keys and retried them later verifies clean:
// the quarantined keys belong to their retry chunks.
func TestVerifyOfARunWithRetriedKeysIsClean(t *testing.T) {
	t.Parallel()
	for _, stmt := range []bool{false, true} {
		t.Run(fmt.Sprint("statement=", stmt), func(t *testing.T) {
			t.Parallel()
			b := setup(t, 300)
			ctx := context.Background()
			b.db.Exec(t, "ALTER TABLE items ADD CONSTRAINT small CHECK (val < 150)")
			job := func() *backfill.Job {
				j := doubleJob()
				if stmt {
					j = statementDouble()
				}
				j.OnDataError = backfill.Skip
				return j
			}
			id := b.apply(t, job(), backfill.ApplyOptions{}).Run.ID // rows with val ≥ 75 fail, quarantined
			rep, err := b.runner.Verify(ctx, id, job(), backfill.VerifyOptions{})
			if err != nil || !rep.Clean() {
				t.Fatalf("verify with quarantined keys: %+v, %v", rep, err)
			}
			b.db.Exec(t, "ALTER TABLE items DROP CONSTRAINT small")
			if _, err := b.runner.RetryFailed(ctx, id, job(), backfill.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			rep, err = b.runner.Verify(ctx, id, job(), backfill.VerifyOptions{})
			if err != nil || !rep.Clean() || rep.Checked <= 3 {
				t.Fatalf("verify after retry-failed: %+v, %v", rep, err)
			}
		})
	}
}

func TestVerifySampleGivesARateAndInterval(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := context.Background()
	job := doubleJob()
	job.ChunkSize = 50 // 20 chunks
	id := b.apply(t, job, backfill.ApplyOptions{}).Run.ID
	planted := []int{3, 8, 13, 18} // one row changed in each of these chunks
	for _, c := range planted {
		b.db.Exec(t, "UPDATE items SET val = val + 1 WHERE id = $1", c*50-10)
	}
	rep, err := b.runner.Verify(ctx, id, job, backfill.VerifyOptions{Sample: 50, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Chunks != 20 || rep.Checked != 10 || rep.Seed != 7 || rep.Interval == nil {
		t.Fatalf("sampled report %+v", rep)
	}
	bad := map[int64]bool{}
	for _, f := range rep.Findings {
		if !slices.Contains(planted, int(f.Chunk)) {
			t.Fatalf("finding in a chunk nothing was planted in: %+v", f)
		}
		bad[f.Chunk] = true
	}
	lo, hi := backfill.SampleInterval(int64(len(bad)), 10, 20)
	if rep.Discrepant != int64(len(bad)) || rep.Rate != float64(len(bad))/10 || rep.Interval.Low != lo || rep.Interval.High != hi ||
		rep.Interval.Method != "Wilson score interval" || rep.Interval.Confidence != 0.95 {
		t.Fatalf("rate %v interval %+v, want %d/10 in [%v, %v]", rep.Rate, rep.Interval, len(bad), lo, hi)
	}
	again, err := b.runner.Verify(ctx, id, job, backfill.VerifyOptions{Sample: 50, Seed: 7})
	if err != nil || fmt.Sprint(again.Findings) != fmt.Sprint(rep.Findings) {
		t.Fatalf("the same seed chose another sample: %v", err)
	}
	all, err := b.runner.Verify(ctx, id, job, backfill.VerifyOptions{Sample: 100})
	if err != nil || all.Checked != 20 || all.Discrepant != 4 || all.Rate != 0.2 || all.Interval != nil || all.Seed == 0 {
		t.Fatalf("a 100%% sample: %+v, %v", all, err)
	}
	if e := b.lastEntry(t, id, "run.verified"); e["sample_percent"] != "100" || e["seed"] == "" {
		t.Fatalf("run.verified entry %v", e)
	}
}

// The interval against published values (Newcombe 1998, "Two-sided
// confidence intervals for the single proportion", method 3).
func TestWilsonInterval(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		x, n     int64
		lo, high float64
	}{
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{1, 29, 0.0061, 0.1718},
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
	} {
		lo, hi := backfill.Wilson(tt.x, tt.n, 1.959963984540054)
		if math.Abs(lo-tt.lo) > 0.00005 || math.Abs(hi-tt.high) > 0.00005 {
			t.Errorf("Wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", tt.x, tt.n, lo, hi, tt.lo, tt.high)
		}
	}
	if lo, hi := backfill.Wilson(0, 0, 1.96); lo != 0 || hi != 1 {
		t.Errorf("Wilson of no trials = [%v, %v], want [0, 1]", lo, hi)
	}
	// A sample narrows the interval to what it proves: 1 of 3 chunks of 6
	// bad means at least 1 and at most 4 of the 6 are.
	lo, hi := backfill.SampleInterval(1, 3, 6)
	wlo, whi := backfill.Wilson(1, 3, 1.959963984540054)
	if math.Abs(wlo-0.0615) > 0.00005 || math.Abs(whi-0.7923) > 0.00005 || lo != 1.0/6 || hi != 4.0/6 {
		t.Errorf("SampleInterval(1, 3, 6) = [%v, %v] (Wilson [%v, %v]), want [1/6, 4/6]", lo, hi, wlo, whi)
	}
	if lo, hi := backfill.SampleInterval(0, 18, 20); lo != 0 || hi != 0.1 {
		t.Errorf("SampleInterval(0, 18, 20) = [%v, %v], want [0, 2/20]", lo, hi)
	}
}

func TestVerifyBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, 200)
	ctx := context.Background()
	id := b.apply(t, doubleJob(), backfill.ApplyOptions{}).Run.ID
	entries := func() int64 { return b.scalar(t, "SELECT count(*) FROM rewind.audit_log") }
	n := entries()
	for _, tt := range []struct {
		name string
		id   string
		job  *backfill.Job
		o    backfill.VerifyOptions
		want error
	}{
		{"sample 0 < x", id, doubleJob(), backfill.VerifyOptions{Sample: -5}, rewind.ErrInvalidArgument},
		{"sample over 100", id, doubleJob(), backfill.VerifyOptions{Sample: 150}, rewind.ErrInvalidArgument},
		{"sample NaN", id, doubleJob(), backfill.VerifyOptions{Sample: math.NaN()}, rewind.ErrInvalidArgument},
		{"unknown run", "ffffffff", doubleJob(), backfill.VerifyOptions{}, backfill.ErrRunNotFound},
		{"another job", id, countJob(100), backfill.VerifyOptions{}, rewind.ErrInvalidArgument},
		{"another version of the job", id, func() *backfill.Job { j := doubleJob(); j.Set["n"] = "n + 2"; return j }(),
			backfill.VerifyOptions{}, backfill.ErrJobChanged},
	} {
		if _, err := b.runner.Verify(ctx, tt.id, tt.job, tt.o); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if entries() != n {
		t.Fatal("bad input wrote to the ledger")
	}
}
