package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// A rollback puts back what a run changed, from the before-images its
// chunks saved (images.go). It is a run of its own: planned first (a dry
// run), then applied chunk by chunk — one transaction per chunk of the run
// it undoes, with its own checkpoint, the chunk marked undone (once,
// whatever the rollbacks: rewind.backfill_undone's key) and its audit
// entry — under a lease, like any run. A row changed since the run wrote
// it is a conflict: recorded by key in the rollback's quarantine and left
// as it is, unless forced.

// Errors of a rollback. Each matches rewind.ErrWrongExpectedVersion (the
// CLI's exit status 4): the run's state does not allow it.
var (
	// ErrRunOpen: the run is running, interrupted or failed; a rollback
	// needs it finished or cancelled.
	ErrRunOpen = &codedError{"backfill: run is not finished", rewind.ErrWrongExpectedVersion}
	// ErrNoImages: the run kept no before-images (its job set rollback:
	// false, an earlier version applied it, or they were purged).
	ErrNoImages = &codedError{"backfill: run kept no before-images", rewind.ErrWrongExpectedVersion}
	// ErrNothingToRollBack: the chunks asked for changed nothing, or were
	// rolled back already.
	ErrNothingToRollBack = &codedError{"backfill: nothing to roll back", rewind.ErrWrongExpectedVersion}
	// ErrCannotUndo: what the run did cannot be taken back: it appended
	// events to an event store (see Runner.CompensatingJob).
	ErrCannotUndo = &codedError{"backfill: run cannot be undone", rewind.ErrWrongExpectedVersion}
)

// ChunkRange selects chunks of a run by their sequence numbers (as status
// and the audit ledger show them): From to To, both included. The zero
// value is every chunk; To 0 runs to the last chunk.
type ChunkRange struct {
	From int64 `json:"from"`
	To   int64 `json:"to,omitempty"`
}

// ParseChunkRange reads "7", "3-9" or "3-" (from 3 to the last chunk).
func ParseChunkRange(s string) (ChunkRange, error) {
	bad := func(reason string) (ChunkRange, error) {
		return ChunkRange{}, &rewind.ValidationError{Field: "chunks", Value: s, Reason: reason}
	}
	const how = "give a chunk number (7), a range (3-9) or a start (3-): chunk numbers start at 1"
	num := func(t string) (int64, bool) {
		n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		return n, err == nil && n >= 1
	}
	lo, hi, isRange := strings.Cut(s, "-")
	from, ok := num(lo)
	if !ok {
		return bad(how)
	}
	if !isRange {
		return ChunkRange{From: from, To: from}, nil
	}
	if strings.TrimSpace(hi) == "" {
		return ChunkRange{From: from}, nil
	}
	to, ok := num(hi)
	switch {
	case !ok:
		return bad(how)
	case to < from:
		return bad(fmt.Sprintf("ends (%d) before it starts (%d)", to, from))
	}
	return ChunkRange{From: from, To: to}, nil
}

func (c ChunkRange) String() string {
	switch {
	case c.From == 0:
		return "all"
	case c.To == 0:
		return fmt.Sprintf("%d-", c.From)
	case c.To == c.From:
		return fmt.Sprint(c.From)
	}
	return fmt.Sprintf("%d-%d", c.From, c.To)
}

// RollbackOptions say what a rollback undoes.
type RollbackOptions struct {
	// Chunks limits the rollback to these chunks of the run. Defaults to
	// every chunk.
	Chunks ChunkRange
	// Force restores rows changed since the run wrote them (conflicts),
	// overwriting the later change, and the conflicts earlier rollbacks
	// of the run left. A set job's row deleted since cannot be restored,
	// forced or not.
	Force bool
	// Throttle paces the rollback's chunks, as ApplyOptions.Throttle: it
	// waits while a signal is at its max and pauses the rollback when one
	// is critical or cannot be read. Its max rate counts the rows each
	// chunk restores; chunk sizes are the run's chunks and do not adapt.
	// Defaults to the default throttle on the target (nil).
	Throttle *throttle.Throttler
}

// RollbackDiff is a row a rollback restores, or leaves as a conflict:
// its values now, as the run wrote them and before the run (the values
// the rollback puts back), by column. Values are withheld (nil) when the
// run's job had secret parameters.
type RollbackDiff struct {
	Chunk   int64             `json:"chunk"`
	Key     Key               `json:"key"`
	Action  string            `json:"action"` // update, insert, delete, conflict, deleted
	Now     map[string]string `json:"now,omitempty"`
	Written map[string]string `json:"written,omitempty"`
	Before  map[string]string `json:"before,omitempty"`
	Reason  string            `json:"reason,omitempty"`
}

