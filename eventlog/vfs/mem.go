package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemFS is an in-memory filesystem that remembers what is durable: a
// file's data as of its last Sync or Datasync, and a directory's entries as
// of its last SyncDir. Crash simulates a power cut: the filesystem stops
// (every later call fails) and a new MemFS holds what a disk could hold
// after the cut. Tests use it to see a missing fsync, which a killed
// process cannot show (the kernel keeps its page cache).
type MemFS struct {
	mu    sync.Mutex
	files map[string]*memNode // the namespace as the running system sees it
	dirs  map[string]bool
	// journal holds the namespace changes not yet made durable by a
	// SyncDir, in order; durable is the namespace they apply to.
	journal []nsChange
	durable map[string]*memNode
	locks   map[string]bool
	off     bool // powered off by Crash
}

type nsChange struct {
	dir  string
	path string   // the entry changed
	node *memNode // its new target; nil removes it
	from string   // for a rename, the entry removed with it
}

// SectorSize is the unit in which a power cut keeps or loses unsynced writes.
const SectorSize = 512

type memNode struct {
	data    []byte
	durable []byte         // content as of the last sync
	dirty   map[int64]bool // sectors written (or cut) since the last sync
	resized bool           // size changed since the last sync
}

// NewMem returns an empty MemFS.
func NewMem() *MemFS {
	return &MemFS{files: map[string]*memNode{}, dirs: map[string]bool{"/": true, ".": true},
		durable: map[string]*memNode{}, locks: map[string]bool{}}
}

// ErrPowerOff is what every call on a MemFS returns after Crash.
var ErrPowerOff = errors.New("vfs: simulated power cut: the machine is off")

func clean(name string) string { return filepath.Clean(name) }

func (m *MemFS) check(op, name string) error {
	if m.off {
		return &os.PathError{Op: op, Path: name, Err: ErrPowerOff}
	}
	return nil
}

func (m *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("open", name); err != nil {
		return nil, err
	}
	if m.dirs[name] {
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	n, ok := m.files[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		if !m.dirs[filepath.Dir(name)] {
			return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		n = &memNode{dirty: map[int64]bool{}}
		m.files[name] = n
		m.journal = append(m.journal, nsChange{dir: filepath.Dir(name), path: name, node: n})
	}
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if flag&os.O_TRUNC != 0 && writable {
		n.truncate(0)
	}
	return &memFile{fs: m, n: n, name: name, writable: writable}, nil
}

func (m *MemFS) Remove(name string) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("remove", name); err != nil {
		return err
	}
	if _, ok := m.files[name]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, name)
	m.journal = append(m.journal, nsChange{dir: filepath.Dir(name), path: name})
	return nil
}

func (m *MemFS) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("rename", oldname); err != nil {
		return err
	}
	n, ok := m.files[oldname]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	if filepath.Dir(oldname) != filepath.Dir(newname) {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: errors.New("vfs: MemFS renames within a directory only")}
	}
	delete(m.files, oldname)
	m.files[newname] = n
	m.journal = append(m.journal, nsChange{dir: filepath.Dir(newname), path: newname, node: n, from: oldname})
	return nil
}

