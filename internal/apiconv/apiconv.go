// Package apiconv converts between the API's protobuf messages and rewind's
// own types, and between rewind's errors and connect errors, so that the
// server and the client agree on one mapping.
package apiconv

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
)

// EventFromProto converts an event to append. Event i of the batch is
// named in errors.
func EventFromProto(i int, p *rewindv1.Event) (rewind.Event, error) {
	ev := rewind.Event{
		Type: p.GetType(), SchemaVersion: p.GetSchemaVersion(), ContentType: p.GetContentType(),
		Data: p.GetData(), Metadata: p.GetMetadata(),
	}
	if id := p.GetId(); id != "" {
		u, err := uuid.Parse(id)
		if err != nil {
			return ev, &rewind.ValidationError{Field: fmt.Sprintf("events[%d].id", i), Value: id,
				Reason: "must be a UUID such as 0190f6b1-7d2c-7b3e-9a4f-2c1d5e6f7a8b, or empty to let the server pick one"}
		}
		if u == uuid.Nil {
			// The store reads a zero id as "none given" and picks a new
			// one, which would make a retry of this event a second event.
			return ev, &rewind.ValidationError{Field: fmt.Sprintf("events[%d].id", i), Value: id,
				Reason: "must not be the nil UUID: give each event its own id (a UUID v7 is best), or leave it " +
					"empty to let the server pick one"}
		}
		ev.ID = u
	}
	if t := p.GetOccurredAt(); t != nil {
		if err := t.CheckValid(); err != nil {
			return ev, &rewind.ValidationError{Field: fmt.Sprintf("events[%d].occurred_at", i), Reason: err.Error()}
		}
		ev.OccurredAt = t.AsTime()
	}
	return ev, nil
}

// EventToProto converts an event to append.
func EventToProto(e *rewind.Event) *rewindv1.Event {
	p := &rewindv1.Event{
		Type: e.Type, SchemaVersion: e.SchemaVersion, ContentType: e.ContentType, Data: e.Data, Metadata: e.Metadata,
	}
	if e.ID != (uuid.UUID{}) {
		p.Id = e.ID.String()
	}
	if !e.OccurredAt.IsZero() {
		p.OccurredAt = timestamppb.New(e.OccurredAt)
	}
	return p
}

// RecordedToProto converts a recorded event. It copies nothing: the
// message shares ev's data and metadata.
func RecordedToProto(ev *rewind.RecordedEvent) *rewindv1.RecordedEvent {
	p := &rewindv1.RecordedEvent{
		Id: ev.ID.String(), Type: ev.Type, SchemaVersion: ev.SchemaVersion, ContentType: ev.ContentType,
		Data: ev.Data, Metadata: ev.Metadata, Stream: ev.Stream, Version: ev.Version, Position: uint64(ev.Position),
		RecordedAt: timestamppb.New(ev.RecordedAt),
	}
	if !ev.OccurredAt.IsZero() {
		p.OccurredAt = timestamppb.New(ev.OccurredAt)
	}
	return p
}

// FillRecorded sets every field of p from ev, reusing p's timestamps.
// Data and metadata are shared with ev.
func FillRecorded(p *rewindv1.RecordedEvent, ev *rewind.RecordedEvent) {
	recorded, occurred := p.RecordedAt, p.OccurredAt
	*p = rewindv1.RecordedEvent{
		Id: ev.ID.String(), Type: ev.Type, SchemaVersion: ev.SchemaVersion, ContentType: ev.ContentType,
		Data: ev.Data, Metadata: ev.Metadata, Stream: ev.Stream, Version: ev.Version, Position: uint64(ev.Position),
	}
	p.RecordedAt = setTime(recorded, ev.RecordedAt)
	if !ev.OccurredAt.IsZero() {
		p.OccurredAt = setTime(occurred, ev.OccurredAt)
	}
}

func setTime(ts *timestamppb.Timestamp, t time.Time) *timestamppb.Timestamp {
	if ts == nil {
		return timestamppb.New(t)
	}
	ts.Seconds, ts.Nanos = t.Unix(), int32(t.Nanosecond())
	return ts
}

