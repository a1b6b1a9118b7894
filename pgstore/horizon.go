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
	return h, nil
}
