package eventlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rewindhq/rewind/internal/crashtest"
)

// The crash test: a child process appends batches from several goroutines
// in Sync mode and prints every acknowledged batch; the parent kills it
// with SIGKILL at a random moment, then checks the directory: Verify finds
// at most a torn tail, Open cuts nothing acknowledged, every record served
// is intact and belongs to a complete batch (batches are atomic), every
// acknowledged batch is there with its positions and payloads, and the
// log is clean after recovery. The same directory goes through every round.

// crashConfig is the child's and the parent's configuration: small
// segments so that kills also land while segments roll.
func crashConfig() Config {
	return Config{Durability: Sync, SegmentSize: 64 << 10, IndexInterval: 512, Logger: quietLogger()}
}

// A crash-test payload describes itself, so that any record found in the
// log can be checked without knowing whether its append was acknowledged:
//
//	seed uint64, index in batch uint32, batch length uint32, then filler
//	bytes derived from the seed and index.
const crashHeader = 16

func crashPayload(seed uint64, idx, count, size int) []byte {
	b := make([]byte, max(size, crashHeader))
	binary.LittleEndian.PutUint64(b, seed)
	binary.LittleEndian.PutUint32(b[8:], uint32(idx))
	binary.LittleEndian.PutUint32(b[12:], uint32(count))
	x := seed ^ uint64(idx)*0x9e3779b97f4a7c15
	for i := crashHeader; i < len(b); i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// parseCrashPayload returns the payload's header if the payload is exactly
// what crashPayload makes from it.
func parseCrashPayload(p []byte) (seed uint64, idx, count int, ok bool) {
	if len(p) < crashHeader {
		return 0, 0, 0, false
	}
	seed = binary.LittleEndian.Uint64(p)
	idx, count = int(binary.LittleEndian.Uint32(p[8:])), int(binary.LittleEndian.Uint32(p[12:]))
	want := crashPayload(seed, idx, count, len(p))
	return seed, idx, count, string(want) == string(p)
}

// crashAppender is the child: it appends until it is killed.
func crashAppender(dir, _ string, out *crashtest.Output) error {
	l, err := Open(dir, crashConfig())
	if err != nil {
		return err
	}
	out.Printf("ready")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(w)))
			for {
				n, size := 1+rng.IntN(8), 16+rng.IntN(300)
				if rng.IntN(16) == 0 { // big batches make one group roll several segments
					n, size = 3+rng.IntN(4), 2<<10+rng.IntN(4<<10)
				}
				seed := rng.Uint64()
				entries := make([]Entry, n)
				for i := range entries {
					entries[i] = Entry{Kind: 7, Payload: crashPayload(seed, i, n, size)}
				}
				a, err := l.Append(entries)
				if err == nil {
					err = a.Wait(context.Background())
				}
				if err != nil {
					errs <- err
					return
				}
				out.Printf("K %d %d %d", a.First, n, seed)
			}
		})
	}
	return <-errs
}

type crashBatch struct {
	first uint64
	n     int
	seed  uint64
}