// RecordedFromProto converts a recorded event.
func RecordedFromProto(p *rewindv1.RecordedEvent) (rewind.RecordedEvent, error) {
	id, err := uuid.Parse(p.GetId())
	if err != nil {
		return rewind.RecordedEvent{}, fmt.Errorf("rewind: the server sent event %d with a bad id %q: %w",
			p.GetPosition(), p.GetId(), err)
	}
	ev := rewind.RecordedEvent{
		Event: rewind.Event{ID: id, Type: p.GetType(), SchemaVersion: p.GetSchemaVersion(), ContentType: p.GetContentType(),
			Data: p.GetData(), Metadata: p.GetMetadata()},
		Stream: p.GetStream(), Version: p.GetVersion(), Position: rewind.Position(p.GetPosition()),
	}
	if t := p.GetOccurredAt(); t != nil {
		ev.OccurredAt = t.AsTime()
	}
	if t := p.GetRecordedAt(); t != nil {
		ev.RecordedAt = t.AsTime()
	}
	return ev, nil
}

// expected is the oneof of AppendRequest and DeleteStreamRequest.
type expected interface {
	GetExpectedState() rewindv1.ExpectedState
	GetExpectedVersion() uint64
}

// ExpectedFromProto reads an expected-version oneof; unset means Any.
func ExpectedFromProto(m expected, set bool, exact bool) (rewind.ExpectedVersion, error) {
	if exact {
		v := m.GetExpectedVersion()
		if v > 1<<62 {
			return 0, &rewind.ValidationError{Field: "expected_version", Value: fmt.Sprint(v), Reason: "is larger than any version"}
		}
		return rewind.Exactly(v), nil
	}
	if !set {
		return rewind.Any, nil
	}
	switch s := m.GetExpectedState(); s {
	case rewindv1.ExpectedState_EXPECTED_STATE_UNSPECIFIED, rewindv1.ExpectedState_EXPECTED_STATE_ANY:
		return rewind.Any, nil
	case rewindv1.ExpectedState_EXPECTED_STATE_NO_STREAM:
		return rewind.NoStream, nil
	case rewindv1.ExpectedState_EXPECTED_STATE_STREAM_EXISTS:
		return rewind.StreamExists, nil
	default:
		return 0, &rewind.ValidationError{Field: "expected_state", Value: s.String(),
			Reason: "must be EXPECTED_STATE_ANY, EXPECTED_STATE_NO_STREAM or EXPECTED_STATE_STREAM_EXISTS"}
	}
}

// AppendExpected reads an AppendRequest's expected version.
func AppendExpected(r *rewindv1.AppendRequest) (rewind.ExpectedVersion, error) {
	_, exact := r.GetExpected().(*rewindv1.AppendRequest_ExpectedVersion)
	return ExpectedFromProto(r, r.GetExpected() != nil, exact)
}

// DeleteExpected reads a DeleteStreamRequest's expected version.
func DeleteExpected(r *rewindv1.DeleteStreamRequest) (rewind.ExpectedVersion, error) {
	_, exact := r.GetExpected().(*rewindv1.DeleteStreamRequest_ExpectedVersion)
	return ExpectedFromProto(r, r.GetExpected() != nil, exact)
}

// SetAppendExpected sets r's expected version.
func SetAppendExpected(r *rewindv1.AppendRequest, e rewind.ExpectedVersion) {
	switch {
	case e >= 0:
		r.Expected = &rewindv1.AppendRequest_ExpectedVersion{ExpectedVersion: uint64(e)}
	case e != rewind.Any:
		r.Expected = &rewindv1.AppendRequest_ExpectedState{ExpectedState: stateOf(e)}
	}
}

// SetDeleteExpected sets r's expected version.
func SetDeleteExpected(r *rewindv1.DeleteStreamRequest, e rewind.ExpectedVersion) {
	switch {
	case e >= 0:
		r.Expected = &rewindv1.DeleteStreamRequest_ExpectedVersion{ExpectedVersion: uint64(e)}
	case e != rewind.Any:
		r.Expected = &rewindv1.DeleteStreamRequest_ExpectedState{ExpectedState: stateOf(e)}
	}
}

func stateOf(e rewind.ExpectedVersion) rewindv1.ExpectedState {
	switch e {
	case rewind.NoStream:
		return rewindv1.ExpectedState_EXPECTED_STATE_NO_STREAM
	case rewind.StreamExists:
		return rewindv1.ExpectedState_EXPECTED_STATE_STREAM_EXISTS
	}
	return rewindv1.ExpectedState(-1) // invalid: the server says so
}

