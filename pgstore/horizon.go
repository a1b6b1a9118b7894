package pgstore

import (
	"context"
	"time"

	"github.com/rewindhq/rewind"
)

// Horizon says how far readers can read and what holds the log back.
//
// Positions are given out under the store's append lock, held by each
// append from the moment it takes its positions until its commit, so
// every position up to Safe is committed and readable and no open
// transaction can fill one of them later. What holds readers back is
// therefore only the append holding the lock (Holder): its events, and
// those of the appends waiting behind it (Waiting), become readable when
// it commits or rolls back. The positions the holder took are known only
// to its own transaction until then: the highest position given out is
// Safe plus the holder's events. Transactions that are not appends (a long
// report, a backfill in the same database) never hold readers back.
type Horizon struct {
	// Safe is the last committed position: readers and subscriptions read
	// up to it.
	Safe rewind.Position `json:"safe"`
	// Holder is the append transaction holding the append lock, if any.
	Holder *LockHolder `json:"holder,omitempty"`
	// Waiting counts the appends and deletes waiting for the lock.
	Waiting int `json:"waiting"`
	// Blocked lists the sessions waiting for a lock on a stream's row or
	// on the head row — appends and deletes of any process, this store's
	// committer included — with the sessions they wait for. A session that
	// keeps a stream's row locked (a SELECT … FOR UPDATE left open) stalls
	// every append to that stream, and, as the committer writes the
	// appends of one Store in turn, every append of that Store behind it;
	// one that keeps the head row locked stalls every append (the waiting
	// one is then also the Holder of the append lock).
	Blocked []BlockedSession `json:"blocked,omitempty"`
}

// BlockedSession is a session waiting for a lock on a stream's row.
type BlockedSession struct {
	PID int `json:"pid"`
	// Age is how long its current statement has run.
	Age       time.Duration `json:"age"`
	WaitEvent string        `json:"wait_event"`
	// BlockedBy are the sessions holding what it waits for
	// (pg_blocking_pids): end the one that should not (pg_terminate_backend).
	BlockedBy []int `json:"blocked_by"`
}

// LockHolder describes the backend holding the append lock.
type LockHolder struct {
	PID       int           `json:"pid"`
	XactStart time.Time     `json:"xact_start"`
	Age       time.Duration `json:"age"`
	State     string        `json:"state"`
	// WaitEvent says what the holder waits for, if anything ("IO:WALSync",
	// "Client:ClientRead" for a client that went quiet mid-transaction…).
	WaitEvent string `json:"wait_event,omitempty"`
}

// Horizon reports the safe position and what holds it back; see Horizon.
func (s *Store) Horizon(ctx context.Context) (Horizon, error) {
	if err := s.checkOpen(); err != nil {
		return Horizon{}, err
	}
	var (
		h                    Horizon
		last, waiting        int64
		pid                  *int32
		start                *time.Time
		age                  *time.Duration
		state, wtype, wevent *string
	)
	err := s.pool.QueryRow(ctx, s.q.horizon, uint32(s.lk1), uint32(s.lk2)).Scan(&last, &waiting, &pid, &start, &age,
		&state, &wtype, &wevent)
	if err != nil {
		return Horizon{}, s.dbError("horizon", err)
	}
	h.Safe, h.Waiting = rewind.Position(last), int(waiting)
	if pid != nil {
		h.Holder = &LockHolder{PID: int(*pid)}
		if start != nil {
			h.Holder.XactStart = *start
		}
		if age != nil {
			h.Holder.Age = *age
		}
		if state != nil {
			h.Holder.State = *state
		}
		if wtype != nil && wevent != nil {
			h.Holder.WaitEvent = *wtype + ":" + *wevent
		}
	}
	rows, err := s.pool.Query(ctx, s.q.blocked)
	if err != nil {
		return Horizon{}, s.dbError("horizon: lock waits", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b BlockedSession
		var pid int32
		var by []int32
		var age *time.Duration
		if err := rows.Scan(&pid, &age, &b.WaitEvent, &by); err != nil {
			return Horizon{}, s.dbError("horizon: lock waits", err)
		}
		b.PID = int(pid)
		if age != nil {
			b.Age = *age
		}
		for _, p := range by {
			b.BlockedBy = append(b.BlockedBy, int(p))
		}
		h.Blocked = append(h.Blocked, b)
	}
	if err := rows.Err(); err != nil {
		return Horizon{}, s.dbError("horizon: lock waits", err)
	}
	return h, nil
}
