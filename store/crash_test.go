package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/internal/crashtest"
)

// The store crash test: a child process appends from several goroutines
// in Sync mode (own streams with exact expected versions, shared streams
// with racing expected versions, new streams with NoStream, exact retries)
// and prints every batch before it appends it and again, with its result,
// once it is acknowledged. The parent kills it with SIGKILL at a random
// moment, reopens the store and checks that every acknowledged event is
// there, intact, at its position and version; that nothing corrupt is
// served; that stream versions are gapless and positions strictly
// increase; that a batch is all there or not at all; and that retrying
// acknowledged batches returns their original positions as duplicates.

func crashStoreConfig() Config {
	return Config{
		Log:         eventlog.Config{Durability: eventlog.Sync, SegmentSize: 64 << 10, IndexInterval: 512},
		DedupWindow: 24 * time.Hour, // the ids the test retries stay in the window…
		DedupMaxIDs: 1 << 18,        // …and in the ring (retries pick batches of the last rounds)
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// A crash-test event is derived from its id, its data size and its batch,
// so any event read back can be checked whether or not its append was
// acknowledged. The batch is named by its first id, in the metadata.
func crashEvent(id uuid.UUID, size int, batch uuid.UUID, i, n int) rewind.Event {
	e := rewind.Event{
		ID:            id,
		Type:          "T" + strconv.Itoa(int(id[0]%5)),
		SchemaVersion: 1 + uint32(id[1]%3),
		Metadata:      map[string]string{"batch": batch.String(), "i": strconv.Itoa(i), "n": strconv.Itoa(n)},
		Data:          make([]byte, size),
	}
	if id[2]%2 == 0 {
		e.ContentType = "application/octet-stream"
	}
	if id[3]%2 == 0 {
		e.OccurredAt = time.Unix(0, int64(binary.LittleEndian.Uint32(id[4:]))).UTC()
	}
	x := binary.LittleEndian.Uint64(id[8:]) | 1
	for j := range e.Data {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		e.Data[j] = byte(x)
	}
	return e
}

// crashBatch is a batch as the child printed it.
type crashBatch struct {
	stream string
	ids    []uuid.UUID
	sizes  []int
	res    rewind.AppendResult // when acknowledged
	round  int                 // when acknowledged
}

func (b *crashBatch) events() []rewind.Event {
	evs := make([]rewind.Event, len(b.ids))
	for i, id := range b.ids {
		evs[i] = crashEvent(id, b.sizes[i], b.ids[0], i, len(b.ids))
	}
	return evs
}

// format renders the batch as "stream id:size,id:size…".
func (b *crashBatch) format() string {
	var sb strings.Builder
	sb.WriteString(b.stream)
	for i, id := range b.ids {
		sep := ","
		if i == 0 {
			sep = " "
		}
		fmt.Fprintf(&sb, "%s%s:%d", sep, id, b.sizes[i])
	}
	return sb.String()
}

func parseCrashBatch(fields []string) (*crashBatch, error) {
	if len(fields) != 2 {
		return nil, fmt.Errorf("want stream and ids, got %q", fields)
	}
	b := &crashBatch{stream: fields[0]}
	for _, f := range strings.Split(fields[1], ",") {
		idStr, sizeStr, _ := strings.Cut(f, ":")
		id, err := uuid.Parse(idStr)
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(sizeStr)
		if err != nil {
			return nil, err
		}
		b.ids, b.sizes = append(b.ids, id), append(b.sizes, size)
	}
	return b, nil
}

// crashAppender is the child. It prints "B <batch>" before each append and
// "K <first pos> <last pos> <first version> <last version> <batch>" once
// the append is acknowledged.
func crashAppender(dir, _ string, out *crashtest.Output) error {
	ctx := context.Background()
	s, err := Open(dir, crashStoreConfig())
	if err != nil {
		return err
	}
	out.Printf("ready")
	errs := make(chan error, 8)
	for w := range 6 {
		go func() { errs <- crashWorker(ctx, s, w, out) }()
	}
	return <-errs
}

func crashWorker(ctx context.Context, s *Store, w int, out *crashtest.Output) error {
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(w)))
	own := make([]uint64, 3) // versions of the streams only this worker writes
	for k := range own {
		info, err := s.StreamInfo(ctx, fmt.Sprintf("own-%d-%d", w, k))
		if err != nil && !errors.Is(err, rewind.ErrStreamNotFound) {
			return err
		}
		own[k] = info.Version
	}
	var done []*crashBatch
	for i := 0; ; i++ {
		b := &crashBatch{}
		n, size := 1+rng.IntN(6), rng.IntN(400)
		if rng.IntN(16) == 0 {
			n, size = 2+rng.IntN(4), 2<<10+rng.IntN(6<<10)
		}
		for range n {
			b.ids, b.sizes = append(b.ids, uuid.New()), append(b.sizes, size)
		}
		expected := rewind.Any
		k := rng.IntN(len(own))
		switch op := rng.IntN(20); {
		case op < 10:
			b.stream, expected = fmt.Sprintf("own-%d-%d", w, k), rewind.Exactly(own[k])
		case op < 15:
			b.stream = fmt.Sprintf("shared-%d", rng.IntN(4))
			if info, err := s.StreamInfo(ctx, b.stream); err == nil {
				expected = rewind.Exactly(info.Version)
			} else {
				expected = rewind.NoStream
			}
		case op < 17:
			b.stream, expected = fmt.Sprintf("new-%d-%d-%d", os.Getpid(), w, i), rewind.NoStream
		case op < 19 && len(done) > 0:
			// An exact retry must return the original result.
			old := done[rng.IntN(len(done))]
			res, err := s.Append(ctx, old.stream, rewind.StreamExists, old.events()...)
			if err != nil || !res.Duplicate || res.FirstPosition != old.res.FirstPosition || res.LastVersion != old.res.LastVersion {
				return fmt.Errorf("retry of %s: %+v, %v; original %+v", old.format(), res, err, old.res)
			}
			continue
		default:
			b.stream = fmt.Sprintf("shared-%d", rng.IntN(4))
		}
		out.Printf("B %s", b.format())
		res, err := s.Append(ctx, b.stream, expected, b.events()...)
		if errors.Is(err, rewind.ErrWrongExpectedVersion) && strings.HasPrefix(b.stream, "shared-") {
			continue // another worker won the race
		}
		if err != nil {
			return fmt.Errorf("append %s (expected %s): %w", b.format(), expected, err)
		}
		b.res = res
		out.Printf("K %d %d %d %d %s", res.FirstPosition, res.LastPosition, res.FirstVersion, res.LastVersion, b.format())
		if strings.HasPrefix(b.stream, "own-") {
			own[k] = res.LastVersion
		}
		if len(done) < 64 {
			done = append(done, b)
		}
	}
}

