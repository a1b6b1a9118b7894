package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
)

// Status describes one version of a projection, as its control row and
// parked table stand.
type Status struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Schema  string `json:"schema"`
	// State is "serving", "building" (a shadow being built, or the
	// successor during a swap) or "retired" (swapped out).
	State string `json:"state"`
	// Stopping is true for the serving version during a swap: it stopped
	// at StopAt.
	Stopping bool `json:"stopping,omitempty"`
	// Position is the checkpoint: every event up to it is applied.
	Position rewind.Position `json:"position"`
	// LogEnd is the end of the log the runner last saw, Lag the positions
	// between the checkpoint and it (as of the runner's last commit).
	LogEnd rewind.Position `json:"log_end"`
	Lag    uint64          `json:"lag"`
	// Rate is the positions per second the checkpoint advanced recently.
	Rate float64 `json:"rate"`
	// Events counts the events the handlers applied (parked ones are
	// counted in Parked, not here).
	Events int64 `json:"events"`
	// Parked counts the version's parked events.
	Parked int64 `json:"parked"`
	// EffectsFrom is the first position whose effects this version
	// records (0: none yet, a shadow); StopAt the swap position at which a
	// stopping version stops.
	EffectsFrom rewind.Position `json:"effects_from,omitempty"`
	StopAt      rewind.Position `json:"stop_at,omitempty"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// List returns the status of every version of every projection (name ""),
// or of one projection, sorted by name and version. An unknown name fails
// with ErrNotFound.
func List(ctx context.Context, pool *pgxpool.Pool, name string) ([]Status, error) {
	if err := EnsureControl(ctx, pool); err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT v.name, v.version, v.state, v.position, v.log_end, v.rate, v.events,
			coalesce(v.effects_from, 0), coalesce(v.stop_at, 0), v.updated_at,
			(SELECT count(*) FROM rewind_proj.parked p WHERE p.name = v.name AND p.version = v.version)
		FROM rewind_proj.versions v WHERE $1 = '' OR v.name = $1 ORDER BY v.name, v.version`, name)
	if err != nil {
		return nil, err
	}
	var out []Status
	for rows.Next() {
		var s Status
		var pos, end, from, stop int64
		if err := rows.Scan(&s.Name, &s.Version, &s.State, &pos, &end, &s.Rate, &s.Events, &from, &stop, &s.UpdatedAt, &s.Parked); err != nil {
			return nil, err
		}
		s.Position, s.LogEnd, s.EffectsFrom, s.StopAt = rewind.Position(pos), rewind.Position(end), rewind.Position(from), rewind.Position(stop)
		s.Lag = uint64(max(end-pos, 0))
		s.Schema = SchemaName(s.Name, s.Version)
		s.Stopping = stop != 0 && s.State == "serving"
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if name != "" && len(out) == 0 {
		return nil, &Error{Op: "status", Name: name, Err: ErrNotFound, Reason: "no version of it has run in this database; `rewind projections ls` lists them"}
	}
	return out, nil
}

// SwapOptions tunes Swap.
type SwapOptions struct {
	// MaxLag is how far, in positions, the new version may be behind the
	// serving one when the swap starts: the serving version stops for as
	// long as its successor needs to catch up. Defaults to 10,000 (see
	// NoLag for none).
	MaxLag uint64
	// NoLag refuses a successor that is behind the serving version at
	// all, the MaxLag of 0 that the zero value cannot say.
	NoLag bool
	// PollInterval is how often Swap looks at the successor's checkpoint
	// while it waits. Defaults to 20ms.
	PollInterval time.Duration
	// Timeout bounds the wait for the successor to reach the swap
	// position (step 2 of Swap), and only it: the checks that refuse a
	// swap come first and are never cut short by it, so a swap refused
	// for its lag is refused however short the timeout. When it runs out
	// Swap returns an error matching context.DeadlineExceeded and the
	// swap is left under way (call Swap again to finish it). Negative is
	// refused. Defaults to no bound but ctx's.
	Timeout time.Duration
}

// SwapResult says how a swap went.
type SwapResult struct {
	Name string `json:"name"`
	From int    `json:"from_version"`
	To   int    `json:"to_version"`
	// At is the swap position: From applied (and recorded effects for)
	// every event up to At, To records effects from At+1 on.
	At rewind.Position `json:"at"`
}

