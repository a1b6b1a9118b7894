package store

import (
	"context"
	"fmt"
	"io"
	"maps"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
)

// The log as records, for `rewind copy` (rewind.LogExporter and
// rewind.LogImporter). The embedded log gives positions out itself, one
// after another from 1, so a copy into it keeps the source's positions by
// appending the source's records in order into a store that holds exactly
// the source's earlier records: ImportLog checks that the first record
// follows the log's last position. Each source batch becomes one atomic
// batch here, with the source's recorded-at time as its timestamp.

var _ interface {
	rewind.LogExporter
	rewind.LogImporter
} = (*Store)(nil)

// ExportLog returns up to max records of the log from position from on;
// see rewind.LogExporter.
func (s *Store) ExportLog(ctx context.Context, from rewind.Position, max int) ([]rewind.LogRecord, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if from < 1 {
		from = 1
	}
	if first := s.log.First(); uint64(from) < first {
		return nil, &rewind.TruncatedError{Requested: from, FirstAvailable: rewind.Position(first)}
	}
	r := s.log.NewReader(uint64(from))
	defer r.Close()
	var out []rewind.LogRecord
	for len(out) < max {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		var lr rewind.LogRecord
		if err := decodeRecord(rec, &lr.RecordedEvent, nil); err != nil {
			return nil, err
		}
		lr.Data = append([]byte{}, lr.Data...)
		lr.Delete = rec.Kind == kindTombstone
		lr.GeneratedID = !clientID(rec.Payload)
		lr.BatchEnd = rec.BatchEnd
		out = append(out, lr)
	}
	return out, nil
}

// ImportLog appends records at their own positions; see
// rewind.LogImporter. Each batch of records is one atomic batch of the log.
func (s *Store) ImportLog(ctx context.Context, records []rewind.LogRecord) error {
	if len(records) == 0 {
		return nil
	}
	if !records[len(records)-1].BatchEnd {
		return &rewind.ValidationError{Field: "records", Reason: "must end at the end of a batch"}
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
	}
	if err := s.log.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	next := s.log.Assigned() + 1
	if got := uint64(records[0].Position); got != next {
		s.mu.Unlock()
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(got),
			Reason: fmt.Sprintf("the first record must take the log's next position, %d", next)}
	}
	var last eventlog.Appended
	var entries []eventlog.Entry
	start := 0
	batch := map[string]*streamState{} // the streams as the batch's earlier records leave them
	for i := range records {
		r := &records[i]
		if uint64(r.Position) != next+uint64(i) {
			s.mu.Unlock()
			return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(r.Position),
				Reason: fmt.Sprintf("positions must follow each other: expected %d", next+uint64(i))}
		}
		if err := s.checkImported(r, batch); err != nil {
			s.mu.Unlock()
			return err
		}
		e := r.Event
		e.Metadata = maps.Clone(r.Metadata)
		payload := encodeEnvelope(nil, r.Stream, r.ID, r.GeneratedID, &e)
		setVersion(payload, r.Version)
		kind := uint8(kindEvent)
		if r.Delete {
			kind = kindTombstone
		}
		entries = append(entries, eventlog.Entry{Kind: kind, Payload: payload})
		if !r.BatchEnd {
			continue
		}
		a, err := s.log.AppendAt(entries, records[start].RecordedAt.UnixNano())
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.lastAppend, s.appended, last = a, true, a
		s.indexImported(records[start:i+1], a)
		entries, start = entries[:0], i+1
		clear(batch)
	}
	s.mu.Unlock()
	// Wait for durability even when ctx ends: the records have their
	// positions, and a copy resumed in this process must find them
	// readable, not the log's visible end behind its assigned one.
	return last.Wait(context.WithoutCancel(ctx))
}

// checkImported checks that r agrees with the index as the records before
// it leave it: those of earlier batches are in the index, those of its own
// batch in batch. Called with s.mu held.
func (s *Store) checkImported(r *rewind.LogRecord, batch map[string]*streamState) error {
	if err := ValidateStreamName(r.Stream); err != nil {
		return err
	}
	st, ok := batch[r.Stream]
	if !ok {
		st = &streamState{}
		if cur, _, found := s.idx.lookup(r.Stream); found {
			st.version, st.deleted = cur.version, cur.deleted
		}
		batch[r.Stream] = st
	}
	version, exists := st.version, st.exists()
	defer func() {
		if r.Delete {
			st.deleted = st.version
		} else {
			st.version++
		}
	}()
	switch {
	case r.Delete && (!exists || r.Version != version):
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(r.Position), Reason: fmt.Sprintf(
			"deletes stream %q at version %d, which here is at version %d (exists: %v)", r.Stream, r.Version, version, exists)}
	case !r.Delete && r.Version != version+1:
		return &rewind.ValidationError{Field: "records", Value: fmt.Sprint(r.Position), Reason: fmt.Sprintf(
			"is version %d of stream %q, which here is at version %d", r.Version, r.Stream, version)}
	case !r.Delete:
		e := r.Event
		if err := validateEvent(0, &e); err != nil {
			return err
		}
	}
	return nil
}

// indexImported puts one imported batch into the index and the dedup
// window, as an append or a delete does. Called with s.mu held.
func (s *Store) indexImported(batch []rewind.LogRecord, a eventlog.Appended) {
	s.dedup.expire(a.Timestamp - int64(s.cfg.DedupWindow))
	n := uint64(len(batch))
	if every := s.cfg.SnapshotEvery; every > 0 && !s.snapshotting && a.First+n-1 >= s.snapshotPos+uint64(every) {
		s.snapshotting = true
		select {
		case s.snapshotKick <- struct{}{}:
		default:
		}
	}
	for i := range batch {
		r := &batch[i]
		pos := a.First + uint64(i)
		slot := s.idx.slotFor(r.Stream)
		st := s.idx.streams.at(slot)
		if r.Delete {
			s.prunePendingDeletes()
			s.pendingDeletes[slot] = append(s.pendingDeletes[slot], pendingDelete{pos: pos, prev: st.deleted})
			st.deleted = st.version
			continue
		}
		s.idx.addEvent(slot, pos)
		if !r.GeneratedID {
			// A key another id holds already sends this id to the exact
			// map (the record at the key's position may not be readable yet
			// to tell them apart).
			old, sure := s.dedup.find(r.ID)
			s.dedup.add(r.ID, pos, a.Timestamp, old != 0 && !sure)
		}
	}
}
