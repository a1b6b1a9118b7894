package throttle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/rewindhq/rewind"
)

// Config configures a Throttler. The zero value of each field means its
// default.
type Config struct {
	// Signals are read before chunks; the run waits while one is at or
	// over its max and pauses when one is critical or cannot be read.
	Signals []Signal
	// MaxRate caps the rows per second of the Throttler's workers together
	// (one process's workers on one run). 0 is no cap.
	MaxRate float64
	// Interval is how long Wait sleeps before reading the signals again
	// while one is at or over its max. Defaults to 1s.
	Interval time.Duration
	// ReadEvery is how old a reading may be before a chunk: the signals
	// are read again when their last reading is older. A negative value
	// reads them before every chunk. Defaults to 100ms.
	ReadEvery time.Duration
	// ReadTimeout bounds each read of a signal: one that takes longer (a
	// query stuck behind a lock, an endpoint that hangs) cannot be read,
	// and the throttle fails closed. A signal with a longer timeout of its
	// own (HTTP's) gets that one and a second. Defaults to 10s.
	ReadTimeout time.Duration
	// Grace is how many reads in a row of one signal may fail before the
	// run pauses: a transient error (a dropped connection) then only
	// waits for Interval. Defaults to 0: the first failure pauses.
	Grace int
	// ChunkTime is the time a chunk should take, for the Sizer. Defaults
	// to 500ms; between 10ms and 1m.
	ChunkTime time.Duration
	// MinChunk and MaxChunk bound the Sizer's chunk sizes. Default to 10
	// and 100,000 rows.
	MinChunk, MaxChunk int
	// SlowFrom is the level (the signals' highest reading over its max,
	// averaged over the recent reads) from which the workers slow down in
	// proportion: shorter chunks and a rest after each, more as the level
	// nears the max (see slow.go). Between 0 and 1; 1 turns the slow-down
	// off, so that workers run at full speed until a signal is at its
	// max. Defaults to 0: in proportion from the first reading above 0.
	SlowFrom float64
	// Logger receives a line when the throttler starts and stops waiting.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// Bounds of Config's numbers.
const (
	MinChunkTime = 10 * time.Millisecond
	MaxChunkTime = time.Minute
	// ChunkLimit is the largest chunk, in rows, a job or a Sizer may use.
	ChunkLimit = 1_000_000
)

func (c Config) withDefaults() (Config, error) {
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.ReadEvery == 0 {
		c.ReadEvery = 100 * time.Millisecond
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.ChunkTime == 0 {
		c.ChunkTime = 500 * time.Millisecond
	}
	if c.MinChunk == 0 {
		c.MinChunk = 10
	}
	if c.MaxChunk == 0 {
		c.MaxChunk = 100_000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	bad := func(field, value, reason string) error {
		return &rewind.ValidationError{Field: "throttle " + field, Value: value, Reason: reason}
	}
	switch {
	case c.MaxRate < 0:
		return c, bad("max_rate", number(c.MaxRate), "must be 0 (no cap) or a positive number of rows per second")
	case c.Interval < 0:
		return c, bad("interval", c.Interval.String(), "must be positive, such as 1s")
	case c.Grace < 0:
		return c, bad("grace", fmt.Sprint(c.Grace), "must be 0 or more reads")
	case math.IsNaN(c.SlowFrom) || c.SlowFrom < 0 || c.SlowFrom > 1:
		return c, bad("slow_from", number(c.SlowFrom), "must be from 0 to 1 (a share of the signals' max; 1 turns the slow-down off)")
	case c.ChunkTime < MinChunkTime || c.ChunkTime > MaxChunkTime:
		return c, bad("chunk_time", c.ChunkTime.String(), fmt.Sprintf("must be from %s to %s", MinChunkTime, MaxChunkTime))
	case c.MinChunk < 1 || c.MinChunk > ChunkLimit:
		return c, bad("min_chunk", fmt.Sprint(c.MinChunk), fmt.Sprintf("must be from 1 to %d rows", ChunkLimit))
	case c.MaxChunk < 1 || c.MaxChunk > ChunkLimit:
		return c, bad("max_chunk", fmt.Sprint(c.MaxChunk), fmt.Sprintf("must be from 1 to %d rows", ChunkLimit))
	case c.MinChunk > c.MaxChunk:
		return c, bad("min_chunk", fmt.Sprint(c.MinChunk), fmt.Sprintf("must not exceed max_chunk (%d)", c.MaxChunk))
	}
	seen := map[string]bool{}
	for _, s := range c.Signals {
		if seen[s.Name()] {
			return c, bad("signal", s.Name(), "is given twice: give each signal a name of its own")
		}
		seen[s.Name()] = true
	}
	return c, nil
}

// ErrPaused: a throttle signal paused the run (see *PauseError).
var ErrPaused = errors.New("rewind: throttle paused the run")

// PauseError is why a Throttler paused the work: a signal crossed its
// critical threshold, or could not be read (fail closed).
type PauseError struct {
	// Signal is the signal's name.
	Signal string
	// Unreadable is set when the signal could not be read; Err is why.
	Unreadable bool
	Err        error
	// Reason says what happened in words.
	Reason string
}

func (e *PauseError) Error() string {
	return fmt.Sprintf("throttle signal %s paused the run: %s", e.Signal, e.Reason)
}

// Unwrap lets errors.Is match ErrPaused, and an unreadable signal's error.
func (e *PauseError) Unwrap() []error { return []error{ErrPaused, e.Err} }

// Status is what a Throttler did so far, for status and list.
type Status struct {
	// Reason is why the work waits now, or "" when it does not.
	Reason string `json:"reason,omitempty"`
	// Throttled is the time workers spent waiting, summed over workers,
	// the waits going on included up to now.
	Throttled time.Duration `json:"-"`
	// Waits counts the waits, the ones going on included.
	Waits int64 `json:"waits"`
	// Rows counts the rows admitted through Wait.
	Rows int64 `json:"rows"`
}

// Throttler decides when the next chunk may start. It is safe for
// concurrent use: one Throttler is shared by a process's workers on a run,
// so MaxRate is per run per process.
type Throttler struct {
	cfg  Config
	rate *rateCap

	readMu sync.Mutex // serializes reads, so that workers share one
	last   time.Time
	seen   []reading
	fails  map[string]int
	// level is the average of the reads' highest utilisation, of
	// signal levelOf lately (see slow.go).
	level   float64
	leveled bool
	levelOf string

	// now and sleep are the clock; tests replace them.
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu        sync.Mutex
	waiting   map[int64]*wait // by wait id: the Waits going on
	nextID    int64
	throttled time.Duration
	waits     int64
	rows      int64
}

// wait is one Wait going on: why it waits now, and since when ("" and
// zero while it has not had to wait).
type wait struct {
	reason string
	since  time.Time
}

type reading struct {
	signal string
	r      Reading
	err    error
}

// New returns a Throttler, with cfg's defaults applied and its values
// checked (a *rewind.ValidationError).
func New(cfg Config) (*Throttler, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Throttler{cfg: c, rate: newRateCap(c.MaxRate), fails: map[string]int{}, waiting: map[int64]*wait{},
		now: time.Now, sleep: sleep}, nil
}

// Config returns the throttler's configuration, defaults applied.
func (t *Throttler) Config() Config { return t.cfg }

// SetMaxRate changes the rows-per-second cap (0: none), for the next Wait.
func (t *Throttler) SetMaxRate(rowsPerSec float64) error {
	if rowsPerSec < 0 {
		return &rewind.ValidationError{Field: "max rate", Value: number(rowsPerSec),
			Reason: "must be 0 (no cap) or a positive number of rows per second"}
	}
	t.rate.set(rowsPerSec)
	return nil
}

// MaxRate is the rows-per-second cap now (0: none).
func (t *Throttler) MaxRate() float64 { return t.rate.limit() }

// Wait blocks until the next chunk, of rows rows, may start: while a
// signal is at or over its max it waits, reading them again every
// Interval, then it takes rows from the rate cap. It returns a *PauseError
// when a signal is critical or cannot be read (after Grace failed reads
// in a row), and ctx's error when ctx ends.
func (t *Throttler) Wait(ctx context.Context, rows int) error {
	return t.WaitBetween(ctx, rows, nil)
}

// WaitBetween is Wait, calling between (when not nil) each time it is
// about to sleep before reading the signals again: a worker's chunk
// boundary, so that a run waiting on its throttle still heeds a pause, a
// cancel or a lowered worker cap. An error from between ends the wait
// with that error.
func (t *Throttler) WaitBetween(ctx context.Context, rows int, between func() error) error {
	return t.WaitAfter(ctx, rows, 0, between)
}

// WaitAfter is WaitBetween after a chunk that took took: while the
// signals are between Config.SlowFrom and their max, the worker first
// rests in proportion to took (see slow.go); the rest counts as a wait.
// took 0 (the first chunk) rests not.
func (t *Throttler) WaitAfter(ctx context.Context, rows int, took time.Duration, between func() error) error {
	id := t.begin()
	defer t.end(id)
	var started time.Time
	if took > 0 {
		// The level after this chunk decides its rest.
		if _, err := t.check(ctx); err != nil {
			t.add(id, started, 0)
			return err
		}
		var err error
		if started, err = t.rest(ctx, id, took, between); err != nil {
			t.add(id, started, 0)
			return err
		}
	}
	waited := false
	for {
		busy, err := t.check(ctx)
		if err != nil {
			t.add(id, started, 0)
			return err
		}
		if busy == "" {
			break
		}
		if !waited {
			waited = true
			if started.IsZero() {
				started = t.now()
			}
			t.cfg.Logger.Info("throttle: waiting", "reason", busy)
		}
		t.setReason(id, busy, started)
		if between != nil {
			if err := between(); err != nil {
				t.add(id, started, 0)
				return err
			}
		}
		if err := t.sleep(ctx, t.cfg.Interval); err != nil {
			t.add(id, started, 0)
			return err
		}
	}
	if waited {
		t.cfg.Logger.Info("throttle: going on", "waited", t.now().Sub(started).Round(time.Millisecond))
	}
	d, cancel := t.rate.reserve(t.now(), rows)
	if d > 0 {
		if started.IsZero() {
			started = t.now()
		}
		t.setReason(id, fmt.Sprintf("max rate %s rows/s", number(t.rate.limit())), started)
		if err := t.sleep(ctx, d); err != nil {
			cancel(time.Now()) // the tokens not yet due go back to the bucket
			t.add(id, started, 0)
			return err
		}
		// A signal may have turned critical (or unreadable) while this
		// worker slept for tokens: read again before the chunk starts.
		if _, err := t.check(ctx); err != nil {
			cancel(time.Now())
			t.add(id, started, 0)
			return err
		}
	}
	t.add(id, started, int64(rows))
	return nil
}

// check reads the signals (or reuses a recent reading) and returns the
// reason to wait, "" to go on, or a *PauseError.
func (t *Throttler) check(ctx context.Context) (string, error) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	if t.seen == nil || t.cfg.ReadEvery < 0 || time.Since(t.last) >= t.cfg.ReadEvery {
		t.seen = t.seen[:0]
		for _, s := range t.cfg.Signals {
			r, err := t.read(ctx, s)
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			t.seen = append(t.seen, reading{signal: s.Name(), r: r, err: err})
			if err != nil {
				t.fails[s.Name()]++
			} else {
				t.fails[s.Name()] = 0
			}
		}
		t.last = time.Now()
		top, name := 0.0, ""
		for _, x := range t.seen {
			if x.err == nil && (name == "" || x.r.Util > top) {
				top, name = x.r.Util, x.signal
			}
		}
		if name != "" {
			t.observe(top, name)
		}
	}
	var busy []string
	for _, x := range t.seen {
		switch {
		case x.err != nil && t.fails[x.signal] > t.cfg.Grace:
			return "", &PauseError{Signal: x.signal, Unreadable: true, Err: x.err,
				Reason: fmt.Sprintf("it cannot be read (%v); the throttle fails closed: fix the signal or remove it, then resume the run", x.err)}
		case x.err != nil:
			busy = append(busy, fmt.Sprintf("%s cannot be read (%v), read again in %s", x.signal, x.err, t.cfg.Interval))
			t.last = time.Time{} // read again after the interval
		case x.r.Critical:
			return "", &PauseError{Signal: x.signal, Reason: x.r.Reason}
		case x.r.Util >= 1:
			reason := x.r.Reason
			if reason == "" {
				reason = x.signal + " at its max"
			}
			busy = append(busy, reason)
		}
	}
	if len(busy) > 0 {
		t.last = time.Time{} // while waiting, read before the next check
	}
	return strings.Join(busy, "; "), nil
}

func (t *Throttler) begin() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextID++
	t.waiting[t.nextID] = &wait{}
	return t.nextID
}

func (t *Throttler) end(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.waiting, id)
}

