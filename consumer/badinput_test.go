package consumer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

// TestBadInputChangesNothing: unknown groups, bad filters and limits,
// and bad arguments each get a typed error with a code, and leave the
// groups and their state streams as they were.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.appendN("s", "T", 3)
	g := b.create(GroupConfig{Name: "g"})
	waitRead(t, g, 3)
	m := b.join("g", 0)
	d := fetchNow(t, m, 1)[0]
	streamsBefore, _ := b.store.ListStreams(bg, rewind.ListStreamsOptions{Prefix: SystemStreamPrefix})
	infoBefore, _ := b.engine.Info("g")

	creates := []struct {
		name string
		cfg  GroupConfig
		code rewind.Code
	}{
		{"empty name", GroupConfig{}, rewind.CodeInvalidArgument},
		{"name with a space", GroupConfig{Name: "a b"}, rewind.CodeInvalidArgument},
		{"existing name", GroupConfig{Name: "g"}, rewind.CodeAlreadyExists},
		{"filter on the engine's streams", GroupConfig{Name: "x", Filter: rewind.Filter{StreamPrefix: "_rewind.group."}},
			rewind.CodeInvalidArgument},
		{"empty filter type", GroupConfig{Name: "x", Filter: rewind.Filter{Types: []string{""}}}, rewind.CodeInvalidArgument},
		{"unknown mode", GroupConfig{Name: "x", Mode: "twice"}, rewind.CodeInvalidArgument},
		{"unknown start", GroupConfig{Name: "x", Start: Start{Kind: "tomorrow"}}, rewind.CodeInvalidArgument},
		{"start past the log", GroupConfig{Name: "x", Start: Start{Kind: StartPosition, Position: 1 << 40}},
			rewind.CodeInvalidArgument},
		{"time start without a time", GroupConfig{Name: "x", Start: Start{Kind: StartTime}}, rewind.CodeInvalidArgument},
		// As a position without its kind: a time without the kind "time"
		// (left out over the API) started the group at the beginning.
		{"start time without its kind", GroupConfig{Name: "x", Start: Start{Time: time.Now()}}, rewind.CodeInvalidArgument},
		{"start time with kind position", GroupConfig{Name: "x", Start: Start{Kind: StartPosition, Position: 1,
			Time: time.Now()}}, rewind.CodeInvalidArgument},
		{"start time with kind end", GroupConfig{Name: "x", Start: Start{Kind: StartEnd, Time: time.Now()}},
			rewind.CodeInvalidArgument},
		{"start position without its kind", GroupConfig{Name: "x", Start: Start{Position: 1}}, rewind.CodeInvalidArgument},
		{"negative ack wait", GroupConfig{Name: "x", AckWait: -time.Second}, rewind.CodeInvalidArgument},
		{"zero max deliveries below -1", GroupConfig{Name: "x", MaxDeliveries: -2}, rewind.CodeInvalidArgument},
		{"negative backoff", GroupConfig{Name: "x", Backoff: []time.Duration{-1}}, rewind.CodeInvalidArgument},
		{"absurd max pending", GroupConfig{Name: "x", MaxPending: 1 << 40}, rewind.CodeLimitExceeded},
		{"absurd member max", GroupConfig{Name: "x", MemberMaxAckPending: 1 << 30}, rewind.CodeLimitExceeded},
		{"negative max ack pending", GroupConfig{Name: "x", MaxAckPending: -1}, rewind.CodeInvalidArgument},
		{"max pending below max ack pending", GroupConfig{Name: "x", MaxAckPending: 50, MaxPending: 10},
			rewind.CodeInvalidArgument},
		{"bad order by", GroupConfig{Name: "x", OrderBy: "random"}, rewind.CodeInvalidArgument},
		// An outside test found these created: a priority type no event can
		// have failed the group at once; an impossible key ordered nothing.
		{"priority not a type", GroupConfig{Name: "x", Priority: []string{"bad type"}}, rewind.CodeInvalidArgument},
		{"priority reserved", GroupConfig{Name: "x", Priority: []string{"$bad"}}, rewind.CodeInvalidArgument},
		{"order by a key with a space", GroupConfig{Name: "x", OrderBy: "metadata:a b"}, rewind.CodeInvalidArgument},
		{"order by a key too long", GroupConfig{Name: "x", OrderBy: "metadata:" + strings.Repeat("k", 200)}, rewind.CodeInvalidArgument},
	}
	for _, tc := range creates {
		_, err := b.engine.CreateGroup(bg, tc.cfg)
		if rewind.CodeOf(err) != tc.code {
			t.Errorf("%s: %v (code %s), want code %s", tc.name, err, rewind.CodeOf(err), tc.code)
		}
	}

	unknown := []struct {
		name string
		err  error
	}{
		{"info", func() error { _, err := b.engine.Info("nope"); return err }()},
		{"join", func() error { _, err := b.engine.Join(bg, "nope", MemberOptions{}); return err }()},
		{"parked", func() error { _, err := b.engine.Parked(bg, "nope", ParkedOptions{}); return err }()},
		{"replay", func() error { _, err := b.engine.ReplayParked(bg, "nope", ReplayOptions{}); return err }()},
		{"purge", func() error { _, err := b.engine.PurgeParked(bg, "nope", PurgeOptions{}); return err }()},
		{"reset", func() error {
			_, err := b.engine.Reset(bg, "nope", ResetOptions{ToPositionSet: true, Execute: true})
			return err
		}()},
		{"delete", b.engine.DeleteGroup(bg, "nope")},
	}
	for _, tc := range unknown {
		if !errors.Is(tc.err, ErrGroupNotFound) || rewind.CodeOf(tc.err) != rewind.CodeNotFound {
			t.Errorf("%s of an unknown group: %v", tc.name, tc.err)
		}
	}

	other := b.join("g", 0)
	args := []struct {
		name string
		err  error
		code rewind.Code
	}{
		{"foreign ack", other.Ack(bg, d.ID), rewind.CodeInvalidArgument},
		{"unknown delivery", m.Ack(bg, d.ID+1_000_000), rewind.CodeInvalidArgument},
		{"zero delivery", m.InProgress(bg, 0), rewind.CodeInvalidArgument},
		{"small never-issued id", m.Ack(bg, 1), rewind.CodeInvalidArgument},
		{"never-issued id 123", m.Nak(bg, 123, NakOptions{}), rewind.CodeInvalidArgument},
		{"negative nak delay", m.Nak(bg, d.ID, NakOptions{Delay: -time.Second}), rewind.CodeInvalidArgument},
		{"fetch 0", func() error { _, err := m.Fetch(bg, 0); return err }(), rewind.CodeInvalidArgument},
		{"negative member max", func() error {
			_, err := b.engine.Join(bg, "g", MemberOptions{MaxAckPending: -1})
			return err
		}(), rewind.CodeInvalidArgument},
		{"parked limit", func() error { _, err := b.engine.Parked(bg, "g", ParkedOptions{Limit: -5}); return err }(),
			rewind.CodeInvalidArgument},
		{"reset with two targets", func() error {
			_, err := b.engine.Reset(bg, "g", ResetOptions{ToPositionSet: true, ShiftBy: 3, Execute: true})
			return err
		}(), rewind.CodeInvalidArgument},
		{"reset with none", func() error { _, err := b.engine.Reset(bg, "g", ResetOptions{Execute: true}); return err }(),
			rewind.CodeInvalidArgument},
		{"reset past the log", func() error {
			_, err := b.engine.Reset(bg, "g", ResetOptions{ToPosition: 1 << 40, ToPositionSet: true, Execute: true})
			return err
		}(), rewind.CodeInvalidArgument},
		{"reset by a negative duration", func() error {
			_, err := b.engine.Reset(bg, "g", ResetOptions{ByDuration: -time.Hour, Execute: true})
			return err
		}(), rewind.CodeInvalidArgument},
	}
	for _, tc := range args {
		if rewind.CodeOf(tc.err) != tc.code {
			t.Errorf("%s: %v (code %s), want %s", tc.name, tc.err, rewind.CodeOf(tc.err), tc.code)
		}
	}
	if !errors.Is(args[0].err, ErrForeignDelivery) || !errors.Is(args[1].err, ErrUnknownDelivery) {
		t.Errorf("foreign %v, unknown %v", args[0].err, args[1].err)
	}
	for _, i := range []int{2, 3, 4} { // ids never handed out, below the first: unknown, not stale
		if !errors.Is(args[i].err, ErrUnknownDelivery) {
			t.Errorf("%s: %v, want ErrUnknownDelivery", args[i].name, args[i].err)
		}
	}

	// Nothing changed: the delivery is still the member's to ack.
	if err := b.engine.Flush(bg); err != nil {
		t.Fatal(err)
	}
	streamsAfter, _ := b.store.ListStreams(bg, rewind.ListStreamsOptions{Prefix: SystemStreamPrefix})
	if len(streamsAfter) != len(streamsBefore) {
		t.Fatalf("state streams %v, before %v", streamsAfter, streamsBefore)
	}
	infoAfter, _ := b.engine.Info("g")
	if infoAfter.InFlight != infoBefore.InFlight || infoAfter.AckFloor != infoBefore.AckFloor ||
		infoAfter.Members != infoBefore.Members+1 {
		t.Fatalf("info changed: %+v then %+v", infoBefore, infoAfter)
	}
	if err := m.Ack(bg, d.ID); err != nil {
		t.Fatalf("ack after the bad calls: %v", err)
	}
	if len(b.engine.Groups()) != 1 {
		t.Fatalf("groups %v", b.engine.Groups())
	}
}
