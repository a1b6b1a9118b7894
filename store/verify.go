package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Verify checks a closed store in dir without changing it: every record of
// the log (see eventlog.Verify), and that the log still reaches the
// position its index snapshot was taken at — a log shorter than that lost
// events that had been fsynced.
func Verify(ctx context.Context, dir string, progress eventlog.Progress) (eventlog.VerifyReport, error) {
	return VerifyFS(ctx, vfs.Default, dir, progress)
}

// VerifyFS is Verify on the store in dir of fs.
func VerifyFS(ctx context.Context, fs vfs.FS, dir string, progress eventlog.Progress) (eventlog.VerifyReport, error) {
	rep, err := eventlog.VerifyFS(ctx, fs, dir, progress)
	if err != nil {
		return rep, err
	}
	// A damaged snapshot only costs a longer open (it replays the log).
	// The log's state file usually knows of such a loss itself (it records
	// the snapshot's position); then the log reported it already.
	reported := false
	for _, p := range rep.Problems {
		reported = reported || p.Position == rep.LastPosition+1 && strings.HasPrefix(p.Reason, "data loss")
	}
	if pos, err := snapshotPosition(fs, filepath.Join(dir, snapshotName)); err == nil && pos > rep.LastPosition && rep.Segments > 0 && !reported {
		sh := shortened{logLast: rep.LastPosition, snapshotPos: pos}
		rep.Problems = append(rep.Problems, eventlog.Problem{Segment: snapshotName, Position: rep.LastPosition + 1,
			Reason: "data loss: " + sh.String()})
	}
	return rep, nil
}

// snapshotPosition reads the position an index snapshot was taken at, or 0
// when there is none.
func snapshotPosition(fs vfs.FS, path string) (uint64, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var head [40]byte
	if n, _ := f.ReadAt(head[:], 0); n < len(head) || string(head[:8]) != snapshotMagic {
		return 0, errors.New("not an index snapshot (the next open replays the whole log)")
	}
	if v := binary.LittleEndian.Uint32(head[8:]); v != snapshotFormat {
		return 0, fmt.Errorf("snapshot format %d is not %d (the next open replays the whole log)", v, snapshotFormat)
	}
	return binary.LittleEndian.Uint64(head[16:]), nil
}
