package backfill_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// slowRunner is a runner on b's database whose chunks take at least
// every: slow enough for another runner to act between them. notes
// collects the Paused notes its progress reports.
func slowRunner(t *testing.T, b *bundle, every time.Duration, notes *[]string, mu *sync.Mutex) *backfill.Runner {
	return runnerOn(t, b, func(c *backfill.Config) {
		c.Progress = func(p backfill.Progress) {
			if p.Paused != "" {
				mu.Lock()
				*notes = append(*notes, p.Paused)
				mu.Unlock()
				return
			}
			time.Sleep(every)
		}
	})
}

// runningID waits until job has a run with a committed chunk and returns it.
func runningID(t *testing.T, b *bundle, job string) string {
	t.Helper()
	for range 500 {
		var id string
		b.db.Pool.QueryRow(context.Background(), `SELECT r.id FROM rewind.backfill_runs r WHERE r.job_name = $1
			AND EXISTS (SELECT 1 FROM rewind.backfill_chunks c WHERE c.run_id = r.id)`, job).Scan(&id)
		if id != "" {
			return id
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no run of " + job + " committed a chunk")
	return ""
}

// Pause from another runner while a run executes with several workers:
// the run is paused once every worker is at a chunk boundary, no chunk
// commits after that, the executing process stays and shows who paused
// it, and a resume from yet another runner lets it finish, each row
// changed once. Every transition is an audit entry with its actor.
func TestPauseAndResumeFromAnotherRunner(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	var res *backfill.Result
	go func() {
		var err error
		res, err = exec.Apply(ctx, countJob(50), backfill.ApplyOptions{Workers: 3, Shards: 6})
		done <- err
	}()
	id := runningID(t, b, "count")
	pauser := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "pauser" })
	st, err := pauser.Pause(ctx, id[:8], backfill.ControlOptions{Reason: "maintenance window", Wait: 20 * time.Second})
	if err != nil || st.State != backfill.Paused || st.Control == nil || st.Control.Actor != "pauser" ||
		st.Control.Reason.Kind != backfill.PauseOperator || st.Control.PausedAt == nil {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	chunks := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks WHERE committed_at >= $1", *st.Control.PausedAt)
	if chunks != 0 {
		t.Fatalf("%d chunks committed after the pause was recorded", chunks)
	}
	before := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	time.Sleep(700 * time.Millisecond)
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); n != before {
		t.Fatalf("%d chunks committed while paused", n-before)
	}
	select {
	case err := <-done:
		t.Fatalf("the executing process returned while paused: %v", err)
	default:
	}
	mu.Lock()
	seen := strings.Join(notes, "|")
	mu.Unlock()
	if !strings.Contains(seen, "paused by pauser: maintenance window") {
		t.Fatalf("progress notes %q", seen)
	}
	if _, err := pauser.Pause(ctx, id, backfill.ControlOptions{}); !errors.Is(err, backfill.ErrAlreadyPaused) ||
		!strings.Contains(err.Error(), "pauser") {
		t.Fatalf("a second pause = %v", err)
	}
	resumer := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "resumer" })
	if _, live, err := resumer.Unpause(ctx, id); err != nil || !live {
		t.Fatalf("unpause: live %v, %v", live, err)
	}
	if err := <-done; err != nil || res.Run.State != backfill.Finished {
		t.Fatalf("the run after resume: %+v, %v", res, err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	for kind, actor := range map[string]string{"run.pausing": "pauser", "run.unpaused": "resumer"} {
		if e := b.lastEntry(t, id, kind); e == nil || e["actor"] != actor {
			t.Errorf("%s entry %v", kind, e)
		}
	}
	if e := b.lastEntry(t, id, "run.paused"); e == nil || e["requested_by"] != "pauser" || e["reason"] != "maintenance window" {
		t.Errorf("run.paused entry %v", e)
	}
	if k := b.auditKinds(t, id); k["backfill.run.paused"] != 1 || k["backfill.run.finished"] != 1 {
		t.Errorf("entries %v", k)
	}
}

// Cancel from another runner while a run executes: its workers stop at a
// chunk boundary, its owner records it cancelled with who asked, and
// nothing commits after that.
func TestCancelFromAnotherRunnerWhileARunExecutes(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 20*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4})
		done <- err
	}()
	id := runningID(t, b, "count")
	canceller := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "canceller" })
	if err := canceller.Cancel(ctx, id[:8], nil); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := <-done; !errors.Is(err, backfill.ErrRunEnded) || !strings.Contains(err.Error(), "canceller") {
		t.Fatalf("the executing process returned %v", err)
	}
	chunks := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	st, err := canceller.Status(ctx, id)
	if err != nil || st.State != backfill.Cancelled {
		t.Fatalf("status %+v, %v", st, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); n != chunks {
		t.Fatalf("%d chunks committed after the cancel", n-chunks)
	}
	changed := b.scalar(t, "SELECT coalesce(sum(rows_changed), 0) FROM rewind.backfill_chunks")
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1"); n != changed || changed == 3000 ||
		b.scalar(t, "SELECT count(*) FROM items WHERE n > 1") != 0 {
		t.Fatalf("%d rows changed once, the checkpoints say %d", n, changed)
	}
	if e := b.lastEntry(t, id, "run.cancelled"); e == nil || e["requested_by"] != "canceller" {
		t.Fatalf("run.cancelled entry %v", e)
	}
	if e := b.lastEntry(t, id, "run.cancelling"); e == nil || e["actor"] != "canceller" {
		t.Fatalf("run.cancelling entry %v", e)
	}
	if k := b.auditKinds(t, id); k["backfill.run.cancelled"] != 1 {
		t.Fatalf("entries %v", k)
	}
}

