package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/backfill"
)

// pgbenchLoad is `rewind bench backfill --load pgbench`: pgbench's
// built-in TPC-B-like script with --clients clients, in a scratch
// database of the same cluster, alone and then during default-throttled
// backfills of the benchmark table, each for --pgbench-time.
type pgbenchLoad struct {
	clients int
	scale   int
	dur     time.Duration
	binary  string // "" finds it
}

// pgbenchResult is what the load adds to the --json line.
type pgbenchResult struct {
	// P99Alone and P99During are pgbench's 99th percentile transaction
	// latency in milliseconds, alone and during the backfill; the ratio
	// is during / alone (target ≤ 1.5).
	P99Alone  float64 `json:"pgbench_p99_alone_ms"`
	P99During float64 `json:"pgbench_p99_during_ms"`
	P99Ratio  float64 `json:"pgbench_p99_ratio"`
	TPSAlone  float64 `json:"pgbench_tps_alone"`
	TPSDuring float64 `json:"pgbench_tps_during"`
	// BackfillRPS is the rows per second the default-throttled backfill
	// changed while pgbench ran (new runs of the job follow each other for
	// the whole window), ThrottledSeconds the time its workers waited.
	BackfillRPS      float64 `json:"pgbench_backfill_rps"`
	BackfillRuns     int     `json:"pgbench_backfill_runs"`
	ThrottledSeconds float64 `json:"pgbench_backfill_throttled_seconds"`
	Clients          int     `json:"pgbench_clients"`
	Seconds          float64 `json:"pgbench_seconds"`
}

func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(found) == 0 {
		return "", errors.New("pgbench not found on PATH nor in /usr/lib/postgresql/*/bin: install PostgreSQL's client tools or give --pgbench")
	}
	slices.Sort(found)
	return found[len(found)-1], nil
}

// run measures pgbench alone, then during backfills of benchTable by r.
func (l pgbenchLoad) run(ctx context.Context, work *pgxpool.Pool, r *backfill.Runner, rows int64) (*pgbenchResult, error) {
	bin := l.binary
	if bin == "" {
		var err error
		if bin, err = findPgbench(); err != nil {
			return nil, err
		}
	}
	cc := work.Config().ConnConfig
	scratch := fmt.Sprintf("rewind_bench_pgbench_%d", time.Now().UnixNano())
	if _, err := work.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{scratch}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create the pgbench database: %w", err)
	}
	defer work.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{scratch}.Sanitize()+" WITH (FORCE)")
	env := append(os.Environ(), "PGPASSWORD="+cc.Password, "PGCONNECT_TIMEOUT=10")
	base := []string{"-h", cc.Host, "-p", strconv.Itoa(int(cc.Port)), "-U", cc.User}
	init := exec.CommandContext(ctx, bin, append(base, "-i", "-q", "-s", strconv.Itoa(l.scale), scratch)...)
	init.Env = env
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	dir, err := os.MkdirTemp("", "rewind-pgbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bench := func(name string) ([]float64, error) {
		cmd := exec.CommandContext(ctx, bin, append(base, "-c", strconv.Itoa(l.clients), "-j", "2", "-T",
			strconv.Itoa(int(l.dur.Seconds())), "-l", "--log-prefix="+filepath.Join(dir, name), scratch)...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pgbench: %v: %s", err, out)
		}
		return readPgbenchLogs(filepath.Join(dir, name))
	}
	res := &pgbenchResult{Clients: l.clients, Seconds: l.dur.Seconds()}
	alone, err := bench("alone")
	if err != nil {
		return nil, err
	}
	// During: backfills of the table, new run after new run, for as long
	// as pgbench runs; then the one in flight is stopped.
	bctx, stop := context.WithCancel(ctx)
	type outcome struct {
		rows      int64
		runs      int
		throttled float64
		err       error
	}
	done := make(chan outcome, 1)
	started := time.Now()
	go func() {
		var o outcome
		name, last := "bench-pgbench-"+time.Now().UTC().Format("20060102T150405.000000000"), ""
		for i := 0; bctx.Err() == nil; i++ {
			job := &backfill.Job{Name: name, Version: "1", Source: &backfill.Table{Name: benchTable, Key: []string{"id"}},
				Set: map[string]string{"n": "n + 1"}} // no chunk: sizes adapt; the default throttle
			res, err := r.Apply(bctx, job, backfill.ApplyOptions{NewRun: last})
			if res != nil {
				o.rows += res.RowsSeen
				last = res.Run.ID
				if st, serr := r.Status(context.WithoutCancel(ctx), res.Run.ID); serr == nil && st.Throttle != nil {
					o.throttled += st.Throttle.ThrottledSeconds
				}
			}
			if err != nil {
				if bctx.Err() == nil {
					o.err = err
				}
				break
			}
			o.runs++
		}
		done <- o
	}()
	during, err := bench("during")
	elapsed := time.Since(started)
	stop()
	o := <-done
	if err != nil {
		return nil, err
	}
	if o.err != nil {
		return nil, fmt.Errorf("the backfill during pgbench: %w", o.err)
	}
	res.P99Alone, res.P99During = percentile(alone, 0.99), percentile(during, 0.99)
	res.P99Ratio = res.P99During / res.P99Alone
	res.TPSAlone, res.TPSDuring = float64(len(alone))/l.dur.Seconds(), float64(len(during))/l.dur.Seconds()
	res.BackfillRPS, res.BackfillRuns, res.ThrottledSeconds = float64(o.rows)/elapsed.Seconds(), o.runs, o.throttled
	return res, nil
}

// readPgbenchLogs reads the latencies (ms) of pgbench's per-transaction
// logs prefix.*: "client transaction latency_us script epoch us".
func readPgbenchLogs(prefix string) ([]float64, error) {
	files, _ := filepath.Glob(prefix + ".*")
	if len(files) == 0 {
		return nil, fmt.Errorf("pgbench wrote no transaction log %s.*", prefix)
	}
	var lat []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseFloat(fields[2], 64)
			if err != nil {
				continue
			}
			lat = append(lat, us/1000)
		}
		fh.Close()
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("pgbench's logs %s.* hold no transaction", prefix)
	}
	return lat, nil
}

// percentile is the q-quantile of v (nearest rank).
func percentile(v []float64, q float64) float64 {
	s := slices.Sorted(slices.Values(v))
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
