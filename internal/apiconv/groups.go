package apiconv

import (
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/consumer"
)

// The consumer group messages of the API and the consumer package's
// types, each way. Values the engine validates (limits, modes, names) pass
// through unchanged, so that the engine's errors name them.

// GroupConfigFromProto reads a group's configuration.
func GroupConfigFromProto(p *rewindv1.GroupConfig) (consumer.GroupConfig, error) {
	c := consumer.GroupConfig{Name: p.GetName(), Filter: FilterFromProto(p.GetFilter()),
		Mode: consumer.Mode(p.GetMode()), MaxDeliveries: int(p.GetMaxDeliveries()),
		MaxAckPending: int(p.GetMaxAckPending()), MaxPending: int(p.GetMaxPending()),
		MemberMaxAckPending: int(p.GetMemberMaxAckPending()), OrderBy: p.GetOrderBy(),
		Priority: p.GetPriority(), MaxParked: int(p.GetMaxParked()), ReplayChunk: int(p.GetReplayChunk())}
	if s := p.GetStart(); s != nil {
		c.Start.Kind, c.Start.Position = consumer.StartKind(s.GetKind()), rewind.Position(s.GetPosition())
		t, err := TimeFromProto("start.time", s.GetTime())
		if err != nil {
			return c, err
		}
		c.Start.Time = t
		// The zero time is no time: sent without the kind "time" it
		// would be taken for none, and the group start elsewhere.
		if s.GetTime() != nil && t.IsZero() {
			return c, &rewind.ValidationError{Field: "start.time", Value: "0001-01-01T00:00:00Z",
				Reason: "the zero time is not a start time; give a later time with the start kind \"time\", " +
					"or leave start out to start at the beginning"}
		}
	}
	if e := p.GetEnd(); e != nil {
		c.End.Position = rewind.Position(e.GetPosition())
		t, err := TimeFromProto("end.time", e.GetTime())
		if err != nil {
			return c, err
		}
		c.End.Time = t
		// The zero End is no end: an end sent without a position or with
		// the zero time (0001-01-01T00:00:00Z, the zero Timestamp's
		// instant) would silently make the group unbounded.
		if e.GetTime() != nil && t.IsZero() {
			return c, &rewind.ValidationError{Field: "end.time", Value: "0001-01-01T00:00:00Z",
				Reason: "the zero time is not an end (it would mean none: no event is recorded before it); " +
					"give a later time, or leave end out for an unbounded group"}
		}
		if c.End.IsZero() {
			return c, &rewind.ValidationError{Field: "end", Reason: "give a position (from 1) or a time; " +
				"leave end out for an unbounded group"}
		}
	}
	var err error
	if c.AckWait, err = DurationFromProto("ack_wait", p.GetAckWait()); err != nil {
		return c, err
	}
	for _, b := range p.GetBackoff() {
		d, err := DurationFromProto("backoff", b)
		if err != nil {
			return c, err
		}
		c.Backoff = append(c.Backoff, d)
	}
	return c, nil
}

// GroupConfigToProto writes a group's configuration.
func GroupConfigToProto(c consumer.GroupConfig) *rewindv1.GroupConfig {
	p := &rewindv1.GroupConfig{Name: c.Name, Filter: FilterToProto(c.Filter), Mode: string(c.Mode),
		MaxDeliveries: clampInt32(c.MaxDeliveries), MaxAckPending: clampUint32(c.MaxAckPending),
		MaxPending: clampUint32(c.MaxPending), MemberMaxAckPending: clampUint32(c.MemberMaxAckPending),
		OrderBy: c.OrderBy, Priority: c.Priority, MaxParked: clampUint32(c.MaxParked),
		ReplayChunk: clampUint32(c.ReplayChunk)}
	if c.Start != (consumer.Start{}) {
		p.Start = &rewindv1.GroupStart{Kind: string(c.Start.Kind), Position: uint64(c.Start.Position),
			Time: TimeToProto(c.Start.Time)}
	}
	if !c.End.IsZero() {
		p.End = &rewindv1.GroupEnd{Position: uint64(c.End.Position), Time: TimeToProto(c.End.Time)}
	}
	if c.AckWait != 0 {
		p.AckWait = durationpb.New(c.AckWait)
	}
	for _, b := range c.Backoff {
		p.Backoff = append(p.Backoff, durationpb.New(b))
	}
	return p
}

