package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// Store is the embedded event store. It is safe for concurrent use.
type Store struct {
	cfg Config
	dir string
	log *eventlog.Log

	// mu orders appends: the expected-version check, the position
	// assignment and the index update of one append happen under it, so
	// stream versions follow global positions. Readers take it shared, only
	// to look up positions. It is never held during I/O or a wait (see
	// docs/architecture.md, "Locking").
	mu    sync.RWMutex
	idx   *index
	dedup *dedup
	// forgotAt is the log's first position when the index last forgot the
	// streams retention emptied (guarded by mu).
	forgotAt uint64

	// Guarded by mu: the position of the last snapshot, and whether the
	// snapshotter is at work.
	snapshotPos        uint64        // last snapshot taken
	durableSnapshotPos atomic.Uint64 // last snapshot whose file is fsynced
	snapshotting       bool
	retention          bool // the log has MaxAge or MaxBytes

	// snapWrite serialises snapshot files; filePos is the position of the
	// one on disk, so that a slower, older capture never replaces a newer.
	snapWrite    sync.Mutex
	filePos      uint64
	snapshotKick chan struct{}
	wg           sync.WaitGroup
	// pendingDeletes holds, per stream slot, the deletes whose records are
	// not visible yet, oldest first, with the deleted version before each:
	// readers must not see a delete that a crash could still take back.
	pendingDeletes map[uint32][]pendingDelete

	replayed int       // events replayed into the index at open, after the snapshot
	opened   time.Time // when Open ran
	closing  bool      // Close has begun: no more appends
	// lastAppend is the log's answer to the last append or delete, if
	// any (guarded by mu): waiting for it waits for every append before
	// it, since the log acknowledges appends in order.
	lastAppend eventlog.Appended
	appended   bool

	closeOnce sync.Once
	closed    chan struct{}
	bufs      sync.Pool
}

// Open opens or creates the store in dir. It recovers the log's tail (see
// eventlog.Open) and loads the stream index from its snapshot, replaying the
// log written after it.
func Open(dir string, cfg Config) (*Store, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: c, dir: dir, closed: make(chan struct{}), snapshotKick: make(chan struct{}, 1), opened: time.Now().UTC()}
	s.bufs.New = func() any { return new(appendBuf) }
	s.retention = c.Log.MaxAge > 0 || c.Log.MaxBytes > 0
	start := time.Now()
	l, err := eventlog.Open(dir, c.Log)
	if err != nil {
		return nil, err
	}
	c.Logger.Debug("store: log opened", "took", time.Since(start), "first", l.First(), "last", l.Last())
	s.log = l
	if err := s.rebuild(); err != nil {
		l.Close()
		return nil, err
	}
	if c.SnapshotEvery > 0 {
		s.wg.Add(1)
		go s.snapshotter()
	}
	return s, nil
}

