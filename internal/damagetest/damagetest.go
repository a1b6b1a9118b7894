// Package damagetest damages the log of a data directory as a bad disk
// would, for tests of how readers meet damage. It reads the segment files
// as docs/format.md lays them out and depends on nothing else of rewind's
// but its vocabulary.
package damagetest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
)

// Sizes from docs/format.md.
const (
	segmentHeaderSize = 40
	recordHeaderSize  = 28
)

// FlipPayloadByte flips one byte in the middle of the payload of the
// record at pos, in the segment of the closed store in dir that holds it:
// that record fails its checksum, every other record stays intact.
func FlipPayloadByte(t testing.TB, dir string, pos rewind.Position) {
	t.Helper()
	seg := segmentOf(t, dir, pos)
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	for off := segmentHeaderSize; off+recordHeaderSize <= len(raw); {
		n := int(binary.LittleEndian.Uint32(raw[off:]))
		if n == 0 {
			break
		}
		if rewind.Position(binary.LittleEndian.Uint64(raw[off+8:])) == pos {
			raw[off+recordHeaderSize+n/2] ^= 0xff
			if err := os.WriteFile(seg, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		off += recordHeaderSize + n
	}
	t.Fatalf("damagetest: no record of position %d in %s", pos, seg)
}

// segmentOf returns the path of the segment file of dir that holds pos:
// the last whose base position (its name) is at or before it.
func segmentOf(t testing.TB, dir string, pos rewind.Position) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(names) == 0 {
		t.Fatalf("damagetest: no segment in %s: %v", dir, err)
	}
	sort.Strings(names) // 20 digits each: name order is position order
	for i := len(names) - 1; i >= 0; i-- {
		base, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(names[i]), ".seg"), 10, 64)
		if err == nil && rewind.Position(base) <= pos {
			return names[i]
		}
	}
	t.Fatalf("damagetest: no segment of %s holds position %d", dir, pos)
	return ""
}
