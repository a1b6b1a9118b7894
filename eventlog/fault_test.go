package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// fault fails operations of one kind on files with one extension once it
// is armed: the first match, or every one from then on when sticky (a
// full disk stays full; a failing device keeps failing).
type fault struct {
	faultSpec
	armed atomic.Bool
	hits  atomic.Int32
}

type faultSpec struct {
	op      vfs.Op
	ext     string
	err     error
	partial bool // a write puts part of its bytes before failing
	sticky  bool
}

func (f *fault) inject(op vfs.Op, path string) error {
	if !f.armed.Load() || op != f.op || !strings.HasSuffix(path, f.ext) {
		return nil
	}
	if f.hits.Add(1) > 1 && !f.sticky {
		return nil
	}
	if f.partial {
		return &vfs.PartialWrite{N: int(f.hits.Load()) * 37 % 300, Err: f.err}
	}
	return f.err
}

// outcomes sorts appends by their answer.
type outcomes struct {
	mu               sync.Mutex
	acked, failed    map[string]bool
	unknown          map[string]bool
	failedErr, other error
}

func (o *outcomes) add(p string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		o.acked[p] = true
	case errors.Is(err, rewind.ErrOutcomeUnknown):
		o.unknown[p] = true
	case errors.Is(err, rewind.ErrFailed):
		o.failed[p] = true
		o.failedErr = err
	default:
		o.other = err
	}
}

// runUntilFailure appends from several writers until each gets an error,
// arming f after some appends were acknowledged.
func runUntilFailure(t *testing.T, l *Log, f *fault) *outcomes {
	t.Helper()
	o := &outcomes{acked: map[string]bool{}, failed: map[string]bool{}, unknown: map[string]bool{}}
	var wg sync.WaitGroup
	var total atomic.Int32
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				p := fmt.Sprintf("w%d-%d-", w, i)
				body := []byte(p + strings.Repeat("x", 1500+(i*97)%800))
				a, err := l.Append([]Entry{{Kind: 1, Payload: body}})
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err = a.Wait(ctx)
					cancel()
					if errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("an append waited a minute for its answer")
						return
					}
				}
				o.add(p, err)
				if err != nil {
					return
				}
				if total.Add(1) == 60 {
					f.armed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return o
}

// payloadsIn reads every record of l back and returns their prefixes.
func payloadsIn(t *testing.T, l *Log) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	r := l.NewReader(1)
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("read back at %d: %v", r.Position(), err)
		}
		p := string(rec.Payload)
		got[p[:strings.IndexByte(p, '-')+1+strings.IndexByte(p[strings.IndexByte(p, '-')+1:], '-')+1]] = true
	}
}