// ApplyRetention applies the log's retention (MaxAge, MaxBytes) now, as
// the log's background retainer does on its own schedule, and forgets the
// streams it emptied. It returns the first position left in the log.
func (s *Store) ApplyRetention(ctx context.Context) (rewind.Position, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if s.retention {
		if _, err := s.log.ApplyRetention(); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	s.forgetLocked()
	first := s.forgotAt
	s.mu.Unlock()
	return rewind.Position(first), nil
}

// forgetLocked drops from the index the streams that retention emptied
// since it last ran: a stream all of whose events are gone is forgotten,
// its slot and name reclaimed, and writing to it again starts it anew at
// version 1. It costs a pass over the streams, once per move of the log's
// start. Called with s.mu held for writing.
func (s *Store) forgetLocked() {
	first := s.log.First()
	if first == s.forgotAt {
		return
	}
	s.forgotAt = first
	dropped, remap := s.idx.forget(first)
	if dropped == 0 {
		return
	}
	pending := make(map[uint32][]pendingDelete, len(s.pendingDeletes))
	for slot, ds := range s.pendingDeletes {
		if ns, ok := remap(slot); ok {
			pending[ns] = ds
		}
	}
	s.pendingDeletes = pending
	s.cfg.Logger.Debug("store: forgot the streams retention emptied", "streams", dropped, "first_position", first)
}

// snapshotter writes the index snapshot in the background when
// SnapshotEvery events were appended since the last one.
func (s *Store) snapshotter() {
	defer s.wg.Done()
	for {
		select {
		case <-s.closed:
			return
		case <-s.snapshotKick:
		}
		s.mu.Lock()
		v := s.captureLocked(false)
		s.mu.Unlock()
		var err error
		if v != nil {
			err = s.installSnapshot(v)
		}
		if err == nil && v != nil {
			// The log records that the snapshot's positions were
			// acknowledged: damage before them is never a torn tail.
			err = s.log.NoteDurable(v.pos)
		}
		if err != nil {
			s.cfg.Logger.Warn("store: background index snapshot failed; the next open will replay more of the log", "err", err)
		}
		s.mu.Lock()
		if v != nil {
			// Counted even when it failed: the next try comes SnapshotEvery
			// events later, not on every append while the disk is full.
			s.snapshotPos = v.pos
		}
		s.snapshotting = false
		s.mu.Unlock()
	}
}

// Log returns the log under the store, for inspection.
func (s *Store) Log() *eventlog.Log { return s.log }

// Recovery returns what opening the store cut from the log's tail.
func (s *Store) Recovery() []eventlog.Cut { return s.log.Recovery() }

// Close flushes and fsyncs what was appended, saves the index snapshot so
// that the next open is fast, ends subscriptions with rewind.ErrClosed and
// releases the data directory. Appends that come in meanwhile fail with
// rewind.ErrClosed at once: the fsync and the snapshot's file are written
// without holding Store.mu.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		s.wg.Wait()
		s.mu.Lock()
		s.closing = true // appends from now on fail
		v := s.captureLocked(true)
		s.mu.Unlock()
		errs := []error{s.log.Sync()}
		if errs[0] == nil && v != nil {
			if err := s.installSnapshot(v); err != nil {
				// The log is synced: nothing is lost, but the device the
				// store writes to is failing, which is what "failed" says.
				errs = append(errs, &rewind.FailedError{
					Op: "write the index snapshot at close (the log is synced and intact; the next open replays it)", Cause: err})
			}
		}
		errs = append(errs, s.log.Close())
		err = errors.Join(errs...)
	})
	return err
}

type appendBuf struct {
	payload   []byte
	entries   []eventlog.Entry
	ends      []int
	ids       []uuid.UUID
	generated []bool // the store made the id up: no idempotency check
	cands     []uint64
	sure      []bool
}

// Append appends events to stream as one atomic batch if the stream is in
// the expected state. When it returns without error the events are
// acknowledged under the store's durability mode (see package eventlog).
//
// Appending events whose ids are all already recorded, with the same
// bodies, writes nothing and returns the original positions with
// Duplicate set, whatever the expected version. Reusing an id for a
// different event, or retrying only part of an earlier batch, fails with a
// *rewind.IdempotencyConflictError. A zero event id is replaced by a new
// UUID v7.
//
// On any error nothing was written, except when ctx ends while waiting for
// durability: then the events may or may not be recorded, and retrying with
// the same ids is safe.
func (s *Store) Append(ctx context.Context, stream string, expected rewind.ExpectedVersion, events ...rewind.Event) (rewind.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return rewind.AppendResult{}, err
	}
	if err := ValidateStreamName(stream); err != nil {
		return rewind.AppendResult{}, err
	}
	if !expected.Valid() {
		return rewind.AppendResult{}, &rewind.ValidationError{Field: "expected version", Value: expected.String(),
			Reason: "must be any, no-stream, stream-exists or a version number"}
	}
	b := s.bufs.Get().(*appendBuf)
	defer s.bufs.Put(b)
	if err := s.encodeBatch(b, stream, events); err != nil {
		return rewind.AppendResult{}, err
	}
	// A failed store answers at once, except a retry of a batch it already
	// acknowledged: that gets its original answer, as before the failure
	// ("failed" would say it was never written).
	for {
		s.mu.Lock()
		if !s.findCandidates(b) {
			if err := s.log.Err(); err != nil {
				s.mu.Unlock()
				return rewind.AppendResult{}, err
			}
			if res, again, err := s.appendLocked(ctx, b, stream, expected); !again {
				return res, err
			}
			continue
		}
		s.mu.Unlock()
		res, done, err := s.resolveDuplicates(ctx, b)
		if done || err != nil {
			return res, err
		}
		// Some ids only share a key with other ids: they are new, and
		// marked so in b.sure. Check again under the lock.
		s.mu.Lock()
		changed := s.candidatesChanged(b)
		if !changed {
			if err := s.log.Err(); err != nil {
				s.mu.Unlock()
				return rewind.AppendResult{}, err
			}
			if res, again, err := s.appendLocked(ctx, b, stream, expected); !again {
				return res, err
			}
			continue
		}
		s.mu.Unlock()
	}
}

