package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// model is a trivially correct in-memory event store: the reference the
// randomized test (modelrun.go) compares the real store with. It follows
// the documented semantics of the rewind.Store contract, written out as
// directly as possible; speed does not matter.
type model struct {
	log     []mRecord // by position-1; records retention removed stay, for readers that still see them
	first   uint64    // first position still in the log
	streams map[string]*mStream
	ids     map[uuid.UUID]uint64 // client-given event id -> position: what idempotency checks
	seen    map[uuid.UUID]bool   // every id the store made up
	batches []mBatch             // appends that wrote events, for retries
}

type mRecord struct {
	ev       rewind.RecordedEvent // normalized as the store returns it
	idKnown  bool                 // false until the store's id for a zero id is learned
	tsKnown  bool                 // RecordedAt is learned from the first read
	batchEnd bool                 // the last record of its append
}

type mStream struct {
	version   uint64
	deleted   uint64
	positions []uint64 // position of each version, by version-1
}

func (st *mStream) exists() bool { return st.version > st.deleted }

// mBatch is an append that wrote events, as the client sent it (zero ids
// stay zero: such events cannot be retried), for the retry operations.
type mBatch struct {
	stream string
	events []rewind.Event
	res    rewind.AppendResult
}

func newModel() *model {
	return &model{first: 1, streams: map[string]*mStream{}, ids: map[uuid.UUID]uint64{}, seen: map[uuid.UUID]bool{}}
}

func (m *model) last() uint64 { return uint64(len(m.log)) }

// normalize returns e as the store returns it: defaults applied, empty
// metadata as nil, times in UTC.
func normalize(e rewind.Event) rewind.Event {
	if e.SchemaVersion == 0 {
		e.SchemaVersion = 1
	}
	if e.ContentType == "" {
		e.ContentType = rewind.DefaultContentType
	}
	if len(e.Metadata) == 0 {
		e.Metadata = nil
	} else {
		e.Metadata = maps.Clone(e.Metadata)
	}
	if !e.OccurredAt.IsZero() {
		e.OccurredAt = e.OccurredAt.UTC()
	}
	e.Data = bytes.Clone(e.Data)
	if e.Data == nil {
		e.Data = []byte{}
	}
	return e
}

// sameEventBody reports whether two events are the same event for
// idempotency: same stream and same normalized fields.
func sameEventBody(a rewind.RecordedEvent, stream string, e rewind.Event) bool {
	n := normalize(e)
	return a.Stream == stream && a.ID == n.ID && a.Type == n.Type && a.SchemaVersion == n.SchemaVersion &&
		a.ContentType == n.ContentType && bytes.Equal(a.Data, n.Data) && maps.Equal(a.Metadata, n.Metadata) &&
		a.OccurredAt.Equal(n.OccurredAt)
}

// isBatch reports whether positions from..to are exactly one append.
func (m *model) isBatch(from, to uint64) bool {
	if from > 1 && !m.log[from-2].batchEnd {
		return false
	}
	for p := from; p < to; p++ {
		if m.log[p-1].batchEnd {
			return false
		}
	}
	return m.log[to-1].batchEnd
}

func (m *model) expectedHolds(stream string, expected rewind.ExpectedVersion) error {
	var version uint64
	exists := false
	if st := m.streams[stream]; st != nil {
		version, exists = st.version, st.exists()
	}
	ok := true
	switch expected {
	case rewind.Any:
	case rewind.NoStream:
		ok = !exists
	case rewind.StreamExists:
		ok = exists
	default:
		ok = uint64(expected) == version
	}
	if !ok {
		return &rewind.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: version, Exists: exists}
	}
	return nil
}

