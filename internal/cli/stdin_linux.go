package cli

import (
	"os"

	"golang.org/x/sys/unix"
)

// bytesWaiting reports whether a pipe or socket has bytes to read now
// (TIOCINQ is FIONREAD on Linux).
func bytesWaiting(f *os.File) bool {
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ)
	return err == nil && n > 0
}
