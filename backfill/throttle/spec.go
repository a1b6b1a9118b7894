package throttle

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind/backfill/internal/pgparse"
)

// Spec is a throttle in declarative form: what a job file's throttle:
// block and the command line's flags say. The zero Spec is the default
// throttle (DefaultSpec's signals); Off turns every signal off.
type Spec struct {
	// Off reads no signal, not even the default ones (a MaxRate still
	// caps the rate, and chunk sizes still adapt).
	Off bool
	// ChunkTime, MinChunk, MaxChunk, MaxRate, Interval and Grace are
	// Config's; zero means Config's default.
	ChunkTime          time.Duration
	MinChunk, MaxChunk int
	MaxRate            float64
	Interval           time.Duration
	Grace              int
	// SlowFrom is Config.SlowFrom: where the proportional slow-down
	// begins, a share of the signals' max; 1 turns it off. Zero is the
	// default: from the first reading above 0.
	SlowFrom float64
	// Lag is the target's replication lag (pg_stat_replication). Nil is
	// the default: max 1.5s, no critical.
	Lag *LagSpec
	// Load is the cluster's load (pg_stat_activity). Nil is the default:
	// max 32 active backends, 16 lock waits, a transaction open for 1h.
	Load *LoadSpec
	// Heartbeats read replicas' heartbeat tables, Queries custom SQL on
	// the target, HTTP endpoints, File a flag file.
	Heartbeats []HeartbeatSpec
	Queries    []QuerySpec
	HTTP       []HTTPSpec
	File       *FileSpec
}

// LagSpec: Off, or the thresholds of ReplicationLag.
type LagSpec struct {
	Off           bool
	Max, Critical time.Duration
}

// LoadSpec: Off, or the thresholds of Load (zero ignores a part).
type LoadSpec struct {
	Off                             bool
	MaxActive, CriticalActive       float64
	MaxLockWaits, CriticalLockWaits float64
	MaxXactAge, CriticalXactAge     time.Duration
}

// HeartbeatSpec is a HeartbeatLag on the replica at DSN.
type HeartbeatSpec struct {
	Name, DSN, Table, Column string
	Max, Critical            time.Duration
}

// QuerySpec is a Query on the target.
type QuerySpec struct {
	Name, SQL     string
	Max, Critical float64
}

// HTTPSpec is an HTTP signal.
type HTTPSpec struct {
	Name, URL     string
	Max, Critical float64
	Timeout       time.Duration
}

// FileSpec is a File signal.
type FileSpec struct {
	Path, Critical string
}

// The default thresholds.
const (
	DefaultMaxLag       = 1500 * time.Millisecond
	DefaultMaxActive    = 4
	DefaultMaxLockWaits = 16
	DefaultMaxXactAge   = time.Hour
)

