package crc32c

import "golang.org/x/sys/cpu"

var fast = cpu.X86.HasSSE42

// checksum3 returns the CRC-32C of a, b and c, computed side by side over
// the length they share and one after the other past it.
//
//go:noescape
func checksum3(a, b, c []byte) (x, y, z uint32)
