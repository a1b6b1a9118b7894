package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// ReadStream returns events of a stream in version order (or reverse order
// when reading backward). A stream that was never written, or that was
// deleted and not written since, fails with rewind.ErrStreamNotFound.
// Versions removed by retention are simply absent.
//
// A damaged event ends the read where a reader meets it in the order it
// reads: ReadStream returns the events before it in that order (forward,
// the versions below it; backward, those above it) together with a
// *rewind.CorruptionError naming it, wrapped with the stream and version.
// Every read that reaches it fails so; a read from the next version on
// (the previous one, backward) goes past it.
func (s *Store) ReadStream(ctx context.Context, stream string, opts rewind.ReadStreamOptions) ([]rewind.RecordedEvent, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ValidateStreamName(stream); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"}
	}
	positions, firstVersion, err := s.streamPositions(stream, opts)
	if err != nil {
		return nil, err
	}
	out := make([]rewind.RecordedEvent, 0, len(positions))
	var damage error
	err = s.readPositions(ctx, positions, func(i int, ev *rewind.RecordedEvent, err error) error {
		if err == nil && ev.Stream != stream {
			err = s.corrupt(uint64(ev.Position), fmt.Errorf("the stream index points at an event of stream %q", ev.Stream))
		}
		if err != nil {
			if !errors.Is(err, rewind.ErrCorruption) {
				return err
			}
			err = damagedVersion(err, stream, firstVersion+uint64(i), opts.Backward)
			if !opts.Backward {
				return err // forward, the events read so far are those before it
			}
			// Positions are read in ascending order: backward, the events
			// before the damage are those after the last damaged one.
			damage, out = err, out[:0]
			return nil
		}
		out = append(out, ev.Clone())
		return nil
	})
	if err == nil {
		err = damage
	}
	if err != nil && !errors.Is(err, rewind.ErrCorruption) {
		return nil, err
	}
	if opts.Backward {
		slices.Reverse(out)
	}
	return out, err
}

// damagedVersion says which event of a stream the damage err is, and
// from where a read goes past it.
func damagedVersion(err error, stream string, version uint64, backward bool) error {
	next := fmt.Sprintf("from version %d", version+1)
	if backward {
		next = fmt.Sprintf("backward from version %d", version-1)
	}
	if backward && version == 1 {
		return fmt.Errorf("%w; it is version 1 of stream %q, its first", err, stream)
	}
	return fmt.Errorf("%w; it is version %d of stream %q (read on past it %s)", err, version, stream, next)
}

// view is a stream's state as readers may see it: without appends that are
// not yet visible.
type view struct {
	st      *streamState
	slot    uint32
	version uint64 // last visible version
	last    uint64 // its position
	deleted uint64 // version of the last visible delete
}

// viewLocked returns the visible state of stream. Called with s.mu held.
func (s *Store) viewLocked(stream string) (view, bool) {
	st, slot, ok := s.idx.lookup(stream)
	if !ok || !st.live(s.log.First()) { // retention emptied it: forgotten
		return view{}, false
	}
	limit := s.log.Last()
	v := view{st: st, slot: slot, version: st.version, last: st.last, deleted: st.deleted}
	for v.last > limit && v.version > 0 {
		v.last = s.idx.chain.prev(v.last)
		v.version--
	}
	for _, d := range s.pendingDeletes[slot] { // deletes not acknowledged yet do not show
		if d.pos > limit {
			v.deleted = d.prev
			break
		}
	}
	return v, true
}

