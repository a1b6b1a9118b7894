package consumer

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// A group's state lives in its state stream (SystemStreamPrefix +
// "group." + name) as records of three types:
//
//   - a snapshot: a header (the configuration, the ack floor, the read
//     position) followed, in the same atomic append, by parts holding the
//     whole state above the floor (done ranges, delivery counts, parked
//     events) and the ranges at or below it that were skipped, never
//     delivered (see group.skipped);
//   - a commit: what changed since the previous record (ranges acked, the
//     floor reached, delivery counts, events parked and unparked).
//
// Opening reads the stream backward to the last snapshot header and
// applies it and everything after it. Every record is appended with the
// stream's exact expected version, which fences a second engine out.
const (
	typeSnapshot     = "GroupSnapshot"
	typeSnapshotPart = "GroupSnapshotPart"
	typeCommit       = "GroupCommit"
	// partBytes bounds the encoding of one record, and appendBytes the
	// records of one append, well under the store's default limits (1 MiB
	// per event, 16 MiB per append).
	partBytes   = 128 << 10
	appendBytes = 512 << 10
	// floorOnlyCommit is how far the floor must move over skipped events
	// before a commit is written for that alone.
	floorOnlyCommit = 4096
)

// span is a range of positions (From, To] that is done: acked, parked,
// or not matching the group's filter.
type span struct {
	From rewind.Position `json:"f"`
	To   rewind.Position `json:"t"`
}

// ParkedEntry is a parked (dead-lettered) event of a group.
type ParkedEntry struct {
	Position  rewind.Position `json:"position"`
	Stream    string          `json:"stream"`
	Type      string          `json:"type"`
	EventID   uuid.UUID       `json:"event_id"`
	Reason    string          `json:"reason"`
	LastError string          `json:"last_error,omitempty"`
	Attempts  int             `json:"attempts"`
	ParkedAt  time.Time       `json:"parked_at"`

	seq uint64 // when it was parked, in this run of the engine
}

type attemptCount struct {
	Pos rewind.Position `json:"p"`
	N   int             `json:"n"`
}

// snapshotHeader opens a snapshot.
type snapshotHeader struct {
	Config GroupConfig     `json:"config"`
	Floor  rewind.Position `json:"floor"`
	Cursor rewind.Position `json:"cursor"`
	Parts  int             `json:"parts"`
	// End is a bounded group's last position, resolved at its creation.
	End *rewind.Position `json:"end,omitempty"`
}

// delta is a commit, or a part of a snapshot.
type delta struct {
	Floor    rewind.Position   `json:"floor,omitempty"`
	Done     []span            `json:"done,omitempty"`
	Attempts []attemptCount    `json:"attempts,omitempty"`
	Parked   []ParkedEntry     `json:"parked,omitempty"`
	Unparked []rewind.Position `json:"unparked,omitempty"`
	// Skipped is in snapshot parts only: the group's skipped spans.
	Skipped []span `json:"skipped,omitempty"`
}

func (d *delta) empty() bool {
	return len(d.Done) == 0 && len(d.Attempts) == 0 && len(d.Parked) == 0 && len(d.Unparked) == 0 && len(d.Skipped) == 0
}

// split cuts d into pieces whose encoding stays under partBytes, without
// the floor (the caller puts it where it belongs).
func (d *delta) split() []delta {
	var out []delta
	var cur delta
	size := 0
	room := func(n int) {
		if size+n > partBytes && !cur.empty() {
			out = append(out, cur)
			cur, size = delta{}, 0
		}
		size += n
	}
	for _, x := range d.Done {
		room(48)
		cur.Done = append(cur.Done, x)
	}
	for _, x := range d.Attempts {
		room(40)
		cur.Attempts = append(cur.Attempts, x)
	}
	for _, x := range d.Parked {
		b, _ := json.Marshal(&x)
		room(len(b) + 1)
		cur.Parked = append(cur.Parked, x)
	}
	for _, x := range d.Unparked {
		room(24)
		cur.Unparked = append(cur.Unparked, x)
	}
	for _, x := range d.Skipped {
		room(48)
		cur.Skipped = append(cur.Skipped, x)
	}
	return append(out, cur)
}

// mergeSpans sorts spans and joins those that touch or overlap.
func mergeSpans(s []span) []span {
	if len(s) < 2 {
		return s
	}
	slices.SortFunc(s, func(a, b span) int { return cmp.Compare(a.From, b.From) })
	out := s[:1]
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if x.From <= last.To {
			last.To = max(last.To, x.To)
			continue
		}
		out = append(out, x)
	}
	return out
}

// doneSet is the done ranges above the floor that a reopened group
// learned from its records: the reader skips their events.
type doneSet struct {
	spans []span // merged, sorted
	i     int    // the reader's place: spans before it end at or before the reader
}