func TestCrashRecoveryStore(t *testing.T) {
	t.Parallel()
	seed := *crashtest.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reproduce with -crash.seed=%d", seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	c := &storeCrashCheck{t: t, dir: dir, rng: rng, acked: map[uuid.UUID]*crashBatch{}}
	for round := range *crashtest.Rounds {
		c.round = round
		if rng.IntN(6) == 0 {
			// The child then rebuilds its index from the whole log.
			os.Remove(filepath.Join(dir, snapshotName))
		}
		child := crashtest.Start(t, "store-appender", dir, "")
		if rng.IntN(8) == 0 {
			time.Sleep(time.Duration(rng.IntN(30_000)) * time.Microsecond)
		} else {
			target := 1 + rng.IntN(80)
			err := child.WaitFor(time.Minute, func(lines []string) bool { return len(lines) > target })
			if err != nil {
				child.Kill()
				t.Fatalf("round %d: %v", round, err)
			}
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
		c.parse(child.Kill())
		c.check(round%5 == 4 || round == *crashtest.Rounds-1)
	}
	if len(c.acked) == 0 {
		t.Fatal("no append was acknowledged in any round: the test checked nothing")
	}
	t.Logf("%d rounds, %d acknowledged batches (%d by retries after a crash), %d duplicates recognised, %d recovery cuts",
		*crashtest.Rounds, len(c.acked), c.retried, c.duplicates, c.cuts)
}

type storeCrashCheck struct {
	t     *testing.T
	dir   string
	rng   *rand.Rand
	round int

	acked    map[uuid.UUID]*crashBatch // by first id
	maxAcked rewind.Position
	begun    []*crashBatch // begun and not acknowledged in the last round

	retried, duplicates, cuts int
	openLog                   syncBuffer
}

// syncBuffer is a bytes.Buffer for a logger that background goroutines
// may use too.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (c *storeCrashCheck) fail(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("round %d: %s", c.round, fmt.Sprintf(format, args...))
}