// A pause of a run nobody applies takes effect at once (no live worker to
// wait for); a run or takeover of it is refused while paused; Resume
// lifts the pause and, nobody being there to go on, applies it here.
func TestPauseOfARunNobodyAppliesAndResumeHere(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := context.Background()
	id := interruptParallel(t, b, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4}, 2)
	st, err := b.runner.Pause(ctx, id, backfill.ControlOptions{Reason: "look first", Wait: 10 * time.Second})
	if err != nil || st.State != backfill.Paused {
		t.Fatalf("pause of an interrupted run: %+v, %v", st, err)
	}
	if _, err := b.runner.Apply(ctx, countJob(50), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrRunPaused) ||
		!strings.Contains(err.Error(), "rewind backfill resume "+id) {
		t.Fatalf("apply over a paused run = %v", err)
	}
	w := runnerOn(t, b, func(*backfill.Config) {})
	done := make(chan error, 1)
	go func() { _, err := w.Work(ctx, id, countJob(50), backfill.WorkOptions{Workers: 1}); done <- err }()
	time.Sleep(300 * time.Millisecond)
	before := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	select {
	case err := <-done:
		t.Fatalf("a work process joining a paused run returned %v; it should wait", err)
	default:
	}
	res, err := b.runner.Resume(ctx, id, countJob(50), backfill.ApplyOptions{})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if res.Run.State == backfill.Running { // the work process went on with it
		if err := <-done; err != nil {
			t.Fatalf("work: %v", err)
		}
	} else if res.Run.State != backfill.Finished {
		t.Fatalf("resume: %+v", res)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 || before == 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}

