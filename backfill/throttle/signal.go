package throttle

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
)

// Signal is one reading of health: the database's, a replica's, or an
// operator's wish. Read is called before chunks, at most every
// Config.ReadEvery, from several workers at once.
type Signal interface {
	// Name names the signal in reasons, errors and the audit ledger, such
	// as "replication_lag" or "query:queue_depth".
	Name() string
	// Read measures the signal. An error means it could not be read,
	// which pauses the run (fail closed) once Config.Grace is spent.
	Read(ctx context.Context) (Reading, error)
}

// Reading is what a signal measured.
type Reading struct {
	// Util is how close the signal is to its max: 0 is idle, 1 is at the
	// max (the throttler waits while any signal is at 1 or over).
	Util float64
	// Critical means the signal crossed its critical threshold: the run
	// pauses.
	Critical bool
	// Reason says in words what was measured against what, such as
	// "replication lag 2.1s over its max 1.5s".
	Reason string
}

// Querier is what the database signals read with: a *pgxpool.Pool, a
// *pgx.Conn.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Threshold is a signal's max and critical levels in the signal's unit.
// A zero Max never throttles; a zero Critical never pauses.
type Threshold struct {
	Max, Critical float64
}

// level turns value into a reading against th; what renders a value in
// the signal's unit ("2.1s", "12 active backends").
func (th Threshold) level(name string, value float64, what func(float64) string) Reading {
	var r Reading
	if math.IsNaN(value) || math.IsInf(value, 0) {
		// Not a reading: the throttler treats it as unreadable.
		return Reading{Util: math.NaN(), Reason: fmt.Sprintf("%s read %v", name, value)}
	}
	if th.Max > 0 {
		r.Util = value / th.Max
	}
	switch {
	case th.Critical > 0 && value >= th.Critical:
		r.Critical, r.Util = true, max(r.Util, 1)
		r.Reason = fmt.Sprintf("%s %s at or over its critical %s", name, what(value), what(th.Critical))
	case th.Max > 0 && value >= th.Max:
		r.Reason = fmt.Sprintf("%s %s at or over its max %s", name, what(value), what(th.Max))
	}
	return r
}

// validate checks a threshold: not negative, and critical not under max.
func (th Threshold) validate(what func(float64) string) error {
	switch {
	case math.IsNaN(th.Max) || math.IsInf(th.Max, 0) || math.IsNaN(th.Critical) || math.IsInf(th.Critical, 0):
		return fmt.Errorf("max and critical must be numbers, not %s and %s", what(th.Max), what(th.Critical))
	case th.Max < 0:
		return fmt.Errorf("max must not be negative, not %s", what(th.Max))
	case th.Critical < 0:
		return fmt.Errorf("critical must not be negative, not %s", what(th.Critical))
	case th.Critical > 0 && th.Max > 0 && th.Critical < th.Max:
		return fmt.Errorf("critical %s must not be under max %s: critical pauses the run, max only slows it",
			what(th.Critical), what(th.Max))
	case th.Max == 0 && th.Critical == 0:
		return fmt.Errorf("needs max, critical or both")
	}
	return nil
}

func number(v float64) string { return fmt.Sprintf("%g", v) }