// streamPositions returns the ascending positions of the events to read,
// and the version of the first.
func (s *Store) streamPositions(stream string, opts rewind.ReadStreamOptions) ([]uint64, uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.viewLocked(stream)
	if !ok || v.version <= v.deleted {
		return nil, 0, notFoundView(stream, v, ok)
	}
	lowest := v.deleted + 1
	var lo, hi uint64
	if opts.Backward {
		hi = v.version
		if opts.From != 0 {
			hi = min(opts.From, v.version)
		}
		lo = lowest
		if opts.Limit > 0 && hi >= uint64(opts.Limit) {
			lo = max(lo, hi-uint64(opts.Limit)+1)
		}
	} else {
		lo = max(opts.From, lowest)
		if first := s.log.First(); first > 1 && lo <= v.version && s.idx.positionOf(v.slot, v.st, lo, first) == 0 {
			// Retention removed version lo: start at the first version left,
			// so that Limit counts events that can be read.
			lo += sortSearch(v.version-lo+1, func(i uint64) bool { return s.idx.positionOf(v.slot, v.st, lo+i, first) != 0 })
		}
		hi = v.version
		if opts.Limit > 0 {
			hi = min(hi, lo+uint64(opts.Limit)-1)
		}
	}
	if lo > hi {
		return nil, 0, nil
	}
	first := s.log.First()
	pos := s.idx.positionOf(v.slot, v.st, hi, first)
	positions := make([]uint64, 0, hi-lo+1)
	for at := hi; pos != 0 && pos >= first; at-- {
		positions = append(positions, pos)
		if at == lo {
			break
		}
		pos = s.idx.chain.prev(pos)
	}
	slices.Reverse(positions)
	// Retention may have removed the lowest versions of the range.
	return positions, hi - uint64(len(positions)) + 1, nil
}