// append applies an append of valid events. On success it records the
// events; a result with Duplicate set changes nothing.
func (m *model) append(stream string, expected rewind.ExpectedVersion, events []rewind.Event) (rewind.AppendResult, error) {
	var res rewind.AppendResult
	known := 0
	var firstKnown uuid.UUID
	for _, e := range events {
		pos, ok := m.ids[e.ID]
		if e.ID == (uuid.UUID{}) || !ok {
			continue
		}
		rec := m.log[pos-1].ev
		if !sameEventBody(rec, stream, e) {
			return res, &rewind.IdempotencyConflictError{EventID: e.ID.String(), Position: rec.Position}
		}
		if known == 0 {
			firstKnown = e.ID
			res.FirstPosition, res.FirstVersion = rec.Position, rec.Version
		} else if res.LastPosition+1 != rec.Position {
			return res, &rewind.IdempotencyConflictError{EventID: e.ID.String(), Position: rec.Position}
		}
		res.LastPosition, res.LastVersion = rec.Position, rec.Version
		known++
	}
	if known == len(events) {
		if !m.isBatch(uint64(res.FirstPosition), uint64(res.LastPosition)) {
			// Only part of an earlier append, or several of them.
			return rewind.AppendResult{}, &rewind.IdempotencyConflictError{EventID: firstKnown.String(), Position: res.FirstPosition}
		}
		res.Duplicate = true
		return res, nil
	}
	if known > 0 {
		return rewind.AppendResult{}, &rewind.IdempotencyConflictError{EventID: firstKnown.String(), Position: res.FirstPosition}
	}
	if err := m.expectedHolds(stream, expected); err != nil {
		return rewind.AppendResult{}, err
	}
	st := m.streams[stream]
	if st == nil {
		st = &mStream{}
		m.streams[stream] = st
	}
	res = rewind.AppendResult{FirstPosition: rewind.Position(m.last() + 1), FirstVersion: st.version + 1}
	for i, e := range events {
		st.version++
		pos := m.last() + 1
		st.positions = append(st.positions, pos)
		rec := mRecord{ev: rewind.RecordedEvent{Event: normalize(e), Stream: stream, Version: st.version,
			Position: rewind.Position(pos)}, idKnown: e.ID != uuid.UUID{}, batchEnd: i == len(events)-1}
		m.log = append(m.log, rec)
		if rec.idKnown {
			m.ids[e.ID] = pos
		}
	}
	res.LastPosition, res.LastVersion = rewind.Position(m.last()), st.version
	return res, nil
}

// delete applies a soft delete and returns the position of its record.
func (m *model) delete(stream string, expected rewind.ExpectedVersion) (uint64, error) {
	if !expected.Valid() || expected == rewind.NoStream {
		return 0, &rewind.ValidationError{Field: "expected version"}
	}
	st := m.streams[stream]
	if st == nil || !st.exists() {
		return 0, rewind.ErrStreamNotFound
	}
	if err := m.expectedHolds(stream, expected); err != nil {
		return 0, err
	}
	pos := m.last() + 1
	m.log = append(m.log, mRecord{batchEnd: true, ev: rewind.RecordedEvent{
		Event:  rewind.Event{Type: rewind.TypeStreamDeleted, SchemaVersion: 1, ContentType: rewind.DefaultContentType, Data: []byte{}},
		Stream: stream, Version: st.version, Position: rewind.Position(pos)}})
	st.deleted = st.version
	return pos, nil
}

// forgetEmptied forgets the streams all of whose events retention removed:
// they read as never written, and writing to one starts it anew.
func (m *model) forgetEmptied() {
	for name, st := range m.streams {
		if len(st.positions) == 0 || st.positions[len(st.positions)-1] < m.first {
			delete(m.streams, name)
		}
	}
}

// learn records what only the store knows of the record at pos: the id it
// chose and the time it recorded.
func (m *model) learn(got *rewind.RecordedEvent) error {
	rec := &m.log[got.Position-1]
	if !rec.idKnown {
		// A made-up id identifies the event but takes no part in
		// idempotency (a zero id makes an append non-retryable).
		if got.ID == (uuid.UUID{}) || got.ID.Version() != 7 || got.ID.Variant() != uuid.RFC4122 {
			return fmt.Errorf("position %d: the store chose id %s, want a UUID v7", got.Position, got.ID)
		}
		if _, dup := m.ids[got.ID]; dup || m.seen[got.ID] {
			return fmt.Errorf("position %d: the store chose id %s, already used", got.Position, got.ID)
		}
		rec.ev.ID, rec.idKnown = got.ID, true
		m.seen[got.ID] = true
	}
	if !rec.tsKnown {
		rec.ev.RecordedAt, rec.tsKnown = got.RecordedAt, true
	}
	return nil
}

