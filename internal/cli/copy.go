package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/internal/config"
	"github.com/rewindhq/rewind/logcopy"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/store"
)

func (a *app) copyCmd() *cobra.Command {
	var (
		from, to, fromSchema, toSchema string
		jsonOut, verifyOnly            bool
		batch                          int
		precision                      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "copy --from SRC --to DST",
		Short: "Copy a store's whole log into another store, keeping positions",
		Long: `Copy the log of SRC into DST, where each is a data directory of the embedded
store or a PostgreSQL store (postgres://… or a keyword=value connection string such as
'host=db dbname=events', made with 'rewind migrate'). Every
record keeps its position, event id, stream version, recorded-at time, metadata
and batch; deletes are copied as the delete records they are.

The copy is resumable: interrupted (Ctrl-C, a crash, kill -9), it is run again
with the same arguments and goes on from where the target stands, never writing
a record twice. Each import is atomic: into PostgreSQL one transaction by COPY
that takes the store's append lock, so readers of the target never see a gap;
into a data directory one log batch per source batch.

Before writing anything it checks that the target is empty or holds exactly the
source's first records (a prefix of it). It refuses, writing nothing (exit 2):
the same store on both sides, a target that holds another log or more than the
source, a source whose positions cannot be kept (its log starts after 1 because
retention removed the start). The copy ends at the source's last position when
it began.

PostgreSQL keeps event ids unique for ever; the embedded store accepts an id
again when it made the first one up, or after its deduplication window. A data
directory that holds an id twice is copied into PostgreSQL up to the chunk
before the second one, then the copy stops with idempotency_conflict (exit 4),
naming both positions: such a log cannot be copied into PostgreSQL whole.

At the end, or alone with --verify-only, it compares the two logs record by
record over the copied range (counts and SHA-256 digests); a difference exits 5
naming the first differing position. PostgreSQL keeps recorded-at times to the
microsecond, so they are compared to the microsecond when either side is one.

Progress, with the recent rate and an ETA, goes to stderr; --json prints a
summary on stdout.`,
		Example: `  rewind copy --from ./data --to postgres://rewind@db:5432/events
  rewind copy --from postgres://rewind@db/events --to ./restored --json
  rewind copy --from ./data --to postgres://rewind@db/events --verify-only`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || to == "" {
				return usageError(cmd, errors.New("give both --from and --to (a data directory or postgres://…)"))
			}
			if batch < 1 || batch > 100_000 {
				return invalidFlag("batch", fmt.Sprint(batch), "must be between 1 and 100000")
			}
			if precision < 0 || precision > time.Second {
				return invalidFlag("time-precision", precision.String(), "must be between 0 (automatic) and 1s")
			}
			return a.runCopy(cmd.Context(), copySide{from, fromSchema}, copySide{to, toSchema}, batch, precision, verifyOnly)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the source: a data directory, or a PostgreSQL store (postgres://… or 'host=… dbname=…')")
	f.StringVar(&to, "to", "", "the target: a data directory (made if missing), or a PostgreSQL store (postgres://… or 'host=… dbname=…')")
	f.StringVar(&fromSchema, "from-schema", pgstore.DefaultSchema, "PostgreSQL schema of --from")
	f.StringVar(&toSchema, "to-schema", pgstore.DefaultSchema, "PostgreSQL schema of --to")
	config.BoolVar(f, &verifyOnly, "verify-only", false, "only compare the two logs over the source's range; write nothing")
	config.IntVar(f, &batch, "batch", 5000, "records per import (one PostgreSQL transaction)")
	f.DurationVar(&precision, "time-precision", 0, "precision recorded-at times are compared at (default 1us when "+
		"either side is PostgreSQL, else 1ns); 1us compares two data directories one of which went through PostgreSQL")
	a.jsonFlag(cmd, &jsonOut)
	return cmd
}

// copyStore is a store a copy reads or writes.
type copyStore interface {
	logcopy.Target
	Close() error
}

// copySide is one side of a copy as the command line names it.
type copySide struct{ where, schema string }

func (c copySide) isPG() bool {
	return strings.HasPrefix(c.where, "postgres://") || strings.HasPrefix(c.where, "postgresql://") ||
		keywordDSN.MatchString(c.where)
}

// keywordDSN matches a PostgreSQL connection string of keyword=value
// pairs ('host=db1,db2 dbname=events …'), which --store takes too: a
// copy must not take one for a directory to make.
var keywordDSN = regexp.MustCompile(`^\s*[A-Za-z_]+\s*=`)

// shown is how a side is named in output: a DSN's password masked.
func (c copySide) shown() string {
	if c.isPG() {
		return audit.MaskDSN(redactURL(c.where))
	}
	return c.where
}

// check refuses what cannot be a store: a URL of another scheme.
func (c copySide) check(flag string) error {
	if i := strings.Index(c.where, "://"); i >= 0 && !c.isPG() {
		return invalidFlag(flag, redactURL(c.where), "must be a data directory or a postgres:// URL")
	}
	return nil
}

func redactURL(s string) string {
	if i := strings.Index(s, "@"); i >= 0 && strings.Contains(s[:i], "://") {
		return s[:strings.Index(s, "://")+3] + "…" + s[i:]
	}
	return s
}

// open opens one side. A source directory must hold a store; a target
// directory is made if missing (made reports it, for cleaning up after a
// refusal).
func (c copySide) open(ctx context.Context, flag string, source bool) (s copyStore, made bool, err error) {
	if c.isPG() {
		if c.schema == "" {
			return nil, false, emptySchema(flag + "-schema")
		}
		ps, err := pgstore.Open(ctx, c.where, pgstore.Config{Schema: c.schema})
		if err != nil {
			return nil, false, err
		}
		return ps, false, nil
	}
	if _, err := os.Stat(c.where); errors.Is(err, os.ErrNotExist) {
		if source {
			return nil, false, notFound("--%s %s: no such data directory", flag, c.where)
		}
		made = true
	}
	es, err := store.Open(c.where, store.Config{})
	if err != nil {
		if made {
			os.RemoveAll(c.where)
		}
		return nil, false, err
	}
	return es, made, nil
}

func sameDir(a, b string) bool {
	ra, err1 := filepath.Abs(a)
	rb, err2 := filepath.Abs(b)
	if err1 != nil || err2 != nil {
		return false
	}
	if x, err := filepath.EvalSymlinks(ra); err == nil {
		ra = x
	}
	if x, err := filepath.EvalSymlinks(rb); err == nil {
		rb = x
	}
	return ra == rb
}

func (a *app) runCopy(ctx context.Context, from, to copySide, batch int, precision time.Duration, verifyOnly bool) (err error) {
	if err := from.check("from"); err != nil {
		return err
	}
	if err := to.check("to"); err != nil {
		return err
	}
	if !from.isPG() && !to.isPG() && sameDir(from.where, to.where) {
		return &logcopy.RefusedError{Reason: fmt.Sprintf("--from and --to are the same data directory (%s)", from.where)}
	}
	src, _, err := from.open(ctx, "from", true)
	if err != nil {
		return err
	}
	defer src.Close()
	if verifyOnly && !to.isPG() {
		if _, err := os.Stat(to.where); errors.Is(err, os.ErrNotExist) {
			return notFound("--to %s: no such data directory", to.where)
		}
	}
	dst, made, err := to.open(ctx, "to", false)
	if err != nil {
		return err
	}
	defer func() {
		dst.Close()
		var re *logcopy.RefusedError
		if made && errors.As(err, &re) {
			os.RemoveAll(to.where) // refused: the directory made for it goes too
		}
	}()
	opts := logcopy.Options{Batch: batch, TimePrecision: precision}
	if precision == 0 && (from.isPG() || to.isPG()) {
		opts.TimePrecision = time.Microsecond
	}
	if verifyOnly {
		v, err := logcopy.Verify(ctx, src, dst, 0, opts)
		return a.copyOutcome(map[string]any{"verification": v}, v, err)
	}
	pr := a.newCopyProgress()
	opts.Progress = pr.update
	res, err := logcopy.Copy(ctx, src, dst, opts)
	pr.finish(err == nil)
	if err != nil && res.Verified == nil {
		return err
	}
	out := map[string]any{"from": from.shown(), "to": to.shown(), "target_before": res.TargetBefore,
		"end": res.End, "copied": res.Copied, "seconds": res.Seconds}
	if res.Seconds > 0 {
		out["records_per_sec"] = float64(res.Copied) / res.Seconds
	}
	if res.Verified != nil {
		out["verification"] = res.Verified
		return a.copyOutcome(out, *res.Verified, err)
	}
	return a.copyOutcome(out, logcopy.Verification{}, err)
}

// copyOutcome prints the summary and turns a mismatch into exit status 5.
func (a *app) copyOutcome(out map[string]any, v logcopy.Verification, err error) error {
	var me *logcopy.MismatchError
	mismatch := errors.As(err, &me)
	if err != nil && !mismatch {
		return err
	}
	if a.jsonOut {
		out["equal"] = !mismatch
		if mismatch {
			out["first_difference"] = me.Position
		}
		if perr := a.printJSON(out); perr != nil {
			return perr
		}
	} else {
		if c, ok := out["copied"]; ok {
			if c.(int64) == 0 {
				a.printf("nothing to copy: the target is at the source's position %d\n", out["end"])
			} else {
				a.printf("copied %d records (positions %d–%d)\n", c, out["target_before"].(rewind.Position)+1, out["end"])
			}
		}
		a.printf("verified positions 1–%d: source %d records, target %d; digests %s / %s\n", v.End, v.SourceCount,
			v.TargetCount, short(v.SourceDigest), short(v.TargetDigest))
	}
	if mismatch {
		return checkFailed(trimPrefix(err.Error()), a.jsonOut)
	}
	return nil
}

func short(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}

// copyProgress shows a copy's progress on stderr: a bar on a terminal,
// otherwise a line every few seconds, with the recent rate and an ETA.
type copyProgress struct {
	a       *app
	bar     *progress
	start   rewind.Position
	last    time.Time
	lastPos rewind.Position
	rate    float64 // records/s, exponentially weighted
}

func (a *app) newCopyProgress() *copyProgress {
	return &copyProgress{a: a, last: time.Now()}
}

func (p *copyProgress) update(done, end rewind.Position) {
	if p.bar == nil {
		p.bar = p.a.newProgress("copy", "records", int64(end))
		p.start = done
	}
	p.bar.set(int64(done))
	if p.bar.bar != nil {
		return
	}
	now := time.Now()
	dt := now.Sub(p.last).Seconds()
	if dt < 2 && done < end {
		return
	}
	r := float64(done-p.lastPos) / dt
	if p.rate == 0 {
		p.rate = r
	} else {
		p.rate = 0.5*p.rate + 0.5*r
	}
	eta := "-"
	if p.rate > 0 {
		eta = time.Duration(float64(end-done) / p.rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(p.a.stderr, "copy: position %d of %d (%.1f%%), %.0f records/s, ETA %s\n", done, end,
		100*float64(done)/float64(max(end, 1)), p.rate, eta)
	p.last, p.lastPos = now, done
}

func (p *copyProgress) finish(ok bool) {
	if p.bar != nil {
		p.bar.done(ok)
	}
}
