package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay"
)

// Config says where a Runner reads and writes and how it batches.
type Config struct {
	// Pool connects to the PostgreSQL database of the projection's schemas
	// and of the control tables. Required.
	Pool *pgxpool.Pool
	// Store is the event store read. It must tell where its log ends
	// (rewind.LastPositioner or rewind.Describer). Required.
	Store rewind.Store
	// BatchSize is how many handled events at most one transaction applies
	// while catching up (a live runner commits at the end of the log or
	// after BatchInterval first). Large batches make rebuilds fast (one
	// COPY, one commit each); a batch with a failing event is applied again
	// one event at a time. Defaults to 50,000.
	BatchSize int
	// BatchInterval is how long a batch may stay open before it commits,
	// so that a slow trickle of events is not held back. Defaults to 200ms.
	BatchInterval time.Duration
	// Window is how many positions one pass over the log covers at most:
	// the checkpoint advances to the end of each window even when no
	// event in it was for this projection. Defaults to 1,000,000.
	Window int
	// PollInterval is how long a runner that reached the end of the log
	// waits before looking again. Defaults to 50ms.
	PollInterval time.Duration
	// EffectsFromStart makes the first version of a projection (one with no
	// serving version before it) record effects for the whole log. By
	// default the events in the log when it first starts are history: their
	// effects are suppressed. Defaults to false.
	EffectsFromStart bool
	// Logger receives parked events and state changes. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// MaskKey is the key of the hash action of Projection.Sensitive, at
	// least 16 bytes, for the builds that mask (BuildAsOf, Diff). Needed
	// only when a rule hashes. A Runner does not use it.
	MaskKey []byte
	// Unmasked makes BuildAsOf and Diff hand the handlers the events as the
	// log holds them, ignoring Projection.Sensitive: for a build that is
	// as much production as the serving version. Defaults to false.
	Unmasked bool
}

// Runner runs one version of a projection: it applies events from its
// checkpoint on, in batches, each batch's writes, parked events, recorded
// effects and checkpoint in one transaction. Only one runner per version
// may run at a time (a second one fails with ErrConcurrentRunner).
//
// What a runner does depends on its version's role, read from the control
// tables before each batch and checked again under a row lock when the
// batch commits:
//   - serving: it follows the log to its end, recording effects from the
//     version's effects_from position on;
//   - building (a shadow, a version newer than the serving one): it
//     follows the serving version's checkpoint and never passes it, with
//     effects suppressed, until Swap gives it an effects_from position;
//   - stopped (the serving version during a swap): it stops exactly at the
//     swap position, then Run returns ErrRetired once the swap completes.
type Runner struct {
	p      Projection
	cfg    Config
	schema string // quoted
}

// New checks p and cfg and returns a runner. It touches nothing.
func New(p Projection, cfg Config) (*Runner, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	bad := func(reason string) error {
		return &Error{Op: "define", Name: p.Name, Version: p.Version, Err: ErrBadDefinition, Reason: reason}
	}
	switch {
	case cfg.Pool == nil:
		return nil, bad("Config.Pool is required")
	case cfg.Store == nil:
		return nil, bad("Config.Store is required")
	case cfg.BatchSize < 0 || cfg.Window < 0 || cfg.BatchInterval < 0 || cfg.PollInterval < 0:
		return nil, bad("batch size, window and intervals must not be negative")
	}
	if _, ok := cfg.Store.(rewind.LastPositioner); !ok {
		if _, ok := cfg.Store.(rewind.Describer); !ok {
			return nil, bad(fmt.Sprintf("the store (%T) cannot tell where its log ends", cfg.Store))
		}
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 50_000
	}
	if cfg.BatchInterval == 0 {
		cfg.BatchInterval = 200 * time.Millisecond
	}
	if cfg.Window == 0 {
		cfg.Window = 1_000_000
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runner{p: p, cfg: cfg, schema: quoteSchema(SchemaName(p.Name, p.Version))}, nil
}

// Run applies events until ctx ends (returning ctx's error; the next Run
// resumes at the checkpoint) or the version is swapped out (ErrRetired).
// A version that does not exist yet is created: its schema, its tables
// (Projection.Setup) and its control row, in one transaction.
func (r *Runner) Run(ctx context.Context) error { return r.loop(ctx, false) }

// CatchUp applies events until there is nothing more the version may apply
// now: the end of the log for a serving version, the serving version's
// checkpoint for a shadow, the swap position for a stopped one. It is Run
// that returns once caught up, for offline builds, tools and tests.
func (r *Runner) CatchUp(ctx context.Context) error { return r.loop(ctx, true) }

// errRestart ends a pass so that the next one starts again from the
// checkpoint in the database, with the version's role read afresh.
var errRestart = errors.New("projection: restart the pass")

func (r *Runner) loop(ctx context.Context, once bool) error {
	if err := r.register(ctx); err != nil {
		return err
	}
	rate := &rateMeter{}
	for {
		idle, err := r.pass(ctx, rate)
		switch {
		case errors.Is(err, errRestart):
			continue
		case err != nil:
			return err
		case !idle:
			continue
		case once:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.PollInterval):
		}
	}
}