// diffEvent says how got differs from the model's record, or "".
func (m *model) diffEvent(got *rewind.RecordedEvent) string {
	if got.Position == 0 || uint64(got.Position) > m.last() {
		return fmt.Sprintf("position %d is not in the model (last %d)", got.Position, m.last())
	}
	want := m.log[got.Position-1]
	w := want.ev
	var diffs []string
	check := func(field string, ok bool, g, wv any) {
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s %v, want %v", field, g, wv))
		}
	}
	check("stream", got.Stream == w.Stream, got.Stream, w.Stream)
	check("version", got.Version == w.Version, got.Version, w.Version)
	check("id", !want.idKnown || got.ID == w.ID, got.ID, w.ID)
	check("type", got.Type == w.Type, got.Type, w.Type)
	check("schema version", got.SchemaVersion == w.SchemaVersion, got.SchemaVersion, w.SchemaVersion)
	check("content type", got.ContentType == w.ContentType, got.ContentType, w.ContentType)
	check("data", bytes.Equal(got.Data, w.Data), len(got.Data), len(w.Data))
	check("metadata", maps.Equal(got.Metadata, w.Metadata), got.Metadata, w.Metadata)
	check("occurred at", got.OccurredAt.Equal(w.OccurredAt) && got.OccurredAt.IsZero() == w.OccurredAt.IsZero() &&
		got.OccurredAt.Location() == time.UTC, got.OccurredAt, w.OccurredAt)
	check("recorded at", !want.tsKnown || got.RecordedAt.Equal(w.RecordedAt), got.RecordedAt, w.RecordedAt)
	check("recorded at (set)", !got.RecordedAt.IsZero(), got.RecordedAt, "non-zero")
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("event at position %d: %s", got.Position, strings.Join(diffs, "; "))
}

// readAll returns the positions ReadAll must yield, or the error it must fail with.
func (m *model) readAll(opts rewind.ReadAllOptions, fromTime uint64) ([]uint64, error) {
	from := uint64(opts.From)
	switch {
	case !opts.FromTime.IsZero():
		from = fromTime
	case from == 0:
		from = m.first
	case from > m.last()+1:
		return nil, &rewind.ValidationError{Field: "position"}
	case from < m.first:
		return nil, &rewind.TruncatedError{Requested: opts.From, FirstAvailable: rewind.Position(m.first)}
	}
	if err := validFilter(opts.Filter); err != nil {
		return nil, err
	}
	var out []uint64
	for p := from; p <= m.last(); p++ {
		if opts.Limit > 0 && len(out) == opts.Limit {
			break
		}
		if opts.Filter.Match(&m.log[p-1].ev) {
			out = append(out, p)
		}
	}
	return out, nil
}

// validFilter checks a filter the way a store must: its types are valid
// event types (or the delete records' type). The harness only makes up
// types that are plainly valid or plainly not (with a space).
func validFilter(f rewind.Filter) error {
	if len(f.Types) > rewind.MaxFilterTypes {
		return &rewind.ValidationError{Field: "filter types"}
	}
	for _, typ := range f.Types {
		if typ != rewind.TypeStreamDeleted && (typ == "" || strings.ContainsAny(typ, " \t") || typ[0] == '$') {
			return &rewind.ValidationError{Field: "filter types"}
		}
	}
	return nil
}

// firstAt returns the first position recorded at or after t (the model
// must know the times of every position up to the answer).
func (m *model) firstAt(t time.Time) (uint64, bool) {
	for p := m.first; p <= m.last(); p++ {
		rec := m.log[p-1]
		if !rec.tsKnown {
			return 0, false
		}
		if !rec.ev.RecordedAt.Before(t) {
			return p, true
		}
	}
	return m.last() + 1, true
}

// readStream returns the positions ReadStream must return, in its order.
func (m *model) readStream(stream string, opts rewind.ReadStreamOptions) ([]uint64, error) {
	st := m.streams[stream]
	if st == nil || !st.exists() {
		return nil, rewind.ErrStreamNotFound
	}
	// The readable versions, ascending.
	var readable []uint64
	for v := st.deleted + 1; v <= st.version; v++ {
		if st.positions[v-1] >= m.first {
			readable = append(readable, v)
		}
	}
	var out []uint64
	if opts.Backward {
		hi := st.version
		if opts.From != 0 {
			hi = min(opts.From, st.version)
		}
		for _, v := range slices.Backward(readable) {
			if v <= hi && (opts.Limit == 0 || len(out) < opts.Limit) {
				out = append(out, st.positions[v-1])
			}
		}
		return out, nil
	}
	for _, v := range readable {
		if v >= opts.From && (opts.Limit == 0 || len(out) < opts.Limit) {
			out = append(out, st.positions[v-1])
		}
	}
	return out, nil
}