// FieldError is a Spec value that is not valid: Field is its path in a
// job file's throttle: block ("replication_lag.max", "queries[2].sql").
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("throttle %s: %s", e.Field, e.Reason) }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Validate checks every value and returns the first *FieldError.
func (s *Spec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	dur := func(field string, d time.Duration) error {
		if d < 0 {
			return bad(field, "must not be negative, not %s", d)
		}
		return nil
	}
	switch {
	case s.ChunkTime != 0 && (s.ChunkTime < MinChunkTime || s.ChunkTime > MaxChunkTime):
		return bad("chunk_time", "must be from %s to %s, not %s", MinChunkTime, MaxChunkTime, s.ChunkTime)
	case s.MinChunk < 0 || s.MinChunk > ChunkLimit:
		return bad("min_chunk", "must be from 1 to %d rows, not %d", ChunkLimit, s.MinChunk)
	case s.MaxChunk < 0 || s.MaxChunk > ChunkLimit:
		return bad("max_chunk", "must be from 1 to %d rows, not %d", ChunkLimit, s.MaxChunk)
	case s.MinChunk > 0 && s.MaxChunk > 0 && s.MinChunk > s.MaxChunk:
		return bad("min_chunk", "%d must not exceed max_chunk %d", s.MinChunk, s.MaxChunk)
	case CheckRate(s.MaxRate) != nil:
		return bad("max_rate", "%v", CheckRate(s.MaxRate))
	case s.Interval < 0:
		return bad("interval", "must be positive, not %s", s.Interval)
	case s.Grace < 0:
		return bad("grace", "must be 0 or more failed reads, not %d", s.Grace)
	case math.IsNaN(s.SlowFrom) || s.SlowFrom < 0 || s.SlowFrom > 1:
		return bad("slow_from", "must be a share of the signals' max from 0 to 1 (1 or off: no slow-down), not %g", s.SlowFrom)
	}
	if l := s.Lag; l != nil && !l.Off {
		if err := seconds(l.Max, l.Critical).validate(secondsText); err != nil {
			return bad("replication_lag", "%v", err)
		}
	}
	if l := s.Load; l != nil && !l.Off {
		for _, p := range []struct {
			field string
			th    Threshold
			what  func(float64) string
		}{{"active", Threshold{l.MaxActive, l.CriticalActive}, number},
			{"lock_waits", Threshold{l.MaxLockWaits, l.CriticalLockWaits}, number},
			{"xact_age", seconds(l.MaxXactAge, l.CriticalXactAge), secondsText}} {
			if p.th == (Threshold{}) {
				continue
			}
			if err := p.th.validate(p.what); err != nil {
				return bad("load", "%s: %v", p.field, err)
			}
		}
		if (*l == LoadSpec{}) {
			return bad("load", "needs a threshold (max_active, max_lock_waits, max_xact_age or their critical_ forms), or off")
		}
	}
	names := map[string]string{}
	name := func(field, kind, n string) error {
		if !nameRE.MatchString(n) {
			return bad(field+".name", "must be 1 to 63 letters, digits, '_', '.' or '-', not %q", n)
		}
		if prev, ok := names[kind+n]; ok {
			return bad(field+".name", "%q is also the name of %s", n, prev)
		}
		names[kind+n] = field
		return nil
	}
	for i, h := range s.Heartbeats {
		f := fmt.Sprintf("heartbeat[%d]", i+1)
		if err := name(f, "h", h.Name); err != nil {
			return err
		}
		switch {
		case h.DSN == "":
			return bad(f+".dsn", "is required: the replica's connection string")
		case h.Table == "":
			return bad(f+".table", "is required: the heartbeat table")
		}
		if _, err := pgxpool.ParseConfig(h.DSN); err != nil {
			return bad(f+".dsn", "is not a valid connection string (not shown: it may hold a password)")
		}
		if err := seconds(h.Max, h.Critical).validate(secondsText); err != nil {
			return bad(f, "%v", err)
		}
	}
	for i, q := range s.Queries {
		f := fmt.Sprintf("queries[%d]", i+1)
		if err := name(f, "q", q.Name); err != nil {
			return err
		}
		if strings.TrimSpace(q.SQL) == "" {
			return bad(f+".sql", "is required: a query returning one number")
		}
		if err := oneQuery(q.SQL); err != nil {
			return bad(f+".sql", "%v", err)
		}
		if err := (Threshold{q.Max, q.Critical}).validate(number); err != nil {
			return bad(f, "%v", err)
		}
	}
	for i, h := range s.HTTP {
		f := fmt.Sprintf("http[%d]", i+1)
		if err := name(f, "u", h.Name); err != nil {
			return err
		}
		u, err := url.Parse(h.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(f+".url", "must be an http:// or https:// URL with a host, not %q", h.URL)
		}
		if err := dur(f+".timeout", h.Timeout); err != nil {
			return err
		}
		if th := (Threshold{h.Max, h.Critical}); th != (Threshold{}) {
			if err := th.validate(number); err != nil {
				return bad(f, "%v", err)
			}
		}
	}
	if f := s.File; f != nil && f.Path == "" && f.Critical == "" {
		return bad("file", "needs path, critical or both")
	}
	return nil
}

