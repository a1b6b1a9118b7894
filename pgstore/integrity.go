package pgstore

import (
	"context"
	"fmt"

	"github.com/rewindhq/rewind"
)

// GapError says the log lacks a position it must hold. Positions are given
// out one after another and never taken back (see Append), so a position
// missing at or below the last committed one means a row of the events
// table was deleted behind the store's back (a superuser's DELETE, a
// partial restore): data loss. Readers of the whole log stop at it, after
// delivering what comes before, instead of passing over it. It matches
// rewind.ErrCorruption (exit status 5 in the CLI).
type GapError struct {
	Schema  string
	Missing rewind.Position // the first position missing
}

func (e *GapError) Error() string {
	return fmt.Sprintf("pgstore: data loss: the log in schema %s has no event at position %d, which was given out "+
		"(a row deleted from %s.events behind the store's back, or a partial restore?); restore the table from a "+
		"backup, or compare with another copy (rewind copy --verify-only)", e.Schema, e.Missing, e.Schema)
}

// Is makes errors.Is(err, rewind.ErrCorruption) true.
func (e *GapError) Is(target error) bool { return target == rewind.ErrCorruption }

// contiguous returns how many of evs, read after position after, follow it
// without a hole: all of them unless a position is missing.
func contiguous(evs []rewind.RecordedEvent, after int64) int {
	for i := range evs {
		if int64(evs[i].Position) != after+1+int64(i) {
			return i
		}
	}
	return len(evs)
}

// Identity names the store whatever the spelling of its connection string:
// the PostgreSQL cluster's system identifier, the database's oid and the
// schema. Two Stores with the same identity are one store (rewind copy
// refuses to copy one onto itself: 127.0.0.1 and localhost are one host).
func (s *Store) Identity(ctx context.Context) (string, error) {
	if err := s.checkOpen(); err != nil {
		return "", err
	}
	var sys int64
	var db uint32
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT system_identifier FROM pg_control_system()),
			(SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&sys, &db); err != nil {
		return "", s.dbError("identify the database", err)
	}
	return fmt.Sprintf("postgresql system %d database %d schema %s", sys, db, s.cfg.Schema), nil
}
