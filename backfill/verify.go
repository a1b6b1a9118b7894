package backfill

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit/auditpg"
)

// Verify re-reads a run's committed chunks and compares what it finds
// with what the ledger recorded, without writing to the target (every
// query runs in a read-only transaction that is rolled back). For each
// chunk it checks:
//
//   - the checkpoint against the chunk's chunk.committed audit entry (the
//     audit ledger is hash-chained, the checkpoint table is not): a
//     checkpoint altered after its commit differs from its entry, and the
//     quarantine's keys against its chunk.skipped entries;
//   - which rows of the chunk's key range were written after the chunk
//     committed, by their xmin (the id of the transaction that wrote the
//     row's current version) compared with the chunk's transaction ids,
//     recorded with its checkpoint and in its audit entry (the entry's are
//     used): such a row was changed since, by someone, which is not
//     necessarily the backfill's fault;
//   - the output checksum, recomputed over the chunk's key range as the
//     table is now: for a set job, over the rows whose current version the
//     chunk's transaction wrote; for a statement job, over every row of the
//     range, as the chunk computed it;
//   - the job's where over the chunk's key range (the first chunk's from
//     the lowest key): a finished range must match no row. For a set job
//     a row matching the where but already holding its new values needs
//     nothing and is not reported (as the chunk would not write it).
//
// Input checksums are not recomputed: a chunk overwrites the rows it
// reads, so their values before it are gone (see inputChecksum).

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Sample checks a random sample of that percentage (0 < Sample ≤ 100)
	// of the run's chunks, and reports the discrepancy rate with a 95%
	// confidence interval. Zero checks every chunk.
	Sample float64
	// Seed seeds the sample's choice, to repeat a sample. Zero picks one,
	// which the report gives.
	Seed uint64
	// MaxKeys bounds the keys listed per chunk and kind of finding (their
	// number is always given). Defaults to 20.
	MaxKeys int
}

func (o *VerifyOptions) check() error {
	if o.Sample != 0 && !(o.Sample > 0 && o.Sample <= 100) || math.IsNaN(o.Sample) {
		return &rewind.ValidationError{Field: "sample", Value: strconv.FormatFloat(o.Sample, 'f', -1, 64),
			Reason: "must be a percentage of the run's chunks above 0 and at most 100, such as 10"}
	}
	if o.MaxKeys < 0 {
		return &rewind.ValidationError{Field: "max keys", Value: strconv.Itoa(o.MaxKeys), Reason: "must be 1 or more"}
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = 20
	}
	if o.Sample != 0 && o.Seed == 0 {
		o.Seed = rand.Uint64() | 1
	}
	return nil
}

// The kinds of findings.
const (
	// FindingChangedSince: rows of the chunk's range were written after
	// the chunk committed. A later write, not necessarily a wrong backfill.
	FindingChangedSince = "changed_since"
	// FindingOutput: the output checksum recomputed now differs from the
	// checkpoint's.
	FindingOutput = "output_checksum"
	// FindingStillMatches: rows of a finished range still match the job's
	// where.
	FindingStillMatches = "still_matches"
	// FindingCheckpoint: the checkpoint differs from its audit entry: it
	// was altered after it committed.
	FindingCheckpoint = "checkpoint_altered"
	// FindingNoAuditEntry: a checkpoint has no chunk.committed entry.
	FindingNoAuditEntry = "audit_entry_missing"
	// FindingNoCheckpoint: an audit entry records a chunk whose checkpoint
	// is gone (a resume would apply its range again).
	FindingNoCheckpoint = "checkpoint_missing"
	// FindingInput: the input checksum recomputed from before-images
	// differs from the checkpoint's (see inputChecksum).
	FindingInput = "input_checksum"
	// FindingAuditLedger: the audit ledger's chain is broken.
	FindingAuditLedger = "audit_ledger"
	// FindingQuarantine: the quarantine holds a key of the chunk that no
	// chunk.skipped audit entry records: it was added after the fact, and
	// verify does not exempt that key.
	FindingQuarantine = "quarantine_unaudited"
)