// contains reports whether p is done; p must not decrease between calls.
func (s *doneSet) contains(p rewind.Position) bool {
	for s.i < len(s.spans) && s.spans[s.i].To < p {
		s.i++
	}
	return s.i < len(s.spans) && s.spans[s.i].From < p
}

// has reports whether p is done, wherever the reader is.
func (s *doneSet) has(p rewind.Position) bool {
	i, _ := slices.BinarySearchFunc(s.spans, p, func(x span, p rewind.Position) int {
		if x.To < p {
			return -1
		}
		return 1
	})
	return i < len(s.spans) && s.spans[i].From < p
}

// above returns the spans reaching beyond p, cut at p.
func (s *doneSet) above(p rewind.Position) []span {
	var out []span
	for _, x := range s.spans[s.i:] {
		if x.To <= p {
			continue
		}
		out = append(out, span{From: max(x.From, p), To: x.To})
	}
	return out
}

func encodeEvent(typ string, v any) (rewind.Event, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return rewind.Event{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return rewind.Event{}, err
	}
	return rewind.Event{ID: id, Type: typ, Data: data}, nil
}

// recovered is a group's state as its records say.
type recovered struct {
	cfg      GroupConfig
	end      *rewind.Position
	floor    rewind.Position
	done     []span
	skipped  []span
	attempts map[rewind.Position]int
	parked   map[rewind.Position]ParkedEntry
}

// apply adds one delta; ofSnapshot says it is a part of the complete
// snapshot applied last, the only records whose skipped spans hold.
func (r *recovered) apply(d *delta, ofSnapshot bool) {
	if ofSnapshot {
		r.skipped = append(r.skipped, d.Skipped...)
	}
	r.floor = max(r.floor, d.Floor)
	r.done = append(r.done, d.Done...)
	for _, a := range d.Attempts {
		r.attempts[a.Pos] = a.N
	}
	for _, p := range d.Parked {
		r.parked[p.Position] = p
	}
	for _, p := range d.Unparked {
		delete(r.parked, p)
	}
}

// finish merges and prunes what the floor covers.
func (r *recovered) finish() {
	r.skipped = mergeSpans(r.skipped)
	r.done = mergeSpans(r.done)
	keep := r.done[:0]
	for _, s := range r.done {
		if s.To > r.floor {
			keep = append(keep, span{From: max(s.From, r.floor), To: s.To})
		}
	}
	r.done = keep
	for p := range r.attempts {
		if p <= r.floor {
			delete(r.attempts, p)
		}
	}
}

// decodeRecords rebuilds a group's state from its records, oldest first,
// starting at a complete snapshot header. A snapshot is written in several
// appends; one a crash cut short (fewer parts follow its header than it
// announces) does not reset the state: its parts are true facts (done
// spans, parked events), applied like a commit's — but not its skipped
// spans, which hold only with its floor.
func decodeRecords(evs []rewind.RecordedEvent) (*recovered, error) {
	r := &recovered{attempts: map[rewind.Position]int{}, parked: map[rewind.Position]ParkedEntry{}}
	partsLeft := 0 // of the complete snapshot applied last
	for i := range evs {
		ev := &evs[i]
		switch ev.Type {
		case typeSnapshot:
			var h snapshotHeader
			if err := json.Unmarshal(ev.Data, &h); err != nil {
				return nil, corrupt(ev, err)
			}
			if !complete(evs[i+1:], h.Parts) {
				partsLeft = 0
				continue
			}
			*r = recovered{cfg: h.Config, end: h.End, floor: h.Floor, attempts: map[rewind.Position]int{},
				parked: map[rewind.Position]ParkedEntry{}}
			partsLeft = h.Parts
		case typeSnapshotPart, typeCommit:
			var d delta
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				return nil, corrupt(ev, err)
			}
			ofSnapshot := ev.Type == typeSnapshotPart && partsLeft > 0
			if ofSnapshot {
				partsLeft--
			}
			r.apply(&d, ofSnapshot)
		default:
			return nil, corrupt(ev, fmt.Errorf("unknown record type %q", ev.Type))
		}
	}
	r.finish()
	return r, nil
}

// complete reports whether the parts records after a snapshot header
// start with all parts of it.
func complete(after []rewind.RecordedEvent, parts int) bool {
	if len(after) < parts {
		return false
	}
	for _, ev := range after[:parts] {
		if ev.Type != typeSnapshotPart {
			return false
		}
	}
	return true
}

func corrupt(ev *rewind.RecordedEvent, err error) error {
	return fmt.Errorf("%w: group state record %s@%d: %v", rewind.ErrCorruption, ev.Stream, ev.Version, err)
}