func (m *MemFS) List(dir string) ([]string, error) {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("readdir", dir); err != nil {
		return nil, err
	}
	if !m.dirs[dir] {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for p := range m.files {
		if filepath.Dir(p) == dir {
			names = append(names, filepath.Base(p))
		}
	}
	for d := range m.dirs {
		if d != dir && filepath.Dir(d) == dir {
			names = append(names, filepath.Base(d))
		}
	}
	slices.Sort(names)
	return names, nil
}

// MkdirAll creates directories; MemFS treats directories as durable at once.
func (m *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("mkdir", dir); err != nil {
		return err
	}
	for d := dir; !m.dirs[d]; d = filepath.Dir(d) {
		if _, ok := m.files[d]; ok {
			return &os.PathError{Op: "mkdir", Path: d, Err: syscallENOTDIR}
		}
		m.dirs[d] = true
	}
	return nil
}

var syscallENOTDIR = errors.New("not a directory")

func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("stat", name); err != nil {
		return nil, err
	}
	if m.dirs[name] {
		return memInfo{name: filepath.Base(name), dir: true}, nil
	}
	n, ok := m.files[name]
	if !ok {
		return nil, &os.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return memInfo{name: filepath.Base(name), size: int64(len(n.data))}, nil
}

// SyncDir makes the namespace changes in dir durable, in order.
func (m *MemFS) SyncDir(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("sync", dir); err != nil {
		return err
	}
	kept := m.journal[:0]
	for _, c := range m.journal {
		if c.dir == dir {
			c.apply(m.durable)
		} else {
			kept = append(kept, c)
		}
	}
	m.journal = kept
	return nil
}

func (c nsChange) apply(ns map[string]*memNode) {
	if c.from != "" {
		delete(ns, c.from)
	}
	if c.node == nil {
		delete(ns, c.path)
	} else {
		ns[c.path] = c.node
	}
}

func (m *MemFS) Lock(name string) (io.Closer, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("lock", name); err != nil {
		return nil, err
	}
	if m.locks[name] {
		return nil, ErrLocked
	}
	if _, ok := m.files[name]; !ok {
		n := &memNode{dirty: map[int64]bool{}}
		m.files[name] = n
		m.journal = append(m.journal, nsChange{dir: filepath.Dir(name), path: name, node: n})
	}
	m.locks[name] = true
	return memLock{m, name}, nil
}

type memLock struct {
	m    *MemFS
	name string
}

func (l memLock) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	delete(l.m.locks, l.name)
	return nil
}

// CrashMode says what a power cut keeps of what was not synced.
type CrashMode int

const (
	// DropUnsynced keeps exactly what was synced: file data as of each
	// file's last sync, directory entries as of each directory's last
	// SyncDir.
	DropUnsynced CrashMode = iota
	// TornWrites keeps each unsynced sector of file data, or not, at random,
	// as disks write back dirty pages in any order and may tear a page
	// into sectors; a file's size is its synced or its current one; and a
	// random prefix of each directory's unsynced changes (file systems
	// journal their metadata in order).
	TornWrites
)

// Crash cuts the power: m stops (every call on it and on its open files
// fails with ErrPowerOff, and its locks are gone) and the returned MemFS
// holds what the disk holds after the cut. rng decides what a TornWrites
// cut keeps.
func (m *MemFS) Crash(mode CrashMode, rng *rand.Rand) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.off = true
	return m.imageLocked(mode, rng)
}

// CrashImage returns what the disk would hold if the power failed now,
// while m keeps running: a crash image taken from a live system.
func (m *MemFS) CrashImage(mode CrashMode, rng *rand.Rand) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.imageLocked(mode, rng)
}

func (m *MemFS) imageLocked(mode CrashMode, rng *rand.Rand) *MemFS {
	ns := make(map[string]*memNode, len(m.durable))
	for p, n := range m.durable {
		ns[p] = n
	}
	if mode == TornWrites {
		byDir := map[string][]nsChange{}
		for _, c := range m.journal {
			byDir[c.dir] = append(byDir[c.dir], c)
		}
		for _, cs := range byDir {
			for _, c := range cs[:rng.IntN(len(cs)+1)] {
				c.apply(ns)
			}
		}
	}
	out := NewMem()
	for d := range m.dirs {
		out.dirs[d] = true
	}
	images := map[*memNode]*memNode{} // a node renamed keeps one image
	for p, n := range ns {
		img, ok := images[n]
		if !ok {
			img = n.crashImage(mode, rng)
			images[n] = img
		}
		out.files[p] = img
		out.durable[p] = img
	}
	return out
}

func (n *memNode) crashImage(mode CrashMode, rng *rand.Rand) *memNode {
	img := &memNode{dirty: map[int64]bool{}}
	size := len(n.durable)
	if mode == TornWrites && n.resized && rng.IntN(2) == 0 {
		size = len(n.data)
	}
	img.data = make([]byte, size)
	copy(img.data, n.durable)
	if mode == TornWrites {
		for s := range n.dirty {
			if rng.IntN(2) == 0 {
				continue
			}
			lo := s * SectorSize
			if lo >= int64(size) {
				continue
			}
			hi := min(lo+SectorSize, int64(size))
			seg := img.data[lo:hi]
			clear(seg)
			if lo < int64(len(n.data)) {
				copy(seg, n.data[lo:min(hi, int64(len(n.data)))])
			}
		}
	}
	img.durable = slices.Clone(img.data)
	return img
}