func TestCrashRecovery(t *testing.T) {
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
	var acked []crashBatch
	var maxAcked uint64
	cuts := 0
	for round := range *crashtest.Rounds {
		child := crashtest.Start(t, "log-appender", dir, "")
		if rng.IntN(8) == 0 {
			// Anywhere, including while the child opens and recovers the log.
			time.Sleep(time.Duration(rng.IntN(30_000)) * time.Microsecond)
		} else {
			target := 1 + rng.IntN(100)
			err := child.WaitFor(time.Minute, func(lines []string) bool { return len(lines) > target })
			if err != nil {
				child.Kill()
				t.Fatalf("round %d: %v", round, err)
			}
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
		lines := child.Kill()
		for _, line := range lines {
			var b crashBatch
			if line == "ready" {
				continue
			}
			if _, err := fmt.Sscanf(line, "K %d %d %d", &b.first, &b.n, &b.seed); err != nil {
				t.Fatalf("round %d: child printed %q: %v", round, line, err)
			}
			acked = append(acked, b)
			maxAcked = max(maxAcked, b.first+uint64(b.n)-1)
		}
		// The read-only Verify after recovery scans the whole log again:
		// every few rounds is enough, since the open log verifies too.
		full := round%5 == 4 || round == *crashtest.Rounds-1
		cuts += checkAfterCrash(t, round, dir, acked, maxAcked, full)
	}
	if len(acked) == 0 {
		t.Fatal("no append was acknowledged in any round: the test checked nothing")
	}
	t.Logf("%d rounds, %d acknowledged batches, last acknowledged position %d, %d recovery cuts",
		*crashtest.Rounds, len(acked), maxAcked, cuts)
}

// checkAfterCrash checks the directory after a kill and returns the number
// of cuts recovery made.
func checkAfterCrash(t *testing.T, round int, dir string, acked []crashBatch, maxAcked uint64, full bool) int {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("round %d: %s", round, fmt.Sprintf(format, args...))
	}
	rep, err := Verify(context.Background(), dir, nil)
	if err != nil {
		fail("verify: %v", err)
	}
	for _, p := range rep.Problems {
		if !p.Tail {
			fail("verify found damage that is not a torn tail: %v", p)
		}
	}
	l, err := Open(dir, crashConfig())
	if err != nil {
		fail("open after the crash: %v", err)
	}
	defer l.Close()
	for _, c := range l.Recovery() {
		if c.FirstPosition <= maxAcked {
			fail("recovery cut acknowledged positions: %v (last acknowledged %d)", c, maxAcked)
		}
	}
	if l.Last() < maxAcked {
		fail("last position %d, but %d was acknowledged", l.Last(), maxAcked)
	}

	// Every record is intact and part of a complete batch.
	type found struct {
		seed uint64
		idx  int
	}
	recs := make([]found, 0, l.Last())
	r := l.NewReader(1)
	defer r.Close()
	var prevTs int64
	var open crashBatch // the batch being read
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("read at %d: %v", r.Position(), err)
		}
		if rec.Position != uint64(len(recs))+1 {
			fail("read position %d after %d", rec.Position, len(recs))
		}
		if rec.Timestamp < prevTs || rec.Kind != 7 {
			fail("record %d: timestamp %d after %d, kind %d", rec.Position, rec.Timestamp, prevTs, rec.Kind)
		}
		prevTs = rec.Timestamp
		seed, idx, n, ok := parseCrashPayload(rec.Payload)
		if !ok {
			fail("record %d: payload is not one the child wrote", rec.Position)
		}
		if idx == 0 {
			if open.n != 0 {
				fail("record %d starts a batch while the batch at %d is incomplete", rec.Position, open.first)
			}
			open = crashBatch{first: rec.Position, n: n, seed: seed}
		} else if open.n == 0 || seed != open.seed || n != open.n || uint64(idx) != rec.Position-open.first {
			fail("record %d (batch %d, %d of %d) does not continue the batch at %d", rec.Position, seed, idx, n, open.first)
		}
		if uint64(idx) == uint64(n)-1 {
			open = crashBatch{}
		}
		recs = append(recs, found{seed, idx})
	}
	if open.n != 0 {
		fail("the log ends inside the batch at %d", open.first)
	}
	if uint64(len(recs)) != l.Last() {
		fail("read %d records, last is %d", len(recs), l.Last())
	}
	for _, b := range acked {
		for i := range b.n {
			p := b.first + uint64(i)
			if p > uint64(len(recs)) || recs[p-1] != (found{b.seed, i}) {
				fail("acknowledged batch %d at %d is missing or changed at position %d", b.seed, b.first, p)
			}
		}
	}
	if rep, err := l.Verify(context.Background(), nil); err != nil || !rep.OK() {
		fail("verify of the open log: %v %v", err, rep.Problems)
	}
	r.Close()
	if err := l.Close(); err != nil {
		fail("close: %v", err)
	}
	if !full {
		return len(l.Recovery())
	}
	rep, err = Verify(context.Background(), dir, nil)
	if err != nil || !rep.OK() || rep.LastPosition != uint64(len(recs)) {
		fail("verify after recovery: %v %+v", err, rep)
	}
	return len(l.Recovery())
}
