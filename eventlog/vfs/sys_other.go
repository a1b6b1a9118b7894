//go:build !linux

package vfs

import (
	"errors"
	"os"
)

var errNotSupported = errors.New("not supported")

// datasync is a full fsync where the OS has no fdatasync; on darwin,
// os.File.Sync uses F_FULLFSYNC, which flushes the drive's cache too.
func datasync(f *os.File) error { return f.Sync() }

// allocate is not available: segments grow as they are written, and a full
// disk shows at a write instead.
func allocate(*os.File, int64) error { return errNotSupported }
