package consumer

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

var (
	modelOps  = flag.Int("consumer.model.ops", 1000, "consumer: operations of the model test")
	modelSeed = flag.Uint64("consumer.model.seed", 0, "consumer: seed of the model test (0: from the clock)")
)

// The model test applies seeded random sequences of appends, fetches,
// acks, naks (with and without a delay), in-progress, terms, ack waits
// running out, member churn, replays, purges, bad acks and clean restarts
// to a group and to a trivially correct model of one, and compares every
// delivery, every error, the group's counts and its parked events.

type mState int

const (
	mReady mState = iota
	mDelayed
	mInFlight
)

type mEntry struct {
	pos      rewind.Position
	state    mState
	readyAt  time.Time
	attempts int
	lastErr  string
	replay   bool
	id       DeliveryID
	member   int
	deadline time.Time
}

type mParked struct {
	seq      uint64
	attempts int
	reason   string
	lastErr  string
}

type model struct {
	cfg       GroupConfig
	entries   map[rewind.Position]*mEntry // outstanding, replayed ones included
	parked    map[rewind.Position]*mParked
	replaying map[rewind.Position]bool
	replay    replayState
	parkSeq   uint64
	stale     []DeliveryID
}

func newModel(cfg GroupConfig) *model {
	return &model{cfg: cfg, entries: map[rewind.Position]*mEntry{}, parked: map[rewind.Position]*mParked{},
		replaying: map[rewind.Position]bool{}}
}

func (m *model) inFlight(member int) []*mEntry {
	var out []*mEntry
	for _, e := range m.sorted() {
		if e.state == mInFlight && (member < 0 || e.member == member) {
			out = append(out, e)
		}
	}
	return out
}

func (m *model) sorted() []*mEntry {
	out := make([]*mEntry, 0, len(m.entries))
	for _, e := range m.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pos < out[j].pos })
	return out
}

// fetch predicts what member (holding maxm at most) gets.
func (m *model) fetch(member, maxm, n int, now time.Time) []*mEntry {
	var out []*mEntry
	mine, all := len(m.inFlight(member)), len(m.inFlight(-1))
	for _, e := range m.sorted() {
		if len(out) >= n || mine >= maxm || all >= m.cfg.MaxAckPending {
			break
		}
		if e.state != mReady {
			continue
		}
		e.state, e.attempts, e.member, e.deadline = mInFlight, e.attempts+1, member, now.Add(m.cfg.AckWait)
		out = append(out, e)
		mine++
		all++
	}
	return out
}

func (m *model) release(e *mEntry) { m.stale = append(m.stale, e.id); e.id = 0 }

func (m *model) ack(e *mEntry) {
	m.release(e)
	delete(m.entries, e.pos)
	if e.replay {
		delete(m.replaying, e.pos)
		delete(m.parked, e.pos)
	}
}

func (m *model) park(e *mEntry, reason string) {
	delete(m.entries, e.pos)
	m.parkSeq++
	if e.replay {
		delete(m.replaying, e.pos)
		old := m.parked[e.pos]
		m.parked[e.pos] = &mParked{seq: m.parkSeq, attempts: old.attempts + e.attempts, reason: reason,
			lastErr: e.lastErr}
		return
	}
	m.parked[e.pos] = &mParked{seq: m.parkSeq, attempts: e.attempts, reason: reason, lastErr: e.lastErr}
}

func (m *model) retry(e *mEntry, delay time.Duration, explicit bool, now time.Time) {
	switch {
	case e.replay:
		m.park(e, "failed again after a replay")
		return
	case m.cfg.MaxDeliveries > 0 && e.attempts >= m.cfg.MaxDeliveries:
		m.park(e, "max deliveries reached")
		return
	}
	if !explicit {
		delay = m.cfg.Backoff[min(max(e.attempts-1, 0), len(m.cfg.Backoff)-1)]
	}
	if delay <= 0 {
		e.state = mReady
		return
	}
	e.state, e.readyAt = mDelayed, now.Add(delay)
}

func (m *model) nak(e *mEntry, delay time.Duration, errMsg string, now time.Time) {
	m.release(e)
	e.lastErr = errMsg
	m.retry(e, delay, delay > 0, now)
}

func (m *model) tick(now time.Time) {
	for _, e := range m.sorted() {
		if e.state == mDelayed && !e.readyAt.After(now) {
			e.state = mReady
		}
	}
	var due []*mEntry
	for _, e := range m.entries {
		if e.state == mInFlight && !e.deadline.After(now) {
			due = append(due, e)
		}
	}
	for _, e := range due {
		m.nak(e, 0, "ack wait expired", now)
	}
}

func (m *model) leave(member int, now time.Time) {
	for _, e := range m.inFlight(member) {
		m.release(e)
		e.lastErr = "member left"
		if e.replay || m.cfg.MaxDeliveries > 0 && e.attempts >= m.cfg.MaxDeliveries {
			m.retry(e, 0, true, now)
			continue
		}
		e.state = mReady
	}
}

