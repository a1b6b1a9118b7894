package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

// Events is a window of an event store's log, iterated by position. Its
// checkpoints still live in the target database, so an *Events job with a
// *TableSink writes and checkpoints each chunk in one transaction.
type Events struct {
	// Store is the event store to read: the embedded store, a client of a
	// server, or any other rewind.Store.
	Store rewind.Store
	// From is the first position of the window; 0 starts at the log's start.
	From rewind.Position
	// To is the last position of the window; 0 means the log's last
	// position when the run starts (fixed for the run, so it ends).
	To rewind.Position
	// FromTime and ToTime, when set, bound the window by recording time:
	// events recorded at or after FromTime and before ToTime.
	FromTime, ToTime time.Time
	// Filter selects events by stream prefix and type.
	Filter rewind.Filter
}

func (e *Events) describe() map[string]any {
	d := map[string]any{"events": true, "from": uint64(e.From), "to": uint64(e.To),
		"stream_prefix": e.Filter.StreamPrefix, "types": e.Filter.Types}
	if !e.FromTime.IsZero() {
		d["from_time"] = e.FromTime.UTC().Format(time.RFC3339Nano)
	}
	if !e.ToTime.IsZero() {
		d["to_time"] = e.ToTime.UTC().Format(time.RFC3339Nano)
	}
	return d
}

func (e *Events) prepare(ctx context.Context, db querier, args pgx.NamedArgs) error {
	switch {
	case e.Store == nil:
		return &rewind.ValidationError{Field: "events source", Reason: "needs a store"}
	case e.From != 0 && !e.FromTime.IsZero():
		return &rewind.ValidationError{Field: "events source", Reason: "give a start position or a start time, not both"}
	case e.To != 0 && e.To < e.From:
		return &rewind.ValidationError{Field: "events source", Value: fmt.Sprint(e.To), Reason: "the window ends before it starts"}
	case !e.ToTime.IsZero() && !e.FromTime.IsZero() && !e.ToTime.After(e.FromTime):
		return &rewind.ValidationError{Field: "events source", Reason: "the window's end time is not after its start time"}
	}
	return nil
}

// firstAt returns the position of the first event recorded at or after t
// (0 when none).
func (e *Events) firstAt(ctx context.Context, t time.Time) (rewind.Position, error) {
	for ev, err := range e.Store.ReadAll(ctx, rewind.ReadAllOptions{FromTime: t, Limit: 1}) {
		if err != nil {
			return 0, err
		}
		return ev.Position, nil
	}
	return 0, nil
}

func (e *Events) start(ctx context.Context) (rewind.Position, error) {
	if !e.FromTime.IsZero() {
		p, err := e.firstAt(ctx, e.FromTime)
		if p == 0 && err == nil {
			var last rewind.Position
			if last, err = lastPosition(ctx, e.Store); err == nil {
				p = last + 1
			}
		}
		return p, err
	}
	return max(e.From, 1), nil
}

// lastPosition returns st's last acknowledged position: cheaply when the
// store tells it (rewind.LastPositioner), else by reading to the log's end.
func lastPosition(ctx context.Context, st rewind.Store) (rewind.Position, error) {
	if lp, ok := st.(rewind.LastPositioner); ok {
		return lp.LastPosition(ctx)
	}
	var last rewind.Position
	for ev, err := range st.ReadAll(ctx, rewind.ReadAllOptions{}) {
		if err != nil {
			return 0, err
		}
		last = ev.Position
	}
	return last, nil
}

func (e *Events) end(ctx context.Context, db querier, args pgx.NamedArgs) (Key, error) {
	last, err := lastPosition(ctx, e.Store)
	if err != nil {
		return nil, err
	}
	if e.To != 0 {
		last = min(last, e.To)
	}
	if !e.ToTime.IsZero() {
		p, err := e.firstAt(ctx, e.ToTime)
		if err != nil {
			return nil, err
		}
		if p != 0 {
			last = min(last, p-1)
		}
	}
	first, err := e.start(ctx)
	if err != nil {
		return nil, err
	}
	if last < first {
		return nil, nil
	}
	return Key{last.String()}, nil
}

func parsePos(k Key) (rewind.Position, error) {
	if len(k) != 1 {
		return 0, fmt.Errorf("backfill: event key %v is not a position", k)
	}
	p, err := strconv.ParseUint(k[0], 10, 64)
	return rewind.Position(p), err
}