// FilterFromProto converts a filter.
func FilterFromProto(f *rewindv1.Filter) rewind.Filter {
	return rewind.Filter{StreamPrefix: f.GetStreamPrefix(), Types: f.GetTypes()}
}

// FilterToProto converts a filter; nil when it keeps everything.
func FilterToProto(f rewind.Filter) *rewindv1.Filter {
	if f.StreamPrefix == "" && len(f.Types) == 0 {
		return nil
	}
	return &rewindv1.Filter{StreamPrefix: f.StreamPrefix, Types: f.Types}
}

// TimeFromProto converts an optional time; field names it in errors.
func TimeFromProto(field string, t *timestamppb.Timestamp) (time.Time, error) {
	if t == nil {
		return time.Time{}, nil
	}
	if err := t.CheckValid(); err != nil {
		return time.Time{}, &rewind.ValidationError{Field: field, Reason: err.Error()}
	}
	return t.AsTime(), nil
}

// TimeToProto converts an optional time.
func TimeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// StreamInfoToProto converts a stream's description.
func StreamInfoToProto(i rewind.StreamInfo) *rewindv1.StreamInfo {
	return &rewindv1.StreamInfo{Stream: i.Stream, Version: i.Version, FirstVersion: i.FirstVersion,
		FirstPosition: uint64(i.FirstPosition), LastPosition: uint64(i.LastPosition), Count: i.Count, Deleted: i.Deleted}
}

// StreamInfoFromProto converts a stream's description.
func StreamInfoFromProto(p *rewindv1.StreamInfo) rewind.StreamInfo {
	return rewind.StreamInfo{Stream: p.GetStream(), Version: p.GetVersion(), FirstVersion: p.GetFirstVersion(),
		FirstPosition: rewind.Position(p.GetFirstPosition()), LastPosition: rewind.Position(p.GetLastPosition()),
		Count: p.GetCount(), Deleted: p.GetDeleted()}
}

// AppendResultToProto converts an append's result.
func AppendResultToProto(r rewind.AppendResult) *rewindv1.AppendResponse {
	return &rewindv1.AppendResponse{FirstPosition: uint64(r.FirstPosition), LastPosition: uint64(r.LastPosition),
		FirstVersion: r.FirstVersion, LastVersion: r.LastVersion, Duplicate: r.Duplicate}
}

// AppendResultFromProto converts an append's result.
func AppendResultFromProto(p *rewindv1.AppendResponse) rewind.AppendResult {
	return rewind.AppendResult{FirstPosition: rewind.Position(p.GetFirstPosition()),
		LastPosition: rewind.Position(p.GetLastPosition()), FirstVersion: p.GetFirstVersion(),
		LastVersion: p.GetLastVersion(), Duplicate: p.GetDuplicate()}
}

// HealthToProto converts a store's health for the wire.
func HealthToProto(h rewind.Health) *rewindv1.StoreHealth {
	p := &rewindv1.StoreHealth{Failed: h.Failed, Epoch: h.Epoch}
	for _, e := range h.Recovery {
		p.Recovery = append(p.Recovery, &rewindv1.RecoveryEvent{Kind: e.Kind, At: TimeToProto(e.At), Epoch: e.Epoch,
			Segment: e.Segment, Offset: e.Offset, Bytes: e.Bytes, FirstPosition: uint64(e.FirstPosition),
			LastPosition: uint64(e.LastPosition), DataLoss: e.DataLoss, Reason: e.Reason})
	}
	return p
}

// HealthFromProto converts a store's health from the wire.
func HealthFromProto(p *rewindv1.StoreHealth) rewind.Health {
	h := rewind.Health{Failed: p.GetFailed(), Epoch: p.GetEpoch()}
	for _, e := range p.GetRecovery() {
		var at time.Time
		if e.GetAt() != nil {
			at = e.GetAt().AsTime()
		}
		h.Recovery = append(h.Recovery, rewind.RecoveryEvent{Kind: e.GetKind(), At: at, Epoch: e.GetEpoch(),
			Segment: e.GetSegment(), Offset: e.GetOffset(), Bytes: e.GetBytes(),
			FirstPosition: rewind.Position(e.GetFirstPosition()), LastPosition: rewind.Position(e.GetLastPosition()),
			DataLoss: e.GetDataLoss(), Reason: e.GetReason()})
	}
	return h
}
