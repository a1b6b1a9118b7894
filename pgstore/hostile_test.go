package pgstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
)

// TestHostileNames: stream names and prefixes that mean something to SQL
// (LIKE wildcards, quotes, backslashes, comment marks) or to sorting
// (non-ASCII) are plain bytes: they name their own streams, sort byte-wise
// and match prefixes literally.
func TestHostileNames(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	ctx := context.Background()
	names := []string{"a%", "a_", "a%b", "ab", "a\\", "a'b", `a"b`, "a--b", "a;DROP", "é-1", "Z", "a\\%", "_", "%"}
	for _, n := range names {
		if _, err := s.Append(ctx, n, rewind.NoStream, rewind.Event{Type: "T", Data: []byte(n)}); err != nil {
			t.Fatalf("append to %q: %v", n, err)
		}
	}
	infos, err := s.ListStreams(ctx, rewind.ListStreamsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range infos {
		got = append(got, i.Stream)
	}
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(got, want) {
		t.Fatalf("list: %q, want byte order %q", got, want)
	}
	for _, prefix := range []string{"a%", "a_", "_", "%", "a\\", "a'"} {
		var want []string
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				want = append(want, n)
			}
		}
		slices.Sort(want)
		infos, err := s.ListStreams(ctx, rewind.ListStreamsOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, i := range infos {
			got = append(got, i.Stream)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list with prefix %q: %q, want %q", prefix, got, want)
		}
		var read []string
		for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{Filter: rewind.Filter{StreamPrefix: prefix}}) {
			if err != nil {
				t.Fatal(err)
			}
			read = append(read, ev.Stream)
		}
		slices.Sort(read)
		if !slices.Equal(read, want) {
			t.Fatalf("read all with prefix %q: %q, want %q", prefix, read, want)
		}
	}
	for _, n := range names {
		evs, err := s.ReadStream(ctx, n, rewind.ReadStreamOptions{})
		if err != nil || len(evs) != 1 || string(evs[0].Data) != n {
			t.Fatalf("read %q: %+v, %v", n, evs, err)
		}
	}
}

// TestHugeBatches: a batch at the event limit is written whole and read
// back; one over the byte limit is refused and writes nothing.
func TestHugeBatches(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{MaxBatchBytes: 8 << 20})
	ctx := context.Background()
	evs := make([]rewind.Event, DefaultMaxBatchEvents)
	for i := range evs {
		evs[i] = rewind.Event{ID: uuid.New(), Type: "Bulk", Data: make([]byte, 500), Metadata: map[string]string{"i": "x"}}
	}
	res, err := s.Append(ctx, "huge", rewind.NoStream, evs...)
	if err != nil || res.LastPosition != DefaultMaxBatchEvents || res.LastVersion != DefaultMaxBatchEvents {
		t.Fatalf("append of %d events: %+v, %v", len(evs), res, err)
	}
	if again, err := s.Append(ctx, "huge", rewind.Any, evs...); err != nil || !again.Duplicate {
		t.Fatalf("retry of the huge batch: %+v, %v", again, err)
	}
	big := make([]rewind.Event, 20)
	for i := range big {
		big[i] = rewind.Event{Type: "Big", Data: make([]byte, 512<<10)}
	}
	var le *rewind.LimitError
	if _, err := s.Append(ctx, "huge", rewind.Any, big...); !errors.As(err, &le) || le.Limit != "batch size (bytes)" {
		t.Fatalf("append over the byte limit: %v", err)
	}
	if last, err := s.LastPosition(ctx); err != nil || last != DefaultMaxBatchEvents {
		t.Fatalf("last position %d, %v", last, err)
	}
}