// DurationFromProto reads a duration; unset is 0.
func DurationFromProto(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, &rewind.ValidationError{Field: field, Value: d.String(), Reason: "is not a valid duration: " + err.Error()}
	}
	return d.AsDuration(), nil
}

func clampUint32(n int) uint32 { return uint32(min(max(n, 0), math.MaxUint32)) }

func clampInt32(n int) int32 { return int32(min(max(n, math.MinInt32), math.MaxInt32)) }

// GroupToProto writes a group's description.
func GroupToProto(in consumer.GroupInfo) *rewindv1.Group {
	p := &rewindv1.Group{Config: GroupConfigToProto(in.Config), Status: string(in.Status),
		StatusReason: in.StatusReason, Members: clampUint32(in.Members), AckFloor: uint64(in.AckFloor),
		ReadPosition: uint64(in.ReadPosition), Pending: uint64(in.Pending), InFlight: uint64(in.InFlight),
		Delayed: uint64(in.Delayed), Keys: uint64(in.Keys), OldestUnackedAge: durationpb.New(in.OldestUnackedAge),
		Acked: in.Acked, Redeliveries: in.Redeliveries, Timeouts: in.Timeouts, ParkedTotal: in.ParkedTotal,
		Parked: uint64(in.Parked), Replaying: uint64(in.Replaying), Bounded: in.Bounded, End: uint64(in.End),
		Complete: in.Complete}
	for _, m := range in.MemberList {
		p.MemberList = append(p.MemberList, &rewindv1.GroupMember{Id: m.ID, Name: m.Name, Joined: TimeToProto(m.Joined),
			InFlight: clampUint32(m.InFlight), MaxAckPending: clampUint32(m.MaxAckPending)})
	}
	return p
}

// GroupFromProto reads a group's description.
func GroupFromProto(p *rewindv1.Group) (consumer.GroupInfo, error) {
	cfg, err := GroupConfigFromProto(p.GetConfig())
	if err != nil {
		return consumer.GroupInfo{}, err
	}
	in := consumer.GroupInfo{Config: cfg, Status: consumer.Status(p.GetStatus()), StatusReason: p.GetStatusReason(),
		Members: int(p.GetMembers()), AckFloor: rewind.Position(p.GetAckFloor()),
		ReadPosition: rewind.Position(p.GetReadPosition()), Pending: int(p.GetPending()),
		InFlight: int(p.GetInFlight()), Delayed: int(p.GetDelayed()), Keys: int(p.GetKeys()),
		OldestUnackedAge: p.GetOldestUnackedAge().AsDuration(), Acked: p.GetAcked(),
		Redeliveries: p.GetRedeliveries(), Timeouts: p.GetTimeouts(), ParkedTotal: p.GetParkedTotal(),
		Parked: int(p.GetParked()), Replaying: int(p.GetReplaying()), Bounded: p.GetBounded(),
		End: rewind.Position(p.GetEnd()), Complete: p.GetComplete()}
	for _, m := range p.GetMemberList() {
		in.MemberList = append(in.MemberList, consumer.MemberInfo{ID: m.GetId(), Name: m.GetName(),
			Joined: m.GetJoined().AsTime(), InFlight: int(m.GetInFlight()), MaxAckPending: int(m.GetMaxAckPending())})
	}
	return in, nil
}