func (c *storeCrashCheck) parse(lines []string) {
	c.t.Helper()
	begun := map[uuid.UUID]*crashBatch{}
	for _, line := range lines {
		fields := strings.Fields(line)
		switch {
		case line == "ready":
		case len(fields) == 3 && fields[0] == "B":
			b, err := parseCrashBatch(fields[1:])
			if err != nil {
				c.fail("child printed %q: %v", line, err)
			}
			begun[b.ids[0]] = b
		case len(fields) == 7 && fields[0] == "K":
			b, err := parseCrashBatch(fields[5:])
			if err != nil {
				c.fail("child printed %q: %v", line, err)
			}
			var nums [4]uint64
			for i := range nums {
				if nums[i], err = strconv.ParseUint(fields[1+i], 10, 64); err != nil {
					c.fail("child printed %q: %v", line, err)
				}
			}
			b.res = rewind.AppendResult{FirstPosition: rewind.Position(nums[0]), LastPosition: rewind.Position(nums[1]),
				FirstVersion: nums[2], LastVersion: nums[3]}
			c.ack(b)
			delete(begun, b.ids[0])
		default:
			c.fail("child printed %q", line)
		}
	}
	c.begun = c.begun[:0]
	for _, b := range begun {
		c.begun = append(c.begun, b)
	}
	slices.SortFunc(c.begun, func(a, b *crashBatch) int { return strings.Compare(a.ids[0].String(), b.ids[0].String()) })
}

func (c *storeCrashCheck) ack(b *crashBatch) {
	c.t.Helper()
	n := uint64(len(b.ids))
	if uint64(b.res.LastPosition-b.res.FirstPosition)+1 != n || b.res.LastVersion-b.res.FirstVersion+1 != n || b.res.FirstVersion == 0 {
		c.fail("acknowledged result %+v does not fit a batch of %d", b.res, n)
	}
	b.round = c.round
	c.acked[b.ids[0]] = b
	c.maxAcked = max(c.maxAcked, b.res.LastPosition)
}