// RollbackPlan is what a rollback would do, found without writing.
type RollbackPlan struct {
	Run     string     `json:"run"`
	Job     string     `json:"job"`
	Version string     `json:"version"`
	Chunks  ChunkRange `json:"chunks"`
	Force   bool       `json:"force"`
	// Tables are the tables the images are of, with what they hold.
	Tables []string `json:"tables"`
	// ChunksToUndo are the chunks not undone yet; ChunksUndone those
	// earlier rollbacks undid (UndoneBy names them).
	ChunksToUndo int64    `json:"chunks_to_undo"`
	ChunksUndone int64    `json:"chunks_undone"`
	UndoneBy     []string `json:"undone_by,omitempty"`
	// Rows counts the image rows of the chunks to undo: Restore of them
	// would be put back, Unchanged are as before already, Conflicts
	// changed since the run wrote them, Deleted are a set job's rows
	// deleted since (not restorable).
	Rows      int64 `json:"rows"`
	Restore   int64 `json:"restore"`
	Unchanged int64 `json:"unchanged"`
	Conflicts int64 `json:"conflicts"`
	Deleted   int64 `json:"deleted"`
	// Pending are conflicts earlier rollbacks of the run left; Force
	// restores them.
	Pending int64 `json:"pending_conflicts"`
	// Events the run appended to an event store, which no rollback takes
	// back (see Runner.AppendedEvents and CompensatingJob).
	Events  int64          `json:"events"`
	Streams []string       `json:"streams,omitempty"`
	Diffs   []RollbackDiff `json:"diffs"`
	// ConflictRows are the first conflicts, with both values.
	ConflictRows []RollbackDiff `json:"conflict_rows"`
	Notes        []string       `json:"notes,omitempty"`
}

// rbTarget is a run to roll back, checked: the chunks to undo grouped by
// what their images hold, and what earlier rollbacks left.
type rbTarget struct {
	run      *Run
	rng      ChunkRange // To resolved
	groups   []rbGroup
	undone   map[string]int64 // chunks of the range undone, by rollback run
	pending  []rbPending      // conflicts earlier rollbacks left, with Force
	events   int64
	streams  []string
	rows     int64           // image rows to undo
	sizes    map[int64]int64 // rows each chunk to undo changed
	withheld bool            // the job had secret parameters: no values shown
	forced   bool            // RollbackOptions.Force
}

type rbGroup struct {
	h    imageHeader
	seqs []int64
	rs   *restorer
}

// rbPending is a chunk with conflicts an earlier rollback left.
type rbPending struct {
	prev string // the rollback run
	seq  int64  // the chunk of the run undone
	n    int64
}