// Finding is one discrepancy.
type Finding struct {
	// Chunk is the chunk's sequence number; 0 for a finding about the run.
	Chunk int64  `json:"chunk"`
	Retry bool   `json:"retry,omitempty"` // a chunk of retry-failed
	Kind  string `json:"kind"`
	// Lo and Hi are the chunk's key range.
	Lo Key `json:"lo,omitempty"`
	Hi Key `json:"hi,omitempty"`
	// Keys are the keys concerned (at most VerifyOptions.MaxKeys), Count
	// how many there are.
	Keys  []Key `json:"keys,omitempty"`
	Count int64 `json:"count,omitempty"`
	// Recorded and Now are the values compared, when there are values.
	Recorded string `json:"recorded,omitempty"`
	Now      string `json:"now,omitempty"`
	Message  string `json:"message"`
}

// Interval is a confidence interval for a proportion.
type Interval struct {
	Low        float64 `json:"low"`
	High       float64 `json:"high"`
	Confidence float64 `json:"confidence"`
	Method     string  `json:"method"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	RunID      string `json:"run_id"`
	Job        string `json:"job"`
	JobVersion string `json:"job_version"`
	State      State  `json:"state"`
	// Chunks is the number of chunks the run committed, Checked the
	// number verified.
	Chunks  int64 `json:"chunks"`
	Checked int64 `json:"checked"`
	// Sample is the percentage of chunks asked for (100 without
	// sampling), Seed the seed of the sample's choice.
	Sample float64 `json:"sample_percent"`
	Seed   uint64  `json:"seed,omitempty"`
	// Discrepant is the number of checked chunks with a finding, Rate
	// Discrepant / Checked.
	Discrepant int64   `json:"discrepant_chunks"`
	Rate       float64 `json:"discrepancy_rate"`
	// Interval is Rate's 95% confidence interval for all the run's chunks,
	// when a sample was checked.
	Interval *Interval `json:"interval,omitempty"`
	Findings []Finding `json:"findings"`
	Notes    []string  `json:"notes,omitempty"`
}

// Clean reports whether nothing was found.
func (v *VerifyReport) Clean() bool { return len(v.Findings) == 0 }

// checkpoint is a chunk's checkpoint as stored.
type checkpoint struct {
	seq         int64
	retry       bool
	b           Bounds
	cr          chunkResult
	xid, xidEnd *int64 // nil for chunks of earlier versions
}

// verifier verifies one run.
type verifier struct {
	r      *Runner
	p      *prepared
	t      *Table
	run    *Run
	o      VerifyOptions
	rep    *VerifyReport
	first  int64             // the run's first (non-retry) chunk
	quar   map[int64][]Key   // quarantined keys by chunk, resolved or not
	unres  map[int64][]Key   // those still unresolved
	retied map[int64][]Key   // quarantined keys a retry chunk rewrote since, by chunk
	noted  map[string]bool   // notes already given
	audit  map[int64][]entry // chunk.committed entries by chunk
	forged map[int64][]Key   // quarantined keys no chunk.skipped entry records, by chunk
	gone   int64             // chunks the audit ledger records whose checkpoint is gone
	// otherHash are the chunks whose checksums hash rows as another
	// version than the run's start did (see output).
	otherHash []int64
}

type entry struct {
	attrs  map[string]string
	counts map[string]int64
}

// Verify checks run id's committed chunks against the ledger and the table
// as it is now (see the comment at the top of verify.go). job must be the
// run's job (same hash). It writes nothing to the target and records a
// run.verified audit entry with the outcome. Discrepancies are reported,
// not returned as an error.
func (r *Runner) Verify(ctx context.Context, id string, job *Job, o VerifyOptions) (*VerifyReport, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if run.JobName != job.Name {
		return nil, &rewind.ValidationError{Field: "job", Value: job.Name, Reason: fmt.Sprintf("run %s belongs to job %s", run.ID, run.JobName)}
	}
	p, err := r.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	if run.JobHash != p.hash {
		return nil, fmt.Errorf("%w: run %s ran another version of job %s than the one given (%s); verify checks a run "+
			"against its own job: give the job file it ran with", ErrJobChanged, run.ID, job.Name,
			strings.Join(jobDiff(run.Job, p.job.Describe()), "; "))
	}
	if err := checkRecorded(run, p); err != nil {
		return nil, err
	}
	v := &verifier{r: r, p: p, run: run, o: o, noted: map[string]bool{},
		rep: &VerifyReport{RunID: run.ID, Job: run.JobName, JobVersion: run.JobVersion, State: run.State, Sample: 100,
			Seed: o.Seed, Findings: []Finding{}}}
	switch p.ch.(type) {
	case *setChange, *statementChange: // jobs that write their own table
		v.t = p.src.(*Table)
	}
	if o.Sample != 0 {
		v.rep.Sample = o.Sample
	}
	if err := v.verify(ctx); err != nil {
		return nil, err
	}
	return v.rep, v.record(ctx)
}

func (v *verifier) verify(ctx context.Context) error {
	cps, err := v.checkpoints(ctx)
	if err != nil {
		return err
	}
	if err := v.readLedger(ctx, cps); err != nil {
		return err
	}
	// A chunk whose checkpoint is gone counts as checked and discrepant,
	// sampled or not (readLedger reported it).
	v.rep.Chunks, v.rep.Checked, v.rep.Discrepant = int64(len(cps))+v.gone, v.gone, v.gone
	if err := v.r.fillRollback(ctx, v.run); err != nil {
		return err
	}
	for _, rb := range v.run.Rollbacks {
		if rb.Undone > 0 {
			v.note(fmt.Sprintf("rollback %s put back %d chunk(s) of this run: their rows show as changed since, and as still "+
				"matching the where", rb.Run, rb.Undone))
		}
	}
	if v.run.State == Running {
		v.note("the run is being applied: chunks committed after this verify began are not checked")
	}
	if len(cps) == 0 {
		if v.gone == 0 {
			v.note("the run committed no chunk: nothing to verify")
		} else {
			v.rep.Rate = 1
		}
		return nil
	}
	chosen := cps
	if v.o.Sample != 0 {
		chosen = sample(cps, v.o.Sample, v.o.Seed)
	}
	bad := map[int64]bool{}
	for _, c := range chosen {
		found, err := v.chunk(ctx, c)
		if err != nil {
			return err
		}
		if len(found) > 0 {
			bad[c.seq] = true
		}
		v.rep.Findings = append(v.rep.Findings, found...)
	}
	if n := len(v.otherHash); n > 0 {
		list := make([]string, min(n, 5))
		for i := range list {
			list[i] = fmt.Sprint(v.otherHash[i])
		}
		if n > len(list) {
			list = append(list, "…")
		}
		v.note(fmt.Sprintf("%d chunk(s) hash rows as another version than the run's start did (whole rows against each "+
			"column by its type, see Checksums: the run was continued by that version), and match that way: chunk(s) %s",
			n, strings.Join(list, ", ")))
	}
	v.rep.Checked += int64(len(chosen))
	v.rep.Discrepant += int64(len(bad))
	v.rep.Rate = float64(v.rep.Discrepant) / float64(v.rep.Checked)
	if v.rep.Checked < v.rep.Chunks {
		lo, hi := SampleInterval(v.rep.Discrepant, v.rep.Checked, v.rep.Chunks)
		v.rep.Interval = &Interval{Low: lo, High: hi, Confidence: 0.95, Method: "Wilson score interval"}
	}
	return nil
}

// sample chooses pct% of cps (at least one) at random with seed, in
// sequence order.
func sample(cps []checkpoint, pct float64, seed uint64) []checkpoint {
	n := max(1, int(math.Ceil(float64(len(cps))*pct/100)))
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	idx := rng.Perm(len(cps))[:min(n, len(cps))]
	slices.Sort(idx)
	out := make([]checkpoint, len(idx))
	for i, j := range idx {
		out[i] = cps[j]
	}
	return out
}

// z95 is the standard normal quantile for a two-sided 95% interval.
const z95 = 1.959963984540054

// Wilson returns the Wilson score interval of a proportion of x successes
// in n trials, at the confidence whose normal quantile is z (1.96 for
// 95%). Unlike the normal approximation (p ± z·√(p(1−p)/n)) it stays
// within [0, 1] and does not collapse to a point when x is 0 or n, which
// is the common case of a verify that finds nothing. It treats the chunks
// checked as drawn with replacement, so for a sample that is a large part
// of a run it is wider than it needs to be (conservative).
func Wilson(x, n int64, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nf, p := float64(n), float64(x)/float64(n)
	z2 := z * z
	center := (p + z2/(2*nf)) / (1 + z2/nf)
	half := z / (1 + z2/nf) * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	lo, hi = max(0, center-half), min(1, center+half)
	if x == 0 { // exactly, not a rounding error away from it
		lo = 0
	}
	if x == n {
		hi = 1
	}
	return lo, hi
}

// SampleInterval is the 95% confidence interval of the proportion of a
// run's n chunks that have a discrepancy, when x of a random sample of k of
// them have one: the Wilson score interval, narrowed to what the sample
// proves whatever the unchecked chunks hold (at least x of n, at most
// x + n − k of n). The narrowing keeps the interval's coverage, since the
// true proportion always lies within those bounds.
func SampleInterval(x, k, n int64) (lo, hi float64) {
	lo, hi = Wilson(x, k, z95)
	if n > 0 {
		lo = max(lo, float64(x)/float64(n))
		hi = min(hi, float64(x+n-k)/float64(n))
	}
	return lo, hi
}

func (v *verifier) note(n string) {
	if !v.noted[n] {
		v.noted[n] = true
		v.rep.Notes = append(v.rep.Notes, n)
	}
}

// checkpoints reads the run's checkpoints. The transaction ids are read
// through to_jsonb so that a checkpoint table of an earlier version,
// without them, reads as NULL.
func (v *verifier) checkpoints(ctx context.Context) ([]checkpoint, error) {
	rows, err := v.r.ledger.work.Query(ctx, `SELECT seq, retry, after_key, lo, hi, rows_seen, rows_changed, rows_skipped,
		input_checksum, output_checksum, (to_jsonb(c)->>'xid')::bigint, (to_jsonb(c)->>'xid_end')::bigint
		FROM rewind.backfill_chunks c WHERE run_id = $1 ORDER BY seq`, v.run.ID)
	if err != nil {
		return nil, fmt.Errorf("read the checkpoints of run %s: %w", v.run.ID, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (checkpoint, error) {
		var c checkpoint
		var after, lo, hi []string
		err := row.Scan(&c.seq, &c.retry, &after, &lo, &hi, &c.cr.Seen, &c.cr.Changed, &c.cr.Skipped, &c.cr.In, &c.cr.Out,
			&c.xid, &c.xidEnd)
		c.b = Bounds{After: after, Lo: lo, Hi: hi}
		return c, err
	})
}

// readLedger reads the run's quarantine and chunk.committed entries,
// checks the audit chain, and reports the chunks the entries record whose
// checkpoint is gone.
func (v *verifier) readLedger(ctx context.Context, cps []checkpoint) error {
	v.audit = map[int64][]entry{}
	skipped := map[int64]string{} // the keys chunk.skipped entries record, by chunk, each between spaces
	for e, err := range v.r.ledger.audit.Entries(ctx, auditpg.Filter{Subject: v.run.ID}) {
		if err != nil {
			return fmt.Errorf("read the audit entries of run %s: %w", v.run.ID, err)
		}
		switch e.Kind {
		case "backfill.chunk.committed":
			seq := e.Counts["chunk"]
			v.audit[seq] = append(v.audit[seq], entry{attrs: e.Attrs, counts: e.Counts})
		case "backfill.chunk.skipped":
			skipped[e.Counts["chunk"]] += " " + e.Attrs["keys"] + " "
		}
	}
	qs, err := v.r.ledger.quarantined(ctx, v.run.ID, false)
	if err != nil {
		return err
	}
	v.quar, v.unres, v.retied, v.forged = map[int64][]Key{}, map[int64][]Key{}, map[int64][]Key{}, map[int64][]Key{}
	for _, q := range qs {
		// A key is exempt only as far as the hash-chained audit ledger
		// records it skipped by its chunk: a row added to the quarantine
		// table after the fact would otherwise hide it.
		if !strings.Contains(skipped[q.Chunk], " "+q.Key.String()+" ") {
			v.forged[q.Chunk] = append(v.forged[q.Chunk], q.Key)
			continue
		}
		v.quar[q.Chunk] = append(v.quar[q.Chunk], q.Key)
		if q.Resolved == nil {
			v.unres[q.Chunk] = append(v.unres[q.Chunk], q.Key)
		} else {
			v.retied[q.Chunk] = append(v.retied[q.Chunk], q.Key)
		}
	}
	v.first = 0
	have := map[int64]bool{}
	for _, c := range cps {
		have[c.seq] = true
		if !c.retry && v.first == 0 {
			v.first = c.seq
		}
	}
	for _, seq := range slices.Sorted(mapKeys(v.audit)) {
		if !have[seq] {
			v.gone++
			v.rep.Findings = append(v.rep.Findings, Finding{Chunk: seq, Kind: FindingNoCheckpoint,
				Message: fmt.Sprintf("the audit ledger records chunk %d committed (keys %s … %s), but its checkpoint is gone: "+
					"resuming the run would apply that range again", seq, v.audit[seq][0].attrs["lo"], v.audit[seq][0].attrs["hi"])})
		}
	}
	if _, err := v.r.ledger.audit.Verify(ctx); err != nil {
		v.rep.Findings = append(v.rep.Findings, Finding{Kind: FindingAuditLedger,
			Message: "the audit ledger's chain is broken, so its entries cannot vouch for the checkpoints: " + err.Error()})
	}
	return nil
}

func mapKeys[V any](m map[int64]V) func(func(int64) bool) {
	return func(yield func(int64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// chunk verifies one chunk, in a read-only transaction whose snapshot all
// its queries share.
func (v *verifier) chunk(ctx context.Context, c checkpoint) ([]Finding, error) {
	var found []Finding
	add := func(f Finding) {
		f.Chunk, f.Retry, f.Lo, f.Hi = c.seq, c.retry, v.mask(c.b.Lo), v.mask(c.b.Hi)
		found = append(found, f)
	}
	f, ids, ok := v.againstAudit(c)
	if ok {
		add(f)
	}
	if ids != nil { // the ledger's ids, which a checkpoint altered since cannot move
		c.xid, c.xidEnd = &ids.xid, &ids.xidEnd
	}
	if keys := v.forged[c.seq]; len(keys) > 0 {
		add(Finding{Kind: FindingQuarantine, Keys: v.maskAll(keys[:min(len(keys), v.o.MaxKeys)]), Count: int64(len(keys)),
			Message: fmt.Sprintf("%d key(s) of the chunk are in the quarantine, but no chunk.skipped audit entry records "+
				"them skipped: added to the quarantine after the fact; they are checked as any other key", len(keys))})
	}
	if v.t == nil {
		v.note("a Go process job's output is not recomputed (its checksums are over what the function returned), nor " +
			"its source's where checked: only the checkpoints against the audit ledger are")
		return found, nil
	}
	tx, err := v.r.cfg.DB.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return nil, fmt.Errorf("verify chunk %d: %w", c.seq, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var changed int64
	if c.xid == nil || c.xidEnd == nil {
		v.note("chunks committed by an earlier version recorded no transaction ids: their output checksums are not " +
			"recomputed, nor the rows changed since them found; their checkpoints and where are checked")
	} else {
		keys, n, err := v.changedSince(ctx, tx, c)
		if err != nil {
			return nil, fmt.Errorf("verify chunk %d: %w", c.seq, err)
		}
		if changed = n; n > 0 {
			add(Finding{Kind: FindingChangedSince, Keys: keys, Count: n, Message: fmt.Sprintf("%d row(s) of the chunk's key "+
				"range were written after it committed, by a later transaction: changed since the backfill, not "+
				"necessarily by a wrong backfill (an application's update, another job)", n)})
		}
		f, ok, err := v.output(ctx, tx, c, changed)
		if err != nil {
			return nil, fmt.Errorf("verify chunk %d: %w", c.seq, err)
		}
		if ok {
			add(f)
		}
		sum, ok, err := v.inputChecksum(ctx, tx, c)
		switch {
		case err != nil:
			return nil, fmt.Errorf("verify chunk %d: %w", c.seq, err)
		case !ok:
			v.note("input checksums are not recomputed: a chunk overwrites the rows it reads, so their values before it are gone")
		case sum != c.cr.In:
			add(Finding{Kind: FindingInput, Recorded: c.cr.In, Now: sum, Message: "the input checksum recomputed from the " +
				"before-images differs from the checkpoint's"})
		}
	}
	keys, n, err := v.stillMatching(ctx, tx, c)
	if err != nil {
		return nil, fmt.Errorf("verify chunk %d: %w", c.seq, err)
	}
	if n > 0 {
		add(Finding{Kind: FindingStillMatches, Keys: keys, Count: n, Message: fmt.Sprintf("%d row(s) of the chunk's "+
			"finished key range still match the job's where (they still need the change): written since the chunk "+
			"committed, or not changed by it", n)})
	}
	return found, nil
}

// againstAudit compares c with its chunk.committed audit entries. ids are
// the transaction ids the entry records (nil for an entry of an earlier
// version, which recorded none): verify uses them rather than the
// checkpoint's, which is not hash-chained.
func (v *verifier) againstAudit(c checkpoint) (f Finding, ids *txIDs, found bool) {
	entries := v.audit[c.seq]
	if len(entries) == 0 {
		return Finding{Kind: FindingNoAuditEntry, Message: fmt.Sprintf("chunk %d has no chunk.committed audit entry "+
			"(with --ledger-dsn, an entry the process could not write is added by the run's next resume)", c.seq)}, nil, true
	}
	var diffs []string
	for _, e := range entries {
		diffs = diffs[:0]
		cmp := func(field, checkpoint, ledger string) {
			if checkpoint != ledger {
				diffs = append(diffs, fmt.Sprintf("%s %s in the checkpoint, %s in the ledger", field, checkpoint, ledger))
			}
		}
		cmp("input_checksum", c.cr.In, e.attrs["input_checksum"])
		cmp("output_checksum", c.cr.Out, e.attrs["output_checksum"])
		cmp("lo", c.b.Lo.String(), e.attrs["lo"])
		cmp("hi", c.b.Hi.String(), e.attrs["hi"])
		cmp("after", c.b.After.String(), e.attrs["after"])
		cmp("rows_seen", fmt.Sprint(c.cr.Seen), fmt.Sprint(e.counts["rows_seen"]))
		cmp("rows_changed", fmt.Sprint(c.cr.Changed), fmt.Sprint(e.counts["rows_changed"]))
		cmp("rows_skipped", fmt.Sprint(c.cr.Skipped), fmt.Sprint(e.counts["rows_skipped"]))
		eids := e.ids()
		if eids != nil {
			cmp("xid", idText(c.xid), fmt.Sprint(eids.xid))
			cmp("xid_end", idText(c.xidEnd), fmt.Sprint(eids.xidEnd))
			if ids == nil {
				ids = eids
			}
		}
		if len(diffs) == 0 {
			return Finding{}, eids, false
		}
	}
	return Finding{Kind: FindingCheckpoint, Message: fmt.Sprintf("chunk %d's checkpoint differs from its audit entry, "+
		"so it was altered after it committed: %s", c.seq, v.p.job.Params.redactor()(strings.Join(diffs, "; ")))}, ids, true
}

// ids returns the transaction ids a chunk.committed entry records; nil for
// an entry of a version that recorded none.
func (e entry) ids() *txIDs {
	x, err1 := strconv.ParseInt(e.attrs["xid"], 10, 64)
	xe, err2 := strconv.ParseInt(e.attrs["xid_end"], 10, 64)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &txIDs{xid: x, xidEnd: xe}
}

func idText(id *int64) string {
	if id == nil {
		return "NULL"
	}
	return strconv.FormatInt(*id, 10)
}

// fullXmin is the 64-bit id of the transaction that wrote the current
// version of row t (its xmin, widened with the epoch of the snapshot's
// next id, _rw_ref.r). Ids 1 and 2 (bootstrap, frozen) read as 0: older
// than any chunk. A chunk older than about 2^32 transactions would be
// read wrongly (see docs/backfill.md).
const fullXmin = `(CASE WHEN t.xmin::text::bigint < 3 THEN 0 ELSE _rw_ref.r - ((((_rw_ref.r - t.xmin::text::bigint) % 4294967296) + 4294967296) % 4294967296) END)`

// refFrom is the FROM clause of a query that uses fullXmin.
func (v *verifier) refFrom() string {
	return v.t.ref + " t CROSS JOIN (SELECT txid_snapshot_xmax(txid_current_snapshot()) AS r) _rw_ref"
}

// changedSince finds the rows of c's key range written after c committed:
// by a transaction whose id is at or above c's xid_end. Keys c
// quarantined are left out: a retry chunk of their own writes them.
func (v *verifier) changedSince(ctx context.Context, tx pgx.Tx, c checkpoint) ([]Key, int64, error) {
	a := with(v.p.args)
	a["_rw_xe"] = *c.xidEnd
	cond := fmt.Sprintf("%s AND %s >= @_rw_xe AND %s", v.t.rangeCond(a, c.b), fullXmin, v.keyNotIn(a, v.quar[c.seq]))
	return v.keys(ctx, tx, a, v.refFrom(), cond)
}

// output recomputes c's output checksum now; ok when it differs from the
// checkpoint's. changed is the number of rows found changed since.
func (v *verifier) output(ctx context.Context, tx pgx.Tx, c checkpoint, changed int64) (Finding, bool, error) {
	a := with(v.p.args)
	var n int64
	var sum, what string
	switch ch := v.p.ch.(type) {
	case *setChange:
		a["_rw_x"], a["_rw_xe"] = *c.xid, *c.xidEnd
		sumAs := func(legacy bool) (int64, string, error) {
			q := fmt.Sprintf("SELECT count(*), coalesce(sum(%s), 0)::text FROM %s WHERE %s AND %s >= @_rw_x AND %s < @_rw_xe",
				ch.hashRowAs(legacy, ch.checksumCols("t.")), v.refFrom(), v.t.rangeCond(a, c.b), fullXmin, fullXmin)
			var n int64
			var sum string
			err := tx.QueryRow(ctx, q, bindArgs(a)).Scan(&n, &sum)
			return n, sum, err
		}
		var err error
		if n, sum, err = sumAs(ch.legacy); err != nil {
			return Finding{}, false, err
		}
		if sum == c.cr.Out && n == c.cr.Changed {
			return Finding{}, false, nil
		}
		// A chunk that another version applied (a run continued with
		// --allow-changed-job by a version before per-column checksums, or
		// after) hashed its rows that version's way.
		if n == c.cr.Changed {
			if _, other, err := sumAs(!ch.legacy); err != nil {
				return Finding{}, false, err
			} else if other == c.cr.Out {
				v.otherHash = append(v.otherHash, c.seq)
				return Finding{}, false, nil
			}
		}
		what = fmt.Sprintf("the rows whose current version the chunk wrote (%d of the %d it wrote) sum to %s over the key "+
			"and set columns; the checkpoint recorded %s", n, c.cr.Changed, sum, c.cr.Out)
	case *statementChange:
		if keys := v.retied[c.seq]; len(keys) > 0 {
			v.note(fmt.Sprintf("chunk %d: output checksum not compared: retry-failed rewrote key(s) %s of its range since",
				c.seq, v.mask(keys[0])))
			return Finding{}, false, nil
		}
		var err error
		if n, sum, err = v.t.rangeSum(ctx, tx, c.b); err != nil {
			return Finding{}, false, err
		}
		if sum == c.cr.Out {
			return Finding{}, false, nil
		}
		what = fmt.Sprintf("the chunk's key range (%d rows) sums to %s over whole rows; the checkpoint recorded %s", n, sum, c.cr.Out)
	default:
		return Finding{}, false, nil
	}
	why := "rows the chunk wrote were changed since (above): not necessarily a wrong backfill"
	if changed == 0 {
		why = "no row was found written since, so rows the chunk wrote were deleted, changed by a transaction that " +
			"began before the chunk committed, or the checkpoint's checksum was altered"
	}
	return Finding{Kind: FindingOutput, Recorded: c.cr.Out, Now: sum, Count: n,
		Message: "the output checksum differs: " + what + "; " + why}, true, nil
}

// stillMatching finds the rows of c's range that still match the job's
// where: for a set job, those the set would still change. The first
// chunk's range starts at the lowest key; keys c quarantined and that are
// still failing are left out (they are expected to match).
func (v *verifier) stillMatching(ctx context.Context, tx pgx.Tx, c checkpoint) ([]Key, int64, error) {
	a := with(v.p.args)
	b := c.b
	if !c.retry && c.seq == v.first {
		b = Bounds{Hi: c.b.Hi}
	}
	cond := v.t.rangeCond(a, b) + " AND " + v.t.where()
	if s, ok := v.p.ch.(*setChange); ok && !s.volatile {
		_, differs := s.assignments()
		cond += " AND " + differs
	}
	cond += " AND " + v.keyNotIn(a, v.unres[c.seq])
	return v.keys(ctx, tx, a, v.t.ref+" t", cond)
}

// keyNotIn is a condition leaving out keys.
func (v *verifier) keyNotIn(a pgx.NamedArgs, keys []Key) string {
	if len(keys) == 0 {
		return "true"
	}
	cols := make([]string, len(v.t.Key))
	arrays := make([]string, len(v.t.Key))
	for i := range v.t.Key {
		vals := make([]string, len(keys))
		for j, k := range keys {
			vals[j] = k[i]
		}
		name := fmt.Sprintf("_rw_nk%d", i)
		a[name] = vals
		cols[i] = "t." + quote(v.t.Key[i]) + "::text"
		arrays[i] = "@" + name + "::text[]"
	}
	return fmt.Sprintf("(%s) NOT IN (SELECT * FROM unnest(%s))", strings.Join(cols, ", "), strings.Join(arrays, ", "))
}

// keys returns the first MaxKeys keys of the rows of from matching cond,
// in key order, and how many there are.
func (v *verifier) keys(ctx context.Context, tx pgx.Tx, a pgx.NamedArgs, from, cond string) ([]Key, int64, error) {
	q := fmt.Sprintf("SELECT %s, count(*) OVER () FROM %s WHERE %s ORDER BY %s LIMIT %d",
		v.t.keyText("t."), from, cond, v.t.keyCols("t."), v.o.MaxKeys)
	rows, err := tx.Query(ctx, q, bindArgs(a))
	if err != nil {
		return nil, 0, v.t.maskErr(err)
	}
	defer rows.Close()
	var keys []Key
	var n int64
	for rows.Next() {
		k := make(Key, len(v.t.Key))
		dest := make([]any, len(k)+1)
		for i := range k {
			dest[i] = &k[i]
		}
		dest[len(k)] = &n
		if err := rows.Scan(dest...); err != nil {
			return nil, 0, err
		}
		keys = append(keys, v.mask(k))
	}
	return keys, n, v.t.maskErr(rows.Err())
}

// maskAll masks the job's secret values in keys.
func (v *verifier) maskAll(keys []Key) []Key {
	out := make([]Key, len(keys))
	for i, k := range keys {
		out[i] = v.mask(k)
	}
	return out
}

// mask masks the job's secret values in a key.
func (v *verifier) mask(k Key) Key {
	if k == nil {
		return k
	}
	redact := v.p.job.Params.redactor()
	out := make(Key, len(k))
	for i, s := range k {
		out[i] = redact(s)
	}
	return out
}

// record appends the run.verified audit entry.
func (v *verifier) record(ctx context.Context) error {
	outcome := "clean"
	if !v.rep.Clean() {
		outcome = "discrepancies"
	}
	attrs := map[string]string{"outcome": outcome, "sample_percent": strconv.FormatFloat(v.rep.Sample, 'f', -1, 64)}
	if v.o.Sample != 0 {
		attrs["seed"] = strconv.FormatUint(v.rep.Seed, 10)
	}
	if i := v.rep.Interval; i != nil {
		attrs["interval"] = fmt.Sprintf("[%.4f, %.4f] %s at %.0f%%", i.Low, i.High, i.Method, i.Confidence*100)
	}
	kinds := map[string]int64{}
	for _, f := range v.rep.Findings {
		kinds[f.Kind]++
	}
	counts := map[string]int64{"chunks": v.rep.Chunks, "checked": v.rep.Checked, "discrepant_chunks": v.rep.Discrepant,
		"findings": int64(len(v.rep.Findings))}
	for k, n := range kinds {
		counts["findings."+k] = n
	}
	return v.r.ledger.appendAudit(ctx, v.r.entry(v.p.job, "run.verified", v.run.ID, attrs, counts))
}

// inputChecksum is the hook for recomputing a chunk's input checksum,
// which needs the chunk's input rows as they were before it. Nothing keeps
// them today, so it reports ok false. Before-images (the rollback's table
// of the old values of the rows a chunk changed, by run, chunk and key)
// make it possible for a set job: the input checksum is the sum of
// hashRow(ROW(key, set columns)) over the rows the chunk read, which are
// (1) the rows it wrote, with their before-image values, and (2) the rows
// of its range matching where that it did not write (they already held the
// new values), whose current version is older than the chunk (fullXmin <
// xid) and which still match the where and not differ. chunk compares what
// it returns with the checkpoint's (FindingInput).
func (v *verifier) inputChecksum(context.Context, pgx.Tx, checkpoint) (sum string, ok bool, err error) {
	return "", false, nil
}

// combineSums adds checksums that are sums (decimal numbers), as one
// statement over all the rows would have computed them; checksums of
// other kinds (a process job's md5s) are combined by an md5 of them.
func combineSums(parts []string) string {
	total := new(big.Int)
	for _, p := range parts {
		n, ok := new(big.Int).SetString(p, 10)
		if !ok {
			return md5Of(strings.Join(parts, ""))
		}
		total.Add(total, n)
	}
	return total.String()
}

// rangeOutputer is an applier whose output checksum covers the chunk's
// whole key range (a statement job's), not the keys it applied.
type rangeOutputer interface {
	rangeOut(ctx context.Context, tx pgx.Tx, b Bounds) (string, error)
}

// rangeOut is the output checksum of a statement job's chunk applied key
// by key: every row of the chunk's range afterwards, as for a chunk
// applied at once.
func (s *statementChange) rangeOut(ctx context.Context, tx pgx.Tx, b Bounds) (string, error) {
	_, sum, err := s.t.rangeSum(ctx, tx, b)
	return sum, err
}
