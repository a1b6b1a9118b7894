package vfs

import (
	"io"
	"os"
	"sync/atomic"
)

// Op names an operation of an FS or a File, for error injection.
type Op int

// The operations ErrorFS can fail.
const (
	OpOpen     Op = iota // OpenFile without os.O_CREATE
	OpCreate             // OpenFile with os.O_CREATE
	OpRead               // File.ReadAt
	OpWrite              // File.WriteAt
	OpSync               // File.Sync and File.Datasync
	OpTruncate           // File.Truncate
	OpAllocate           // File.Allocate
	OpRemove             // FS.Remove
	OpRename             // FS.Rename
	OpList               // FS.List
	OpMkdir              // FS.MkdirAll
	OpSyncDir            // FS.SyncDir
	OpLock               // FS.Lock
)

var opNames = [...]string{"open", "create", "read", "write", "sync", "truncate", "allocate", "remove", "rename",
	"list", "mkdir", "syncdir", "lock"}

func (o Op) String() string { return opNames[o] }

// Injector decides whether an operation on path fails: it returns nil to
// let it run, or the error to return instead. A *PartialWrite error lets a
// write put its first N bytes before failing, as a disk that fills up
// mid-write does.
type Injector func(op Op, path string) error

// PartialWrite is an injected write error that happens after N bytes.
type PartialWrite struct {
	N   int
	Err error
}

func (p *PartialWrite) Error() string { return p.Err.Error() }
func (p *PartialWrite) Unwrap() error { return p.Err }

// ErrorFS wraps an FS and fails the operations its Injector picks.
type ErrorFS struct {
	FS     FS
	inject atomic.Pointer[Injector]
}

// WithErrors returns fs with inject deciding which operations fail; inject
// may be nil and replaced later with SetInjector.
func WithErrors(fs FS, inject Injector) *ErrorFS {
	e := &ErrorFS{FS: fs}
	e.SetInjector(inject)
	return e
}

// SetInjector replaces the injector; nil injects nothing.
func (e *ErrorFS) SetInjector(inject Injector) { e.inject.Store(&inject) }

func (e *ErrorFS) fail(op Op, path string) error {
	if p := e.inject.Load(); p != nil && *p != nil {
		if err := (*p)(op, path); err != nil {
			if _, partial := err.(*PartialWrite); partial {
				return err
			}
			return &os.PathError{Op: op.String(), Path: path, Err: err}
		}
	}
	return nil
}

func (e *ErrorFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	op := OpOpen
	if flag&os.O_CREATE != 0 {
		op = OpCreate
	}
	if err := e.fail(op, name); err != nil {
		return nil, err
	}
	f, err := e.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &errorFile{File: f, e: e}, nil
}

func (e *ErrorFS) Remove(name string) error {
	if err := e.fail(OpRemove, name); err != nil {
		return err
	}
	return e.FS.Remove(name)
}

func (e *ErrorFS) Rename(oldname, newname string) error {
	if err := e.fail(OpRename, newname); err != nil {
		return err
	}
	return e.FS.Rename(oldname, newname)
}

func (e *ErrorFS) List(dir string) ([]string, error) {
	if err := e.fail(OpList, dir); err != nil {
		return nil, err
	}
	return e.FS.List(dir)
}

func (e *ErrorFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := e.fail(OpMkdir, dir); err != nil {
		return err
	}
	return e.FS.MkdirAll(dir, perm)
}

func (e *ErrorFS) Stat(name string) (os.FileInfo, error) { return e.FS.Stat(name) }

func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.fail(OpSyncDir, dir); err != nil {
		return err
	}
	return e.FS.SyncDir(dir)
}

func (e *ErrorFS) Lock(name string) (io.Closer, error) {
	if err := e.fail(OpLock, name); err != nil {
		return nil, err
	}
	return e.FS.Lock(name)
}

type errorFile struct {
	File
	e *ErrorFS
}

func (f *errorFile) ReadAt(b []byte, off int64) (int, error) {
	if err := f.e.fail(OpRead, f.Name()); err != nil {
		return 0, err
	}
	return f.File.ReadAt(b, off)
}

func (f *errorFile) WriteAt(b []byte, off int64) (int, error) {
	if err := f.e.fail(OpWrite, f.Name()); err != nil {
		if p, ok := err.(*PartialWrite); ok {
			n := min(max(p.N, 0), len(b))
			if n > 0 {
				if _, werr := f.File.WriteAt(b[:n], off); werr != nil {
					return 0, werr
				}
			}
			return n, &os.PathError{Op: "write", Path: f.Name(), Err: p.Err}
		}
		return 0, err
	}
	return f.File.WriteAt(b, off)
}

func (f *errorFile) Sync() error {
	if err := f.e.fail(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *errorFile) Datasync() error {
	if err := f.e.fail(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.Datasync()
}

func (f *errorFile) Truncate(size int64) error {
	if err := f.e.fail(OpTruncate, f.Name()); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *errorFile) Allocate(size int64) error {
	if err := f.e.fail(OpAllocate, f.Name()); err != nil {
		return err
	}
	return f.File.Allocate(size)
}
