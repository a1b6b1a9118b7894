package consumer

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/rewindhq/rewind"
)

// Status says whether a group is moving, and if not, why.
type Status string

// The statuses of a group.
const (
	// StatusActive: the group has events in flight or ready.
	StatusActive Status = "active"
	// StatusIdle: the group holds no event: it has delivered everything
	// it read and waits for new events.
	StatusIdle Status = "idle"
	// StatusFull: the group holds MaxPending events and reads no further
	// until some are acked or parked.
	StatusFull Status = "full"
	// StatusAckPendingFull: MaxAckPending deliveries are un-acked; nothing
	// more is handed out until some are acked.
	StatusAckPendingFull Status = "ack_pending_full"
	// StatusNoMembers: events are ready and no member is there to take them.
	StatusNoMembers Status = "no_members"
	// StatusParkedFull: MaxParked events are parked; events that should be
	// parked are redelivered after the last backoff step instead.
	StatusParkedFull Status = "parked_full"
	// StatusComplete: a bounded group has read the log through its end and
	// every event of its window is done (acked or parked); it delivers
	// nothing more (a replay of its parked events still does).
	StatusComplete Status = "complete"
	// StatusDamaged: the group's reader met a damaged record of the log;
	// the group delivers the events before it, then its members' fetches
	// fail with ErrLogDamaged. See StatusReason; reset the group past the
	// damage, or restore the segment from a backup and reopen.
	StatusDamaged Status = "damaged"
	// StatusFailed: the group's state could not be written or the log
	// not read; see StatusReason. Reopen the engine.
	StatusFailed Status = "failed"
)

// GroupInfo describes a group and its lag. Every number is kept as the
// group works: reading it scans nothing.
type GroupInfo struct {
	Config       GroupConfig `json:"config"`
	Status       Status      `json:"status"`
	StatusReason string      `json:"status_reason,omitempty"`
	Members      int         `json:"members"`
	// AckFloor is the position at and before which every event is done;
	// ReadPosition the position the group has read the log to.
	AckFloor     rewind.Position `json:"ack_floor"`
	ReadPosition rewind.Position `json:"read_position"`
	// Pending counts the events held and not in flight (ready, waiting for
	// their key, or for a redelivery delay); InFlight the un-acked
	// deliveries; Delayed those waiting for a redelivery delay.
	Pending  int `json:"pending"`
	InFlight int `json:"in_flight"`
	Delayed  int `json:"delayed"`
	// Keys counts the ordering keys with events held.
	Keys int `json:"keys"`
	// OldestUnackedAge is how long ago the oldest event not yet done was
	// recorded (0 when there is none).
	OldestUnackedAge time.Duration `json:"oldest_unacked_age"`
	// Acked, Redeliveries, Timeouts and ParkedTotal count since the engine opened.
	Acked        uint64 `json:"acked"`
	Redeliveries uint64 `json:"redeliveries"`
	Timeouts     uint64 `json:"timeouts"`
	ParkedTotal  uint64 `json:"parked_total"`
	// Parked counts the events parked now; Replaying those a replay has
	// handed back and that are not yet done.
	Parked    int `json:"parked"`
	Replaying int `json:"replaying"`
	// Bounded is set for a group with an End; End is the last position
	// it delivers, resolved when it was created, and Complete says that
	// it has delivered its whole window (its status is then "complete").
	Bounded  bool            `json:"bounded,omitempty"`
	End      rewind.Position `json:"end,omitempty"`
	Complete bool            `json:"complete,omitempty"`
	// MemberList describes each member, in the order they joined.
	MemberList []MemberInfo `json:"member_list,omitempty"`
}

// MemberInfo describes a member of a group.
type MemberInfo struct {
	ID       uint64    `json:"id"`
	Name     string    `json:"name,omitempty"`
	Joined   time.Time `json:"joined"`
	InFlight int       `json:"in_flight"`
	// MaxAckPending is the member's cap of deliveries not yet acked.
	MaxAckPending int `json:"max_ack_pending"`
}

