package template_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/replay/template"
)

// TestExecuteCountsOnlyTheEventsNewInTheTarget: written counted every
// event appended, those the target held already (a second run, the rest
// of an interrupted one) too.
func TestExecuteCountsOnlyTheEventsNewInTheTarget(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	l := ledger(t)
	dest := filepath.Join(t.TempDir(), "copy")
	file := func(to int) string {
		return fmt.Sprintf("name: c\nversion: 1\nproduction: true\ntarget: {kind: store, data_dir: %s}\nwindow: {to: %d}\n", dest, to)
	}
	all := int64(len(shapes))
	// Part of the window first, as a run interrupted after 4 events leaves it.
	for i, c := range []struct {
		to               int
		written, already int64
	}{{4, 4, 0}, {100, all - 4, 4}, {100, 0, all}} {
		rep, err, _ := execute(t, src, file(c.to), l)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Written != c.written || rep.AlreadyPresent != c.already {
			t.Fatalf("run %d: written %d, already present %d; want %d, %d", i+1, rep.Written, rep.AlreadyPresent, c.written, c.already)
		}
	}
	es := entries(t, l)
	last := es[len(es)-1]
	if last.Kind != "replay.run.finished" || last.Counts["written"] != 0 || last.Counts["already_present"] != all {
		t.Fatalf("the ledger records %s %v; want written 0, already_present %d", last.Kind, last.Counts, all)
	}
}

// interruptedStore is a target whose nth append is written and then
// interrupted: the run's context is cancelled and the append answers with
// its error, as an append waiting for durability does when interrupted
// (rewind.Store's Append: the events may or may not be recorded).
type interruptedStore struct {
	rewind.Store
	n      int
	cancel context.CancelFunc
}

func (s *interruptedStore) Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error) {
	res, err := s.Store.Append(ctx, stream, expected, events...)
	if s.n--; s.n == 0 && err == nil {
		s.cancel()
		return rewind.AppendResult{}, ctx.Err()
	}
	return res, err
}

// TestExecuteInterruptedCountsWhatItWrote: a run interrupted while an
// append waited for durability recorded written one short of what the
// target held (an outside tester, 4 times in 4).
func TestExecuteInterruptedCountsWhatItWrote(t *testing.T) {
	t.Parallel()
	src, _ := source(t)
	l := ledger(t)
	dest := filepath.Join(t.TempDir(), "copy")
	tp, err := template.Parse("t.yaml", []byte(fmt.Sprintf("name: c\nversion: 1\nproduction: true\ntarget: {kind: store, data_dir: %s}\n", dest)))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tp.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep, err := tp.Execute(runCtx, src, sp, template.RunOptions{Ledger: l, RunID: "run-" + t.Name(),
		Origin: audit.CurrentOrigin("tester", []string{"rewind", "replay", "run"}, nil),
		OpenTarget: func() (rewind.Store, error) {
			return &interruptedStore{Store: openStore(t, dest), n: 3, cancel: cancel}, nil
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the interrupted run returned %v", err)
	}
	reopened := openStore(t, dest)
	defer reopened.Close()
	held := 0
	for _, err := range reopened.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		held++
	}
	es := entries(t, l)
	last := es[len(es)-1]
	if held != 3 || rep.Written != 3 || last.Kind != "replay.run.failed" || last.Counts["written"] != 3 {
		t.Fatalf("the target holds %d events; the report says written %d, the ledger %s %v", held, rep.Written, last.Kind, last.Counts)
	}
}