// Files returns the paths of the files that exist, sorted.
func (m *MemFS) Files() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	paths := make([]string, 0, len(m.files))
	for p := range m.files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// Bytes returns a copy of a file's current content, for tests that damage
// or inspect files; SetBytes replaces it (durably, as an editor's saved
// change would be).
func (m *MemFS) Bytes(name string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.files[clean(name)]
	if !ok {
		return nil, false
	}
	return slices.Clone(n.data), true
}

// SetBytes replaces a file's content durably.
func (m *MemFS) SetBytes(name string, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.files[clean(name)]
	if !ok {
		n = &memNode{dirty: map[int64]bool{}}
		m.files[clean(name)] = n
		m.durable[clean(name)] = n
	}
	n.data, n.durable = slices.Clone(b), slices.Clone(b)
	clear(n.dirty)
	n.resized = false
}

func (n *memNode) markDirty(lo, hi int64) {
	for s := lo / SectorSize; s*SectorSize < hi; s++ {
		n.dirty[s] = true
	}
}

func (n *memNode) truncate(size int64) {
	old := int64(len(n.data))
	if size < old {
		n.markDirty(size, old)
		n.data = n.data[:size]
	} else {
		n.data = append(n.data, make([]byte, size-old)...)
	}
	if size != old {
		n.resized = true
	}
}

// sync makes the current content durable, copying only what changed.
func (n *memNode) sync() {
	if len(n.durable) != len(n.data) {
		if cap(n.durable) >= len(n.data) {
			old := len(n.durable)
			n.durable = n.durable[:len(n.data)]
			if old < len(n.data) {
				clear(n.durable[old:]) // grown: zeros, unless written (then dirty)
			}
		} else {
			grown := make([]byte, len(n.data), cap(n.data))
			copy(grown, n.durable)
			n.durable = grown
		}
	}
	for s := range n.dirty {
		lo := s * SectorSize
		if lo < int64(len(n.data)) {
			hi := min(lo+SectorSize, int64(len(n.data)))
			copy(n.durable[lo:hi], n.data[lo:hi])
		}
	}
	clear(n.dirty)
	n.resized = false
}

type memFile struct {
	fs       *MemFS
	n        *memNode
	name     string
	writable bool
	closed   bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) op(op string) error {
	if f.closed {
		return &os.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	return f.fs.check(op, f.name)
}

func (f *memFile) ReadAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: fs.ErrInvalid}
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(b, f.n.data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("write"); err != nil {
		return 0, err
	}
	if !f.writable || off < 0 {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: fs.ErrInvalid}
	}
	end := off + int64(len(b))
	if end > int64(len(f.n.data)) {
		f.n.truncate(end)
	}
	copy(f.n.data[off:], b)
	f.n.markDirty(off, end)
	return len(b), nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("stat"); err != nil {
		return 0, err
	}
	return int64(len(f.n.data)), nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("truncate"); err != nil {
		return err
	}
	if !f.writable || size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: fs.ErrInvalid}
	}
	f.n.truncate(size)
	return nil
}

func (f *memFile) Sync() error { return f.Datasync() }

func (f *memFile) Datasync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("sync"); err != nil {
		return err
	}
	f.n.sync()
	return nil
}

func (f *memFile) Allocate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("allocate"); err != nil {
		return err
	}
	if size > int64(len(f.n.data)) {
		f.n.truncate(size)
	}
	return nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &os.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() os.FileMode {
	return map[bool]os.FileMode{true: os.ModeDir | 0o755, false: 0o644}[i.dir]
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

// String describes the filesystem, for test failures.
func (m *MemFS) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range m.files {
			if !yield(p) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s %d bytes\n", p, len(m.files[p].data))
	}
	return b.String()
}