// Swap makes version to of projection name the serving one, in place of
// the serving version, without an effect recorded twice or lost:
//
//  1. In one transaction holding the serving version's row lock (which
//     waits for its batch in flight), Swap reads its checkpoint P, sets
//     its stop position to P, and gives the successor effects from P+1.
//     The serving version's runner applies nothing after P; the
//     successor, whose checkpoint is at most P (a shadow never passes the
//     serving checkpoint), applies up to P with effects suppressed and
//     records effects from P+1.
//  2. Swap waits until the successor's checkpoint reaches P (its Runner
//     must be running; see Runner.Run), for at most opts.Timeout.
//  3. In one transaction it flips the serving version to the successor
//     and retires the old one, whose runner then returns ErrRetired.
//
// A swap that was interrupted after step 1 (ctx ended, the Timeout ran
// out, the process died) is finished by calling Swap again with the same
// version. Bad input — an unknown projection or version, a version not
// above the serving one, a successor more than MaxLag behind (ErrBehind),
// another swap under way, a negative Timeout — fails with an *Error and
// changes nothing.
func Swap(ctx context.Context, pool *pgxpool.Pool, name string, to int, opts SwapOptions) (SwapResult, error) {
	switch {
	case opts.NoLag:
		opts.MaxLag = 0
	case opts.MaxLag == 0:
		opts.MaxLag = 10_000
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	if opts.Timeout < 0 {
		return SwapResult{}, &Error{Op: "swap", Name: name, Version: to, Err: ErrBadDefinition,
			Reason: fmt.Sprintf("SwapOptions.Timeout %s is negative; give a positive bound on the wait, or 0 for none", opts.Timeout)}
	}
	if err := EnsureControl(ctx, pool); err != nil {
		return SwapResult{}, err
	}
	res := SwapResult{Name: name, To: to}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var swapTo, swapAt *int64
		err := tx.QueryRow(ctx, `SELECT serving, swap_to, swap_at FROM rewind_proj.control WHERE name = $1 FOR UPDATE`, name).
			Scan(&res.From, &swapTo, &swapAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return &Error{Op: "swap", Name: name, Err: ErrNotFound, Reason: "no version of it has run in this database"}
		} else if err != nil {
			return err
		}
		if swapTo != nil {
			if int(*swapTo) != to {
				return &Error{Op: "swap", Name: name, Version: to, Err: ErrSwapInProgress,
					Reason: fmt.Sprintf("the swap to version %d is under way; run swap with version %d to finish it", *swapTo, *swapTo)}
			}
			res.At = rewind.Position(*swapAt)
			return nil // finish it
		}
		var state string
		var pos int64
		err = tx.QueryRow(ctx, `SELECT state, position FROM rewind_proj.versions WHERE name = $1 AND version = $2 FOR UPDATE`, name, to).Scan(&state, &pos)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return &Error{Op: "swap", Name: name, Version: to, Err: ErrNotFound, Reason: "start its runner first (Runner.Run); it builds the version's schema"}
		case err != nil:
			return err
		case to <= res.From:
			return &Error{Op: "swap", Name: name, Version: to, Err: ErrStaleVersion,
				Reason: fmt.Sprintf("version %d serves; swap in a version above it", res.From)}
		}
		var servingPos int64
		if err := tx.QueryRow(ctx, `SELECT position FROM rewind_proj.versions WHERE name = $1 AND version = $2 FOR UPDATE`, name, res.From).Scan(&servingPos); err != nil {
			return err
		}
		if lag := servingPos - pos; lag > 0 && uint64(lag) > opts.MaxLag {
			return &Error{Op: "swap", Name: name, Version: to, Err: ErrBehind,
				Reason: fmt.Sprintf("it is %d positions behind the serving version (more than %d); let it catch up first", lag, opts.MaxLag)}
		}
		res.At = rewind.Position(servingPos)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`UPDATE rewind_proj.versions SET stop_at = $3 WHERE name = $1 AND version = $2`, []any{name, res.From, servingPos}},
			{`UPDATE rewind_proj.versions SET effects_from = $3 WHERE name = $1 AND version = $2`, []any{name, to, servingPos + 1}},
			{`UPDATE rewind_proj.control SET swap_to = $2, swap_at = $3 WHERE name = $1`, []any{name, to, servingPos}},
		} {
			if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return SwapResult{}, err
	}
	if err := waitReached(ctx, pool, name, to, res.At, opts); err != nil { // step 2
		return res, err
	}
	return res, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { // step 3
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`UPDATE rewind_proj.control SET serving = $2, swap_to = NULL, swap_at = NULL, swapped_at = now() WHERE name = $1`, []any{name, to}},
			{`UPDATE rewind_proj.versions SET state = 'retired' WHERE name = $1 AND version = $2`, []any{name, res.From}},
			{`UPDATE rewind_proj.versions SET state = 'serving' WHERE name = $1 AND version = $2`, []any{name, to}},
		} {
			if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitReached waits, for at most opts.Timeout when it is set, until
// version to's checkpoint reaches at.
func waitReached(ctx context.Context, pool *pgxpool.Pool, name string, to int, at rewind.Position, opts SwapOptions) error {
	// The timeout bounds the wait only, never a look at the checkpoint: a
	// successor at the swap position already finishes the swap however
	// short the timeout.
	var timedOut <-chan time.Time
	if opts.Timeout > 0 {
		t := time.NewTimer(opts.Timeout)
		defer t.Stop()
		timedOut = t.C
	}
	for {
		var pos int64
		if err := pool.QueryRow(ctx, `SELECT position FROM rewind_proj.versions WHERE name = $1 AND version = $2`, name, to).Scan(&pos); err != nil {
			return err
		}
		if rewind.Position(pos) >= at {
			return nil
		}
		waiting := func(err error) error {
			return fmt.Errorf("projection: swap of %q to version %d waits for it to reach %d (at %d; is its runner running?); run swap again to finish: %w",
				name, to, at, pos, err)
		}
		select {
		case <-ctx.Done():
			return waiting(ctx.Err())
		case <-timedOut:
			return waiting(context.DeadlineExceeded)
		case <-time.After(opts.PollInterval):
		}
	}
}

// Drop drops a version that does not serve: its schema, its control row
// and its parked events. Its runner must be stopped (one still running
// fails at its next batch). Dropping the serving version or the target of
// a swap under way fails with an *Error and changes nothing.
func Drop(ctx context.Context, pool *pgxpool.Pool, name string, version int) error {
	if err := EnsureControl(ctx, pool); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var serving int
		var swapTo *int64
		err := tx.QueryRow(ctx, `SELECT serving, swap_to FROM rewind_proj.control WHERE name = $1 FOR UPDATE`, name).Scan(&serving, &swapTo)
		if errors.Is(err, pgx.ErrNoRows) {
			return &Error{Op: "drop", Name: name, Err: ErrNotFound, Reason: "no version of it has run in this database"}
		} else if err != nil {
			return err
		}
		switch {
		case version == serving:
			return &Error{Op: "drop", Name: name, Version: version, Err: ErrServing, Reason: "swap another version in first"}
		case swapTo != nil && int(*swapTo) == version:
			return &Error{Op: "drop", Name: name, Version: version, Err: ErrSwapInProgress, Reason: "finish the swap first"}
		}
		tag, err := tx.Exec(ctx, `DELETE FROM rewind_proj.versions WHERE name = $1 AND version = $2`, name, version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return &Error{Op: "drop", Name: name, Version: version, Err: ErrNotFound, Reason: "`rewind projections status` lists its versions"}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rewind_proj.parked WHERE name = $1 AND version = $2`, name, version); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+quoteSchema(SchemaName(name, version))+" CASCADE")
		return err
	})
}

// Effect is a side effect recorded in the outbox.
type Effect struct {
	Name     string
	Position rewind.Position // of the event that caused it
	Seq      int             // its number among the event's effects, from 1
	Version  int             // the version that recorded it
	Kind     string
	Payload  []byte
}

// Dispatch hands up to limit recorded, not yet dispatched effects of
// projection name to fn, in position order, each in a transaction that
// marks it dispatched when fn returns nil; an error from fn rolls that
// one back and ends the call. An effect whose own writes go through tx is
// thus applied exactly once; one that calls elsewhere is called at least
// once (again after a crash between the call and the commit), so give the
// receiver the effect's (Name, Position, Seq) as an idempotency key.
// Concurrent dispatchers skip each other's effects. It returns how many
// effects were dispatched.
func Dispatch(ctx context.Context, pool *pgxpool.Pool, name string, limit int, fn func(ctx context.Context, tx pgx.Tx, e Effect) error) (int, error) {
	n := 0
	for n < limit {
		done := false
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var e Effect
			var pos int64
			err := tx.QueryRow(ctx, `SELECT name, position, seq, version, kind, payload FROM rewind_proj.outbox
				WHERE name = $1 AND fired_at IS NULL ORDER BY position, seq LIMIT 1 FOR UPDATE SKIP LOCKED`, name).
				Scan(&e.Name, &pos, &e.Seq, &e.Version, &e.Kind, &e.Payload)
			if errors.Is(err, pgx.ErrNoRows) {
				done = true
				return nil
			} else if err != nil {
				return err
			}
			e.Position = rewind.Position(pos)
			if err := fn(ctx, tx, e); err != nil {
				return fmt.Errorf("projection: dispatch of %s effect %d/%d: %w", name, pos, e.Seq, err)
			}
			_, err = tx.Exec(ctx, `UPDATE rewind_proj.outbox SET fired_at = now() WHERE name = $1 AND position = $2 AND seq = $3`, name, pos, e.Seq)
			return err
		})
		if err != nil || done {
			return n, err
		}
		n++
	}
	return n, nil
}
