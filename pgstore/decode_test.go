package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rewindhq/rewind"
)

// TestEventDecoder: rows read from their raw values are the rows pgx's
// Scan reads, for every shape an event can take (no metadata, the same
// metadata as the row before, empty and large data, occurred-at times,
// generated ids, delete records, more distinct strings than the decoder
// remembers), with the statements' usual formats and with the simple
// protocol's text, where the decoder hands the rows to Scan. What it hands
// out is each event's own: changing one event's metadata or appending to
// its data changes no other.
func TestEventDecoder(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), dataBlock/2)
	occurred := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	var appended int
	add := func(stream string, evs ...rewind.Event) {
		t.Helper()
		if _, err := s.Append(ctx, stream, rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
		appended += len(evs)
	}
	md := map[string]string{"correlation": "c-1", "actor": "ünïcode ✓"}
	add("orders-1",
		rewind.Event{ID: uuid.New(), Type: "Placed", Data: []byte(`{"a":1}`), Metadata: md},
		rewind.Event{ID: uuid.New(), Type: "Placed", Data: []byte(`{"a":2}`), Metadata: md},
		rewind.Event{ID: uuid.New(), Type: "Placed", Data: []byte(`{"a":3}`), Metadata: md},
		rewind.Event{ID: uuid.New(), Type: "Placed", Data: []byte(`{"a":4}`), Metadata: md},
		rewind.Event{Type: "Generated", Data: []byte{}, ContentType: "application/octet-stream", SchemaVersion: 7},
		rewind.Event{ID: uuid.New(), Type: "Big", Data: big, OccurredAt: occurred, Metadata: map[string]string{"k": ""}},
		rewind.Event{ID: uuid.New(), Type: "Big", Data: big, Metadata: md})
	if _, err := s.DeleteStream(ctx, "orders-1", rewind.Any); err != nil {
		t.Fatal(err)
	}
	appended++
	// More distinct strings (types here) than the decoder keeps, streams
	// taking turns, and enough data to fill several blocks.
	many := make([]rewind.Event, maxStrings+100)
	for i := range many {
		many[i] = rewind.Event{ID: uuid.New(), Type: fmt.Sprintf("T%05d", i), Data: []byte(strings.Repeat("d", i%200)),
			Metadata: map[string]string{"n": fmt.Sprint(i / 3 % 2)}}
	}
	for i := 0; i < len(many); i += 500 {
		add(fmt.Sprintf("s-%d", i/500%3), many[i:min(i+500, len(many))]...)
	}

	simpleCfg, err := pgxpool.ParseConfig(simpleProtocol(db.DSN))
	if err != nil {
		t.Fatal(err)
	}
	simple, err := pgxpool.NewWithConfig(ctx, simpleCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer simple.Close()
	query := s.q.selectCols + " ORDER BY position"
	read := func(pool *pgxpool.Pool, decoded bool) []row {
		t.Helper()
		rows, err := pool.Query(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var dec eventDecoder
		dec.start(rows, 0)
		if want := pool != simple; decoded && dec.raw != want {
			t.Fatalf("the decoder reads raw values: %v, want %v (columns %v)", dec.raw, want, rows.FieldDescriptions())
		}
		var out []row
		for rows.Next() {
			var r row
			var err error
			if decoded {
				_, err = dec.next(rows, &r)
			} else {
				_, err = scanInto(rows, &r)
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := read(db.Pool, false)
	if len(want) != appended {
		t.Fatalf("read %d rows, appended %d", len(want), appended)
	}
	for _, c := range []struct {
		name string
		pool *pgxpool.Pool
	}{{"binary", db.Pool}, {"simple protocol", simple}} {
		got := read(c.pool, true)
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows, want %d", c.name, len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("%s: row %d decoded as\n%+v\nScan reads\n%+v", c.name, i, got[i], want[i])
			}
		}
		// The first four events carry the same metadata: each must have
		// a map of its own, and so must the events read after them.
		for i := range 4 {
			got[i].ev.Metadata["correlation"] = fmt.Sprint("changed-", i)
			got[i].ev.Data = append(got[i].ev.Data, "!!"...)
		}
		for i := range 4 {
			if v := got[i].ev.Metadata["correlation"]; v != fmt.Sprint("changed-", i) {
				t.Fatalf("%s: event %d's metadata changed with another's: %q", c.name, i, v)
			}
		}
		if string(got[1].ev.Data) != `{"a":2}!!` || string(got[2].ev.Data) != `{"a":3}!!` {
			t.Fatalf("%s: appending to one event's data changed the next one's: %q, %q", c.name, got[1].ev.Data,
				got[2].ev.Data)
		}
		again := read(c.pool, true)
		if again[2].ev.Metadata["correlation"] != "c-1" {
			t.Fatalf("%s: a new read hands out a changed map: %v", c.name, again[2].ev.Metadata)
		}
	}
}

// TestReadsWithSimpleProtocol: a store whose connection string asks for
// the simple protocol (as behind some poolers) reads the same events by
// every read path as a store with the default protocol.
func TestReadsWithSimpleProtocol(t *testing.T) {
	db := newTestDB(t)
	s := db.open(t, Config{})
	ctx := context.Background()
	for i := range 3 {
		evs := benchEvents(700)
		evs[0].Metadata = nil
		evs[1].OccurredAt = time.Unix(1700000000, 42).UTC()
		if _, err := s.Append(ctx, fmt.Sprintf("st-%d", i), rewind.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	simple, err := Open(ctx, simpleProtocol(db.DSN), Config{Schema: s.cfg.Schema})
	if err != nil {
		t.Fatal(err)
	}
	defer simple.Close()
	all := func(st *Store) []rewind.RecordedEvent {
		t.Helper()
		var out []rewind.RecordedEvent
		for ev, err := range st.ReadAll(ctx, rewind.ReadAllOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.Clone())
		}
		sub, err := st.Subscribe(ctx, rewind.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		for i := range out {
			ev, err := sub.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*ev, out[i]) {
				t.Fatalf("subscription event %d is\n%+v\nReadAll's\n%+v", i, *ev, out[i])
			}
		}
		stream, err := st.ReadStream(ctx, "st-1", rewind.ReadStreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return append(out, stream...)
	}
	want, got := all(s), all(simple)
	if len(want) != 2100+700 {
		t.Fatalf("read %d events, want 2800", len(want))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("the simple protocol's store reads other events than the default one")
	}
}

// simpleProtocol returns dsn (a URL or key=value pairs) asking pgx for the
// simple protocol.
func simpleProtocol(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn + " default_query_exec_mode=simple_protocol"
	}
	q := u.Query()
	q.Set("default_query_exec_mode", "simple_protocol")
	u.RawQuery = q.Encode()
	return u.String()
}
