package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/damagetest"
)

// B2: a stream whose events are spread across the log, with a damaged
// record in the middle, read as nothing but an error: ReadStream dropped
// the events it had read before the damage. A stream read serves what a
// reader meets before the damage — forward the versions below it,
// backward those above it — then the *rewind.CorruptionError naming it,
// and the same again on every read; a read that stops short of the damage
// succeeds, one resumed past it reads on, and other streams are untouched.
func TestStreamReadsAcrossDamage(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{Log: eventlog.Config{Durability: eventlog.None}})
	const n = 1000 // events of each of s1 and s2, in alternating batches of 4
	for i := 0; i < n; i += 4 {
		for _, st := range []string{"s1", "s2"} {
			batch := make([]rewind.Event, 4)
			for j := range batch {
				batch[j] = rewind.Event{ID: uuid.New(), Type: "T", Data: fmt.Appendf(nil, `{"%s":%d}`, st, i+j+1)}
			}
			if _, err := s.Append(ctx, st, rewind.Any, batch...); err != nil {
				t.Fatal(err)
			}
		}
	}
	positionOf := func(version uint64) rewind.Position {
		evs, err := s.ReadStream(ctx, "s1", rewind.ReadStreamOptions{From: version, Limit: 1})
		if err != nil || len(evs) != 1 {
			t.Fatalf("position of s1@%d: %v", version, err)
		}
		return evs[0].Position
	}
	damaged := map[uint64]rewind.Position{501: positionOf(501), 800: positionOf(800)}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pos := range damaged {
		damagetest.FlipPayloadByte(t, b.dir, pos)
	}
	s, err := Open(b.dir, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	type want struct {
		first, last uint64 // versions read, in read order; 0, 0: none
		damage      uint64 // version of the damaged event the read stops at; 0: none
	}
	cases := []struct {
		opts rewind.ReadStreamOptions
		want want
	}{
		{rewind.ReadStreamOptions{}, want{1, 500, 501}},
		{rewind.ReadStreamOptions{Limit: 600}, want{1, 500, 501}},
		{rewind.ReadStreamOptions{Limit: 500}, want{1, 500, 0}},
		{rewind.ReadStreamOptions{From: 400, Limit: 50}, want{400, 449, 0}},
		{rewind.ReadStreamOptions{From: 501}, want{0, 0, 501}},
		{rewind.ReadStreamOptions{From: 502}, want{502, 799, 800}},
		{rewind.ReadStreamOptions{From: 801}, want{801, n, 0}},
		{rewind.ReadStreamOptions{Backward: true}, want{n, 801, 800}},
		{rewind.ReadStreamOptions{Backward: true, Limit: 100}, want{n, 901, 0}},
		{rewind.ReadStreamOptions{Backward: true, From: 799}, want{799, 502, 501}},
		{rewind.ReadStreamOptions{Backward: true, From: 700, Limit: 300}, want{700, 502, 501}},
		{rewind.ReadStreamOptions{Backward: true, From: 500}, want{500, 1, 0}},
	}
	for _, c := range cases {
		for round := range 2 { // the damage is met again, never skipped
			evs, err := s.ReadStream(ctx, "s1", c.opts)
			var got want
			if len(evs) > 0 {
				got.first, got.last = evs[0].Version, evs[len(evs)-1].Version
			}
			for i := range evs {
				step := uint64(i)
				v := got.first + step
				if c.opts.Backward {
					v = got.first - step
				}
				if evs[i].Version != v || evs[i].Stream != "s1" || string(evs[i].Data) != fmt.Sprintf(`{"s1":%d}`, v) {
					t.Fatalf("%+v: event %d is s1@%d %s, want s1@%d", c.opts, i, evs[i].Version, evs[i].Data, v)
				}
			}
			var ce *rewind.CorruptionError
			switch {
			case err == nil:
			case errors.As(err, &ce) && ce.Position == damaged[c.want.damage] && ce.Segment != "" &&
				strings.Contains(err.Error(), fmt.Sprintf(`it is version %d of stream "s1"`, c.want.damage)):
				got.damage = c.want.damage
			default:
				t.Fatalf("%+v round %d: error %v, want damage at s1@%d (position %d) or none", c.opts, round, err,
					c.want.damage, damaged[c.want.damage])
			}
			if got != c.want {
				t.Fatalf("%+v round %d: read versions %d..%d, damage at %d (%v); want %+v", c.opts, round,
					got.first, got.last, got.damage, err, c.want)
			}
		}
	}
	if evs, err := s.ReadStream(ctx, "s2", rewind.ReadStreamOptions{}); err != nil || len(evs) != n {
		t.Fatalf("s2, whose events sit between the damaged ones: %d events, %v", len(evs), err)
	}
}