// encodeBatch validates events and encodes their envelopes into b.
func (s *Store) encodeBatch(b *appendBuf, stream string, events []rewind.Event) error {
	n := len(events)
	switch {
	case n == 0:
		return &rewind.ValidationError{Field: "events", Reason: "an append needs at least one event"}
	case n > s.cfg.MaxBatchEvents:
		return &rewind.LimitError{Limit: "batch size (events)", Max: int64(s.cfg.MaxBatchEvents), Got: int64(n),
			Hint: "split the append into several batches"}
	}
	b.payload, b.ends, b.ids, b.generated = b.payload[:0], b.ends[:0], b.ids[:0], b.generated[:0]
	var base uuid.UUID // ids the store makes up for a batch: one UUID v7, then counting
	for i := range events {
		e := &events[i]
		if err := validateEvent(i, e); err != nil {
			return err
		}
		id, generated := e.ID, e.ID == (uuid.UUID{})
		if generated {
			if base == (uuid.UUID{}) {
				var err error
				if base, err = uuid.NewV7(); err != nil {
					return fmt.Errorf("generate event id: %w", err)
				}
			}
			id = nextID(base, i)
		} else if n <= 64 {
			for j := range b.ids {
				if b.ids[j] == id {
					return &rewind.ValidationError{Field: fmt.Sprintf("events[%d].id", i), Value: id.String(),
						Reason: fmt.Sprintf("repeats the id of events[%d]; every event needs its own id", j)}
				}
			}
		}
		start := len(b.payload)
		b.payload = encodeEnvelope(b.payload, stream, id, generated, e)
		if size := len(b.payload) - start; size > s.cfg.MaxEventSize {
			return &rewind.LimitError{Limit: fmt.Sprintf("events[%d] size (bytes)", i), Max: int64(s.cfg.MaxEventSize),
				Got: int64(size), Hint: "store large bodies elsewhere and put a reference in the event"}
		}
		if len(b.payload) > s.cfg.MaxBatchBytes {
			return &rewind.LimitError{Limit: "batch size (bytes)", Max: int64(s.cfg.MaxBatchBytes), Got: int64(len(b.payload)),
				Hint: "split the append into several batches"}
		}
		b.generated = append(b.generated, generated)
		b.ids = append(b.ids, id)
		b.ends = append(b.ends, len(b.payload))
	}
	if n > 64 {
		seen := make(map[uuid.UUID]int, n)
		for i, id := range b.ids {
			if b.generated[i] {
				continue
			}
			if j, dup := seen[id]; dup {
				return &rewind.ValidationError{Field: fmt.Sprintf("events[%d].id", i), Value: id.String(),
					Reason: fmt.Sprintf("repeats the id of events[%d]; every event needs its own id", j)}
			}
			seen[id] = i
		}
	}
	b.entries = b.entries[:0]
	start := 0
	for _, end := range b.ends {
		b.entries = append(b.entries, eventlog.Entry{Kind: kindEvent, Payload: b.payload[start:end]})
		start = end
	}
	b.sure = append(b.sure[:0], make([]bool, n)...)
	return nil
}

// findCandidates looks the batch's ids up in the dedup window. It reports
// whether any id may already be recorded. Called with s.mu held.
func (s *Store) findCandidates(b *appendBuf) bool {
	b.cands = b.cands[:0]
	any := false
	for i, id := range b.ids {
		if b.generated[i] {
			b.cands = append(b.cands, 0)
			continue
		}
		pos, sure := s.dedup.find(id)
		if pos != 0 && !sure && b.sure[i] {
			pos = 0 // already read: another id with the same key
		}
		b.cands = append(b.cands, pos)
		any = any || pos != 0
	}
	return any
}