// register creates the version if it does not exist, and refuses a
// version that may not run.
func (r *Runner) register(ctx context.Context) error {
	if err := EnsureControl(ctx, r.cfg.Pool); err != nil {
		return err
	}
	end, err := logEnd(ctx, r.cfg.Store)
	if err != nil {
		return err
	}
	name, version := r.p.Name, r.p.Version
	return pgx.BeginFunc(ctx, r.cfg.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO rewind_proj.control (name, serving) VALUES ($1, $2) ON CONFLICT DO NOTHING`, name, version); err != nil {
			return err
		}
		var serving int
		if err := tx.QueryRow(ctx, `SELECT serving FROM rewind_proj.control WHERE name = $1 FOR UPDATE`, name).Scan(&serving); err != nil {
			return err
		}
		var state string
		err := tx.QueryRow(ctx, `SELECT state FROM rewind_proj.versions WHERE name = $1 AND version = $2`, name, version).Scan(&state)
		switch {
		case err == nil && state == "retired":
			return &Error{Op: "run", Name: name, Version: version, Err: ErrRetired,
				Reason: fmt.Sprintf("version %d serves now; run that one, or drop this one", serving)}
		case err == nil:
			return nil // resume
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		case version < serving:
			return &Error{Op: "run", Name: name, Version: version, Err: ErrStaleVersion,
				Reason: fmt.Sprintf("version %d serves; a rebuild needs a version above it", serving)}
		}
		state = "building"
		var effectsFrom *int64
		if version == serving {
			state = "serving"
			from := int64(end) + 1
			if r.cfg.EffectsFromStart {
				from = 1
			}
			effectsFrom = &from
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+r.schema); err != nil {
			return fmt.Errorf("projection: create schema %s: %w", r.schema, err)
		}
		if r.p.Setup != nil {
			if _, err := tx.Exec(ctx, r.p.Setup(r.schema)); err != nil {
				return fmt.Errorf("projection: setup of %s: %w", r.schema, err)
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO rewind_proj.versions (name, version, state, effects_from, log_end) VALUES ($1, $2, $3, $4, $5)`,
			name, version, state, effectsFrom, int64(end))
		if err == nil {
			r.cfg.Logger.Info("projection: version created", "projection", name, "version", version, "state", state, "schema", r.schema)
		}
		return err
	})
}

// role is a version's row as a pass started: what it may apply.
type role struct {
	position    rewind.Position
	effectsFrom *int64
	stopAt      *int64
	state       string
	servingPos  rewind.Position // the serving version's checkpoint
}

func (r *Runner) readRole(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, lock bool) (role, error) {
	var ro role
	var pos, servingPos int64
	sql := `SELECT v.position, v.effects_from, v.stop_at, v.state, s.position
		FROM rewind_proj.versions v
		JOIN rewind_proj.control c ON c.name = v.name
		JOIN rewind_proj.versions s ON s.name = c.name AND s.version = c.serving
		WHERE v.name = $1 AND v.version = $2`
	if lock {
		sql += ` FOR UPDATE OF v`
	}
	err := q.QueryRow(ctx, sql, r.p.Name, r.p.Version).Scan(&pos, &ro.effectsFrom, &ro.stopAt, &ro.state, &servingPos)
	if errors.Is(err, pgx.ErrNoRows) {
		return ro, &Error{Op: "run", Name: r.p.Name, Version: r.p.Version, Err: ErrNotFound, Reason: "the version was dropped while running"}
	}
	ro.position, ro.servingPos = rewind.Position(pos), rewind.Position(servingPos)
	return ro, err
}

