//go:build !linux

package cli

import "os"

// bytesWaiting cannot tell on this system without reading.
func bytesWaiting(*os.File) bool { return false }
