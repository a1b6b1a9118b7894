package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
)

// Issue 9: a loss the bytes no longer show (the tail of a cleanly closed
// store truncated: the positions are given to new events) was reported by
// the first open only. Later, stat still lists it with "(data loss)", and
// verify, which finds the files consistent (exit 0), prints it.
func TestRecordedLossOutlivesTheOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for range 5 {
		if code, _, errOut := run(t, dir, "", "append", "s", "--type", "A", "--data", `"hello"`); code != 0 {
			t.Fatal(errOut)
		}
	}
	seg := filepath.Join(dir, "00000000000000000001.seg")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(40) // the end of the third record
	for range 3 {
		off += 28 + int64(uint32(b[off])|uint32(b[off+1])<<8|uint32(b[off+2])<<16|uint32(b[off+3])<<24)
	}
	if err := os.Truncate(seg, off); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the first stat finds the loss, the second only remembers it
		code, out, errOut := run(t, dir, "", "stat")
		if code != 0 || !strings.Contains(out, "recovery        shortened (data loss)") || !strings.Contains(out, "positions 4-5") ||
			!strings.Contains(out, "epoch           2") {
			t.Fatalf("stat %d: %d %q %q", i, code, out, errOut)
		}
	}
	code, out, errOut := run(t, dir, "", "verify")
	if code != 0 || !strings.Contains(out, "RECORDED LOSS shortened") || !strings.Contains(out, "recorded the data loss") {
		t.Fatalf("verify: %d %q %q", code, out, errOut)
	}
}

func TestPositionRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		first, last uint64
		want        string
	}{{2000, 0, "positions from 2000"}, {7, 7, "position 7"}, {3, 9, "positions 3-9"}} {
		if got := positionRange(posOf(tc.first), posOf(tc.last)); got != tc.want {
			t.Errorf("positionRange(%d, %d) = %q, want %q", tc.first, tc.last, got, tc.want)
		}
	}
}

func posOf(p uint64) rewind.Position { return rewind.Position(p) }
