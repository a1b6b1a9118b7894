package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Issue 9: a failed store is "failed", not "closed": its error wraps the OS
// cause, every waiting and later append fails at once — a retry with the
// same ids used to hang until its deadline, waiting for a position the
// failed log would never make visible — and Health says why.
func TestAFailedStoreAnswersAtOnce(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	var armed atomic.Bool
	efs := vfs.WithErrors(mem, func(op vfs.Op, path string) error {
		if armed.Load() && op == vfs.OpSync && strings.HasSuffix(path, ".seg") {
			return syscall.EIO
		}
		return nil
	})
	cfg := Config{Log: eventlog.Config{FS: efs}, Logger: slog.New(slog.DiscardHandler)}
	s, err := Open("/data", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(ctx, "s", rewind.NoStream, rewind.Event{ID: uuid.New(), Type: "T", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	var wg sync.WaitGroup
	batches := make([][]rewind.Event, 8)
	errs := make([]error, len(batches))
	for i := range batches {
		batches[i] = []rewind.Event{{ID: uuid.New(), Type: "T", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Append(ctx, fmt.Sprintf("w%d", i), rewind.Any, batches[i]...)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, rewind.ErrFailed) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("append %d: %v, want ErrFailed wrapping EIO", i, err)
		}
	}
	// Retries with the same ids, reads of the streams, a delete: answered
	// at once, never "closed".
	for i := range batches {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := s.Append(rctx, fmt.Sprintf("w%d", i), rewind.Any, batches[i]...)
		cancel()
		if !errors.Is(err, rewind.ErrFailed) || rewind.CodeOf(err) != rewind.CodeFailed {
			t.Fatalf("retry %d: %v (code %s), want ErrFailed at once", i, err, rewind.CodeOf(err))
		}
	}
	if _, err := s.DeleteStream(ctx, "s", rewind.Any); !errors.Is(err, rewind.ErrFailed) {
		t.Fatalf("delete on a failed store: %v", err)
	}
	if ev, err := s.ReadStream(ctx, "s", rewind.ReadStreamOptions{}); err != nil || len(ev) != 1 {
		t.Fatalf("read of what was acknowledged: %d events, %v", len(ev), err)
	}
	h, _ := s.Health(ctx)
	if !strings.Contains(h.Failed, "input/output error") {
		t.Fatalf("health of a failed store: %+v", h)
	}
	if err := s.Close(); !errors.Is(err, rewind.ErrFailed) {
		t.Fatalf("close of a failed store: %v, want the failure", err)
	}
}

// Outside test of issue 9: an append whose answer was lost, retried after
// the disk failed, was answered "failed" — which means "never there" —
// although it was recorded and came back after a restart. A retry of an
// acknowledged batch answers the original result, failed store or not;
// only a batch with something new to write gets the failure.
func TestRetryOfAnAcknowledgedAppendOnAFailedStore(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	var armed atomic.Bool
	efs := vfs.WithErrors(mem, func(op vfs.Op, path string) error {
		if armed.Load() && op == vfs.OpSync && strings.HasSuffix(path, ".seg") {
			return syscall.ENOSPC
		}
		return nil
	})
	s, err := Open("/data", Config{Log: eventlog.Config{FS: efs}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acked := []rewind.Event{{ID: uuid.New(), Type: "T", Data: []byte(`{"n":1}`)}, {ID: uuid.New(), Type: "T", Data: []byte(`{"n":2}`)}}
	first, err := s.Append(ctx, "s", rewind.NoStream, acked...)
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if _, err := s.Append(ctx, "t", rewind.Any, rewind.Event{ID: uuid.New(), Type: "T", Data: []byte("{}")}); !errors.Is(err, rewind.ErrFailed) {
		t.Fatalf("append on a full disk: %v, want ErrFailed", err)
	}
	again, err := s.Append(ctx, "s", rewind.NoStream, acked...)
	if err != nil || !again.Duplicate || again.FirstPosition != first.FirstPosition || again.LastVersion != first.LastVersion {
		t.Fatalf("retry of an acknowledged batch on a failed store: %+v, %v; want the original %+v as a duplicate", again, err, first)
	}
	// Part of it plus a new event: there is something to write, so it fails.
	mixed := append(acked[:1:1], rewind.Event{ID: uuid.New(), Type: "T", Data: []byte("{}")})
	if _, err := s.Append(ctx, "s", rewind.Any, mixed...); err == nil {
		t.Fatal("a batch with a new event was accepted by a failed store")
	}
}

// Issue 9: a log shorter than the index snapshot said is reported by
// verify and by the store's health, not only in one log line.
func TestALogShorterThanItsSnapshotIsReported(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{})
	for i := range 100 {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%7), rewind.Any, rewind.Event{ID: uuid.New(), Type: "T", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // the snapshot is at position 100
		t.Fatal(err)
	}
	// The disk lost the last 40 records, at a batch boundary: nothing
	// looks torn, the log is simply shorter.
	seg := filepath.Join(b.dir, "00000000000000000001.seg")
	st, _ := os.ReadFile(seg)
	off := int64(40)
	for pos := 1; pos <= 60; pos++ {
		off += 28 + int64(uint32(st[off])|uint32(st[off+1])<<8|uint32(st[off+2])<<16|uint32(st[off+3])<<24)
	}
	if err := os.Truncate(seg, off); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, b.dir, nil)
	if err != nil || rep.OK() || rep.Problems[0].Position != 61 || !strings.Contains(rep.Problems[0].Reason, "data loss") {
		t.Fatalf("verify: %v %+v", err, rep.Problems)
	}
	s2, err := Open(b.dir, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	h, _ := s2.Health(ctx)
	if len(h.Recovery) != 1 || h.Recovery[0].Kind != "shortened" || !h.Recovery[0].DataLoss ||
		h.Recovery[0].FirstPosition != 61 || h.Recovery[0].LastPosition != 100 {
		t.Fatalf("health: %+v", h)
	}
}

// Health reports this open's cut, with the epoch it began, and still the
// last cut after a clean reopen; in none mode the cut may have taken back
// acknowledged events, and that stays recorded as data loss.
func TestHealthReportsTheLastCut(t *testing.T) {
	t.Parallel()
	s, b := setup(t, Config{Log: eventlog.Config{Durability: eventlog.None}})
	for range 10 {
		if _, err := s.Append(ctx, "s", rewind.Any, rewind.Event{ID: uuid.New(), Type: "T", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	// What a crash leaves: the state file as it was before Close, no
	// snapshot, and a torn last record.
	crashed, err := os.ReadFile(filepath.Join(b.dir, "log-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "log-state.json"), crashed, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(b.dir, snapshotName))
	seg := filepath.Join(b.dir, "00000000000000000001.seg")
	raw, _ := os.ReadFile(seg)
	end := int64(len(raw))
	for end > 0 && raw[end-1] == 0 {
		end--
	}
	if err := os.Truncate(seg, end-5); err != nil { // tear the last record
		t.Fatal(err)
	}
	for round := range 3 {
		s, err := Open(b.dir, b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := s.Health(ctx)
		if h.Epoch != 2 || len(h.Recovery) != 1 || h.Recovery[0].Kind != "cut" || h.Recovery[0].Epoch != 2 ||
			!h.Recovery[0].DataLoss || h.Recovery[0].FirstPosition != 10 {
			t.Fatalf("round %d: health %+v", round, h)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Damage in the newest segment is kept by the log. The store opens over it
// when its snapshot covers it (reads of the damaged event fail, the rest
// are served), and refuses, naming it, when it would have to replay it.
func TestStoreOverDamage(t *testing.T) {
	t.Parallel()
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			t.Parallel()
			s, b := setup(t, Config{})
			for i := range 50 {
				if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%5), rewind.Any, rewind.Event{ID: uuid.New(), Type: "T",
					Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if !snapshot {
				os.Remove(filepath.Join(b.dir, snapshotName))
			}
			seg := filepath.Join(b.dir, "00000000000000000001.seg")
			raw, _ := os.ReadFile(seg)
			off := int64(40)
			for pos := 1; pos < 20; pos++ { // damage the payload of position 20
				off += 28 + int64(uint32(raw[off])|uint32(raw[off+1])<<8)
			}
			raw[off+40] ^= 0xff
			os.WriteFile(seg, raw, 0o644)
			s2, err := Open(b.dir, b.cfg)
			if !snapshot {
				if !errors.Is(err, rewind.ErrCorruption) || !strings.Contains(err.Error(), "position 20") ||
					!strings.Contains(err.Error(), "restore the segment") {
					t.Fatalf("open that must replay a damaged event: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if evs, err := s2.ReadStream(ctx, "s4", rewind.ReadStreamOptions{}); !errors.Is(err, rewind.ErrCorruption) || len(evs) != 3 {
				t.Fatalf("read of the stream with the damaged event (its 4th): %d events, %v; want the 3 before it, then the damage", len(evs), err)
			}
			for _, st := range []string{"s0", "s1", "s2", "s3"} {
				if evs, err := s2.ReadStream(ctx, st, rewind.ReadStreamOptions{}); err != nil || len(evs) != 10 {
					t.Fatalf("read %s: %d events, %v", st, len(evs), err)
				}
			}
			h, _ := s2.Health(ctx)
			if len(h.Recovery) != 1 || h.Recovery[0].Kind != "damage" || h.Recovery[0].FirstPosition != 20 {
				t.Fatalf("health: %+v", h)
			}
			wholeLogReadsAcrossDamage(t, s2, 20, 50)
		})
	}
}

// A full disk while the index snapshot is written costs only a longer next
// open: the store keeps appending, nothing half-written is left as the
// snapshot, and the next open replays the log.
func TestSnapshotOnAFullDisk(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	var armed atomic.Bool
	efs := vfs.WithErrors(mem, func(op vfs.Op, path string) error {
		if armed.Load() && strings.Contains(path, "index.snapshot") && (op == vfs.OpWrite || op == vfs.OpRename || op == vfs.OpCreate) {
			return &vfs.PartialWrite{N: 100, Err: syscall.ENOSPC}
		}
		return nil
	})
	cfg := Config{Log: eventlog.Config{FS: efs}, SnapshotEvery: 50, Logger: slog.New(slog.DiscardHandler)}
	s, err := Open("/data", cfg)
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	for i := range 300 {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%3), rewind.Any, rewind.Event{ID: uuid.New(), Type: "T", Data: []byte("{}")}); err != nil {
			t.Fatalf("append %d while snapshots fail: %v", i, err)
		}
	}
	// A disk error is a store failure (exit status 10 for `rewind serve`),
	// not an internal error; the log itself is intact.
	if err := s.Close(); !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, rewind.ErrFailed) {
		t.Fatalf("close could not save its snapshot and must say why, as a store failure: %v", err)
	}
	if _, ok := mem.Bytes("/data/index.snapshot"); ok {
		t.Fatal("a half-written snapshot was installed")
	}
	armed.Store(false)
	s, err = Open("/data", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if info, err := s.StreamInfo(ctx, fmt.Sprintf("s%d", i)); err != nil || info.Version != 100 {
			t.Fatalf("stream s%d after reopening: %+v %v", i, info, err)
		}
	}
}

// wholeLogReadsAcrossDamage checks how ReadAll and a subscription meet the
// damaged position of a log of n events: every event before it is
// delivered, then a *rewind.CorruptionError naming it; reading again fails
// the same way (it is never skipped silently), and a read resumed after it
// (From damaged+1, or After damaged) delivers the rest.
func wholeLogReadsAcrossDamage(t *testing.T, s *Store, damaged, n rewind.Position) {
	t.Helper()
	readAll := func(from rewind.Position) (got rewind.Position, err error) {
		got = from - 1
		for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{From: from}) {
			if err != nil {
				return got, err
			}
			if ev.Position != got+1 {
				t.Fatalf("ReadAll from %d delivered %d after %d", from, ev.Position, got)
			}
			got = ev.Position
		}
		return got, nil
	}
	var ce *rewind.CorruptionError
	for _, from := range []rewind.Position{1, damaged - 1, damaged} {
		if got, err := readAll(from); got != damaged-1 || !errors.As(err, &ce) || ce.Position != damaged || ce.Segment == "" {
			t.Fatalf("ReadAll from %d: up to %d, %v; want every event up to %d, then corruption at %d", from, got, err, damaged-1, damaged)
		}
	}
	if got, err := readAll(damaged + 1); got != n || err != nil {
		t.Fatalf("ReadAll resumed after the damage: up to %d, %v", got, err)
	}
	sub, err := s.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for want := rewind.Position(1); want < damaged; want++ {
		if ev, err := sub.Next(ctx); err != nil || ev.Position != want {
			t.Fatalf("subscription: %v, want %d", err, want)
		}
	}
	for range 2 {
		if _, err := sub.Next(ctx); !errors.As(err, &ce) || ce.Position != damaged || sub.Position() != damaged-1 {
			t.Fatalf("subscription at the damage: %v at %d", err, sub.Position())
		}
	}
	sub2, err := s.Subscribe(ctx, rewind.SubscribeOptions{After: damaged})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	for want := damaged + 1; want <= n; want++ {
		if ev, err := sub2.Next(ctx); err != nil || ev.Position != want {
			t.Fatalf("subscription resumed after the damage: %v, want %d", err, want)
		}
	}
}

// Issue 9: one flipped byte in a segment header (here the creation time of
// the oldest sealed one) made the store impossible to open. It opens, with
// or without its index snapshot (a replay reads through the segment), every
// event is readable, and the damage is reported by Health — without data
// loss: no event is lost — and by Verify.
func TestStoreOverADamagedSegmentHeader(t *testing.T) {
	t.Parallel()
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			t.Parallel()
			s, b := setup(t, Config{Log: eventlog.Config{SegmentSize: 64 << 10}})
			const n = 600
			for i := range n {
				if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%5), rewind.Any, rewind.Event{ID: uuid.New(), Type: "T",
					Data: []byte(fmt.Sprintf(`{"i":%d,"pad":"%0100d"}`, i, 0))}); err != nil {
					t.Fatal(err)
				}
			}
			if s.Info().Segments < 2 {
				t.Fatalf("%d segments, want a sealed one", s.Info().Segments)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if !snapshot {
				os.Remove(filepath.Join(b.dir, snapshotName))
			}
			seg := filepath.Join(b.dir, "00000000000000000001.seg")
			raw, _ := os.ReadFile(seg)
			raw[24] ^= 0x01 // the creation time
			os.WriteFile(seg, raw, 0o644)

			rep, err := Verify(ctx, b.dir, nil)
			if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Reason, "segment header") ||
				rep.LastPosition != n {
				t.Fatalf("verify: %v %+v", err, rep)
			}
			s2, err := Open(b.dir, b.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			got := 0
			for ev, err := range s2.ReadAll(ctx, rewind.ReadAllOptions{}) {
				if err != nil || ev.Position != rewind.Position(got+1) {
					t.Fatalf("ReadAll: %v at %d", err, got)
				}
				got++
			}
			if got != n {
				t.Fatalf("read %d events, want %d", got, n)
			}
			h, _ := s2.Health(ctx)
			if len(h.Recovery) != 1 || h.Recovery[0].Kind != "damage" || h.Recovery[0].DataLoss ||
				h.Recovery[0].Segment != "00000000000000000001.seg" || !strings.Contains(h.Recovery[0].Reason, "header") {
				t.Fatalf("health: %+v", h)
			}
		})
	}
}
