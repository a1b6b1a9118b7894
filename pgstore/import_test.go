package pgstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// TestImportLogRefusesMidCopy: an import checks its records while its
// COPY is under way; a record refused thousands of rows in (after rows
// before it went to PostgreSQL) fails the import with an invalid argument
// and leaves the target as it was, events, streams and head; the right
// records then import into a copy equal to the source, batches included.
func TestImportLogRefusesMidCopy(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	src, dst := db.open(t, Config{}), db.open(t, Config{})
	for i := range 6 {
		evs := benchEvents(1000)
		for j := range evs {
			if j%7 == 0 {
				evs[j].Metadata = map[string]string{"n": fmt.Sprint(j)}
			}
			if j%11 == 0 {
				evs[j].OccurredAt = time.Unix(1700000000, int64(j)).UTC()
			}
		}
		// Batches of 1 to 1000 events, so that batches end inside chunks.
		for k := 0; k < len(evs); k += i*199 + 1 {
			if _, err := src.Append(ctx, fmt.Sprintf("s-%d", (i+k)%4), rewind.Any, evs[k:min(k+i*199+1, len(evs))]...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := src.DeleteStream(ctx, "s-2", rewind.Any); err != nil {
		t.Fatal(err)
	}
	recs, err := src.ExportLog(ctx, 1, 10_000)
	if err != nil || len(recs) != 6001 {
		t.Fatalf("export: %d records, %v", len(recs), err)
	}
	cut := 1000
	for !recs[cut-1].BatchEnd {
		cut++
	}
	if err := dst.ImportLog(ctx, recs[:cut]); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		return db.Checksum(t, dst.cfg.Schema+".events", "position") + db.Checksum(t, dst.cfg.Schema+".streams", "name") +
			db.Checksum(t, dst.cfg.Schema+".head", "last")
	}
	before := state()
	rest := recs[cut:]
	const bad = 4000 // a record 4000 rows into the chunk
	for _, c := range []struct {
		name  string
		spoil func(r *rewind.LogRecord)
	}{
		{"a version that does not follow", func(r *rewind.LogRecord) { r.Version += 2 }},
		{"a position that skips", func(r *rewind.LogRecord) { r.Position++ }},
		{"a recorded-at going back", func(r *rewind.LogRecord) { r.RecordedAt = r.RecordedAt.Add(-time.Hour) }},
		{"a delete of a stream at another version", func(r *rewind.LogRecord) {
			r.Delete, r.Type, r.Version, r.Data, r.Metadata = true, rewind.TypeStreamDeleted, r.Version+5, nil, nil
		}},
	} {
		spoilt := append([]rewind.LogRecord(nil), rest...)
		c.spoil(&spoilt[bad])
		err := dst.ImportLog(ctx, spoilt)
		var ve *rewind.ValidationError
		if !errors.Is(err, rewind.ErrInvalidArgument) || !errors.As(err, &ve) {
			t.Fatalf("%s: %v; want a *rewind.ValidationError", c.name, err)
		}
		if after := state(); after != before {
			t.Fatalf("%s: the target changed", c.name)
		}
		t.Logf("%s: %v", c.name, err)
	}
	if err := dst.ImportLog(ctx, rest); err != nil {
		t.Fatal(err)
	}
	got, err := dst.ExportLog(ctx, 1, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recs) {
		for i := range got {
			if !reflect.DeepEqual(got[i], recs[i]) {
				t.Fatalf("record %d imported as\n%+v\nexported from the source as\n%+v", i, got[i], recs[i])
			}
		}
		t.Fatalf("%d records imported, %d exported", len(got), len(recs))
	}
	for table, key := range map[string]string{"events": "position", "streams": "name", "head": "last"} {
		if a, b := db.Checksum(t, src.cfg.Schema+"."+table, key), db.Checksum(t, dst.cfg.Schema+"."+table, key); a != b {
			t.Fatalf("the copy's %s table differs from the source's", table)
		}
	}
	for _, st := range []string{"s-0", "s-1", "s-2", "s-3"} {
		a, errA := src.StreamInfo(ctx, st)
		b, errB := dst.StreamInfo(ctx, st)
		if a != b || (errA == nil) != (errB == nil) {
			t.Fatalf("stream %s: %+v, %v in the copy; %+v, %v in the source", st, b, errB, a, errA)
		}
	}
}

// TestImportAfterConcurrentAppend: an append that holds the append lock
// when an import asks for it lands first; the import, granted the lock
// after that append's commit, sees the positions it took and refuses as
// not following the log (invalid argument, nothing written) instead of
// colliding with them on the primary key (F4: it read head.last in a
// snapshot taken before its lock was granted).
func TestImportAfterConcurrentAppend(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	src, dst := db.open(t, Config{}), db.open(t, Config{})
	installFates(dst)
	if _, err := src.Append(ctx, "copied", rewind.Any, benchEvents(3)...); err != nil {
		t.Fatal(err)
	}
	recs, err := src.ExportLog(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	appended := make(chan error, 1)
	go func() {
		_, err := dst.Append(withFate(ctx, fate{sleep: 2 * time.Second}), "other", rewind.Any, benchEvents(2)...)
		appended <- err
	}()
	for {
		h, err := dst.Horizon(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.Holder != nil {
			break // the append holds the lock, paused before its COMMIT
		}
		time.Sleep(5 * time.Millisecond)
	}
	err = dst.ImportLog(ctx, recs)
	if err := <-appended; err != nil {
		t.Fatalf("append: %v", err)
	}
	if !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("import after an append that held the lock: %v; want invalid argument (not a prefix)", err)
	}
	if last, err := dst.LastPosition(ctx); err != nil || last != 2 {
		t.Fatalf("target's last position %d, %v; want 2 (the append's)", last, err)
	}
}