// Issue 9: when a write or fsync fails, an append answered "failed" must
// never reappear after a restart (it did: data written before the index
// write failed was recovered), every waiting and later append must fail at
// once with an error that keeps the OS cause, and what was acknowledged
// stays. Each write site is failed in turn, then the log is reopened as it
// is, and after simulated power cuts.
func TestFailedAppendsNeverReappear(t *testing.T) {
	t.Parallel()
	enospc, eio := syscall.ENOSPC, syscall.EIO
	cases := []struct {
		name string
		f    faultSpec
	}{
		{"data write fills the disk", faultSpec{op: vfs.OpWrite, ext: ".seg", err: enospc, partial: true, sticky: true}},
		{"index write fills the disk", faultSpec{op: vfs.OpWrite, ext: ".idx", err: enospc, sticky: true}},
		{"fsync fails once", faultSpec{op: vfs.OpSync, ext: ".seg", err: eio}},
		{"fsync keeps failing", faultSpec{op: vfs.OpSync, ext: ".seg", err: eio, sticky: true}},
		{"segment creation fills the disk", faultSpec{op: vfs.OpCreate, ext: ".seg", err: enospc, sticky: true}},
		{"preallocation fills the disk", faultSpec{op: vfs.OpAllocate, ext: ".seg", err: enospc, sticky: true}},
		{"sealing trim fails", faultSpec{op: vfs.OpTruncate, ext: ".seg", err: eio}},
		{"directory sync fails", faultSpec{op: vfs.OpSyncDir, err: eio}},
	}
	ends := []string{"reopen", "power cut", "torn power cut"}
	for _, tc := range cases {
		for _, mode := range []Durability{Sync, Interval, None} {
			for _, end := range ends {
				t.Run(fmt.Sprintf("%s/%s/%s", tc.name, mode, end), func(t *testing.T) {
					t.Parallel()
					mem := vfs.NewMem()
					f := &fault{faultSpec: tc.f}
					efs := vfs.WithErrors(mem, f.inject)
					cfg := Config{FS: efs, Durability: mode, SyncInterval: time.Millisecond, SegmentSize: 64 << 10, Logger: quietLogger()}
					l, err := Open("/data", cfg)
					if err != nil {
						t.Fatal(err)
					}
					o := runUntilFailure(t, l, f)
					if o.other != nil {
						t.Fatalf("an append failed with %v, want rewind.ErrFailed or ErrOutcomeUnknown", o.other)
					}
					if f.hits.Load() == 0 {
						t.Fatal("the fault was never hit")
					}
					if len(o.failed)+len(o.unknown) == 0 {
						t.Fatal("no append failed")
					}
					if o.failedErr != nil && !errors.Is(o.failedErr, f.err) {
						t.Errorf("the failure %v does not wrap the OS cause %v", o.failedErr, f.err)
					}
					var fe *rewind.FailedError
					if err := l.Err(); !errors.As(err, &fe) || !errors.Is(err, f.err) {
						t.Errorf("Err() = %v, want a *rewind.FailedError wrapping %v", err, f.err)
					}
					if _, err := l.Append([]Entry{{Kind: 1, Payload: []byte("later")}}); !errors.Is(err, rewind.ErrFailed) {
						t.Errorf("an append after the failure: %v, want ErrFailed at once", err)
					}
					f.armed.Store(false)
					fs := vfs.FS(mem)
					switch end {
					case "reopen":
						l.Close()
					case "power cut":
						fs = mem.Crash(vfs.DropUnsynced, nil)
						l.Close()
					case "torn power cut":
						fs = mem.Crash(vfs.TornWrites, rand.New(rand.NewPCG(uint64(len(o.acked)), 7)))
						l.Close()
					}
					cfg.FS = fs
					l2, err := Open("/data", cfg)
					if err != nil {
						t.Fatalf("reopen: %v", err)
					}
					defer l2.Close()
					got := payloadsIn(t, l2)
					for p := range o.failed {
						if got[p] {
							t.Errorf("append %s was answered failed (%v) and is in the log after the %s", p, o.failedErr, end)
						}
					}
					if end == "reopen" || mode == Sync {
						for p := range o.acked {
							if !got[p] {
								t.Errorf("acknowledged append %s is missing after the %s", p, end)
							}
						}
					}
					if len(l2.Damage()) != 0 {
						t.Errorf("damage after the %s: %v", end, l2.Damage())
					}
				})
			}
		}
	}
}

// When even removing the failed bytes fails, the appends concerned cannot
// be answered "failed": their answer is rewind.ErrOutcomeUnknown.
func TestUnremovableFailedBytesAreAnOutcomeUnknown(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	var armed atomic.Bool
	efs := vfs.WithErrors(mem, func(op vfs.Op, path string) error {
		if armed.Load() && (op == vfs.OpSync || op == vfs.OpTruncate) && strings.HasSuffix(path, ".seg") {
			return syscall.EIO
		}
		return nil
	})
	l, err := Open("/data", Config{FS: efs, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 5, 1, 100)
	armed.Store(true)
	a, err := l.Append([]Entry{{Kind: 1, Payload: []byte("doomed")}})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Wait(context.Background())
	if !errors.Is(err, rewind.ErrOutcomeUnknown) || !errors.Is(err, syscall.EIO) || rewind.CodeOf(err) != rewind.CodeOutcomeUnknown {
		t.Fatalf("answer %v (code %s), want an unknown outcome wrapping EIO", err, rewind.CodeOf(err))
	}
}

// Opening a new log creates its first segment at once: a full disk there
// fails Open with the cause, and leaves nothing a later Open trips on.
func TestFirstSegmentOnAFullDisk(t *testing.T) {
	t.Parallel()
	for _, op := range []vfs.Op{vfs.OpCreate, vfs.OpAllocate, vfs.OpWrite, vfs.OpSync, vfs.OpSyncDir} {
		t.Run(op.String(), func(t *testing.T) {
			t.Parallel()
			mem := vfs.NewMem()
			var armed atomic.Bool
			armed.Store(true)
			efs := vfs.WithErrors(mem, func(o vfs.Op, path string) error {
				if armed.Load() && o == op && !strings.HasSuffix(path, "LOCK") {
					return syscall.ENOSPC
				}
				return nil
			})
			_, err := Open("/data", Config{FS: efs, Logger: quietLogger()})
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("open on a full disk: %v, want ENOSPC", err)
			}
			armed.Store(false)
			l, err := Open("/data", Config{FS: efs, Logger: quietLogger()})
			if err != nil {
				t.Fatalf("open once there is room: %v", err)
			}
			defer l.Close()
			appendN(t, l, 3, 1, 100)
			if l.Last() != 3 {
				t.Fatalf("last = %d", l.Last())
			}
		})
	}
}