// scan yields the window's matching events after `after` (or from lo) up to
// hi, at most limit of them (0: no limit).
func (e *Events) scan(ctx context.Context, after, lo, hi Key, limit int, fn func(*rewind.RecordedEvent) error) error {
	from, err := e.start(ctx)
	if err != nil {
		return err
	}
	if after != nil {
		p, err := parsePos(after)
		if err != nil {
			return err
		}
		from = max(from, p+1)
	} else if lo != nil {
		p, err := parsePos(lo)
		if err != nil {
			return err
		}
		from = max(from, p)
	}
	end, err := parsePos(hi)
	if err != nil {
		return err
	}
	n := 0
	for ev, err := range e.Store.ReadAll(ctx, rewind.ReadAllOptions{From: from, Filter: e.Filter}) {
		if err != nil {
			return err
		}
		if ev.Position > end || (limit > 0 && n == limit) {
			return nil
		}
		if err := fn(ev); err != nil {
			return err
		}
		n++
	}
	return nil
}

func (e *Events) next(ctx context.Context, db querier, args pgx.NamedArgs, after, end Key, size int) (Bounds, bool, error) {
	b := Bounds{After: after}
	err := e.scan(ctx, after, nil, end, size, func(ev *rewind.RecordedEvent) error {
		k := Key{ev.Position.String()}
		if b.Lo == nil {
			b.Lo = k
		}
		b.Hi = k
		b.Count++
		return nil
	})
	return b, b.Count > 0, err
}

func (e *Events) count(ctx context.Context, db querier, args pgx.NamedArgs, exact bool) (int64, bool, error) {
	end, err := e.end(ctx, db, args)
	if end == nil || err != nil {
		return 0, !exact, err
	}
	if !exact {
		first, err := e.start(ctx)
		last, _ := parsePos(end)
		return int64(last - first + 1), true, err
	}
	var n int64
	err = e.scan(ctx, nil, nil, end, 0, func(*rewind.RecordedEvent) error { n++; return nil })
	return n, false, err
}

func (e *Events) fingerprint(ctx context.Context, db querier, args pgx.NamedArgs) (string, error) {
	end, err := e.end(ctx, db, args)
	if end == nil || err != nil {
		return "0:", err
	}
	var n int64
	var b strings.Builder
	err = e.scan(ctx, nil, nil, end, 0, func(ev *rewind.RecordedEvent) error {
		n++
		b.WriteString(md5Of(ev.ID.String() + ev.Position.String()))
		return nil
	})
	return fmt.Sprintf("%d:%s", n, md5Of(b.String())), err
}

func (e *Events) read(ctx context.Context, q querier, args pgx.NamedArgs, b Bounds, lock bool) ([]Item, error) {
	var items []Item
	err := e.scan(ctx, b.After, b.Lo, b.Hi, 0, func(ev *rewind.RecordedEvent) error {
		c := ev.Clone()
		items = append(items, Item{Key: Key{ev.Position.String()}, Event: &c})
		return nil
	})
	return items, err
}

func (e *Events) keys(ctx context.Context, q querier, args pgx.NamedArgs, b Bounds) ([]Key, error) {
	var keys []Key
	err := e.scan(ctx, b.After, b.Lo, b.Hi, 0, func(ev *rewind.RecordedEvent) error {
		keys = append(keys, Key{ev.Position.String()})
		return nil
	})
	return keys, err
}

// StoreSink appends a process function's events to an event store (the
// embedded store, a client of a server, or any other rewind.Store).
//
// A store append cannot join the chunk's database transaction, so exactly
// once is kept another way: every event gets an id derived from the job
// hash, its input key and its index (unless the change sets one); before
// appending, the sink records in the target database each stream's version
// (an intent, committed first); when a chunk is applied again after a
// crash, the events with those ids already in the streams since the
// recorded versions are not appended again. The intent is deleted in the
// chunk's transaction.
type StoreSink struct {
	Store rewind.Store
}

func (s *StoreSink) describe() map[string]any { return map[string]any{"store": true} }

func (s *StoreSink) prepare(ctx context.Context, db querier) error {
	if s.Store == nil {
		return &rewind.ValidationError{Field: "store sink", Reason: "needs a store"}
	}
	return nil
}

// eventNamespace derives backfill event ids.
var eventNamespace = uuid.MustParse("5e1f0c2a-7d4b-4c4e-9a57-7265776e6466")

