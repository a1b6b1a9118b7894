package template_test

import (
	"fmt"
	"path/filepath"
	"testing"
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
