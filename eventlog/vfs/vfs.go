// Package vfs is the filesystem seam of the event log: every file the log
// and the store touch goes through an FS, so that tests can replace the
// operating system's filesystem with one that injects errors (ErrorFS) or
// loses what was not fsynced on a simulated power cut (MemFS). Pebble's vfs
// package is the model.
//
// Default is the operating system's filesystem. Its per-OS parts — fdatasync,
// preallocation, syncing a directory — live in files named after the OS;
// file locks come from github.com/gofrs/flock.
package vfs

import (
	"errors"
	"io"
	"os"
)

// File is an open file. Offsets are explicit: the log never relies on a
// file's seek position.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Name returns the path the file was opened with.
	Name() string
	// Size returns the file's current size.
	Size() (int64, error)
	// Truncate changes the file's size; bytes beyond it are gone and read
	// as zeros if the file grows again.
	Truncate(size int64) error
	// Sync makes the file's data and metadata durable (fsync).
	Sync() error
	// Datasync makes the file's data durable, and the metadata needed to
	// read it back such as its size (fdatasync where the OS has it, fsync
	// elsewhere).
	Datasync() error
	// Allocate reserves disk space for [0, size), growing the file to size
	// with zeros, so that later writes there cannot fail for lack of space.
	// It returns ErrUnsupported where the OS or filesystem cannot.
	Allocate(size int64) error
}

// FS is a filesystem. Paths are the host's.
type FS interface {
	// OpenFile opens a file with os.OpenFile's flags: os.O_RDONLY or
	// os.O_RDWR, with os.O_CREATE, os.O_EXCL and os.O_TRUNC.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove removes a file. The removal is durable after SyncDir of its
	// directory.
	Remove(name string) error
	// Rename renames a file, replacing newname. It is durable after SyncDir
	// of the directory.
	Rename(oldname, newname string) error
	// List returns the names of the entries of directory dir, sorted.
	List(dir string) ([]string, error)
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string, perm os.FileMode) error
	// Stat describes a file or directory.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory's entries durable: files created,
	// removed or renamed in it.
	SyncDir(dir string) error
	// Lock takes an exclusive lock on the file name, creating it, without
	// waiting: it fails with ErrLocked when another process (or another
	// Lock of the same FS) holds it.
	Lock(name string) (io.Closer, error)
}

// Errors of this package.
var (
	// ErrUnsupported: the operation is not available on this OS or filesystem.
	ErrUnsupported = errors.New("vfs: operation not supported")
	// ErrLocked: another holder has the lock.
	ErrLocked = errors.New("vfs: locked by another holder")
)

// ReadFile reads a whole file.
func ReadFile(fs FS, name string) ([]byte, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, size)
	n, err := f.ReadAt(b, 0)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return b[:n], err
}

// WriteFileAtomic replaces name with data durably: it writes a temporary
// file beside it, fsyncs it, renames it over name and fsyncs the directory.
// After a crash the file holds either its old or its new content.
func WriteFileAtomic(fs FS, dir, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, name)
	}
	if err != nil {
		fs.Remove(tmp)
		return err
	}
	return fs.SyncDir(dir)
}