// info describes g. Called with g.mu held.
func (g *group) info() GroupInfo {
	in := GroupInfo{Config: g.cfg, Members: len(g.members), AckFloor: g.floor(), ReadPosition: g.cursor,
		InFlight: len(g.inflight), Delayed: g.delayed.Len(), Keys: len(g.keys),
		Acked: g.stats.acked, Redeliveries: g.stats.redeliveries, Timeouts: g.stats.timeouts,
		ParkedTotal: g.stats.parkedTotal, Parked: g.parked.Len(), Replaying: len(g.replaying),
		Bounded: g.bounded, End: g.end, Complete: g.complete()}
	held := g.entries.Len() + len(g.replaying)
	in.Pending = held - in.InFlight
	if _, e, ok := g.entries.Min(); ok {
		in.OldestUnackedAge = max(g.e.cfg.Now().Sub(e.ev.RecordedAt), 0)
	}
	for _, m := range g.members {
		in.MemberList = append(in.MemberList, MemberInfo{ID: m.id, Name: m.name, Joined: m.joined,
			InFlight: m.inflight.n, MaxAckPending: m.max})
	}
	slices.SortFunc(in.MemberList, func(a, b MemberInfo) int { return cmp.Compare(a.ID, b.ID) })
	in.Status, in.StatusReason = g.status(in)
	return in
}

// complete reports whether a bounded group has read through its end and
// holds nothing: every event of its window is acked or parked, and no
// replay of parked events is under way (between two of its chunks the
// group holds nothing, yet more is to come).
func (g *group) complete() bool {
	return g.bounded && g.failed == nil && g.cursor >= g.end && g.entries.Len() == 0 && len(g.replaying) == 0 &&
		!g.replay.active
}

func (g *group) status(in GroupInfo) (Status, string) {
	switch {
	case g.failed != nil:
		return StatusFailed, g.failed.Error()
	case g.damaged != nil:
		reason := g.damaged.Reason
		if held := g.entries.Len() + len(g.replaying); held > 0 {
			reason += fmt.Sprintf(" (%d events before it are still to deliver or ack)", held)
		}
		return StatusDamaged, reason
	case in.Complete:
		return StatusComplete, fmt.Sprintf("delivered every event of its window through position %d (%d parked); "+
			"it delivers nothing more", g.end, g.parked.Len())
	case g.full() && g.ready.Len() > 0 && len(g.members) == 0:
		// Full and nobody to hand the ready ones to: the cure is a member.
		return StatusNoMembers, fmt.Sprintf("%d events are ready and no member has joined; the group holds %d events "+
			"(max pending) and reads no further until some are acked", g.ready.Len(), g.entries.Len())
	case g.full():
		return StatusFull, fmt.Sprintf("holds %d events (max pending): %d in flight, %d delayed, %d ready, %d waiting "+
			"behind earlier events of their key; it reads no further until some are acked or parked", g.entries.Len(),
			in.InFlight, in.Delayed, g.ready.Len(), g.entries.Len()-in.InFlight-in.Delayed-g.ready.Len())
	case len(g.inflight) >= g.cfg.MaxAckPending:
		return StatusAckPendingFull, fmt.Sprintf("%d deliveries are not acked (max ack pending): nothing more is "+
			"handed out until some are acked", len(g.inflight))
	case g.parkedFull && g.parked.Len() >= g.cfg.MaxParked:
		return StatusParkedFull, fmt.Sprintf("%d events are parked (max parked): events that fail their last "+
			"delivery are retried instead; replay or purge parked events", g.parked.Len())
	case g.ready.Len() > 0 && len(g.members) == 0:
		return StatusNoMembers, fmt.Sprintf("%d events are ready and no member has joined", g.ready.Len())
	case in.Pending+in.InFlight == 0:
		return StatusIdle, ""
	}
	return StatusActive, ""
}