// Build makes the Throttler the spec describes, with its signals reading
// target (the target database). Heartbeat replicas get pools of their own,
// which close releases; they connect when first read, so an unreachable
// replica pauses the run (fail closed) rather than failing its start.
func (s Spec) Build(target *pgxpool.Pool, cfg Config) (*Throttler, func(), error) {
	if err := s.Validate(); err != nil {
		return nil, nil, err
	}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	cfg.ChunkTime, cfg.MinChunk, cfg.MaxChunk = s.ChunkTime, s.MinChunk, s.MaxChunk
	cfg.Interval, cfg.Grace = pick(s.Interval, cfg.Interval), max(s.Grace, cfg.Grace)
	if s.MinChunk > 0 && s.MaxChunk == 0 {
		cfg.MaxChunk = max(s.MinChunk, 100_000)
	}
	if s.MaxChunk > 0 && s.MinChunk == 0 {
		cfg.MinChunk = min(s.MaxChunk, 10)
	}
	cfg.MaxRate = s.MaxRate
	cfg.SlowFrom = pick(s.SlowFrom, cfg.SlowFrom)
	if !s.Off {
		cfg.Signals = append(cfg.Signals, s.signals(target)...)
		for _, h := range s.Heartbeats {
			pc, err := pgxpool.ParseConfig(h.DSN)
			if err != nil {
				closeAll()
				return nil, nil, &FieldError{Field: "heartbeat " + h.Name + " dsn", Reason: "is not a valid connection string"}
			}
			if pc.ConnConfig.ConnectTimeout == 0 {
				pc.ConnConfig.ConnectTimeout = 5 * time.Second
			}
			pc.MaxConns = 2
			pool, err := pgxpool.NewWithConfig(context.Background(), pc)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("heartbeat %s: %w", h.Name, err)
			}
			closers = append(closers, pool.Close)
			cfg.Signals = append(cfg.Signals, &HeartbeatLag{DB: pool, Table: h.Table, Column: h.Column, Max: h.Max,
				Critical: h.Critical, Label: h.Name})
		}
	}
	t, err := New(cfg)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return t, closeAll, nil
}

// signals are the spec's signals on the target, defaults included.
func (s Spec) signals(target Querier) []Signal {
	var out []Signal
	lag := s.Lag
	if lag == nil {
		lag = &LagSpec{Max: DefaultMaxLag}
	}
	if !lag.Off {
		out = append(out, &ReplicationLag{DB: target, Max: lag.Max, Critical: lag.Critical})
	}
	load := s.Load
	if load == nil {
		load = &LoadSpec{MaxActive: DefaultMaxActive, MaxLockWaits: DefaultMaxLockWaits, MaxXactAge: DefaultMaxXactAge}
	}
	if !load.Off {
		out = append(out, &Load{DB: target, Active: Threshold{load.MaxActive, load.CriticalActive},
			LockWaits: Threshold{load.MaxLockWaits, load.CriticalLockWaits}, XactAge: load.MaxXactAge, XactAgeCritical: load.CriticalXactAge})
	}
	for _, q := range s.Queries {
		out = append(out, &Query{Label: q.Name, DB: target, SQL: q.SQL, Threshold: Threshold{q.Max, q.Critical}})
	}
	for _, h := range s.HTTP {
		out = append(out, &HTTP{Label: h.Name, URL: h.URL, Threshold: Threshold{h.Max, h.Critical}, Timeout: h.Timeout})
	}
	if s.File != nil {
		out = append(out, &File{Path: s.File.Path, Critical: s.File.Critical})
	}
	return out
}

func pick[T comparable](v, def T) T {
	var zero T
	if v != zero {
		return v
	}
	return def
}

// oneQuery checks that sql is one SELECT (or VALUES, or WITH … SELECT):
// the signal reads its one number as (sql)::float8.
func oneQuery(sql string) error {
	out, err := pgparse.ParseJSON(sql)
	if err != nil {
		return fmt.Errorf("is not valid SQL: %v", err)
	}
	var tree struct {
		Stmts []struct {
			Stmt map[string]json.RawMessage `json:"stmt"`
		} `json:"stmts"`
	}
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		return fmt.Errorf("could not be read: %v", err)
	}
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt["SelectStmt"] == nil {
		return fmt.Errorf("must be one SELECT returning one number, not %d statement(s) or another kind", len(tree.Stmts))
	}
	var stmt any
	if err := json.Unmarshal(tree.Stmts[0].Stmt["SelectStmt"], &stmt); err != nil {
		return fmt.Errorf("could not be read: %v", err)
	}
	// The query runs on the backfill's pooled connections, between its
	// chunks: a change it made to the session would reach the chunks.
	if fn, does := pgparse.SessionFunc(stmt); fn != "" {
		return fmt.Errorf("calls %s(), which %s: a throttle query runs on the backfill's pooled connections, "+
			"so it may not call it", fn, does)
	}
	return nil
}