// ResetToProto writes a reset request.
func ResetToProto(group string, o consumer.ResetOptions) *rewindv1.ResetGroupRequest {
	r := &rewindv1.ResetGroupRequest{Group: group, Execute: o.Execute}
	switch {
	case o.ToPositionSet:
		r.Target = &rewindv1.ResetGroupRequest_ToPosition{ToPosition: uint64(o.ToPosition)}
	case !o.ToTime.IsZero():
		r.Target = &rewindv1.ResetGroupRequest_ToTime{ToTime: TimeToProto(o.ToTime)}
	case o.ByDuration != 0:
		r.Target = &rewindv1.ResetGroupRequest_ByDuration{ByDuration: durationpb.New(o.ByDuration)}
	case o.ShiftBy != 0:
		r.Target = &rewindv1.ResetGroupRequest_ShiftBy{ShiftBy: o.ShiftBy}
	}
	return r
}

// ResetFromProto reads a reset request. A request without a target is
// passed on as one, for the engine to refuse.
func ResetFromProto(r *rewindv1.ResetGroupRequest) (consumer.ResetOptions, error) {
	o := consumer.ResetOptions{Execute: r.GetExecute()}
	switch t := r.GetTarget().(type) {
	case *rewindv1.ResetGroupRequest_ToPosition:
		o.ToPosition, o.ToPositionSet = rewind.Position(t.ToPosition), true
	case *rewindv1.ResetGroupRequest_ToTime:
		tt, err := TimeFromProto("to_time", t.ToTime)
		if err != nil {
			return o, err
		}
		if tt.IsZero() {
			return o, &rewind.ValidationError{Field: "to_time", Reason: "must be set to a time"}
		}
		o.ToTime = tt
	case *rewindv1.ResetGroupRequest_ByDuration:
		d, err := DurationFromProto("by_duration", t.ByDuration)
		if err != nil {
			return o, err
		}
		if d <= 0 {
			return o, &rewind.ValidationError{Field: "by_duration", Value: d.String(),
				Reason: "must be positive (how far back)"}
		}
		o.ByDuration = d
	case *rewindv1.ResetGroupRequest_ShiftBy:
		if t.ShiftBy == 0 {
			return o, &rewind.ValidationError{Field: "shift_by", Value: "0", Reason: "must not be 0"}
		}
		o.ShiftBy = t.ShiftBy
	}
	return o, nil
}

// PlanToProto writes a reset plan.
func PlanToProto(p consumer.ResetPlan) *rewindv1.ResetPlan {
	return &rewindv1.ResetPlan{Group: p.Group, From: uint64(p.From), To: uint64(p.To), Redeliver: p.Redeliver,
		Skip: p.Skip, CountCapped: p.CountCapped, InFlight: clampUint32(p.InFlight), Executed: p.Executed}
}

// PlanFromProto reads a reset plan.
func PlanFromProto(p *rewindv1.ResetPlan) consumer.ResetPlan {
	return consumer.ResetPlan{Group: p.GetGroup(), From: rewind.Position(p.GetFrom()), To: rewind.Position(p.GetTo()),
		Redeliver: p.GetRedeliver(), Skip: p.GetSkip(), CountCapped: p.GetCountCapped(), InFlight: int(p.GetInFlight()),
		Executed: p.GetExecuted()}
}

// ParkedToProto writes a parked event.
func ParkedToProto(e consumer.ParkedEntry) *rewindv1.ParkedEvent {
	return &rewindv1.ParkedEvent{Position: uint64(e.Position), Stream: e.Stream, Type: e.Type,
		EventId: e.EventID.String(), Reason: e.Reason, LastError: e.LastError, Attempts: clampUint32(e.Attempts),
		ParkedAt: TimeToProto(e.ParkedAt)}
}

// ParkedFromProto reads a parked event.
func ParkedFromProto(p *rewindv1.ParkedEvent) (consumer.ParkedEntry, error) {
	id, err := uuid.Parse(p.GetEventId())
	if err != nil {
		return consumer.ParkedEntry{}, fmt.Errorf("rewind: the server sent a parked event with a bad id %q: %w",
			p.GetEventId(), err)
	}
	return consumer.ParkedEntry{Position: rewind.Position(p.GetPosition()), Stream: p.GetStream(), Type: p.GetType(),
		EventID: id, Reason: p.GetReason(), LastError: p.GetLastError(), Attempts: int(p.GetAttempts()),
		ParkedAt: p.GetParkedAt().AsTime()}, nil
}
