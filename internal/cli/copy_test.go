package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/logcopy"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/store"
)

var copyKillRounds = flag.Int("copy-kill-rounds", 10, "rounds of TestCopySurvivesKills in each direction: a kill -9 "+
	"mid-copy each (a Ctrl-C every fifth)")

// copySource writes a data directory with appends of several events, client
// and generated ids, metadata and deletes, and returns its last position.
func copySource(t *testing.T, dir string, appends int) rewind.Position {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(dir, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(uint64(appends), 1))
	for i := range appends {
		stream := fmt.Sprintf("s-%d", rng.IntN(50))
		if rng.IntN(30) == 0 {
			if _, err := s.DeleteStream(ctx, stream, rewind.Any); err != nil && !errors.Is(err, rewind.ErrStreamNotFound) {
				t.Fatal(err)
			}
			continue
		}
		evs := make([]rewind.Event, 1+rng.IntN(9))
		for j := range evs {
			evs[j] = rewind.Event{Type: "T", Data: []byte(fmt.Sprintf(`{"i":%d,"j":%d,"pad":"%s"}`, i, j,
				strings.Repeat("x", rng.IntN(200))))}
			if rng.IntN(2) == 0 {
				evs[j].ID = uuid.New()
				evs[j].Metadata = map[string]string{"n": fmt.Sprint(i)}
			}
		}
		if _, err := s.Append(ctx, stream, rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	last, _ := s.LastPosition(ctx)
	return last
}

// dirBytes is the size of the files of a data directory, which grows as a
// copy into it writes.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TestCopySurvivesKills: `rewind copy` killed with SIGKILL (and every fifth
// round interrupted with SIGINT) while it writes, each time after the
// target has grown since the last round, then run again, in both
// directions: the last run ends with a target equal to the source, record
// by record, and no run ever refused the target (it always was a prefix).
func TestCopySurvivesKills(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	tmp := t.TempDir()
	src, back := filepath.Join(tmp, "src"), filepath.Join(tmp, "back")
	end := copySource(t, src, 4000)
	if _, err := pgstore.Migrate(ctx, db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	pgLast := func() int64 {
		var n int64
		if err := db.Pool.QueryRow(ctx, "SELECT last FROM rewind.head").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct {
		name, from, to string
		progress       func() int64
	}{
		{"dir to pg", src, db.DSN, pgLast},
		{"pg to dir", db.DSN, back, func() int64 { return dirBytes(back) }},
	} {
		killed := 0
		for round := 0; ; round++ {
			if round > 10*(*copyKillRounds)+50 {
				t.Fatalf("%s: no end after %d rounds", c.name, round)
			}
			before := c.progress()
			cmd := exec.Command(rewindBinary(t), "copy", "--from", c.from, "--to", c.to, "--batch", "200", "--json")
			cmd.Env = cleanEnv()
			var out, errOut strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			stopped := false
		watch:
			for {
				select {
				case err = <-done:
					break watch
				case <-time.After(2 * time.Millisecond):
					if killed < *copyKillRounds && !stopped && c.progress() > before {
						sig := syscall.SIGKILL
						if killed%5 == 4 {
							sig = syscall.SIGINT
						}
						cmd.Process.Signal(sig)
						stopped = true
					}
				}
			}
			if !stopped {
				if err != nil {
					t.Fatalf("%s round %d: %v\n%s", c.name, round, err, errOut.String())
				}
				var res struct {
					Equal        bool            `json:"equal"`
					End          rewind.Position `json:"end"`
					Verification struct {
						SourceCount int64 `json:"source_count"`
						TargetCount int64 `json:"target_count"`
					} `json:"verification"`
				}
				if json.Unmarshal([]byte(out.String()), &res) != nil || !res.Equal || res.End != end ||
					res.Verification.TargetCount != int64(end) {
					t.Fatalf("%s: last run: %s", c.name, out.String())
				}
				break
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("%s round %d: %v", c.name, round, err)
			}
			if st := ee.ExitCode(); st != -1 && st != 130 {
				// -1: killed; 130: interrupted. Anything else is a refusal
				// or a failure: the target was left in a state it rejects.
				t.Fatalf("%s round %d: exit %d\n%s", c.name, round, st, errOut.String())
			}
			killed++
		}
		t.Logf("%s: %d rounds stopped mid-copy, then a run to the end", c.name, killed)
		if killed < *copyKillRounds {
			t.Fatalf("%s: the copy ended after %d kills; want %d (a bigger source)", c.name, killed, *copyKillRounds)
		}
	}
	// The round trip, checked apart from the command: the two data
	// directories hold the same records (recorded-at to the microsecond).
	a, err := store.Open(src, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.Open(back, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := logcopy.Verify(ctx, a, b, 0, logcopy.Options{TimePrecision: time.Microsecond})
	if err != nil || !v.Equal || v.TargetCount != int64(end) {
		t.Fatalf("src and back: %+v %v", v, err)
	}
}

// TestCopyRefuses: hostile copies exit 2 or 3 and write nothing.
func TestCopyRefuses(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	tmp := t.TempDir()
	src, other, fresh := filepath.Join(tmp, "src"), filepath.Join(tmp, "other"), filepath.Join(tmp, "fresh")
	copySource(t, src, 50)
	copySource(t, other, 60) // another log, longer
	short := filepath.Join(tmp, "short")
	copySource(t, short, 20) // another log, shorter
	if _, err := pgstore.Migrate(ctx, db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, tmp, "", "copy", "--from", other, "--to", db.DSN); code != 0 {
		t.Fatalf("copy into pg: %d %s", code, errOut)
	}
	var pgBefore int64
	db.Pool.QueryRow(ctx, "SELECT count(*) FROM rewind.events").Scan(&pgBefore)
	srcBytes, otherBytes, shortBytes := dirBytes(src), dirBytes(other), dirBytes(short)
	for _, c := range []struct {
		name     string
		args     []string
		status   int
		contains string
	}{
		{"same directory", []string{"--from", src, "--to", src + "/."}, 2, "same data directory"},
		{"same pg store", []string{"--from", db.DSN, "--to", db.DSN}, 2, "same store"},
		{"same pg store spelled otherwise", []string{"--from", db.DSN, "--to",
			strings.Replace(db.DSN, "127.0.0.1", "localhost", 1)}, 2, "same store"},
		{"another log", []string{"--from", src, "--to", short}, 2, "not a prefix"},
		{"longer log", []string{"--from", src, "--to", other}, 2, "ahead of the source"},
		{"target ahead", []string{"--from", src, "--to", db.DSN}, 2, "ahead of the source"},
		{"pg ahead of dir", []string{"--from", db.DSN, "--to", src}, 2, "not a prefix"},
		{"bad scheme", []string{"--from", src, "--to", "mysql://root@db/x"}, 2, "postgres:// URL"},
		{"bad pg url", []string{"--from", src, "--to", "postgres://u@host:notaport/db"}, 2, "invalid port"},
		{"no source", []string{"--from", filepath.Join(tmp, "missing"), "--to", fresh}, 3, "no such data directory"},
		{"no target flag", []string{"--from", src}, 2, "--to"},
		{"bad batch", []string{"--from", src, "--to", fresh, "--batch", "0"}, 2, "batch"},
	} {
		code, _, errOut := run(t, tmp, "", append([]string{"copy"}, c.args...)...)
		if code != c.status || !strings.Contains(errOut, c.contains) {
			t.Errorf("%s: exit %d %q; want %d and %q", c.name, code, errOut, c.status, c.contains)
		}
	}
	var pgAfter int64
	db.Pool.QueryRow(ctx, "SELECT count(*) FROM rewind.events").Scan(&pgAfter)
	if pgAfter != pgBefore || dirBytes(src) != srcBytes || dirBytes(other) != otherBytes || dirBytes(short) != shortBytes {
		t.Fatalf("a refused copy wrote: pg %d -> %d events, src %d -> %d bytes, other %d -> %d bytes",
			pgBefore, pgAfter, srcBytes, dirBytes(src), otherBytes, dirBytes(other))
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused copy made its target directory: %v", err)
	}
	// --verify-only of two different logs names the first difference.
	code, out, _ := run(t, tmp, "", "copy", "--from", src, "--to", other, "--verify-only", "--json")
	if code != 5 || !strings.Contains(out, `"first_difference":1`) {
		t.Fatalf("verify-only of different logs: %d %s", code, out)
	}
}

// TestCopyKeywordDSNAndRepeatedIDs: a keyword=value connection string is a
// PostgreSQL store for copy, as for --store (it once made a directory of
// that name and exited 0), refused as the same store as its URL; and a data
// directory that holds an event id twice stops at it with exit 4 naming
// both positions, not as an internal error.
func TestCopyKeywordDSNAndRepeatedIDs(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	tmp := t.TempDir()
	if _, err := pgstore.Migrate(ctx, db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgconn.ParseConfig(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	kv := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, cfg.Database)

	src := filepath.Join(tmp, "src")
	s, err := store.Open(src, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Append(ctx, "a-1", rewind.Any, rewind.Event{Type: "T"}) // a store-made id
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.ReadStream(ctx, "a-1", rewind.ReadStreamOptions{From: 1, Limit: 1})
	if err != nil || len(evs) != 1 {
		t.Fatal(evs, err)
	}
	again, err := s.Append(ctx, "a-2", rewind.Any, rewind.Event{ID: evs[0].ID, Type: "T"})
	if err != nil || again.Duplicate {
		t.Fatalf("the embedded store took the made-up id again: %+v %v", again, err)
	}
	s.Close()

	code, out, errOut := run(t, tmp, "", "copy", "--from", src, "--to", kv, "--json")
	if code != 4 || !strings.Contains(out, `"code":"idempotency_conflict"`) ||
		!strings.Contains(errOut, fmt.Sprintf("already recorded at position %d", first.FirstPosition)) ||
		!strings.Contains(errOut, fmt.Sprintf("again at position %d", again.FirstPosition)) {
		t.Fatalf("copy of a log with a repeated id: exit %d\n%s\n%s", code, out, errOut)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 1 {
		t.Fatalf("the copy made something in the working directory: %v", left)
	}
	var n int64
	db.Pool.QueryRow(ctx, "SELECT count(*) FROM rewind.events").Scan(&n)
	if n >= int64(again.FirstPosition) {
		t.Fatalf("%d events in PostgreSQL; the copy went past the repeated id at %d", n, again.FirstPosition)
	}
	code, _, errOut = run(t, tmp, "", "copy", "--from", db.DSN, "--to", kv)
	if code != 2 || !strings.Contains(errOut, "same store") {
		t.Fatalf("the same store as URL and keyword string: exit %d %s", code, errOut)
	}
	if strings.Contains(errOut+out, "password") {
		t.Fatalf("output names a password: %s %s", out, errOut)
	}
}
