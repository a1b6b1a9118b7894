package jobfile_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind/backfill/jobfile"
	"github.com/rewindhq/rewind/backfill/throttle"
)

const throttled = `name: t
version: 1
table: items
key: id
set:
  n: n + 1
throttle:
  chunk_time: 250ms
  min_chunk: 20
  max_chunk: 5000
  max_rate: 2500
  replication_lag: {max: 2s, critical: 30s}
  load: off
  queries:
    - name: depth
      sql: SELECT count(*) FROM jobs
      max: 100
      critical: 1000
  http:
    - {name: ops, url: "https://ops.example/throttle"}
  file: {path: /tmp/slow, critical: /tmp/stop}
  slow_from: 0.5
`

func TestThrottleBlock(t *testing.T) {
	t.Parallel()
	f, err := jobfile.Parse("job.yaml", []byte(throttled))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Throttle()
	if s.ChunkTime != 250*time.Millisecond || s.MinChunk != 20 || s.MaxChunk != 5000 || s.MaxRate != 2500 || s.SlowFrom != 0.5 ||
		s.Lag == nil || s.Lag.Max != 2*time.Second || s.Lag.Critical != 30*time.Second || s.Load == nil || !s.Load.Off ||
		len(s.Queries) != 1 || s.Queries[0] != (throttle.QuerySpec{Name: "depth", SQL: "SELECT count(*) FROM jobs", Max: 100, Critical: 1000}) ||
		len(s.HTTP) != 1 || s.HTTP[0].URL != "https://ops.example/throttle" || s.File == nil || s.File.Critical != "/tmp/stop" {
		t.Errorf("throttle block read as %+v", s)
	}
	noSlow, err := jobfile.Parse("job.yaml", []byte(strings.Replace(throttled, "slow_from: 0.5", "slow_from: off", 1)))
	if err != nil || noSlow.Throttle().SlowFrom != 1 {
		t.Errorf("slow_from: off read as %+v (%v), want slow_from 1 (no slow-down)", noSlow.Throttle(), err)
	}
	off, err := jobfile.Parse("job.yaml", []byte(strings.Replace(throttled, throttled[strings.Index(throttled, "throttle:"):], "throttle: off\n", 1)))
	if err != nil || !off.Throttle().Off {
		t.Errorf("throttle: off read as %+v (%v)", off.Throttle(), err)
	}
}

func TestThrottleBlockErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, from, to, want string }{
		{"unknown key", "max_rate: 2500", "max_rows: 2500", `throttle (job file job.yaml line 7): line 11: unknown key "max_rows"`},
		{"negative max", "max: 100", "max: -100", "throttle.queries[1].max (job file job.yaml line 17): must not be negative"},
		{"critical under max", "critical: 1000", "critical: 10", "throttle.queries[1] (job file job.yaml line 15): critical 10 must not be under max 100"},
		{"lag critical under max", "{max: 2s, critical: 30s}", "{max: 2s, critical: 1s}", "throttle.replication_lag (job file job.yaml line 12): critical 1s must not be under max 2s"},
		{"bad duration", "chunk_time: 250ms", "chunk_time: 250", `throttle.chunk_time (job file job.yaml line 8): must be a duration with a unit`},
		{"chunk time out of range", "chunk_time: 250ms", "chunk_time: 1h", "throttle.chunk_time (job file job.yaml line 8): must be from 10ms to 1m0s"},
		{"bad url", `"https://ops.example/throttle"`, `"ops.example"`, `throttle.http[1].url (job file job.yaml line 20): must be an http:// or https:// URL`},
		{"slow_from over 1", "slow_from: 0.5", "slow_from: 2", "throttle.slow_from (job file job.yaml line 22): must be a share of the signals' max"},
		{"slow_from negative", "slow_from: 0.5", "slow_from: -0.5", "throttle.slow_from (job file job.yaml line 22): must not be negative"},
		{"negative rate", "max_rate: 2500", "max_rate: -1", "throttle.max_rate (job file job.yaml line 11): must not be negative"},
		{"rate as text", "max_rate: 2500", "max_rate: fast", "throttle.max_rate (job file job.yaml line 11): must be a number"},
		{"min over max", "min_chunk: 20", "min_chunk: 9000", "throttle.min_chunk (job file job.yaml line 9): 9000 must not exceed max_chunk 5000"},
		{"query without sql", "      sql: SELECT count(*) FROM jobs\n", "", "throttle.queries[1] (job file job.yaml line 15): sql is required"},
		{"load without thresholds", "load: off", "load: {}", "throttle.load (job file job.yaml line 13): needs a threshold"},
		{"key twice", "  max_rate: 2500\n", "  max_rate: 2500\n  max_rate: 10\n", "throttle.max_rate (job file job.yaml line 12): is given twice"},
		// An outside test found these accepted: 0 meant the default, a
		// count took 2.5, a blank or two-statement query ran.
		{"chunk time 0", "chunk_time: 250ms", "chunk_time: 0s", "throttle.chunk_time (job file job.yaml line 8): must not be 0"},
		{"max chunk 0", "max_chunk: 5000", "max_chunk: 0", "throttle.max_chunk (job file job.yaml line 10): must not be 0"},
		{"active not whole", "load: off", "load: {max_active: 2.5}", "throttle.load.max_active (job file job.yaml line 13): must be a whole number"},
		{"rate NaN", "max_rate: 2500", "max_rate: .nan", "throttle.max_rate (job file job.yaml line 11): must be a number"},
		{"blank sql", "sql: SELECT count(*) FROM jobs", `sql: " "`, "throttle.queries[1].sql (job file job.yaml line 16): is required"},
		{"two statements", "sql: SELECT count(*) FROM jobs", `sql: "SELECT 1; SELECT 50"`, "must be one SELECT"},
		// A second outside test found these accepted: 0 meant the default,
		// a rate of one row per 10^292 years never ran, a query changed
		// the session of the chunks after it.
		{"interval 0", "max_rate: 2500", "max_rate: 2500\n  interval: 0s", "throttle.interval (job file job.yaml line 12): must not be 0"},
		{"http timeout 0", `url: "https://ops.example/throttle"}`, `url: "https://ops.example/throttle", timeout: 0s}`, "throttle.http[1].timeout (job file job.yaml line 20): must not be 0"},
		{"rate tiny", "max_rate: 2500", "max_rate: 1e-300", "throttle.max_rate (job file job.yaml line 11): must be 0 (no cap) or at least 0.01"},
		{"query sets the session", "sql: SELECT count(*) FROM jobs", `sql: "SELECT set_config('role', 'x', false)::int"`, "throttle.queries[1].sql (job file job.yaml line 16): calls set_config()"},
	} {
		y := strings.Replace(throttled, c.from, c.to, 1)
		if y == throttled {
			t.Fatalf("%s: %q not in the job", c.name, c.from)
		}
		_, err := jobfile.Parse("job.yaml", []byte(y))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant it to contain %q", c.name, err, c.want)
		}
	}
}
