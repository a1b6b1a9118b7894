package rewind

import (
	"context"
	"time"
)

// Health is the state of a store's storage: whether it can still write, and
// what recovery found when it was opened. A store that keeps data on disk
// reports it through HealthReporter; the server serves it in its info and
// readiness answers, and `rewind stat` prints it.
type Health struct {
	// Failed is the write or fsync failure that stopped the store (see
	// ErrFailed); empty while it can write.
	Failed string `json:"failed,omitempty"`
	// Unavailable says why the store cannot reach its storage at the
	// moment (a database that is down, restarting or failing over); empty
	// while it can. Unlike Failed it is transient: it clears by itself
	// when the storage is back, and the store's calls fail meanwhile with
	// errors matching ErrClosed (code "unavailable"), which clients retry.
	Unavailable string `json:"unavailable,omitempty"`
	// Epoch is the log's epoch: 1, plus one for each recovery that cut
	// positions from the log (see EpochError).
	Epoch uint64 `json:"epoch"`
	// Recovery lists what recovery found and did: cuts of a torn tail
	// (this open's, or the last cut ever made), and every data loss the
	// log recorded, at this open or an earlier one (the last 16): damaged
	// records kept and refused on read, missing segments, a log shorter
	// than what was acknowledged, cuts that may have lost acknowledged
	// events. A recorded loss stays reported after the bytes stop showing it.
	Recovery []RecoveryEvent `json:"recovery,omitempty"`
}

// RecoveryEvent is one thing recovery found.
type RecoveryEvent struct {
	// Kind is "cut" (a torn tail removed), "damage" (damaged records kept
	// and refused on read), "missing" (segment files gone that retention did
	// not remove, or a start the log cannot prove) or "shortened" (the log
	// ends before positions known to have been acknowledged).
	Kind string `json:"kind"`
	// At is when it was first found.
	At time.Time `json:"at"`
	// Epoch is the epoch a cut or a shortened log began; for other kinds,
	// the epoch it was found in.
	Epoch   uint64 `json:"epoch,omitempty"`
	Segment string `json:"segment,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
	// FirstPosition and LastPosition bound the positions concerned.
	FirstPosition Position `json:"first_position,omitempty"`
	LastPosition  Position `json:"last_position,omitempty"`
	// DataLoss says whether acknowledged events may be gone or unreadable:
	// always for damaged records, missing segments and a shortened log
	// (never for a damaged segment header, which loses no event); for a cut,
	// only when the store does not fsync every append (interval or none
	// durability) — in sync mode a cut only removes what was never
	// acknowledged.
	DataLoss bool   `json:"data_loss"`
	Reason   string `json:"reason"`
}

// HealthReporter is the optional capability of a store that can report
// its Health.
type HealthReporter interface {
	Health(ctx context.Context) (Health, error)
}