// An I/O error while reading is not damage: a read reports it as it is
// (wrapping the cause), never as corruption, and Open fails rather than
// cut or keep anything.
func TestReadErrorsAreNotCorruption(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	var armed atomic.Bool
	efs := vfs.WithErrors(mem, func(op vfs.Op, path string) error {
		if armed.Load() && op == vfs.OpRead && strings.HasSuffix(path, ".seg") {
			return syscall.EIO
		}
		return nil
	})
	cfg := Config{FS: efs, Logger: quietLogger()}
	l, err := Open("/data", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10, 1, 100)
	armed.Store(true)
	_, err = l.Read(5)
	if !errors.Is(err, syscall.EIO) || errors.Is(err, rewind.ErrCorruption) {
		t.Fatalf("read with a failing disk: %v, want EIO and not corruption", err)
	}
	armed.Store(false)
	l.Close()
	armed.Store(true)
	if _, err := Open("/data", cfg); !errors.Is(err, syscall.EIO) || errors.Is(err, rewind.ErrCorruption) {
		t.Fatalf("open with a failing disk: %v, want EIO", err)
	}
	armed.Store(false)
	l, err = Open("/data", cfg)
	if err != nil || l.Last() != 10 || len(l.Recovery()) != 0 || len(l.Damage()) != 0 {
		t.Fatalf("open once the disk reads again: %v, last %d, cut %v, damage %v", err, l.Last(), l.Recovery(), l.Damage())
	}
	l.Close()
}

// Retention records the new start before removing anything: when that
// write fails (a full disk), nothing is removed and the error says why.
func TestRetentionOnAFullDisk(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	var armed atomic.Bool
	efs := vfs.WithErrors(mem, func(op vfs.Op, path string) error {
		if armed.Load() && strings.Contains(path, stateName) && (op == vfs.OpCreate || op == vfs.OpWrite || op == vfs.OpRename) {
			return syscall.ENOSPC
		}
		return nil
	})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	cfg := Config{FS: efs, SegmentSize: 64 << 10, MaxAge: time.Hour, RetentionInterval: time.Hour, Logger: quietLogger(),
		Now: func() time.Time { return time.Unix(0, now.Load()) }}
	l, err := Open("/data", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for len(*l.segments.Load()) < 5 {
		appendN(t, l, 20, 2, 1000)
	}
	now.Add(int64(2 * time.Hour)) // every sealed segment is now due
	files := len(mem.Files())
	armed.Store(true)
	if _, err := l.ApplyRetention(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("retention while the state cannot be written: %v", err)
	}
	if len(mem.Files()) != files || l.First() != 1 {
		t.Fatalf("retention removed segments without recording the new start: %d files of %d, first %d", len(mem.Files()), files, l.First())
	}
	armed.Store(false)
	if removed, err := l.ApplyRetention(); err != nil || len(removed) == 0 || l.First() == 1 {
		t.Fatalf("retention once the disk has room: %v %v, first %d", removed, err, l.First())
	}
}
