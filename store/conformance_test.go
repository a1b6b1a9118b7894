package store

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/eventlog/vfs"
	"github.com/rewindhq/rewind/storetest"
)

// The embedded store passes the conformance suite in its default (sync)
// configuration, with restarts that vary what the store finds on disk and
// crash images; the model test also runs without fsync and with retention.

func TestConformance(t *testing.T) {
	t.Parallel()
	h := newHarness(Config{})
	// Segments of 1 MiB: an event of the default limit (1 MiB less 1 KiB
	// here) must fit one.
	h.cfg.Log.SegmentSize, h.cfg.MaxBatchBytes = 1<<20, 0
	storetest.Run(t, h.open, storetest.Features{Reopen: h.reopen, Crash: h.crash,
		ModelOps:     storetest.DefaultModelOps() / 5, // every append waits for an fsync
		MaxEventSize: 1<<20 - 1<<10})
}

func TestConformanceModelNoSync(t *testing.T) {
	t.Parallel()
	h := newHarness(Config{Log: eventlog.Config{Durability: eventlog.None}})
	storetest.RunModel(t, h.open, storetest.Features{Reopen: h.reopen})
}

func TestConformanceModelRetention(t *testing.T) {
	t.Parallel()
	h := newHarness(Config{Log: eventlog.Config{Durability: eventlog.None, MaxBytes: 5 * 64 << 10,
		RetentionInterval: time.Hour}})
	storetest.RunModel(t, h.open, storetest.Features{Reopen: h.reopen, Retention: true})
}

// harness opens embedded stores in temporary directories. Small segments
// (64 KiB unless a test says otherwise) and a sparse index make segments
// roll and seeks scan during the tests.
type harness struct {
	cfg Config

	mu      sync.Mutex
	reopens int
	dirs    map[rewind.Store]string
}

func newHarness(cfg Config) *harness {
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.DedupWindow = 24 * time.Hour
	cfg.Log.SegmentSize, cfg.Log.IndexInterval = 64<<10, 256
	return &harness{cfg: cfg, dirs: map[rewind.Store]string{}}
}

func (h *harness) openDir(t *testing.T, dir string) rewind.Store {
	t.Helper()
	s, err := Open(dir, h.cfg)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	h.mu.Lock()
	h.dirs[s] = dir
	h.mu.Unlock()
	return s
}

func (h *harness) open(t *testing.T) rewind.Store { return h.openDir(t, t.TempDir()) }

// reopen closes s and opens its directory again, in turn: as it is, without
// its index snapshot, with a damaged one, and from a copy taken while it
// was open (what a crash leaves: a stale snapshot).
func (h *harness) reopen(t *testing.T, s rewind.Store) rewind.Store {
	t.Helper()
	h.mu.Lock()
	dir := h.dirs[s]
	delete(h.dirs, s)
	n := h.reopens
	h.reopens++
	h.mu.Unlock()
	modes := []string{"close", "close", "no snapshot", "damaged snapshot", "crash image"}
	mode := modes[n%len(modes)]
	if mode == "crash image" {
		image := t.TempDir()
		copyDir(t, image, dir)
		dir = image
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	snap := filepath.Join(dir, "index.snapshot")
	switch mode {
	case "no snapshot":
		os.Remove(snap)
	case "damaged snapshot":
		if b, err := os.ReadFile(snap); err == nil && len(b) > 0 {
			b[(n*7919)%len(b)] ^= 0x10
			os.WriteFile(snap, b, 0o644)
		}
	}
	s2 := h.openDir(t, dir)
	if cut := s2.(*Store).Recovery(); len(cut) != 0 {
		t.Fatalf("reopen (%s) cut %v", mode, cut)
	}
	return s2
}

// crash copies the directory of s while it runs: what a crash at that
// moment leaves, the page cache included (writes being made during the
// copy may or may not be in it, and may be torn).
func (h *harness) crash(t *testing.T, s rewind.Store) func(t *testing.T) rewind.Store {
	t.Helper()
	h.mu.Lock()
	dir := h.dirs[s]
	h.mu.Unlock()
	image := t.TempDir()
	copyDir(t, image, dir)
	return func(t *testing.T) rewind.Store { return h.openDir(t, image) }
}

// copyDir copies the files of src into dst (not the lock).
func copyDir(t *testing.T, dst, src string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "LOCK" || e.IsDir() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if os.IsNotExist(err) {
			continue // removed meanwhile (a temporary snapshot, retention)
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func positionsOf(evs []rewind.RecordedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i := range evs {
		out[i] = uint64(evs[i].Position)
	}
	return out
}

// TestConformancePowerCuts runs the suite on stores whose files are on a
// MemFS, and crashes by cutting the power: what was not fsynced is lost,
// or kept sector by sector at random (vfs.TornWrites), in an image taken
// while the store runs. A page-cache copy, as the crash hook above takes,
// cannot show a missing fsync; this can.
func TestConformancePowerCuts(t *testing.T) {
	t.Parallel()
	h := &memHarness{harness: newHarness(Config{}), fss: map[rewind.Store]*vfs.MemFS{}}
	h.cfg.Log.SegmentSize, h.cfg.MaxBatchBytes = 1<<20, 0
	storetest.Run(t, h.open, storetest.Features{Reopen: h.reopen, Crash: h.crash,
		ModelOps: storetest.DefaultModelOps() / 5, MaxEventSize: 1<<20 - 1<<10})
}

type memHarness struct {
	*harness
	seed atomic.Uint64
	fss  map[rewind.Store]*vfs.MemFS
}

func (h *memHarness) openOn(t *testing.T, fs *vfs.MemFS) rewind.Store {
	t.Helper()
	cfg := h.cfg
	cfg.Log.FS = fs
	s, err := Open("/data", cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	h.mu.Lock()
	h.fss[s] = fs
	h.mu.Unlock()
	return s
}

func (h *memHarness) open(t *testing.T) rewind.Store { return h.openOn(t, vfs.NewMem()) }

func (h *memHarness) reopen(t *testing.T, s rewind.Store) rewind.Store {
	t.Helper()
	h.mu.Lock()
	fs := h.fss[s]
	h.mu.Unlock()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return h.openOn(t, fs)
}

func (h *memHarness) crash(t *testing.T, s rewind.Store) func(t *testing.T) rewind.Store {
	t.Helper()
	h.mu.Lock()
	fs := h.fss[s]
	h.mu.Unlock()
	n := h.seed.Add(1)
	after := fs.CrashImage(vfs.TornWrites, rand.New(rand.NewPCG(n, n*7919)))
	return func(t *testing.T) rewind.Store { return h.openOn(t, after) }
}