// check reopens the store and checks it, retries batches, and closes it.
// full adds a read-only Verify after the close.
func (c *storeCrashCheck) check(full bool) {
	t := c.t
	t.Helper()
	ctx := context.Background()
	rep, err := eventlog.Verify(ctx, c.dir, nil)
	if err != nil {
		c.fail("verify: %v", err)
	}
	for _, p := range rep.Problems {
		if !p.Tail {
			c.fail("verify found damage that is not a torn tail: %v", p)
		}
	}
	cfg := crashStoreConfig()
	c.openLog.Reset() // what the open did, for a failure's message
	cfg.Logger = slog.New(slog.NewTextHandler(&c.openLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(c.dir, cfg)
	if err != nil {
		c.fail("open after the crash: %v", err)
	}
	defer s.Close()
	for _, cut := range s.Recovery() {
		if rewind.Position(cut.FirstPosition) <= c.maxAcked {
			c.fail("recovery cut acknowledged positions: %v (last acknowledged %d)", cut, c.maxAcked)
		}
	}
	c.cuts += len(s.Recovery())

	byID, streams := c.readAll(s)
	for _, b := range c.acked {
		for i, id := range b.ids {
			ev, ok := byID[id]
			if !ok {
				c.fail("acknowledged event %s of stream %s is missing", id, b.stream)
			}
			if ev.Stream != b.stream || ev.Position != b.res.FirstPosition+rewind.Position(i) || ev.Version != b.res.FirstVersion+uint64(i) {
				c.fail("acknowledged event %s: stream %s position %d version %d, acknowledged as %s %d %d",
					id, ev.Stream, ev.Position, ev.Version, b.stream, b.res.FirstPosition+rewind.Position(i), b.res.FirstVersion+uint64(i))
			}
		}
	}
	for _, b := range c.begun {
		present := 0
		for _, id := range b.ids {
			if _, ok := byID[id]; ok {
				present++
			}
		}
		if present != 0 && present != len(b.ids) {
			c.fail("%d of the %d events of an unacknowledged batch are in the store", present, len(b.ids))
		}
	}
	c.checkStreams(s, streams)
	c.retry(s, byID)
	if rep, err := s.Log().Verify(ctx, nil); err != nil || !rep.OK() {
		c.fail("verify of the open log: %v %v", err, rep.Problems)
	}
	if err := s.Close(); err != nil {
		c.fail("close: %v", err)
	}
	if full {
		if rep, err := eventlog.Verify(ctx, c.dir, nil); err != nil || !rep.OK() {
			c.fail("verify after recovery: %v %+v", err, rep)
		}
	}
}

// readAll reads the whole log, checking every event against what its id
// says it must be, batch atomicity, gapless versions and increasing
// positions. It returns the events by id and the positions of each stream.
func (c *storeCrashCheck) readAll(s *Store) (map[uuid.UUID]rewind.RecordedEvent, map[string][]rewind.Position) {
	c.t.Helper()
	byID := map[uuid.UUID]rewind.RecordedEvent{}
	streams := map[string][]rewind.Position{}
	var prev rewind.RecordedEvent
	var batch []rewind.RecordedEvent // the open batch
	for ev, err := range s.ReadAll(context.Background(), rewind.ReadAllOptions{}) {
		if err != nil {
			c.fail("read all after %d: %v", prev.Position, err)
		}
		if ev.Position != prev.Position+1 || ev.RecordedAt.Before(prev.RecordedAt) {
			c.fail("event %d (recorded %v) follows %d (recorded %v)", ev.Position, ev.RecordedAt, prev.Position, prev.RecordedAt)
		}
		prev = ev.Clone()
		batchID, err := uuid.Parse(ev.Metadata["batch"])
		i, err2 := strconv.Atoi(ev.Metadata["i"])
		n, err3 := strconv.Atoi(ev.Metadata["n"])
		if err != nil || err2 != nil || err3 != nil || i >= n {
			c.fail("event %d has metadata %v", ev.Position, ev.Metadata)
		}
		want := crashEvent(ev.ID, len(ev.Data), batchID, i, n)
		if want.ContentType == "" {
			want.ContentType = rewind.DefaultContentType
		}
		if !sameEvent(ev.Event, want) {
			c.fail("event %d is not what its id %s says: %+v", ev.Position, ev.ID, ev.Event)
		}
		if _, dup := byID[ev.ID]; dup {
			c.fail("event id %s appears twice", ev.ID)
		}
		byID[ev.ID] = prev
		if vs := streams[ev.Stream]; uint64(len(vs))+1 != ev.Version {
			c.fail("stream %s: version %d at position %d follows version %d", ev.Stream, ev.Version, ev.Position, len(vs))
		}
		streams[ev.Stream] = append(streams[ev.Stream], ev.Position)
		if (i == 0) != (len(batch) == 0) || i > 0 && (batchID != batch[0].ID || ev.Stream != batch[0].Stream) {
			c.fail("event %d (%d of %d of batch %s) does not continue the open batch", ev.Position, i, n, batchID)
		}
		batch = append(batch, prev)
		if i == n-1 {
			batch = batch[:0]
		}
	}
	if len(batch) != 0 {
		c.fail("the store ends inside the batch of %s", batch[0].ID)
	}
	if uint64(prev.Position) != s.Log().Last() {
		c.fail("read all ended at %d, the log at %d", prev.Position, s.Log().Last())
	}
	return byID, streams
}

func sameEvent(a, b rewind.Event) bool {
	return a.ID == b.ID && a.Type == b.Type && a.SchemaVersion == b.SchemaVersion && a.ContentType == b.ContentType &&
		string(a.Data) == string(b.Data) && fmt.Sprint(a.Metadata) == fmt.Sprint(b.Metadata) && a.OccurredAt.Equal(b.OccurredAt)
}

// checkStreams compares ListStreams, StreamInfo and ReadStream with the
// whole-log read.
func (c *storeCrashCheck) checkStreams(s *Store, streams map[string][]rewind.Position) {
	c.t.Helper()
	ctx := context.Background()
	list, err := s.ListStreams(ctx, rewind.ListStreamsOptions{Limit: 100_000})
	if err != nil || len(list) != len(streams) {
		c.fail("list streams: %d streams, %v; the log has %d", len(list), err, len(streams))
	}
	for _, info := range list {
		ps := streams[info.Stream]
		want := rewind.StreamInfo{Stream: info.Stream, Version: uint64(len(ps)), FirstVersion: 1,
			FirstPosition: ps[0], LastPosition: ps[len(ps)-1], Count: uint64(len(ps))}
		if info != want {
			c.fail("list streams: %+v, want %+v", info, want)
		}
		evs, err := s.ReadStream(ctx, info.Stream, rewind.ReadStreamOptions{})
		if err != nil || len(evs) != len(ps) {
			c.fail("read stream %s: %d events, %v; want %d", info.Stream, len(evs), err, len(ps))
		}
		for i, ev := range evs {
			if ev.Position != ps[i] || ev.Version != uint64(i)+1 {
				c.fail("read stream %s: event %d at position %d version %d, want %d", info.Stream, i, ev.Position, ev.Version, ps[i])
			}
		}
	}
}

// retry appends again the batches begun in the last round (a client whose
// append failed with the crash retries it) and a sample of acknowledged
// ones: those already in the store must come back as duplicates with
// their original result, whatever the expected version.
func (c *storeCrashCheck) retry(s *Store, byID map[uuid.UUID]rewind.RecordedEvent) {
	c.t.Helper()
	ctx := context.Background()
	batches := slices.Clone(c.begun)
	var recent []*crashBatch
	for _, b := range c.acked {
		if b.round > c.round-20 {
			recent = append(recent, b)
		}
	}
	slices.SortFunc(recent, func(a, b *crashBatch) int { return cmp.Compare(a.res.FirstPosition, b.res.FirstPosition) })
	for range min(5, len(recent)) {
		batches = append(batches, recent[c.rng.IntN(len(recent))])
	}
	for _, b := range batches {
		orig, acked := c.acked[b.ids[0]]
		first, present := byID[b.ids[0]]
		expected := []rewind.ExpectedVersion{rewind.Any, rewind.NoStream, rewind.StreamExists, rewind.Exactly(0), rewind.Exactly(7)}[c.rng.IntN(5)]
		if !present {
			expected = rewind.Any
		}
		res, err := s.Append(ctx, b.stream, expected, b.events()...)
		if err != nil {
			c.fail("retry of %s (expected %s): %v", b.format(), expected, err)
		}
		switch {
		case acked && res != withDup(orig.res):
			c.fail("retry of an acknowledged batch returned %+v, want the original %+v as a duplicate", res, orig.res)
		case present && (!res.Duplicate || res.FirstPosition != first.Position || res.FirstVersion != first.Version):
			s.mu.Lock()
			pos, sure := s.dedup.find(b.ids[0])
			s.mu.Unlock()
			c.fail("retry of a batch found in the store returned %+v, want a duplicate at %d (version %d); "+
				"the dedup window now says %d (sure %v) for its first id %s; expected %s; the open logged:\n%s",
				res, first.Position, first.Version, pos, sure, b.ids[0], expected, c.openLog.String())
		case !present && res.Duplicate:
			c.fail("retry of a batch not in the store returned a duplicate: %+v", res)
		}
		if res.Duplicate {
			c.duplicates++
		}
		if !acked {
			b.res = res
			b.res.Duplicate = false
			c.ack(b)
			c.retried++
		}
	}
}

func withDup(r rewind.AppendResult) rewind.AppendResult {
	r.Duplicate = true
	return r
}