// streamInfo returns what StreamInfo must say.
func (m *model) streamInfo(stream string) (rewind.StreamInfo, error) {
	st := m.streams[stream]
	if st == nil {
		return rewind.StreamInfo{}, rewind.ErrStreamNotFound
	}
	info := rewind.StreamInfo{Stream: stream, Version: st.version, Deleted: !st.exists()}
	if info.Deleted {
		return info, nil
	}
	for v := st.deleted + 1; v <= st.version; v++ {
		if p := st.positions[v-1]; p >= m.first {
			info.FirstVersion, info.FirstPosition = v, rewind.Position(p)
			info.LastPosition = rewind.Position(st.positions[st.version-1])
			info.Count = st.version - v + 1
			break
		}
	}
	return info, nil
}

// listStreams returns what ListStreams must return.
func (m *model) listStreams(opts rewind.ListStreamsOptions) []rewind.StreamInfo {
	limit := opts.Limit
	if limit == 0 {
		limit = 1000
	}
	names := slices.Sorted(maps.Keys(m.streams))
	var out []rewind.StreamInfo
	for _, name := range names {
		if !strings.HasPrefix(name, opts.Prefix) || name <= opts.After || len(out) == limit {
			continue
		}
		info, _ := m.streamInfo(name)
		if info.Deleted && !opts.IncludeDeleted {
			continue
		}
		out = append(out, info)
	}
	return out
}

// subNext returns the position a subscription at pos must deliver next
// (0: none visible).
func (m *model) subNext(pos uint64, f rewind.Filter) uint64 {
	for p := pos + 1; p <= m.last(); p++ {
		if f.Match(&m.log[p-1].ev) {
			return p
		}
	}
	return 0
}

// sameError reports whether got is the error want stands for: the same
// sentinel, and for typed errors the same data.
func sameError(got, want error) string {
	if want == nil {
		if got != nil {
			return fmt.Sprintf("got error %v, want success", got)
		}
		return ""
	}
	if got == nil {
		return fmt.Sprintf("got success, want %v", want)
	}
	var wWEV, gWEV *rewind.WrongExpectedVersionError
	var wIC, gIC *rewind.IdempotencyConflictError
	var wTr, gTr *rewind.TruncatedError
	switch {
	case errors.As(want, &wWEV):
		if !errors.As(got, &gWEV) || *gWEV != *wWEV {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
	case errors.As(want, &wIC):
		if !errors.As(got, &gIC) || gIC.EventID != wIC.EventID || gIC.Position != wIC.Position {
			return fmt.Sprintf("got %v, want an idempotency conflict on %s at %d", got, wIC.EventID, wIC.Position)
		}
	case errors.As(want, &wTr):
		if !errors.As(got, &gTr) || *gTr != *wTr {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
	default:
		if rewind.CodeOf(got) != rewind.CodeOf(want) {
			return fmt.Sprintf("got %v (%s), want %v (%s)", got, rewind.CodeOf(got), want, rewind.CodeOf(want))
		}
	}
	if msg := got.Error(); msg == "" {
		return "error without a message"
	}
	return ""
}

// Model is a trivially correct in-memory event store bound to a store under
// test, for tests of a backend's own (recovery after damage, say) that
// state what the store must hold and compare: Apply and ApplyDelete change
// only the model, Append changes both and compares the answers, and Check
// compares everything the store holds with the model.
type Model struct{ h *harness }

// NewModel returns an empty model of s.
func NewModel(t *testing.T, s rewind.Store) *Model {
	return &Model{&harness{t: t, s: s, m: newModel(), rng: rand.New(rand.NewPCG(1, 1)), outcomes: map[string]int{}}}
}

// Apply appends to the model only.
func (m *Model) Apply(stream string, expected rewind.ExpectedVersion, events ...rewind.Event) error {
	_, err := m.h.m.append(stream, expected, events)
	return err
}

// ApplyDelete deletes in the model only.
func (m *Model) ApplyDelete(stream string, expected rewind.ExpectedVersion) error {
	_, err := m.h.m.delete(stream, expected)
	return err
}

// Append appends to the store and to the model and fails the test unless
// the answers agree. It returns the store's answer.
func (m *Model) Append(stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error) {
	m.h.t.Helper()
	return m.h.doAppend("append", stream, expected, events)
}

// Check compares the whole log, every stream, the list of streams and what
// the store's optional capabilities say with the model.
func (m *Model) Check() {
	m.h.t.Helper()
	m.h.fullCheck()
}
