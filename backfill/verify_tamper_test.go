package backfill_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/backfill"
)

// tamperedVerify applies job to 1000 rows, runs tamper (SQL with $1 the
// run id) and then change, and verifies.
func tamperedVerify(t *testing.T, job func() *backfill.Job, tamper, change string) (*backfill.VerifyReport, map[string]backfill.Finding) {
	t.Helper()
	b := setup(t, 1000)
	id := b.apply(t, job(), backfill.ApplyOptions{}).Run.ID
	b.db.Exec(t, tamper, id)
	if change != "" {
		b.db.Exec(t, change)
	}
	rep, err := b.runner.Verify(context.Background(), id, job(), backfill.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fs := findings(rep)
	for _, f := range rep.Findings {
		t.Logf("%d %s %v %s", f.Chunk, f.Kind, keysOf(f), f.Message)
	}
	return rep, fs
}

// A checkpoint's transaction ids are recorded in its hash-chained audit
// entry: blanking or moving them is reported as an altered checkpoint, and
// the rows changed since are still found, with the entry's ids; a run of
// this version is never taken for one of an earlier version.
func TestVerifyCatchesAlteredTransactionIds(t *testing.T) {
	t.Parallel()
	for name, tamper := range map[string]string{
		"blanked":       "UPDATE rewind.backfill_chunks SET xid = NULL, xid_end = NULL WHERE run_id = $1 AND seq = 3",
		"xid_end moved": "UPDATE rewind.backfill_chunks SET xid_end = xid_end + 1000000 WHERE run_id = $1 AND seq = 3",
		"xid moved":     "UPDATE rewind.backfill_chunks SET xid = xid - 5 WHERE run_id = $1 AND seq = 3",
	} {
		for _, job := range []func() *backfill.Job{doubleJob, statementDouble} {
			t.Run(name+"/"+job().Name, func(t *testing.T) {
				t.Parallel()
				rep, fs := tamperedVerify(t, job, tamper, "UPDATE items SET val = val + 1 WHERE id = 250")
				if f := fs["3/checkpoint_altered"]; !strings.Contains(f.Message, "xid") {
					t.Errorf("chunk 3 altered transaction ids: %+v", f)
				}
				if f := fs["3/changed_since"]; !slices.Equal(keysOf(f), []string{"250"}) {
					t.Errorf("chunk 3 changed since: %+v", f)
				}
				if strings.Contains(strings.Join(rep.Notes, " "), "earlier version") {
					t.Errorf("a run of this version taken for an earlier one: %v", rep.Notes)
				}
				if rep.Discrepant != 1 {
					t.Errorf("discrepant chunks %d, want 1", rep.Discrepant)
				}
			})
		}
	}
}

// A quarantine row the audit ledger does not record (no chunk.skipped
// entry names the key) is reported and does not hide its key.
func TestVerifyDoesNotTrustAPlantedQuarantine(t *testing.T) {
	t.Parallel()
	for _, job := range []func() *backfill.Job{doubleJob, statementDouble} {
		t.Run(job().Name, func(t *testing.T) {
			t.Parallel()
			_, fs := tamperedVerify(t, job, `INSERT INTO rewind.backfill_quarantine (run_id, key, chunk_seq, code, error)
				VALUES ($1, '{250}', 3, '23514', 'x')`, "UPDATE items SET val = val + 1, done = false WHERE id = 250")
			if f := fs["3/quarantine_unaudited"]; !slices.Equal(keysOf(f), []string{"250"}) {
				t.Errorf("chunk 3 planted quarantine: %+v", f)
			}
			if f := fs["3/changed_since"]; !slices.Equal(keysOf(f), []string{"250"}) {
				t.Errorf("chunk 3 changed since: %+v", f)
			}
			if f := fs["3/still_matches"]; !slices.Equal(keysOf(f), []string{"250"}) {
				t.Errorf("chunk 3 still matching: %+v", f)
			}
		})
	}
}

// A chunk whose checkpoint is gone counts among the run's chunks, as
// checked and discrepant.
func TestVerifyCountsAMissingCheckpoint(t *testing.T) {
	t.Parallel()
	rep, fs := tamperedVerify(t, doubleJob, "DELETE FROM rewind.backfill_chunks WHERE run_id = $1 AND seq = 3", "")
	if _, ok := fs["3/checkpoint_missing"]; !ok || len(rep.Findings) != 1 {
		t.Fatalf("findings %+v", rep.Findings)
	}
	if rep.Chunks != 10 || rep.Checked != 10 || rep.Discrepant != 1 || rep.Rate != 0.1 {
		t.Fatalf("chunks %d checked %d discrepant %d rate %v", rep.Chunks, rep.Checked, rep.Discrepant, rep.Rate)
	}
}