// rollbackTarget checks that run id can be rolled back as o asks, without
// writing anything.
func (r *Runner) rollbackTarget(ctx context.Context, id string, o RollbackOptions) (*rbTarget, error) {
	if err := r.cfg.DB.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connect to the target database: %w", err)
	}
	run, err := r.ledger.loadRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if run.Undoes != "" {
		return nil, &rewind.ValidationError{Field: "run id", Value: id, Reason: fmt.Sprintf("run %s is a rollback (of run %s): "+
			"a rollback is not rolled back; to make the change again, run the job again (--new-run)", run.ID, run.Undoes)}
	}
	if run.open() {
		how := "cancel it (rewind backfill cancel " + run.ID + ") or finish it (rewind backfill resume " + run.ID + ")"
		switch run.State {
		case Running:
			how = "wait for it to finish, or stop " + run.Owner + " and cancel it"
		case Paused:
			how = "promote it (rewind backfill promote " + run.ID + ") or cancel it (rewind backfill cancel " + run.ID + ")"
		}
		return nil, fmt.Errorf("%w: run %s is %s: a rollback would race with its chunks; %s, then roll it back",
			ErrRunOpen, run.ID, run.State, how)
	}
	// The images hold values as text, read back and compared in this
	// session: a timestamptz inside a composite prints in the TimeZone,
	// a regclass by the search_path and the schemas it resolves to. The
	// run's are required, as for a resume (the CLI connects with them).
	var now session
	if err := now.scan(r.cfg.DB.QueryRow(ctx, sessionSQL)); err != nil {
		return nil, fmt.Errorf("read the target database's session: %w", err)
	}
	for _, k := range []struct{ key, now string }{{"time_zone", now.timeZone}, {"search_path", now.searchPath},
		{"schemas", now.schemas}} {
		if was, ok := run.Session[k.key]; ok && was != k.now {
			return nil, &RunSettingsError{RunID: run.ID, Setting: k.key, Recorded: was, Now: k.now, Action: "roll it back"}
		}
	}
	if keep, ok := run.Job["rollback"].(bool); ok && !keep {
		return nil, fmt.Errorf("%w: run %s's job sets rollback: false, so its chunks kept no before-images and it cannot be "+
			"rolled back; to undo it, write and run a job that makes the opposite change", ErrNoImages, run.ID)
	}
	tg := &rbTarget{run: run, rng: o.Chunks, undone: map[string]int64{}, forced: o.Force}
	for _, v := range run.Params {
		if v == "***" {
			tg.withheld = true
		}
	}
	var have bool
	if err := r.cfg.DB.QueryRow(ctx, "SELECT to_regclass('rewind.backfill_images') IS NOT NULL").Scan(&have); err != nil {
		return nil, fmt.Errorf("read the before-images of run %s: %w", run.ID, err)
	}
	if !have {
		return nil, fmt.Errorf("%w: this database holds no before-images: run %s was applied by an earlier version of rewind, "+
			"which kept none", ErrNoImages, run.ID)
	}
	if err := r.checkPurged(ctx, run); err != nil {
		return nil, err
	}
	_, last, err := r.ledger.lastChunk(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	if err := tg.resolveRange(last); err != nil {
		return nil, err
	}
	if err := r.readChunks(ctx, tg); err != nil {
		return nil, err
	}
	if o.Force {
		if tg.pending, err = r.pendingConflicts(ctx, run.ID, tg.rng); err != nil {
			return nil, err
		}
	}
	return tg, nil
}

// resolveRange checks the range asked for against the run's last chunk.
func (tg *rbTarget) resolveRange(last int64) error {
	id := tg.run.ID
	if last == 0 {
		return fmt.Errorf("%w: run %s committed no chunk", ErrNothingToRollBack, id)
	}
	switch {
	case tg.rng.From == 0:
		tg.rng = ChunkRange{From: 1, To: last}
	case tg.rng.From > last || tg.rng.To > last:
		return &rewind.ValidationError{Field: "chunks", Value: tg.rng.String(),
			Reason: fmt.Sprintf("is out of range: run %s has chunks 1 to %d", id, last)}
	case tg.rng.To == 0:
		tg.rng.To = last
	}
	return nil
}

func (r *Runner) checkPurged(ctx context.Context, run *Run) error {
	var at time.Time
	var actor string
	err := r.cfg.DB.QueryRow(ctx, "SELECT purged_at, actor FROM rewind.backfill_image_purges WHERE run_id = $1", run.ID).Scan(&at, &actor)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read the before-images of run %s: %w", run.ID, err)
	}
	return fmt.Errorf("%w: the before-images of run %s were purged at %s by %s (rewind backfill purge-images): it can no "+
		"longer be rolled back", ErrNoImages, run.ID, at.UTC().Format(time.RFC3339), actor)
}

