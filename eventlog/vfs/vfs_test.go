package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSemantics runs the same calls on the OS filesystem and on MemFS:
// MemFS must behave as the real one does for everything the log uses.
func TestSemantics(t *testing.T) {
	for name, mk := range map[string]func(t *testing.T) (FS, string){
		"os":  func(t *testing.T) (FS, string) { return Default, t.TempDir() },
		"mem": func(t *testing.T) (FS, string) { m := NewMem(); m.MkdirAll("/d", 0o755); return m, "/d" },
	} {
		t.Run(name, func(t *testing.T) {
			fsys, dir := mk(t)
			p := filepath.Join(dir, "a")
			f, err := fsys.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
				t.Errorf("O_EXCL on an existing file: %v", err)
			}
			if _, err := fsys.OpenFile(filepath.Join(dir, "missing"), os.O_RDWR, 0); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("open of a missing file: %v", err)
			}
			if _, err := f.WriteAt([]byte("hello"), 10); err != nil {
				t.Fatal(err)
			}
			if size, _ := f.Size(); size != 15 {
				t.Errorf("size after a write at 10: %d", size)
			}
			b := make([]byte, 20)
			n, err := f.ReadAt(b, 0)
			if n != 15 || !errors.Is(err, io.EOF) || !bytes.Equal(b[:15], append(make([]byte, 10), "hello"...)) {
				t.Errorf("read past the end: %d %v %q", n, err, b[:n])
			}
			if err := f.Truncate(12); err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(14); err != nil {
				t.Fatal(err)
			}
			n, _ = f.ReadAt(b[:4], 10)
			if !bytes.Equal(b[:n], []byte("he\x00\x00")) {
				t.Errorf("bytes cut and grown again must read as zeros: %q", b[:n])
			}
			if err := f.Allocate(4096); err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatal(err)
			}
			if err := f.Datasync(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := fsys.Rename(p, filepath.Join(dir, "b")); err != nil {
				t.Fatal(err)
			}
			names, err := fsys.List(dir)
			if err != nil || len(names) != 1 || names[0] != "b" {
				t.Errorf("list after rename: %v %v", names, err)
			}
			l1, err := fsys.Lock(filepath.Join(dir, "LOCK"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.Lock(filepath.Join(dir, "LOCK")); !errors.Is(err, ErrLocked) {
				t.Errorf("second lock: %v, want ErrLocked", err)
			}
			l1.Close()
			l2, err := fsys.Lock(filepath.Join(dir, "LOCK"))
			if err != nil {
				t.Errorf("lock after release: %v", err)
			} else {
				l2.Close()
			}
		})
	}
}

func TestCrashKeepsOnlyWhatWasSynced(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o755)
	synced, _ := m.OpenFile("/d/synced", os.O_RDWR|os.O_CREATE, 0o644)
	synced.WriteAt([]byte("durable"), 0)
	synced.Sync()
	m.SyncDir("/d")
	synced.WriteAt([]byte("LOST"), 0)                                  // not synced
	orphan, _ := m.OpenFile("/d/orphan", os.O_RDWR|os.O_CREATE, 0o644) // its entry is never synced
	orphan.WriteAt([]byte("x"), 0)
	orphan.Sync()

	after := m.Crash(DropUnsynced, nil)
	if _, err := synced.WriteAt([]byte("z"), 0); !errors.Is(err, ErrPowerOff) {
		t.Errorf("a write after the cut: %v, want ErrPowerOff", err)
	}
	if b, _ := after.Bytes("/d/synced"); string(b) != "durable" {
		t.Errorf("synced file after the cut: %q", b)
	}
	if _, ok := after.Bytes("/d/orphan"); ok {
		t.Error("a file whose directory entry was never synced survived the cut")
	}
}

func TestTornCrashMixesSectors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	kept, lost := 0, 0
	for range 50 {
		m := NewMem()
		m.MkdirAll("/d", 0o755)
		f, _ := m.OpenFile("/d/f", os.O_RDWR|os.O_CREATE, 0o644)
		m.SyncDir("/d")
		f.WriteAt(bytes.Repeat([]byte{1}, 4*SectorSize), 0)
		f.Sync()
		f.WriteAt(bytes.Repeat([]byte{2}, 4*SectorSize), 0)
		after := m.Crash(TornWrites, rng)
		b, _ := after.Bytes("/d/f")
		if len(b) != 4*SectorSize {
			t.Fatalf("size %d", len(b))
		}
		for s := 0; s < 4; s++ {
			sec := b[s*SectorSize : (s+1)*SectorSize]
			switch {
			case bytes.Equal(sec, bytes.Repeat([]byte{2}, SectorSize)):
				kept++
			case bytes.Equal(sec, bytes.Repeat([]byte{1}, SectorSize)):
				lost++
			default:
				t.Fatalf("sector %d is neither the old nor the new content", s)
			}
		}
	}
	if kept == 0 || lost == 0 {
		t.Errorf("torn cuts kept %d and lost %d unsynced sectors; both must happen", kept, lost)
	}
}

func TestErrorFSPartialWrite(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o755)
	e := WithErrors(m, nil)
	f, _ := e.OpenFile("/d/f", os.O_RDWR|os.O_CREATE, 0o644)
	e.SetInjector(func(op Op, path string) error {
		if op == OpWrite {
			return &PartialWrite{N: 3, Err: syscall.ENOSPC}
		}
		return nil
	})
	n, err := f.WriteAt([]byte("abcdef"), 0)
	if n != 3 || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("partial write: %d %v", n, err)
	}
	if b, _ := m.Bytes("/d/f"); string(b) != "abc" {
		t.Errorf("content after a partial write: %q", b)
	}
	e.SetInjector(func(op Op, path string) error {
		if op == OpSync {
			return syscall.EIO
		}
		return nil
	})
	if err := f.Datasync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("injected fsync error: %v", err)
	}
}
