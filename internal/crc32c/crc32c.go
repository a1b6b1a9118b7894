// Package crc32c computes CRC-32C (Castagnoli) checksums of several short
// buffers at once.
//
// The CRC32 instruction of SSE4.2 takes three cycles and can start one per
// cycle, so hash/crc32 reaches its full speed only on buffers long enough to
// be split in three (504 bytes and more). A log record is usually shorter:
// its checksum waits on each instruction in turn. Checksum3 interleaves the
// checksums of three buffers instead, so that the three chains run side by
// side. The result is exactly crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli))
// of each buffer.
package crc32c

import "hash/crc32"

// Table is the Castagnoli table of hash/crc32.
var Table = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of p, as hash/crc32 computes it.
func Checksum(p []byte) uint32 { return crc32.Checksum(p, Table) }

// Checksum3 returns the CRC-32C of a, b and c.
func Checksum3(a, b, c []byte) (uint32, uint32, uint32) {
	if !fast {
		return Checksum(a), Checksum(b), Checksum(c)
	}
	return checksum3(a, b, c)
}
