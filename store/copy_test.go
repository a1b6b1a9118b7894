package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// TestImportLog: records imported from another store keep their positions,
// versions, ids and recorded-at times, survive a reopen, and count for
// idempotent retries; records that do not follow the log or its streams
// are refused and write nothing.
func TestImportLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	id := uuid.New()
	recs := []rewind.LogRecord{
		{RecordedEvent: rewind.RecordedEvent{Event: rewind.Event{ID: id, Type: "A", Data: []byte(`{}`),
			Metadata: map[string]string{"k": "v"}}, Stream: "x", Version: 1, Position: 1, RecordedAt: at}},
		{RecordedEvent: rewind.RecordedEvent{Event: rewind.Event{ID: uuid.New(), Type: "B"}, Stream: "x", Version: 2,
			Position: 2, RecordedAt: at}, GeneratedID: true, BatchEnd: true},
		{RecordedEvent: rewind.RecordedEvent{Event: rewind.Event{ID: uuid.New(), Type: rewind.TypeStreamDeleted},
			Stream: "x", Version: 2, Position: 3, RecordedAt: at.Add(time.Second)}, Delete: true, GeneratedID: true, BatchEnd: true},
	}
	for _, bad := range []struct {
		name string
		recs []rewind.LogRecord
	}{
		{"not at the next position", recs[1:2]},
		{"a version that does not follow", []rewind.LogRecord{func() rewind.LogRecord { r := recs[1]; r.Position = 1; return r }()}},
		{"a delete of a missing stream", []rewind.LogRecord{func() rewind.LogRecord { r := recs[2]; r.Position = 1; return r }()}},
		{"not ending a batch", recs[:1]},
	} {
		if err := s.ImportLog(ctx, bad.recs); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Fatalf("%s: %v; want an invalid argument", bad.name, err)
		}
		if last, _ := s.LastPosition(ctx); last != 0 {
			t.Fatalf("%s: wrote up to %d", bad.name, last)
		}
	}
	if err := s.ImportLog(ctx, recs); err != nil {
		t.Fatal(err)
	}
	back := func(s *Store) {
		t.Helper()
		got, err := s.ExportLog(ctx, 1, 10)
		if err != nil || len(got) != 3 {
			t.Fatalf("export: %d records, %v", len(got), err)
		}
		for i := range got {
			if got[i].Position != recs[i].Position || got[i].Version != recs[i].Version || got[i].ID != recs[i].ID ||
				!got[i].RecordedAt.Equal(recs[i].RecordedAt) || got[i].Delete != recs[i].Delete ||
				got[i].GeneratedID != recs[i].GeneratedID || got[i].BatchEnd != recs[i].BatchEnd {
				t.Fatalf("record %d: %+v; want %+v", i, got[i], recs[i])
			}
		}
		if _, err := s.ReadStream(ctx, "x", rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrStreamNotFound) {
			t.Fatalf("the deleted stream: %v", err)
		}
	}
	back(s)
	if err := s.ImportLog(ctx, []rewind.LogRecord{func() rewind.LogRecord {
		r := recs[0]
		r.Position = 4
		r.Version = 3
		r.BatchEnd = true
		r.RecordedAt = at
		return r
	}()}); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("a recorded-at going back: %v", err)
	}
	s.Close()
	s, err = Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	back(s)
	// The first batch is a whole batch with a client id: a retry of it is
	// answered as a duplicate... of a batch whose second id was generated,
	// so only the first event is retried here, alone: an idempotency
	// conflict (part of a batch), which shows the id was indexed.
	_, err = s.Append(ctx, "x", rewind.Any, recs[0].Event)
	if !errors.Is(err, rewind.ErrIdempotencyConflict) {
		t.Fatalf("a retry of part of an imported batch: %v; want an idempotency conflict", err)
	}
}