func (s *StoreSink) write(ctx context.Context, env *chunkEnv, changes []Change) (int64, error) {
	type batch struct {
		stream string
		events []rewind.Event
	}
	var order []string
	byStream := map[string]*batch{}
	perKey := map[string]int{}
	var streams, ids, types []string // every event of the chunk, for its image
	for _, c := range changes {
		if err := store.ValidateStreamName(c.Stream); err != nil {
			return 0, &ItemError{Key: c.Key, Err: err}
		}
		ev := c.Event
		if ev.ID == (uuid.UUID{}) {
			k := c.Key.String()
			ev.ID = uuid.NewSHA1(eventNamespace, fmt.Appendf(nil, "%s\x00%s\x00%d", env.jobHash, k, perKey[k]))
			perKey[k]++
		}
		b := byStream[c.Stream]
		if b == nil {
			b = &batch{stream: c.Stream}
			byStream[c.Stream] = b
			order = append(order, c.Stream)
		}
		b.events = append(b.events, ev)
		streams, ids, types = append(streams, c.Stream), append(ids, ev.ID.String()), append(types, ev.Type)
	}
	intent, err := env.intents.load(ctx, env.runID, env.seq)
	if err != nil {
		return 0, err
	}
	dirty := false
	var n int64 // events of this chunk in the store: found or appended
	for _, name := range order {
		b := byStream[name]
		if v, ok := intent[name]; ok {
			all := len(b.events)
			if b.events, err = s.notYetAppended(ctx, name, v, b.events); err != nil {
				return 0, err
			}
			n += int64(all - len(b.events))
			continue
		}
		info, err := s.Store.StreamInfo(ctx, name)
		if err != nil && !errors.Is(err, rewind.ErrStreamNotFound) {
			return 0, err
		}
		intent[name], dirty = info.Version, true
	}
	if dirty {
		if err := env.intents.save(ctx, env.runID, env.seq, intent); err != nil {
			return 0, err
		}
	}
	for _, name := range order {
		evs := byStream[name].events
		for len(evs) > 0 {
			part := evs[:min(len(evs), 1000)]
			evs = evs[len(part):]
			if _, err := s.Store.Append(ctx, name, rewind.Any, part...); err != nil {
				var ie *rewind.IdempotencyConflictError
				if errors.As(err, &ie) || errors.Is(err, rewind.ErrInvalidArgument) || errors.Is(err, rewind.ErrLimitExceeded) {
					return n, &ItemError{Key: Key{name}, Err: err}
				}
				return n, err
			}
			n += int64(len(part))
		}
	}
	if env.images {
		return n, saveEvents(ctx, env, streams, ids, types)
	}
	return n, nil
}

// notYetAppended drops the events whose ids the stream holds after version.
func (s *StoreSink) notYetAppended(ctx context.Context, stream string, version uint64, evs []rewind.Event) ([]rewind.Event, error) {
	got, err := s.Store.ReadStream(ctx, stream, rewind.ReadStreamOptions{From: version + 1})
	if errors.Is(err, rewind.ErrStreamNotFound) {
		return evs, nil
	}
	if err != nil {
		return nil, err
	}
	have := map[uuid.UUID]bool{}
	for _, g := range got {
		have[g.ID] = true
	}
	out := evs[:0:0]
	for _, ev := range evs {
		if !have[ev.ID] {
			out = append(out, ev)
		}
	}
	return out, nil
}

// intents are the stream versions a store sink saw before appending a
// chunk's events, committed before the append.
type intents struct {
	db   *pgxpool.Pool
	used bool
}

func (in *intents) load(ctx context.Context, runID string, seq int64) (map[string]uint64, error) {
	in.used = true
	var raw []byte
	err := in.db.QueryRow(ctx, "SELECT intent FROM rewind.backfill_intents WHERE run_id = $1 AND seq = $2", runID, seq).Scan(&raw)
	m := map[string]uint64{}
	if errors.Is(err, pgx.ErrNoRows) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the sink intent of chunk %d: %w", seq, err)
	}
	return m, json.Unmarshal(raw, &m)
}

func (in *intents) save(ctx context.Context, runID string, seq int64, m map[string]uint64) error {
	raw, _ := json.Marshal(m)
	_, err := in.db.Exec(ctx, `INSERT INTO rewind.backfill_intents (run_id, seq, intent) VALUES ($1, $2, $3)
		ON CONFLICT (run_id, seq) DO UPDATE SET intent = EXCLUDED.intent`, runID, seq, raw)
	if err != nil {
		return fmt.Errorf("record the sink intent of chunk %d: %w", seq, err)
	}
	return nil
}