// readChunks finds, for the run's chunks in range, which have images of
// what kind and which are undone, and groups the chunks to undo by their
// images' header.
func (r *Runner) readChunks(ctx context.Context, tg *rbTarget) error {
	id := tg.run.ID
	rows, err := r.cfg.DB.Query(ctx, `SELECT c.seq, c.rows_changed,
			(SELECT kind FROM rewind.backfill_images im WHERE im.run_id = c.run_id AND im.seq = c.seq LIMIT 1),
			(SELECT by_run FROM rewind.backfill_undone u WHERE u.run_id = c.run_id AND u.seq = c.seq)
		FROM rewind.backfill_chunks c WHERE c.run_id = $1 AND c.seq BETWEEN $2 AND $3 ORDER BY c.seq`, id, tg.rng.From, tg.rng.To)
	if err != nil {
		return fmt.Errorf("read the chunks of run %s: %w", id, err)
	}
	var toUndo, unimaged []int64
	tg.sizes = map[int64]int64{}
	for rows.Next() {
		var seq, changed int64
		var kind, by *string
		if err := rows.Scan(&seq, &changed, &kind, &by); err != nil {
			rows.Close()
			return err
		}
		switch {
		case by != nil:
			tg.undone[*by]++
		case kind == nil && changed > 0:
			unimaged = append(unimaged, seq)
		case kind != nil && *kind != imageEvents:
			toUndo = append(toUndo, seq)
			tg.sizes[seq] = changed
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the chunks of run %s: %w", id, err)
	}
	if len(unimaged) > 0 {
		return fmt.Errorf("%w: chunk(s) %s of run %s changed rows but kept no before-images (a part of the run applied by an "+
			"earlier version of rewind?); roll back the other chunks with --chunks", ErrNoImages, seqList(unimaged), id)
	}
	err = r.cfg.DB.QueryRow(ctx, `SELECT count(*), coalesce(array_agg(DISTINCT key[1]), '{}') FROM rewind.backfill_image_rows
		WHERE run_id = $1 AND kind = 'events' AND seq BETWEEN $2 AND $3`, id, tg.rng.From, tg.rng.To).Scan(&tg.events, &tg.streams)
	if err != nil {
		return fmt.Errorf("read the events run %s appended: %w", id, err)
	}
	if len(toUndo) == 0 {
		return nil
	}
	hrows, err := r.cfg.DB.Query(ctx, `SELECT rel, kind, key_columns, columns, array_agg(DISTINCT seq ORDER BY seq),
		sum(cardinality(keys)) FROM rewind.backfill_images WHERE run_id = $1 AND seq = ANY($2) GROUP BY 1, 2, 3, 4 ORDER BY 5`, id, toUndo)
	if err != nil {
		return fmt.Errorf("read the before-images of run %s: %w", id, err)
	}
	defer hrows.Close()
	for hrows.Next() {
		var g rbGroup
		var n int64
		if err := hrows.Scan(&g.h.rel, &g.h.kind, &g.h.keyCols, &g.h.cols, &g.seqs, &n); err != nil {
			return err
		}
		tg.groups = append(tg.groups, g)
		tg.rows += n
	}
	return hrows.Err()
}

// pendingConflicts lists, by chunk, the conflicts the rollbacks of run id
// left in range.
func (r *Runner) pendingConflicts(ctx context.Context, id string, rng ChunkRange) ([]rbPending, error) {
	rows, err := r.ledger.runs.Query(ctx, "SELECT id FROM rewind.backfill_runs WHERE undoes = $1", id)
	if err != nil {
		return nil, fmt.Errorf("read the rollbacks of run %s: %w", id, err)
	}
	prev, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if isUndefinedColumn(err) {
		return nil, nil // a ledger of an earlier version: no rollback yet
	}
	if err != nil || len(prev) == 0 {
		return nil, err
	}
	rows, err = r.cfg.DB.Query(ctx, `SELECT run_id, chunk_seq, count(*) FROM rewind.backfill_quarantine WHERE run_id = ANY($1)
		AND code = 'conflict' AND resolved_at IS NULL AND chunk_seq BETWEEN $2 AND $3 GROUP BY 1, 2 ORDER BY 2, 1`, prev, rng.From, rng.To)
	if err != nil {
		return nil, fmt.Errorf("read the conflicts the rollbacks of run %s left: %w", id, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (rbPending, error) {
		var p rbPending
		return p, row.Scan(&p.prev, &p.seq, &p.n)
	})
}

// prepareTables checks each group's table as it is now (it exists, its
// key is still unique, row-level security does not hide rows from this
// role) and the restore of its images.
func (r *Runner) prepareTables(ctx context.Context, tg *rbTarget) error {
	var role string
	if err := r.cfg.DB.QueryRow(ctx, "SELECT current_user::text").Scan(&role); err != nil {
		return fmt.Errorf("connect to the target database: %w", err)
	}
	seen := map[string]*restorer{}
	for i := range tg.groups {
		g := &tg.groups[i]
		key := g.h.rel + "\x00" + g.h.kind + "\x00" + strings.Join(g.h.keyCols, ",") + "\x00" + strings.Join(g.h.cols, ",")
		if rs, ok := seen[key]; ok {
			g.rs = rs
			continue
		}
		rs, err := newRestorer(ctx, r.cfg.DB, g.h)
		if err != nil {
			return err
		}
		if err := checkRowSecurity(ctx, r.cfg.DB, rs.t, role); err != nil {
			return err
		}
		seen[key], g.rs = rs, rs
	}
	return nil
}

// PlanRollback is a rollback's dry run: what Rollback would restore, what
// is as before already, the conflicts (rows changed since the run wrote
// them) with their values, and what it cannot undo. It writes nothing to
// the target (everything runs in a read-only transaction that is rolled
// back) and records a rollback.planned entry in the audit ledger.
func (r *Runner) PlanRollback(ctx context.Context, id string, o RollbackOptions) (*RollbackPlan, error) {
	tg, err := r.rollbackTarget(ctx, id, o)
	if err != nil {
		return nil, err
	}
	if err := tg.nothingToDo(o, true); err != nil {
		return nil, err
	}
	if err := r.prepareTables(ctx, tg); err != nil {
		return nil, err
	}
	run := tg.run
	plan := &RollbackPlan{Run: run.ID, Job: run.JobName, Version: run.JobVersion, Chunks: tg.rng, Force: o.Force,
		Rows: tg.rows, Events: tg.events, Streams: tg.streams, Diffs: []RollbackDiff{}, ConflictRows: []RollbackDiff{}}
	for by, n := range tg.undone {
		plan.ChunksUndone += n
		plan.UndoneBy = append(plan.UndoneBy, by)
	}
	for _, p := range tg.pending {
		plan.Pending += p.n
	}
	db, err := r.cfg.DB.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("connect to the target database: %w", err)
	}
	defer db.Rollback(context.WithoutCancel(ctx))
	for _, g := range tg.groups {
		plan.ChunksToUndo += int64(len(g.seqs))
		plan.Tables = append(plan.Tables, g.describe())
		if err := r.planGroup(ctx, db, tg, g, o.Force, plan); err != nil {
			return nil, err
		}
	}
	plan.Notes = append(plan.Notes, tg.notes(o)...)
	e := r.entry(tg.job(), "rollback.planned", run.ID, map[string]string{"undoes": run.ID, "chunks": tg.rng.String(),
		"force": strconv.FormatBool(o.Force)}, map[string]int64{"rows": plan.Rows, "restore": plan.Restore,
		"conflicts": plan.Conflicts, "chunks": plan.ChunksToUndo})
	if err := r.ledger.appendAudit(ctx, e); err != nil {
		return nil, err
	}
	return plan, nil
}

// nothingToDo refuses a rollback that would do nothing, saying why.
// A plan of a run that only appended events is not refused: it says
// what cannot be undone.
func (tg *rbTarget) nothingToDo(o RollbackOptions, plan bool) error {
	if len(tg.groups) > 0 || len(tg.pending) > 0 {
		return nil
	}
	run := tg.run
	if tg.events > 0 {
		if plan {
			return nil
		}
		return fmt.Errorf("%w: run %s appended %d event(s) to %s, which an append-only event store cannot take back, and "+
			"changed no table; append compensating events instead (Runner.CompensatingJob in Go; 'rewind backfill rollback %s "+
			"--events-out FILE' lists the events)", ErrCannotUndo, run.ID, tg.events, strings.Join(tg.streams, ", "), run.ID)
	}
	if len(tg.undone) == 0 {
		return fmt.Errorf("%w: run %s changed no rows in chunks %s", ErrNothingToRollBack, run.ID, tg.rng)
	}
	var by []string
	for b, n := range tg.undone {
		by = append(by, fmt.Sprintf("%s (%d chunks)", b, n))
	}
	msg := fmt.Sprintf("chunks %s of run %s were rolled back already, by %s", tg.rng, run.ID, strings.Join(by, ", "))
	if !o.Force {
		msg += "; conflicts they left (rewind backfill status RUN lists them) are restored with --force"
	}
	return fmt.Errorf("%w: %s", ErrNothingToRollBack, msg)
}

// job is the pseudo-job the rollback's audit entries are about.
func (tg *rbTarget) job() *Job {
	return &Job{Name: "rollback:" + tg.run.JobName, Version: tg.run.JobVersion}
}

func (g rbGroup) describe() string {
	what := "whole rows"
	if g.h.kind == imageColumns {
		what = "columns " + strings.Join(g.h.cols, ", ")
	}
	return fmt.Sprintf("%s (%s; chunks %s)", g.h.rel, what, seqList(g.seqs))
}

// planGroup counts the actions on one group's images and samples them.
func (r *Runner) planGroup(ctx context.Context, db pgx.Tx, tg *rbTarget, g rbGroup, force bool, plan *RollbackPlan) error {
	a := restoreArgs(tg.run.ID, g.seqs, force, "")
	var n, restore, conflicts, deleted, none int64
	if err := db.QueryRow(ctx, g.rs.countSQL(), bindArgs(a)).Scan(&n, &restore, &conflicts, &deleted, &none); err != nil {
		return fmt.Errorf("plan the rollback of run %s: %w", tg.run.ID, err)
	}
	plan.Restore += restore
	plan.Conflicts += conflicts
	plan.Deleted += deleted
	plan.Unchanged += none
	limit := r.cfg.PreviewRows
	diffs, err := r.sample(ctx, db, tg, g, a, []string{"update", "insert", "delete"}, limit-len(plan.Diffs))
	if err != nil {
		return err
	}
	plan.Diffs = append(plan.Diffs, diffs...)
	confl, err := r.sample(ctx, db, tg, g, a, []string{"conflict", "deleted"}, limit-len(plan.ConflictRows))
	if err != nil {
		return err
	}
	plan.ConflictRows = append(plan.ConflictRows, confl...)
	return nil
}

// sample lists up to n image rows of g whose action is in acts.
func (r *Runner) sample(ctx context.Context, db querier, tg *rbTarget, g rbGroup, a pgx.NamedArgs, acts []string, n int) ([]RollbackDiff, error) {
	if n <= 0 {
		return nil, nil
	}
	a = with(a)
	a["_rw_acts"], a["_rw_limit"] = typed{typ: "text[]", v: acts}, typed{typ: "integer", v: int32(n)}
	rows, err := db.Query(ctx, g.rs.sampleSQL(), bindArgs(a))
	if err != nil {
		return nil, fmt.Errorf("sample the rollback of run %s: %w", tg.run.ID, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RollbackDiff, error) {
		var d RollbackDiff
		var key []string
		var op string
		var now, before, written []*string
		if err := row.Scan(&d.Chunk, &key, &d.Action, &op, &now, &before, &written, &d.Reason); err != nil {
			return d, err
		}
		d.Key = key
		if d.Action == "conflict" || d.Action == "deleted" {
			// Why, as the quarantine says it; the action is conflict or
			// deleted either way.
		} else {
			d.Reason = ""
		}
		if !tg.withheld {
			d.Now = g.rs.columnsOf(now, g.rs.present)
			d.Before = g.rs.columnsOf(before, g.h.cols)
			d.Written = g.rs.columnsOf(written, g.h.cols)
		}
		return d, nil
	})
}

// notes say what the plan cannot show in numbers.
func (tg *rbTarget) notes(o RollbackOptions) []string {
	var notes []string
	if tg.withheld {
		notes = append(notes, "values are not shown: the run's job has secret parameters")
	}
	if tg.events > 0 {
		notes = append(notes, fmt.Sprintf("run %s appended %d event(s) to stream(s) %s: an append-only event store cannot take "+
			"them back, and this rollback leaves them; append compensating events (Runner.CompensatingJob in Go; "+
			"--events-out FILE lists them)", tg.run.ID, tg.events, strings.Join(tg.streams, ", ")))
	}
	for _, g := range tg.groups {
		if len(g.rs.missing) > 0 {
			notes = append(notes, fmt.Sprintf("%s no longer has column(s) %s, which the images hold: they are not restored",
				g.rs.t.ref, strings.Join(g.rs.missing, ", ")))
		}
	}
	if len(tg.pending) > 0 && o.Force {
		notes = append(notes, "--force also restores the conflicts earlier rollbacks of the run left")
	}
	notes = append(notes, "restoring writes the rows as any write does: the table's triggers fire, and what they write "+
		"elsewhere is not undone")
	return notes
}

// seqList writes chunk numbers compactly: 1-4, 7, 9-10.
func seqList(seqs []int64) string {
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, fmt.Sprint(seqs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
	}
	if len(parts) > 8 {
		parts = append(parts[:8], fmt.Sprintf("… (%d ranges)", len(parts)))
	}
	return strings.Join(parts, ", ")
}

// rollbackSpec is what a rollback run records as its job: the run it
// undoes and how. Its hash is the rollback run's job hash, so that a
// rollback is continued only as it was asked for.
func rollbackSpec(tg *rbTarget, o RollbackOptions) (map[string]any, string) {
	d := map[string]any{"rollback_of": tg.run.ID, "job": tg.run.JobName, "version": tg.run.JobVersion,
		"chunks": tg.rng.String(), "force": o.Force}
	b, _ := json.Marshal(d)
	h := sha256.Sum256(b)
	return d, hex.EncodeToString(h[:])
}