func (s *Store) candidatesChanged(b *appendBuf) bool {
	old := append([]uint64(nil), b.cands...)
	s.findCandidates(b)
	for i := range old {
		if old[i] != 0 && b.sure[i] {
			old[i] = 0
		}
		if old[i] != b.cands[i] {
			return true
		}
	}
	return false
}

// resolveDuplicates reads the records the candidates point to. If every id
// is recorded with the same body, it returns the original result (done).
// An id whose candidate turns out to be another id is marked new in b.sure.
func (s *Store) resolveDuplicates(ctx context.Context, b *appendBuf) (rewind.AppendResult, bool, error) {
	var res rewind.AppendResult
	known := 0
	start := 0
	wholeBatch := true // the known records so far are one earlier append
	for i, pos := range b.cands {
		end := b.ends[i]
		payload := b.payload[start:end]
		start = end
		if pos == 0 {
			continue
		}
		if err := s.waitVisible(ctx, pos); err != nil {
			return res, false, err
		}
		rec, err := s.log.Read(pos)
		if errors.Is(err, rewind.ErrTruncated) {
			// Retention removed the event: its id is forgotten, as it
			// would be after a reopen.
			b.sure[i], b.cands[i] = true, 0
			continue
		}
		if err != nil {
			return res, false, fmt.Errorf("read event %d for the idempotency check: %w", pos, err)
		}
		if envelopeID(rec.Payload) != b.ids[i] {
			b.sure[i] = true // a different id with the same key
			b.cands[i] = 0
			continue
		}
		if !sameBody(rec.Payload, payload) {
			return res, false, &rewind.IdempotencyConflictError{EventID: b.ids[i].String(), Position: rewind.Position(pos),
				Reason: "the recorded event has a different stream, type, metadata or data"}
		}
		var ev rewind.RecordedEvent
		if err := decodeEnvelope(rec.Payload, &ev, nil); err != nil {
			return res, false, s.corrupt(pos, err)
		}
		if known == 0 {
			res.FirstPosition, res.FirstVersion = rewind.Position(pos), ev.Version
			if wholeBatch, err = s.startsBatch(pos); err != nil {
				return res, false, err
			}
		} else if uint64(res.LastPosition)+1 != pos {
			return res, false, &rewind.IdempotencyConflictError{EventID: b.ids[i].String(), Position: rewind.Position(pos),
				Reason: "the ids of this batch belong to different earlier appends or a different order"}
		}
		// Only the last record may end the earlier append.
		wholeBatch = wholeBatch && rec.BatchEnd == (i == len(b.ids)-1)
		res.LastPosition, res.LastVersion = rewind.Position(pos), ev.Version
		known++
	}
	if known == len(b.ids) {
		if !wholeBatch {
			return res, false, &rewind.IdempotencyConflictError{EventID: b.ids[0].String(), Position: res.FirstPosition,
				Reason: "the batch repeats only part of an earlier append, or several of them"}
		}
		res.Duplicate = true
		return res, true, nil
	}
	for i, pos := range b.cands {
		if pos != 0 { // some, but not all, ids are recorded
			return res, false, &rewind.IdempotencyConflictError{EventID: b.ids[i].String(), Position: rewind.Position(pos),
				Reason: "the batch repeats some but not all events of an earlier append"}
		}
	}
	return res, false, nil
}

// startsBatch reports whether the record at pos is the first of its
// append. A segment never splits an append, so the first position of the
// log always starts one.
func (s *Store) startsBatch(pos uint64) (bool, error) {
	if pos <= s.log.First() {
		return true, nil
	}
	rec, err := s.log.Read(pos - 1)
	if errors.Is(err, rewind.ErrTruncated) {
		return true, nil // retention removed the segment before pos's since the check above
	}
	if err != nil {
		return false, fmt.Errorf("read event %d for the idempotency check: %w", pos-1, err)
	}
	return rec.BatchEnd, nil
}

// sameBody compares two envelopes, ignoring the stream version.
func sameBody(a, b []byte) bool {
	return len(a) == len(b) && len(a) >= envelopeFixed &&
		bytes.Equal(a[:versionOffset], b[:versionOffset]) && bytes.Equal(a[versionOffset+8:], b[versionOffset+8:])
}