// A paused run whose executing process is killed stays paused (never
// "running" with nobody); a work process waiting on it goes on once
// resumed, and finishes it.
func TestPausedRunSurvivesAKilledOwner(t *testing.T) {
	t.Parallel()
	b := setup(t, 2000)
	ctx := context.Background()
	child := startChild(t, b, "apply", "", 20, "30ms", "", "2/2/4")
	id := runningID(t, b, "count")
	w := runnerOn(t, b, func(*backfill.Config) {})
	done := make(chan error, 1)
	go func() { _, err := w.Work(ctx, id, countJob(20), backfill.WorkOptions{Workers: 1}); done <- err }()
	st, err := b.runner.Pause(ctx, id, backfill.ControlOptions{Wait: 20 * time.Second})
	if err != nil || st.State != backfill.Paused {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	chunks := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks")
	child.kill()
	time.Sleep(300 * time.Millisecond)
	if st, _ := b.runner.Status(ctx, id); st.State != backfill.Paused {
		t.Fatalf("a paused run whose owner was killed is %s", st.State)
	}
	if n := b.scalar(t, "SELECT count(*) FROM rewind.backfill_chunks"); n != chunks {
		t.Fatalf("%d chunks committed while paused", n-chunks)
	}
	if _, live, err := b.runner.Unpause(ctx, id); err != nil || !live {
		t.Fatalf("unpause: live %v, %v", live, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("work: %v", err)
	}
	if st, _ := b.runner.Status(ctx, id); st.State != backfill.Finished {
		t.Fatalf("state %s", st.State)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
}

// Set from another runner while a run executes: a raised worker cap
// starts workers in the executing process, a lowered one makes workers
// let their shard go at a chunk boundary; max rate and chunk time are
// stored for the throttle and shown; each row is changed once.
func TestSetFromAnotherRunnerWhileARunExecutes(t *testing.T) {
	t.Parallel()
	b := setup(t, 4000)
	ctx := context.Background()
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 15*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(40), backfill.ApplyOptions{Workers: 1, Shards: 8})
		done <- err
	}()
	id := runningID(t, b, "count")
	setter := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "setter" })
	three, rate, ct := 3, 250.0, 400*time.Millisecond
	st, err := setter.Set(ctx, id, backfill.SetOptions{Workers: &three, MaxRate: &rate, ChunkTime: &ct})
	if err != nil || st.Control == nil || *st.Control.Workers != 3 || *st.Control.MaxRate != 250 || *st.Control.ChunkTime != ct ||
		st.Control.SetBy != "setter" || st.Workers != 3 {
		t.Fatalf("set: %+v, %v", st, err)
	}
	// Shard lock numbers come from a sequence of each database: a lock
	// of another database's run (a test running beside this one) may
	// carry the same number, so only this database's locks count.
	leased := func() int64 {
		return b.scalar(t, `SELECT count(*) FROM rewind.backfill_shards s WHERE run_id = $1 AND state = 'pending' AND lock_obj IN
			(SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = 1381453395 AND objsubid = 2 AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`, id)
	}
	most := int64(0)
	for i := 0; i < 300 && most < 2; i++ {
		most = max(most, leased())
		time.Sleep(10 * time.Millisecond)
	}
	if most < 2 {
		t.Fatalf("a raised worker cap started no worker: %d shards leased at most", most)
	}
	one := 1
	if _, err := setter.Set(ctx, id, backfill.SetOptions{Workers: &one}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	for range 10 {
		if n := leased(); n > 1 {
			t.Fatalf("%d shards leased under a cap of 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("apply: %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	if e := b.lastEntry(t, id, "run.set"); e == nil || e["actor"] != "setter" || e["workers"] != "3 → 1" {
		t.Fatalf("run.set entry %v", e)
	}
}

// Bad control requests get a clear error and change nothing: the ledger,
// the control records and the audit log are as before.
func TestBadControlRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 300)
	ctx := context.Background()
	done := b.apply(t, countJob(100), backfill.ApplyOptions{}).Run.ID
	open := interruptParallel(t, b, &backfill.Job{Name: "other", Version: "1", ChunkSize: 10,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"val": "val + 1"}},
		backfill.ApplyOptions{Workers: 2, Shards: 4, MaxDBWorkers: 4}, 1)
	res, err := b.runner.Apply(ctx, &backfill.Job{Name: "boom", Version: "1", ChunkSize: 10,
		Source: &backfill.Table{Name: "items", Key: []string{"id"}}, Set: map[string]string{"val": "CASE WHEN id > 50 THEN 1/(val-val) ELSE val END"}},
		backfill.ApplyOptions{})
	if !errors.Is(err, backfill.ErrRunFailed) {
		t.Fatalf("a failing job: %+v, %v", res, err)
	}
	failed := res.Run.ID
	snapshot := func() string {
		var s string
		err := b.db.Pool.QueryRow(ctx, `SELECT (SELECT md5(string_agg(r::text, '|' ORDER BY id)) FROM rewind.backfill_runs r) ||
			(SELECT coalesce(md5(string_agg(c::text, '|' ORDER BY run_id)), '') FROM rewind.backfill_control c) ||
			(SELECT count(*)::text FROM rewind.audit_log) || (SELECT md5(string_agg(l::text, '|' ORDER BY run_id)) FROM rewind.backfill_leases l)`).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()
	neg, zero, five, big := -1.0, 0, 5, backfill.MaxWorkers+1
	short, long := time.Duration(0), 2*time.Hour
	for _, c := range []struct {
		name string
		err  error
		call func() error
	}{
		{"pause unknown", backfill.ErrRunNotFound, func() error { _, err := b.runner.Pause(ctx, "ffffffff", backfill.ControlOptions{}); return err }},
		{"pause finished", backfill.ErrRunEnded, func() error { _, err := b.runner.Pause(ctx, done, backfill.ControlOptions{}); return err }},
		{"cancel finished", backfill.ErrRunEnded, func() error { return b.runner.Cancel(ctx, done, nil) }},
		{"unpause finished", backfill.ErrRunEnded, func() error { _, _, err := b.runner.Unpause(ctx, done); return err }},
		{"unpause running", backfill.ErrNotPaused, func() error { _, _, err := b.runner.Unpause(ctx, open); return err }},
		{"set finished", backfill.ErrRunEnded, func() error { _, err := b.runner.Set(ctx, done, backfill.SetOptions{Workers: &five}); return err }},
		{"set failed", backfill.ErrNotControllable, func() error { _, err := b.runner.Set(ctx, failed, backfill.SetOptions{Workers: &five}); return err }},
		{"pause failed", backfill.ErrNotControllable, func() error { _, err := b.runner.Pause(ctx, failed, backfill.ControlOptions{}); return err }},
		{"set nothing", rewind.ErrInvalidArgument, func() error { _, err := b.runner.Set(ctx, open, backfill.SetOptions{}); return err }},
		{"negative rate", rewind.ErrInvalidArgument, func() error { _, err := b.runner.Set(ctx, open, backfill.SetOptions{MaxRate: &neg}); return err }},
		{"chunk time 0", rewind.ErrInvalidArgument, func() error { _, err := b.runner.Set(ctx, open, backfill.SetOptions{ChunkTime: &short}); return err }},
		{"chunk time 2h", rewind.ErrInvalidArgument, func() error { _, err := b.runner.Set(ctx, open, backfill.SetOptions{ChunkTime: &long}); return err }},
		{"workers 0", rewind.ErrInvalidArgument, func() error { _, err := b.runner.Set(ctx, open, backfill.SetOptions{Workers: &zero}); return err }},
		{"workers above cap", rewind.ErrInvalidArgument, func() error { _, err := b.runner.Set(ctx, open, backfill.SetOptions{Workers: &big}); return err }},
		{"workers above max-db-workers", rewind.ErrInvalidArgument, func() error {
			_, err := b.runner.Set(ctx, open, backfill.SetOptions{Workers: &five})
			return err
		}},
	} {
		if err := c.call(); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
		if after := snapshot(); after != before {
			t.Fatalf("%s changed the ledger", c.name)
		}
	}
}

// Disable while a run executes: the run pauses (kind disabled), the job
// starts no run; enable resumes it, not a run an operator paused; an
// unknown job, or a second disable, is refused and changes nothing.
func TestDisableWhileRunningPausesAndEnableContinues(t *testing.T) {
	t.Parallel()
	b := setup(t, 3000)
	ctx := context.Background()
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 15*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(50), backfill.ApplyOptions{Workers: 2, Shards: 4})
		done <- err
	}()
	id := runningID(t, b, "count")
	admin := runnerOn(t, b, func(c *backfill.Config) { c.Actor = "admin" })
	if _, err := admin.Disable(ctx, "nosuchjob", "x"); !errors.Is(err, backfill.ErrJobNotFound) {
		t.Fatalf("disable of an unknown job = %v", err)
	}
	tg, err := admin.Disable(ctx, "count", "bad data found")
	if err != nil || !tg.Disabled || len(tg.Runs) != 1 || tg.Runs[0] != id {
		t.Fatalf("disable: %+v, %v", tg, err)
	}
	if _, err := admin.Disable(ctx, "count", "again"); !errors.Is(err, rewind.ErrWrongExpectedVersion) {
		t.Fatalf("a second disable = %v", err)
	}
	var st *backfill.Run
	for range 200 {
		if st, _ = admin.Status(ctx, id); st.State == backfill.Paused {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.State != backfill.Paused || st.Control.Reason.Kind != backfill.PauseDisabled {
		t.Fatalf("the run of a disabled job: %s %+v", st.State, st.Control)
	}
	if _, err := admin.Apply(ctx, countJob(50), backfill.ApplyOptions{}); !errors.Is(err, backfill.ErrJobDisabled) ||
		!strings.Contains(err.Error(), "disabled by admin") || !strings.Contains(err.Error(), "rewind backfill enable count") {
		t.Fatalf("apply of a disabled job = %v", err)
	}
	if _, _, err := admin.Unpause(ctx, id); !errors.Is(err, backfill.ErrJobDisabled) {
		t.Fatalf("resume of a run of a disabled job = %v", err)
	}
	tg, err = admin.Enable(ctx, "count")
	if err != nil || tg.Disabled || len(tg.Runs) != 1 {
		t.Fatalf("enable: %+v, %v", tg, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the run after enable: %v", err)
	}
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n <> 1"); n != 0 {
		t.Fatalf("%d rows not changed exactly once", n)
	}
	if e := b.lastEntry(t, "job:count", "job.disabled"); e == nil || e["actor"] != "admin" || e["reason"] != "bad data found" {
		t.Fatalf("job.disabled entry %v", e)
	}
}

var controlTrials = flag.Int("control-trials", 20, "trials of racing pause/resume/cancel in TestRacingControlChangesEachRowAtMostOnce")

// Pause, resume and cancel raced from three runners while a run executes
// with two workers: every row is changed at most once (exactly once when
// the run finishes), and the run ends in one consistent state: finished
// with every row, or cancelled with the rows its checkpoints count.
func TestRacingControlChangesEachRowAtMostOnce(t *testing.T) {
	t.Parallel()
	for trial := range *controlTrials {
		t.Run(fmt.Sprint(trial), func(t *testing.T) { raceControl(t, trial) })
	}
}

// raceControl is one trial of TestRacingControlChangesEachRowAtMostOnce.
func raceControl(t *testing.T, trial int) {
	b := setup(t, 600)
	ctx := context.Background()
	var mu sync.Mutex
	var notes []string
	exec := slowRunner(t, b, 5*time.Millisecond, &notes, &mu)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Apply(ctx, countJob(20), backfill.ApplyOptions{Workers: 2, Shards: 4})
		done <- err
	}()
	id := runningID(t, b, "count")
	rng := rand.New(rand.NewPCG(uint64(trial), 7))
	var wg sync.WaitGroup
	for i := range 3 {
		seed := rng.Uint64()
		wg.Go(func() {
			r := runnerOn(t, b, func(c *backfill.Config) { c.Actor = fmt.Sprintf("op%d", i) })
			rr := rand.New(rand.NewPCG(seed, 1))
			for range 4 {
				time.Sleep(time.Duration(rr.IntN(60)) * time.Millisecond)
				switch n := rr.IntN(10); {
				case n < 4:
					r.Pause(ctx, id, backfill.ControlOptions{Wait: time.Duration(rr.IntN(2)) * time.Second})
				case n < 9:
					r.Unpause(ctx, id)
				case trial%2 == 0:
					r.Cancel(ctx, id, nil)
				}
			}
		})
	}
	wg.Wait()
	// Let it end: resume whatever pause is left.
	for {
		st, err := b.runner.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == backfill.Paused || st.State == backfill.Pausing {
			b.runner.Unpause(ctx, id)
		}
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, backfill.ErrRunEnded) {
				t.Fatalf("trial %d: apply: %v", trial, err)
			}
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	st, _ := b.runner.Status(ctx, id)
	changed := b.scalar(t, "SELECT coalesce(sum(rows_changed), 0) FROM rewind.backfill_chunks")
	if n := b.scalar(t, "SELECT count(*) FROM items WHERE n > 1"); n != 0 {
		t.Fatalf("trial %d: %d rows changed twice", trial, n)
	}
	once := b.scalar(t, "SELECT count(*) FROM items WHERE n = 1")
	switch {
	case once != changed:
		t.Fatalf("trial %d: %d rows changed, the checkpoints say %d", trial, once, changed)
	case st.State == backfill.Finished && once != 600, st.State != backfill.Finished && st.State != backfill.Cancelled:
		t.Fatalf("trial %d: run %s with %d rows changed", trial, st.State, once)
	}
	k := b.auditKinds(t, id)
	if k["backfill.run.finished"]+k["backfill.run.cancelled"] != 1 {
		t.Fatalf("trial %d: ends %v", trial, k)
	}
}