func samePtr(a, b *int64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// limit returns the last position the role may apply, if it has a limit:
// a stopped version its stop position, a shadow the serving checkpoint.
func (ro *role) limit() (rewind.Position, bool) {
	switch {
	case ro.stopAt != nil:
		return rewind.Position(*ro.stopAt), true
	case ro.effectsFrom == nil:
		return ro.servingPos, true
	}
	return 0, false
}

// pass applies one window of the log after the checkpoint. It reports
// idle when there was nothing it may apply.
func (r *Runner) pass(ctx context.Context, rate *rateMeter) (idle bool, err error) {
	ro, err := r.readRole(ctx, r.cfg.Pool, false)
	if err != nil {
		return false, err
	}
	if ro.state == "retired" {
		return false, &Error{Op: "run", Name: r.p.Name, Version: r.p.Version, Err: ErrRetired, Reason: "swapped out"}
	}
	from := ro.position + 1
	to := ro.position + rewind.Position(r.cfg.Window)
	if l, ok := ro.limit(); ok {
		to = min(to, l)
	}
	if to < from {
		return true, nil
	}
	end, err := logEnd(ctx, r.cfg.Store)
	if err != nil {
		return false, err
	}
	if end < from {
		return true, nil
	}
	b := &batch{r: r, role: ro, checkpoint: ro.position, logEnd: end, rate: rate}
	defer b.rollback(ctx)
	w := replay.Window{From: replay.AtPosition(from), To: replay.AtPosition(to), Types: r.p.types()}
	res, err := replay.Run(ctx, r.cfg.Store, w, b.handle, replay.Options{BatchSize: 256})
	if err == nil {
		// The window's end, even if the filter kept nothing after the last
		// handled event: long filtered-out ranges advance the checkpoint.
		err = b.commit(ctx, max(res.To, b.checkpoint))
	}
	var f *failure
	if errors.As(err, &f) {
		b.rollback(ctx)
		if err := r.careful(ctx, ro, b.checkpoint, f.through, end, rate); err != nil {
			return false, err
		}
		return false, errRestart
	}
	return false, err
}

// failure says that the batch must be applied again one event at a time,
// to park what fails: a handler failed at through, or the batch's writes
// failed when sent (through is then the batch's last event).
type failure struct {
	through rewind.Position
	err     error
}

func (f *failure) Error() string {
	return fmt.Sprintf("projection: batch failed through %d: %v", f.through, f.err)
}

// batch is the open transaction of a pass.
type batch struct {
	r          *Runner
	role       role
	tx         *Tx
	checkpoint rewind.Position // committed
	last       rewind.Position // last handled event in the open batch
	count      int64
	started    time.Time
	logEnd     rewind.Position
	rate       *rateMeter
}

func (b *batch) begin(ctx context.Context) error {
	pg, err := b.r.cfg.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	b.tx = &Tx{pg: pg, schema: b.r.schema, name: b.r.p.Name, version: b.r.p.Version}
	b.started = time.Now()
	return nil
}

func (b *batch) rollback(ctx context.Context) {
	if b.tx != nil {
		b.tx.endStream() // the connection is the COPY's until it ends
		b.tx.pg.Rollback(context.WithoutCancel(ctx))
		b.tx = nil
	}
}

func (b *batch) handle(ctx context.Context, ev *rewind.RecordedEvent) error {
	if b.tx == nil {
		if err := b.begin(ctx); err != nil {
			return err
		}
	}
	t := b.tx
	t.ev, t.seq, t.ctx = ev, 0, ctx
	t.live = b.role.effectsFrom != nil && int64(ev.Position) >= *b.role.effectsFrom
	if err := b.r.p.Handlers[ev.Type](ctx, t, ev); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &failure{through: ev.Position, err: err}
	}
	b.count++
	b.last = ev.Position
	if b.count >= int64(b.r.cfg.BatchSize) || time.Since(b.started) >= b.r.cfg.BatchInterval {
		return b.commit(ctx, ev.Position)
	}
	return nil
}

// commit sends the batch's writes and moves the checkpoint to through in
// the same transaction, if the version's role is still the one the pass
// started with.
func (b *batch) commit(ctx context.Context, through rewind.Position) error {
	if through <= b.checkpoint && b.tx == nil {
		return nil
	}
	if b.tx == nil {
		if err := b.begin(ctx); err != nil {
			return err
		}
	}
	if err := b.tx.flush(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &failure{through: b.last, err: err}
	}
	if err := b.r.advance(ctx, b.tx.pg, b.role, b.checkpoint, through, b.count, b.logEnd, b.rate); err != nil {
		return err
	}
	if err := b.tx.pg.Commit(ctx); err != nil {
		b.tx = nil
		return err
	}
	b.tx = nil
	b.checkpoint, b.count = through, 0
	return nil
}