// waitVisible waits until pos can be read: an append racing with its own
// retry may not be durable yet.
func (s *Store) waitVisible(ctx context.Context, pos uint64) error {
	for {
		ch := s.log.Changed()
		if s.log.Last() >= pos {
			return nil
		}
		if err := s.log.Err(); err != nil {
			return err // pos will never become visible
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
		}
	}
}

// appendLocked checks the expected version, orders the batch in the log
// and updates the index, then releases s.mu and waits for durability. It
// reports again when the check failed only because of appends not yet
// acknowledged: it waited for them, and the caller must start over.
func (s *Store) appendLocked(ctx context.Context, b *appendBuf, stream string, expected rewind.ExpectedVersion) (
	_ rewind.AppendResult, again bool, _ error) {
	if s.closing {
		s.mu.Unlock()
		return rewind.AppendResult{}, false, fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
	}
	s.forgetLocked()
	st, _, ok := s.idx.lookup(stream)
	var version uint64
	exists := false
	if ok {
		version, exists = st.version, st.exists()
	}
	if err := expected.Check(stream, version, exists); err != nil {
		again, err := s.answerConflictLocked(ctx, stream, func(v view, found bool) error {
			if !found {
				return expected.Check(stream, 0, false)
			}
			return expected.Check(stream, v.version, v.version > v.deleted)
		})
		return rewind.AppendResult{}, again, err
	}
	if !ok && s.idx.names.full() {
		s.mu.Unlock()
		limit := int64(s.idx.names.size())
		return rewind.AppendResult{}, false, &rewind.LimitError{Limit: "stream names (bytes)", Max: limit, Got: limit,
			Hint: "the store holds as many stream names as it can; append to existing streams, or let retention " +
				"remove old streams (their names are reclaimed)"}
	}
	for i, e := range b.entries {
		setVersion(e.Payload, version+1+uint64(i))
	}
	a, err := s.log.Append(b.entries)
	if err != nil {
		s.mu.Unlock()
		return rewind.AppendResult{}, false, err
	}
	s.lastAppend, s.appended = a, true
	slot := s.idx.slotFor(stream)
	if first := s.log.First(); s.idx.chain.firstChunk < first>>chunkBits {
		s.idx.chain.dropBefore(first) // retention removed segments
	}
	s.dedup.expire(a.Timestamp - int64(s.cfg.DedupWindow))
	for i := range b.entries {
		pos := a.First + uint64(i)
		s.idx.addEvent(slot, pos)
		if !b.generated[i] {
			s.dedup.add(b.ids[i], pos, a.Timestamp, b.sure[i])
		}
	}
	n := uint64(len(b.entries))
	if every := s.cfg.SnapshotEvery; every > 0 && !s.snapshotting && a.First+n-1 >= s.snapshotPos+uint64(every) {
		s.snapshotting = true
		select {
		case s.snapshotKick <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()

	res := rewind.AppendResult{
		FirstPosition: rewind.Position(a.First), LastPosition: rewind.Position(a.First + n - 1),
		FirstVersion: version + 1, LastVersion: version + n,
	}
	if err := a.Wait(ctx); err != nil {
		return rewind.AppendResult{}, false, err
	}
	return res, false, nil
}

// answerConflictLocked answers a write whose condition failed against the
// index, which also holds appends and deletes not yet acknowledged. An
// answer must describe only acknowledged state (a reader asking next must
// see it, and a crash cannot take it back), so the condition is checked
// again against what readers see (check, given the stream's visible state):
// if it fails there too, that is the answer; if it holds there, only
// unacknowledged writes make it fail, and the answer must wait until they
// are acknowledged (or fail). Then again is true: the caller starts over.
// Called with s.mu held; returns with it released.
func (s *Store) answerConflictLocked(ctx context.Context, stream string, check func(v view, found bool) error) (again bool, _ error) {
	v, found := s.viewLocked(stream)
	if err := check(v, found); err != nil || !s.appended {
		s.mu.Unlock()
		return false, err
	}
	pending := s.lastAppend
	s.mu.Unlock()
	if err := pending.Wait(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// nextID returns the i-th id of a batch whose ids the store makes up: the
// batch's UUID v7 with i added to its random bits, which keeps the ids
// unique and increasing (RFC 9562, section 6.2, method 2).
func nextID(base uuid.UUID, i int) uuid.UUID {
	lo := binary.BigEndian.Uint64(base[8:])
	const randBits = 1<<62 - 1 // below the variant bits
	lo = lo&^randBits | (lo+uint64(i))&randBits
	binary.BigEndian.PutUint64(base[8:], lo)
	return base
}

// DeleteStream soft-deletes a stream: its events are hidden from stream
// reads but stay in the whole log (until retention), where a record of type
// rewind.TypeStreamDeleted marks the delete. Appending to the stream again
// recreates it; its versions continue after the deleted ones. It returns the
// position of the delete record.
func (s *Store) DeleteStream(ctx context.Context, stream string, expected rewind.ExpectedVersion) (rewind.Position, error) {
	if err := ValidateStreamName(stream); err != nil {
		return 0, err
	}
	if err := s.log.Err(); err != nil {
		return 0, err
	}
	if !expected.Valid() || expected == rewind.NoStream {
		return 0, &rewind.ValidationError{Field: "expected version", Value: expected.String(),
			Reason: "must be any, stream-exists or a version number"}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return 0, err
	}
	payload := encodeEnvelope(nil, stream, id, true, &rewind.Event{Type: rewind.TypeStreamDeleted, SchemaVersion: 1})
	for {
		pos, again, err := s.deleteOnce(ctx, stream, expected, payload)
		if !again {
			return pos, err
		}
	}
}

// deleteOnce is one try of DeleteStream; see answerConflictLocked for again.
func (s *Store) deleteOnce(ctx context.Context, stream string, expected rewind.ExpectedVersion, payload []byte) (
	_ rewind.Position, again bool, _ error) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return 0, false, fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
	}
	s.forgetLocked()
	st, slot, ok := s.idx.lookup(stream)
	var err error
	if !ok || !st.exists() {
		err = notFound(stream, st)
	} else {
		err = expected.Check(stream, st.version, true)
	}
	if err != nil {
		again, err := s.answerConflictLocked(ctx, stream, func(v view, found bool) error {
			if !found || v.version <= v.deleted {
				return notFoundView(stream, v, found)
			}
			return expected.Check(stream, v.version, true)
		})
		return 0, again, err
	}
	setVersion(payload, st.version)
	a, err := s.log.Append([]eventlog.Entry{{Kind: kindTombstone, Payload: payload}})
	if err != nil {
		s.mu.Unlock()
		return 0, false, err
	}
	s.lastAppend, s.appended = a, true
	s.prunePendingDeletes()
	s.pendingDeletes[slot] = append(s.pendingDeletes[slot], pendingDelete{pos: a.First, prev: st.deleted})
	st.deleted = st.version
	s.mu.Unlock()
	if err := a.Wait(ctx); err != nil {
		return 0, false, err
	}
	return rewind.Position(a.First), false, nil
}

type pendingDelete struct {
	pos  uint64 // position of the delete record
	prev uint64 // the stream's deleted version before it
}

// prunePendingDeletes forgets the deletes that became visible. Called with
// s.mu held for writing.
func (s *Store) prunePendingDeletes() {
	if s.pendingDeletes == nil {
		s.pendingDeletes = make(map[uint32][]pendingDelete)
		return
	}
	last := s.log.Last()
	for slot, ds := range s.pendingDeletes {
		for len(ds) > 0 && ds[0].pos <= last {
			ds = ds[1:]
		}
		if len(ds) == 0 {
			delete(s.pendingDeletes, slot)
		} else {
			s.pendingDeletes[slot] = ds
		}
	}
}

// notFoundView is notFound for a stream's visible state.
func notFoundView(stream string, v view, found bool) error {
	if !found || v.version == 0 {
		return notFound(stream, nil)
	}
	return fmt.Errorf("%w: stream %q was deleted at version %d", rewind.ErrStreamNotFound, stream, v.deleted)
}

func notFound(stream string, st *streamState) error {
	if st != nil && st.version > 0 {
		return fmt.Errorf("%w: stream %q was deleted at version %d", rewind.ErrStreamNotFound, stream, st.deleted)
	}
	return fmt.Errorf("%w: stream %q has no events", rewind.ErrStreamNotFound, stream)
}

func (s *Store) corrupt(pos uint64, err error) error {
	return &rewind.CorruptionError{Position: rewind.Position(pos), Reason: err.Error()}
}