// setReason says why wait id waits now, and since when it waits.
func (t *Throttler) setReason(id int64, reason string, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting[id] = &wait{reason: reason, since: since}
}

// add ends wait id, which waited since started (zero: it did not), and
// counts rows admitted. Counting it and ending it are one step, so that
// Status never counts a wait twice, as done and as going on.
func (t *Throttler) add(id int64, started time.Time, rows int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !started.IsZero() {
		t.throttled += t.now().Sub(started)
		t.waits++
	}
	delete(t.waiting, id)
	t.rows += rows
}

// Status returns the current reason to wait (of any worker), the time
// spent waiting and the rows admitted so far. The waits going on count,
// up to now: a run waiting from its first chunk shows that wait.
func (t *Throttler) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Status{Throttled: t.throttled, Waits: t.waits, Rows: t.rows}
	now := time.Now()
	for _, w := range t.waiting {
		if !w.since.IsZero() {
			s.Throttled += now.Sub(w.since)
			s.Waits++
		}
		if w.reason != "" && (s.Reason == "" || w.reason < s.Reason) {
			s.Reason = w.reason
		}
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-tm.C:
		return nil
	}
}

// read reads s within the read timeout. A reading that is not a finite
// number (NaN, ±Inf) is no reading: it cannot be read, as an error is.
func (t *Throttler) read(ctx context.Context, s Signal) (Reading, error) {
	bound := t.cfg.ReadTimeout
	if o, ok := s.(interface{ readTimeout() time.Duration }); ok {
		bound = max(bound, o.readTimeout()+time.Second)
	}
	rctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	r, err := s.Read(rctx)
	switch {
	case err != nil && ctx.Err() == nil && rctx.Err() != nil:
		return r, fmt.Errorf("it did not answer within %s: %w", bound, err)
	case err != nil:
		return r, err
	case math.IsNaN(r.Util) || math.IsInf(r.Util, 0):
		return r, fmt.Errorf("its reading is not a finite number (%s)", r.Reason)
	}
	return r, nil
}