// readPositions reads the events at ascending positions, and calls fn
// with the index of each and the event, or the error reading or decoding
// it (a *rewind.CorruptionError for a damaged one): fn decides whether
// the read goes on. Any other error ends the read.
func (s *Store) readPositions(ctx context.Context, positions []uint64, fn func(int, *rewind.RecordedEvent, error) error) error {
	r := s.log.NewRandomReader()
	defer r.Close()
	var ev rewind.RecordedEvent
	for i, pos := range positions {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r.Seek(pos)
		rec, err := r.Next()
		if err == io.EOF {
			return fmt.Errorf("event %d is not readable yet", pos)
		}
		if errors.Is(err, rewind.ErrTruncated) {
			continue // retention removed it since the positions were collected
		}
		if errors.Is(err, rewind.ErrCorruption) {
			if err := fn(i, nil, err); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(i, &ev, decodeRecord(rec, &ev, nil)); err != nil {
			return err
		}
	}
	return nil
}

// decodeRecord fills ev from a log record.
func decodeRecord(rec eventlog.Record, ev *rewind.RecordedEvent, in *interner) error {
	if rec.Kind != kindEvent && rec.Kind != kindTombstone {
		return &rewind.CorruptionError{Position: rewind.Position(rec.Position), Reason: fmt.Sprintf("unknown record kind %d", rec.Kind)}
	}
	if err := decodeEnvelope(rec.Payload, ev, in); err != nil {
		return &rewind.CorruptionError{Position: rewind.Position(rec.Position), Reason: err.Error()}
	}
	ev.Position = rewind.Position(rec.Position)
	ev.RecordedAt = in.recordedAt(rec.Timestamp)
	return nil
}

// ValidateReadFilter checks a read's or a subscription's filter as every
// store does: at most rewind.MaxFilterTypes types, each an event type (or
// rewind.TypeStreamDeleted); any prefix is fine (it matches or not). It
// drops the types listed twice from f.Types (into a new slice: the
// caller's is left alone).
func ValidateReadFilter(f *rewind.Filter) error { return validateFilter(f) }

func validateFilter(f *rewind.Filter) error {
	if n := len(f.Types); n > rewind.MaxFilterTypes {
		return &rewind.ValidationError{Field: "filter types",
			Reason: fmt.Sprintf("lists %d types, at most %d are allowed; read without a type filter and skip "+
				"the types you do not want", n, rewind.MaxFilterTypes)}
	}
	for i, t := range f.Types {
		if t == rewind.TypeStreamDeleted {
			continue
		}
		if err := ValidateEventType(t); err != nil {
			return &rewind.ValidationError{Field: fmt.Sprintf("filter types[%d]", i), Value: t, Reason: err.(*rewind.ValidationError).Reason}
		}
	}
	f.Types = dedupe(f.Types)
	return nil
}

// dedupe returns types without the ones listed twice, in their first
// order; types itself when none is.
func dedupe(types []string) []string {
	if len(types) < 2 {
		return types
	}
	seen := make(map[string]bool, len(types))
	var out []string
	for i, t := range types {
		if seen[t] {
			if out == nil {
				out = slices.Clone(types[:i])
			}
			continue
		}
		seen[t] = true
		if out != nil {
			out = append(out, t)
		}
	}
	if out == nil {
		return types
	}
	return out
}

// ValidateFilter reports whether f can select events of this store, as a
// long-lived reader (a consumer group) checks its filter before it is
// kept: its types are event types (or rewind.TypeStreamDeleted), as a read
// checks them, and its stream prefix, when set, can begin a stream name (a
// read takes any prefix and simply matches nothing).
func ValidateFilter(f rewind.Filter) error {
	if err := validateFilter(&f); err != nil {
		return err
	}
	if p := f.StreamPrefix; p != "" {
		if err := ValidateStreamName(p); err != nil {
			return &rewind.ValidationError{Field: "filter stream prefix", Value: p,
				Reason: err.(*rewind.ValidationError).Reason + ", as the stream names it is to match"}
		}
	}
	return nil
}

// ReadAll iterates over the whole log in position order, from the start of
// opts to the last position visible when the iteration starts, verifying
// every checksum. The event it yields is reused: it is valid until the next
// iteration (use Clone to keep one). Soft deletes appear as events of type
// rewind.TypeStreamDeleted.
func (s *Store) ReadAll(ctx context.Context, opts rewind.ReadAllOptions) iter.Seq2[*rewind.RecordedEvent, error] {
	return func(yield func(*rewind.RecordedEvent, error) bool) {
		if err := s.checkOpen(); err != nil {
			yield(nil, err)
			return
		}
		// From the start or from a time nothing was seen before: only an
		// epoch newer than the log's fails (it is not the log read).
		if err := s.log.CheckEpoch(uint64(max(opts.From, 1)-1), opts.Epoch); err != nil {
			yield(nil, err)
			return
		}
		from, err := s.startPosition(opts.From, opts.FromTime, false)
		if err != nil {
			yield(nil, err)
			return
		}
		if err := validateFilter(&opts.Filter); err != nil {
			yield(nil, err)
			return
		}
		to := s.log.Last()
		r := s.log.NewReader(uint64(from))
		defer r.Close()
		var ev rewind.RecordedEvent
		in := newInterner()
		recs := make([]eventlog.Record, 0, 256)
		n := 0
		for r.Position() <= to {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			recs, err = r.NextBatch(recs)
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range recs {
				if recs[i].Position > to {
					return
				}
				if err := decodeRecord(recs[i], &ev, in); err != nil {
					yield(nil, err)
					return
				}
				if !opts.Filter.Match(&ev) {
					continue
				}
				if !yield(&ev, nil) {
					return
				}
				if n++; opts.Limit > 0 && n >= opts.Limit {
					return
				}
			}
		}
	}
}

// startPosition resolves a read's or subscription's starting point to the
// first position to read. exclusive says pos is the last position already
// seen rather than the first to read.
func (s *Store) startPosition(pos rewind.Position, t time.Time, exclusive bool) (rewind.Position, error) {
	first := rewind.Position(s.log.First())
	if !t.IsZero() {
		if pos != 0 {
			return 0, &rewind.ValidationError{Field: "from time", Reason: "give either a position or a time, not both"}
		}
		p, err := s.log.SeekTime(t)
		return rewind.Position(p), err
	}
	if pos == 0 {
		return first, nil
	}
	// Compared before the increment, which would wrap around at the top.
	last := rewind.Position(s.log.Last())
	if limit := last + 1; pos > limit || exclusive && pos == limit {
		return 0, &rewind.ValidationError{Field: "position", Value: pos.String(),
			Reason: fmt.Sprintf("is beyond the end of the log (last position %d)", last)}
	}
	if exclusive {
		pos++
	}
	if pos < first {
		return 0, &rewind.TruncatedError{Requested: pos, FirstAvailable: first}
	}
	return pos, nil
}

// FirstPositionAt returns the first position recorded at or after t, or
// the position the next event will get when there is none.
func (s *Store) FirstPositionAt(t time.Time) (rewind.Position, error) {
	p, err := s.log.SeekTime(t)
	return rewind.Position(p), err
}

// StreamInfo describes a stream. A stream that was never written fails
// with rewind.ErrStreamNotFound; a deleted one is described with Deleted set.
func (s *Store) StreamInfo(ctx context.Context, stream string) (rewind.StreamInfo, error) {
	if err := s.checkOpen(); err != nil {
		return rewind.StreamInfo{}, err
	}
	if err := ValidateStreamName(stream); err != nil {
		return rewind.StreamInfo{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.viewLocked(stream)
	if !ok || v.version == 0 {
		return rewind.StreamInfo{}, notFound(stream, nil)
	}
	return s.infoLocked(v), nil
}

func (s *Store) infoLocked(v view) rewind.StreamInfo {
	info := rewind.StreamInfo{Stream: s.idx.name(v.slot), Version: v.version, Deleted: v.version <= v.deleted}
	if info.Deleted {
		return info
	}
	first := s.log.First()
	lo := v.deleted + 1
	pos := s.idx.positionOf(v.slot, v.st, lo, first)
	if pos == 0 { // retention removed the first versions: find the first left
		n := sortSearch(v.version-lo+1, func(i uint64) bool { return s.idx.positionOf(v.slot, v.st, lo+i, first) != 0 })
		lo += n
		pos = s.idx.positionOf(v.slot, v.st, lo, first)
	}
	if pos != 0 {
		info.FirstVersion, info.FirstPosition, info.LastPosition = lo, rewind.Position(pos), rewind.Position(v.last)
		info.Count = v.version - lo + 1
	}
	return info
}

func sortSearch(n uint64, f func(uint64) bool) uint64 {
	lo, hi := uint64(0), n
	for lo < hi {
		m := lo + (hi-lo)/2
		if !f(m) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// ListStreams returns streams sorted by name.
func (s *Store) ListStreams(ctx context.Context, opts rewind.ListStreamsOptions) ([]rewind.StreamInfo, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"}
	}
	if opts.Limit == 0 {
		opts.Limit = rewind.DefaultListStreamsLimit
	}
	s.mu.RLock()
	names := make([]string, 0, min(s.idx.streams.len(), 4*opts.Limit))
	for i := range s.idx.streams.len() {
		name := s.idx.name(uint32(i))
		if strings.HasPrefix(name, opts.Prefix) && name > opts.After {
			names = append(names, name)
		}
	}
	s.mu.RUnlock()
	slices.Sort(names)
	out := make([]rewind.StreamInfo, 0, min(len(names), opts.Limit))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, name := range names {
		if len(out) == opts.Limit {
			break
		}
		v, _ := s.viewLocked(name)
		if v.version == 0 {
			continue // not visible yet
		}
		info := s.infoLocked(v)
		if info.Deleted && !opts.IncludeDeleted {
			continue
		}
		out = append(out, info)
	}
	return out, nil
}

// Info describes the whole store.
type Info struct {
	Dir           string          `json:"data_dir"`
	Durability    string          `json:"durability"`
	FirstPosition rewind.Position `json:"first_position"`
	LastPosition  rewind.Position `json:"last_position"`
	Streams       int             `json:"streams"`
	Segments      int             `json:"segments"`
	Bytes         int64           `json:"bytes"`
	DedupIDs      int             `json:"dedup_ids"`
}

// Info returns the store's counters.
func (s *Store) Info() Info {
	st := s.log.Stats()
	s.mu.RLock()
	if s.forgotAt != s.log.First() { // streams retention emptied are not counted
		s.mu.RUnlock()
		s.mu.Lock()
		s.forgetLocked()
		s.mu.Unlock()
		s.mu.RLock()
	}
	defer s.mu.RUnlock()
	return Info{
		Dir: s.dir, Durability: s.log.Durability().String(),
		FirstPosition: rewind.Position(s.log.First()), LastPosition: rewind.Position(s.log.Last()),
		Streams: s.idx.streams.len(), Segments: st.Segments, Bytes: st.Bytes, DedupIDs: s.dedup.size(),
	}
}