// fillReplay hands back parked events as the engine's replayer does.
func (m *model) fillReplay(readEvent func(rewind.Position) bool) {
	if !m.replay.active {
		return
	}
	room := m.cfg.ReplayChunk - len(m.replaying)
	var ps []rewind.Position
	for p, pe := range m.parked {
		if p > m.replay.after && p <= m.replay.stop && !m.replaying[p] && pe.seq <= m.replay.maxSeq {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	if len(ps) == 0 {
		if len(m.replaying) == 0 && room > 0 {
			m.replay.active = false
		}
		return
	}
	for _, p := range ps[:min(room, len(ps))] {
		m.replay.after = p
		m.replaying[p] = true
		m.entries[p] = &mEntry{pos: p, replay: true}
	}
	if room < len(ps) {
		return
	}
	m.fillReplay(readEvent)
}

// restart is a clean restart: deliveries end, delays are forgotten, the
// delivery counts kept are those of the failed deliveries, a replay stops.
func (m *model) restart() {
	for p, e := range m.entries {
		if e.replay {
			delete(m.entries, p)
			continue
		}
		if e.state == mInFlight {
			m.release(e)
			e.attempts--
		}
		e.state = mReady
	}
	m.replaying = map[rewind.Position]bool{}
	m.replay = replayState{}
}

func TestModel(t *testing.T) {
	t.Parallel()
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-consumer.model.seed to repeat), %d ops", seed, *modelOps)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := setup(t, Config{SnapshotEvery: 3, CommitInterval: 5 * time.Millisecond})
	cfg := GroupConfig{Name: "g", AckWait: 10 * time.Second, MaxDeliveries: 3,
		Backoff: []time.Duration{0, 2 * time.Second, 5 * time.Second}, MaxAckPending: 12, ReplayChunk: 3}
	g := b.create(cfg)
	mod := newModel(g.cfg)
	const members = 3
	mb := make([]*Member, members)
	maxOf := make([]int, members)
	joinAll := func() {
		for i := range mb {
			maxOf[i] = 1 + r.IntN(5)
			mb[i] = b.join("g", maxOf[i])
		}
	}
	joinAll()
	var last rewind.Position
	for op := range *modelOps {
		now := b.clock.Now()
		desc := ""
		switch k := r.IntN(100); {
		case k < 12:
			n := 1 + r.IntN(5)
			res := b.appendN(fmt.Sprintf("s-%d", r.IntN(4)), "T", n)
			for p := res.FirstPosition; p <= res.LastPosition; p++ {
				mod.entries[p] = &mEntry{pos: p}
			}
			last = res.LastPosition
			waitRead(t, g, last)
			desc = fmt.Sprintf("append %d", n)
		case k < 35:
			i, n := r.IntN(members), 1+r.IntN(4)
			ds := fetchNow(t, mb[i], n)
			want := mod.fetch(i, maxOf[i], n, now)
			desc = fmt.Sprintf("fetch m%d %d: got %v", i, n, positions(ds))
			if len(ds) != len(want) {
				t.Fatalf("op %d %s: want %d deliveries", op, desc, len(want))
			}
			for j, d := range ds {
				w := want[j]
				if d.Event.Position != w.pos || d.Attempt != w.attempts || d.Replay != w.replay {
					t.Fatalf("op %d %s: delivery %d is %d attempt %d replay %v, want %d attempt %d replay %v",
						op, desc, j, d.Event.Position, d.Attempt, d.Replay, w.pos, w.attempts, w.replay)
				}
				w.id = d.ID
			}
		case k < 75:
			i := r.IntN(members)
			fl := mod.inFlight(i)
			if len(fl) == 0 {
				continue
			}
			e := fl[r.IntN(len(fl))]
			id := e.id
			var err error
			switch kk := r.IntN(10); {
			case kk < 5:
				err = mb[i].Ack(bg, id)
				mod.ack(e)
				desc = fmt.Sprintf("ack m%d %d", i, e.pos)
			case kk < 8:
				delay := time.Duration(r.IntN(3)) * time.Second
				msg := fmt.Sprintf("err %d", op)
				err = mb[i].Nak(bg, id, NakOptions{Delay: delay, Error: msg})
				mod.nak(e, delay, msg, now)
				desc = fmt.Sprintf("nak m%d %d delay %s", i, e.pos, delay)
			case kk < 9:
				err = mb[i].InProgress(bg, id)
				e.deadline = now.Add(mod.cfg.AckWait)
				desc = fmt.Sprintf("in-progress m%d %d", i, e.pos)
			default:
				err = mb[i].Term(bg, id, "poison", "bad")
				mod.release(e)
				e.lastErr = "bad"
				mod.park(e, "poison")
				desc = fmt.Sprintf("term m%d %d", i, e.pos)
			}
			if err != nil {
				t.Fatalf("op %d %s: %v", op, desc, err)
			}
		case k < 83:
			d := time.Duration(r.IntN(13)) * time.Second
			b.clock.Add(d)
			b.engine.tick()
			mod.tick(b.clock.Now())
			desc = fmt.Sprintf("advance %s", d)
		case k < 88:
			badAck(t, op, r, b, mb, mod)
			desc = "bad ack"
		case k < 92:
			i := r.IntN(members)
			mb[i].Leave()
			mod.leave(i, now)
			maxOf[i] = 1 + r.IntN(5)
			mb[i] = b.join("g", maxOf[i])
			desc = fmt.Sprintf("leave and rejoin m%d", i)
		case k < 95:
			through := rewind.Position(0)
			if r.IntN(2) == 0 && last > 0 {
				through = rewind.Position(1 + r.IntN(int(last)))
			}
			n, err := b.engine.ReplayParked(bg, "g", ReplayOptions{Through: through})
			if err != nil {
				t.Fatal(err)
			}
			stop := through
			if stop == 0 {
				stop = ^rewind.Position(0)
			}
			if mod.replay.active {
				stop = max(stop, mod.replay.stop)
			}
			mod.replay = replayState{active: true, stop: stop, maxSeq: mod.parkSeq}
			desc = fmt.Sprintf("replay through %d: %d", through, n)
		case k < 96:
			through := rewind.Position(0)
			if r.IntN(2) == 0 && last > 0 {
				through = rewind.Position(1 + r.IntN(int(last)))
			}
			n, err := b.engine.PurgeParked(bg, "g", PurgeOptions{Through: through})
			want := 0
			for p := range mod.parked {
				if (through == 0 || p <= through) && !mod.replaying[p] {
					delete(mod.parked, p)
					want++
				}
			}
			if err != nil || n != want {
				t.Fatalf("op %d purge through %d: %d %v, want %d", op, through, n, err, want)
			}
			desc = fmt.Sprintf("purge through %d", through)
		default:
			b.restart(false)
			mod.restart()
			g = b.group("g")
			waitRead(t, g, last)
			joinAll()
			desc = "restart"
		}
		waitReplay(t, g)
		mod.fillReplay(nil)
		compare(t, op, desc, b, mod)
	}
}

// badAck acts on a stale, foreign or unknown delivery and checks it fails
// and changes nothing.
func badAck(t *testing.T, op int, r *rand.Rand, b *bundle, mb []*Member, mod *model) {
	t.Helper()
	before, _ := b.engine.Info("g")
	var err error
	var want error
	i := r.IntN(len(mb))
	switch k := r.IntN(3); {
	case k == 0 && len(mod.stale) > 0:
		err, want = mb[i].Ack(bg, mod.stale[r.IntN(len(mod.stale))]), ErrStaleDelivery
	case k == 1:
		other := mod.inFlight(-1)
		other = slices.DeleteFunc(other, func(e *mEntry) bool { return e.member == i })
		if len(other) == 0 {
			return
		}
		err, want = mb[i].Nak(bg, other[r.IntN(len(other))].id, NakOptions{}), ErrForeignDelivery
	default:
		err, want = mb[i].Term(bg, 0, "", ""), ErrUnknownDelivery
	}
	if !errors.Is(err, want) || rewind.CodeOf(err) != rewind.CodeInvalidArgument {
		t.Fatalf("op %d bad ack: %v, want %v", op, err, want)
	}
	after, _ := b.engine.Info("g")
	if before.InFlight != after.InFlight || before.Pending != after.Pending || before.Parked != after.Parked {
		t.Fatalf("op %d bad ack changed the group: %+v then %+v", op, before, after)
	}
}

func compare(t *testing.T, op int, desc string, b *bundle, mod *model) {
	t.Helper()
	in, err := b.engine.Info("g")
	if err != nil {
		t.Fatal(err)
	}
	var inflight, delayed int
	for _, e := range mod.entries {
		switch e.state {
		case mInFlight:
			inflight++
		case mDelayed:
			delayed++
		}
	}
	pending := len(mod.entries) - inflight
	if in.InFlight != inflight || in.Delayed != delayed || in.Pending != pending || in.Parked != len(mod.parked) ||
		in.Replaying != len(mod.replaying) {
		t.Fatalf("op %d (%s): engine in flight %d delayed %d pending %d parked %d replaying %d; model %d %d %d %d %d",
			op, desc, in.InFlight, in.Delayed, in.Pending, in.Parked, in.Replaying,
			inflight, delayed, pending, len(mod.parked), len(mod.replaying))
	}
	parked, err := b.engine.Parked(bg, "g", ParkedOptions{Limit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parked {
		w := mod.parked[p.Position]
		if w == nil || w.attempts != p.Attempts || w.reason != p.Reason || w.lastErr != p.LastError {
			t.Fatalf("op %d (%s): parked %+v, model %+v", op, desc, p, w)
		}
	}
}