// advance checks, under the version row's lock, that the role is the one
// the pass started with and that nobody else moved the checkpoint, then
// moves it to through.
func (r *Runner) advance(ctx context.Context, tx pgx.Tx, ro role, from, through rewind.Position, events int64, end rewind.Position, rate *rateMeter) error {
	now, err := r.readRole(ctx, tx, true)
	if err != nil {
		return err
	}
	switch {
	case now.position != from:
		return &Error{Op: "run", Name: r.p.Name, Version: r.p.Version, Err: ErrConcurrentRunner,
			Reason: fmt.Sprintf("expected the checkpoint at %d, found %d; run one runner per version", from, now.position)}
	case !samePtr(now.effectsFrom, ro.effectsFrom) || !samePtr(now.stopAt, ro.stopAt) || now.state != ro.state:
		return errRestart // a swap changed the role: apply the batch again under the new one
	}
	_, err = tx.Exec(ctx, `UPDATE rewind_proj.versions SET position = $3, events = events + $4, log_end = GREATEST(log_end, $5, $3),
		rate = $6, updated_at = now() WHERE name = $1 AND version = $2`,
		r.p.Name, r.p.Version, int64(through), events, int64(end), rate.add(through-from))
	return err
}

// careful applies from+1..through again one event at a time, each in a
// savepoint with its writes sent at once, and parks the events whose
// handler or writes fail, then commits with the checkpoint at through.
func (r *Runner) careful(ctx context.Context, ro role, from, through, end rewind.Position, rate *rateMeter) error {
	b := &batch{r: r, role: ro, checkpoint: from, logEnd: end, rate: rate}
	if err := b.begin(ctx); err != nil {
		return err
	}
	defer b.rollback(ctx)
	t := b.tx
	t.noStream = true
	w := replay.Window{From: replay.AtPosition(from + 1), To: replay.AtPosition(through), Types: r.p.types()}
	_, err := replay.Run(ctx, r.cfg.Store, w, func(ctx context.Context, ev *rewind.RecordedEvent) error {
		sp, err := t.pg.Begin(ctx)
		if err != nil {
			return err
		}
		t.ev, t.seq = ev, 0
		t.live = ro.effectsFrom != nil && int64(ev.Position) >= *ro.effectsFrom
		herr := r.p.Handlers[ev.Type](ctx, t, ev)
		if herr == nil {
			herr = t.flush(ctx)
		}
		if herr == nil {
			b.count++
			return sp.Commit(ctx)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		clear(t.ops)
		t.ops = t.ops[:0]
		if err := sp.Rollback(ctx); err != nil {
			return err // the connection is gone: not the event's fault
		}
		kind := "handler"
		if errors.Is(herr, ErrUndecodable) {
			kind = "undecodable"
		}
		r.cfg.Logger.Warn("projection: event parked", "projection", r.p.Name, "version", r.p.Version,
			"position", ev.Position, "type", ev.Type, "kind", kind, "error", herr)
		_, err = t.pg.Exec(ctx, `INSERT INTO rewind_proj.parked (name, version, position, event_id, stream, type, kind, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			r.p.Name, r.p.Version, int64(ev.Position), ev.ID, ev.Stream, ev.Type, kind, herr.Error())
		return err
	}, replay.Options{BatchSize: 256})
	if err != nil {
		return err
	}
	return b.commit(ctx, through)
}

// logEnd returns the last acknowledged position of s.
func logEnd(ctx context.Context, s rewind.Store) (rewind.Position, error) {
	if lp, ok := s.(rewind.LastPositioner); ok {
		return lp.LastPosition(ctx)
	}
	info, err := s.(rewind.Describer).Describe(ctx)
	return info.LastPosition, err
}

// rateMeter smooths the positions a runner advances per second.
type rateMeter struct {
	last time.Time
	ewma float64
}

func (m *rateMeter) add(n rewind.Position) float64 {
	now := time.Now()
	if !m.last.IsZero() {
		if dt := now.Sub(m.last).Seconds(); dt > 0 {
			inst := float64(n) / dt
			if m.ewma == 0 {
				m.ewma = inst
			} else {
				m.ewma = 0.7*m.ewma + 0.3*inst
			}
		}
	}
	m.last = now
	return m.ewma
}
