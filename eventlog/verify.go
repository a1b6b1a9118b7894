package eventlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// Problem is one thing Verify found wrong.
type Problem struct {
	Segment  string `json:"segment"`
	Offset   int64  `json:"offset"`
	Position uint64 `json:"position,omitempty"`
	Reason   string `json:"reason"`
	// Tail is true for damage after the last complete batch of the last
	// segment: the next open cuts it (see Cut).
	Tail bool `json:"tail"`
}

func (p Problem) String() string {
	s := fmt.Sprintf("segment %s offset %d", p.Segment, p.Offset)
	if p.Position != 0 {
		s += fmt.Sprintf(" position %d", p.Position)
	}
	s += ": " + p.Reason
	if p.Tail {
		s += " (torn tail: the next open cuts it)"
	}
	return s
}

// VerifyReport is the result of a full checksum scan.
type VerifyReport struct {
	Segments      int       `json:"segments"`
	Records       int64     `json:"records"`
	Bytes         int64     `json:"bytes"`
	FirstPosition uint64    `json:"first_position"`
	LastPosition  uint64    `json:"last_position"`
	Problems      []Problem `json:"problems"`
	// Recorded lists the data losses that opens of the log found earlier
	// and recorded in its state file (see Loss). They are history: the
	// bytes may no longer show them (a lost tail, a missing segment whose
	// positions were given to new records), so they do not make the report
	// fail, but they are always printed.
	Recorded []Loss `json:"recorded_losses,omitempty"`
}

// OK reports whether nothing was found wrong in the files as they are now.
// Losses recorded earlier (Recorded) do not count.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Progress receives the bytes verified so far and the total.
type Progress func(done, total int64)

// Verify scans every record of the log in dir, which must not be open
// elsewhere, checking checksums, position continuity, batch boundaries and
// segment headers. It changes nothing. Damage in the last segment's tail is
// reported with Tail set; any other problem is corruption.
func Verify(ctx context.Context, dir string, progress Progress) (VerifyReport, error) {
	return VerifyFS(ctx, vfs.Default, dir, progress)
}

// VerifyFS is Verify on the log in dir of fs.
func VerifyFS(ctx context.Context, fs vfs.FS, dir string, progress Progress) (VerifyReport, error) {
	lock, err := lockDir(fs, dir)
	if err != nil {
		return VerifyReport{}, err
	}
	defer lock.unlock()
	bases, err := listSegments(fs, dir)
	if err != nil {
		return VerifyReport{}, err
	}
	var stateProblems []Problem
	st, err := readState(fs, dir)
	var ce *rewind.CorruptionError
	switch {
	case errors.As(err, &ce):
		stateProblems = append(stateProblems, Problem{Segment: stateName, Reason: ce.Reason})
	case err != nil:
		return VerifyReport{}, err
	case st == nil && len(bases) > 0 && bases[0] > 1:
		stateProblems = append(stateProblems, Problem{Segment: stateName, Position: 1, Reason: fmt.Sprintf("possible data "+
			"loss: %s is missing and the first segment starts at position %d: nothing proves that retention removed "+
			"positions 1-%d; they may have been lost", stateName, bases[0], bases[0]-1)})
	case st != nil:
		for len(bases) > 0 && bases[0] < st.Start {
			bases = bases[1:] // left by an interrupted retention; the next open removes them
		}
		first := st.Start
		if len(bases) > 0 {
			first = bases[0]
		} else if st.Start > 0 {
			first = st.Start + 1
			stateProblems = append(stateProblems, Problem{Segment: segmentName(st.Start), Position: st.Start,
				Reason: fmt.Sprintf("no segment files, but the log starts at position %d: every segment was removed or lost", st.Start)})
		}
		if first > st.Start && len(bases) > 0 {
			m := Missing{FirstPosition: st.Start, LastPosition: first - 1}
			stateProblems = append(stateProblems, Problem{Segment: segmentName(st.Start), Position: st.Start,
				Reason: "data loss: " + m.String()})
		}
	}
	files := make([]string, len(bases))
	var total int64
	for i, base := range bases {
		files[i] = filepath.Join(dir, segmentName(base))
		if st, err := fs.Stat(files[i]); err == nil {
			total += st.Size()
		}
	}
	var durable uint64
	if st != nil {
		durable = st.Durable
	}
	rep, err := verifyFiles(ctx, fs, bases, files, total, 0, durable, progress)
	rep.Problems = append(stateProblems, rep.Problems...)
	if err != nil || st == nil {
		return rep, err
	}
	rep.Recorded = st.Losses
	// What Open would find: a log ending before what the state file knows
	// was acknowledged, or without the newest segment a roll recorded.
	end := rep.LastPosition
	if n := len(rep.Problems); n > 0 && rep.Problems[n-1].Tail {
		end = min(end, rep.Problems[n-1].Position-1)
	}
	if len(bases) > 0 && st.Newest > bases[len(bases)-1] {
		rep.Problems = append(rep.Problems, Problem{Segment: segmentName(st.Newest), Position: end + 1,
			Reason: fmt.Sprintf("data loss: segment %s, which %s records as the newest, is gone: positions from %d on "+
				"were removed or lost", segmentName(st.Newest), stateName, end+1)})
	} else if len(bases) > 0 && st.Durable > end {
		rep.Problems = append(rep.Problems, Problem{Segment: segmentName(bases[len(bases)-1]), Position: end + 1,
			Reason: fmt.Sprintf("data loss: the log ends at position %d, but %s records that positions up to %d were "+
				"acknowledged and on disk", end, stateName, st.Durable)})
	}
	return rep, nil
}

// Verify scans every record of the open log up to Last, like the package
// function Verify. Tail damage cannot exist in an open log: recovery cut it.
func (l *Log) Verify(ctx context.Context, progress Progress) (VerifyReport, error) {
	segs := *l.segments.Load()
	limit := l.Last()
	var bases []uint64
	var files []string
	var total int64
	l.mu.Lock()
	for _, s := range segs {
		if s.f != nil && s.base <= limit {
			bases, files = append(bases, s.base), append(files, s.path)
			total += s.size
		}
	}
	l.mu.Unlock()
	var missing []Problem
	for _, m := range l.missing {
		missing = append(missing, Problem{Segment: segmentName(m.FirstPosition), Position: m.FirstPosition,
			Reason: "data loss: " + m.String()})
	}
	if len(bases) == 0 {
		return VerifyReport{FirstPosition: l.First(), LastPosition: limit, Problems: missing}, nil
	}
	rep, err := verifyFiles(ctx, l.fs, bases, files, total, limit, 0, progress)
	rep.Recorded = l.Losses()
	rep.Problems = append(missing, rep.Problems...)
	return rep, err
}

// verifyFiles scans the segment files. Damage at or before durable, known
// to have been acknowledged, is never a torn tail.
func verifyFiles(ctx context.Context, fs vfs.FS, bases []uint64, files []string, total int64, limit, durable uint64,
	progress Progress) (VerifyReport, error) {
	rep := VerifyReport{Segments: len(bases)}
	sc := newScanner(defaultScanBuffer)
	defer sc.release()
	var done int64
	opened := 0 // segments opened so far
	for i, base := range bases {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		name := filepath.Base(files[i])
		last := i == len(bases)-1
		problem := func(off int64, pos uint64, reason string, tail bool) {
			rep.Problems = append(rep.Problems, Problem{Segment: name, Offset: off, Position: pos, Reason: reason, Tail: tail})
		}
		f, err := fs.OpenFile(files[i], os.O_RDONLY, 0)
		if err != nil {
			if limit != 0 && os.IsNotExist(err) && opened == 0 {
				rep.Segments-- // removed by retention since the list was taken
				continue
			}
			return rep, fmt.Errorf("open segment: %w", err)
		}
		opened++
		res, size, damaged, err := verifySegment(f, name, base, sc, limit, durable)
		if err == nil && damaged != "" && res.records == 0 && res.orphans == 0 && res.dataEnd <= segmentHeaderSize {
			// Nothing after it: like Open, take it for an interrupted creation.
			err = &rewind.CorruptionError{Segment: name, Reason: "segment header: " + damaged}
		}
		var ce *rewind.CorruptionError
		if errors.As(err, &ce) {
			// Like Open, take a last segment whose header was never
			// completely written, with nothing after it, for a torn tail.
			dataEnd, zerr := lastNonZero(f, segmentHeaderSize)
			problem(0, 0, ce.Reason, last && limit == 0 && zerr == nil && dataEnd <= segmentHeaderSize)
			f.Close()
			continue
		}
		f.Close()
		if err != nil {
			return rep, err
		}
		if rep.FirstPosition == 0 {
			rep.FirstPosition = base
		}
		if opened > 1 && rep.LastPosition+1 < base {
			m := Missing{FirstPosition: rep.LastPosition + 1, LastPosition: base - 1}
			rep.Problems = append(rep.Problems, Problem{Segment: segmentName(m.FirstPosition), Position: m.FirstPosition,
				Reason: "data loss: " + m.String()})
		} else if opened > 1 && rep.LastPosition+1 != base {
			problem(0, base, fmt.Sprintf("segment starts at position %d but the previous one ends at %d", base, rep.LastPosition), false)
		}
		if damaged != "" {
			problem(0, 0, "segment header: "+damaged+"; its records are intact and read without it "+
				"(the base position is the file name's)", false)
		}
		rep.Records += res.records
		rep.LastPosition = res.last
		rep.Bytes += res.end
		for _, d := range res.damage {
			problem(d.Offset, d.FirstPosition, fmt.Sprintf("%s; positions %d-%d cannot be read, and intact records "+
				"follow from offset %d, so this is corruption, not a torn write", d.Reason, d.FirstPosition, d.LastPosition, d.End), false)
		}
		// Tail damage before what is known acknowledged is kept by Open,
		// not cut.
		tail := last && limit == 0 && res.last >= durable
		if last && limit == 0 && !tail && (res.stop != nil || res.orphans > 0 || res.dataEnd > res.end) {
			problem(res.end, res.last+1, fmt.Sprintf("data loss: the records after the last complete batch are damaged or "+
				"gone, but positions up to %d were acknowledged (recorded in %s): the next open keeps the bytes and refuses "+
				"positions %d-%d on read", durable, stateName, res.last+1, durable), false)
			rep.LastPosition = durable
		}
		switch {
		case last && limit == 0 && !tail:
		case res.stop != nil:
			problem(res.stopOff, res.last+1+uint64(res.orphans), res.stop.Error(), tail)
		case res.orphans > 0:
			problem(res.end, res.last+1, fmt.Sprintf("incomplete batch: %d records without the batch's last record", res.orphans), tail)
		case res.dataEnd > res.end:
			problem(res.end, res.last+1, fmt.Sprintf("%d unexpected bytes after the end of the data", res.dataEnd-res.end), tail)
		case !last && res.end != size:
			problem(res.end, res.last+1, fmt.Sprintf("sealed segment has %d bytes after its last record", size-res.end), false)
		}
		done += size
		if progress != nil {
			progress(done, total)
		}
	}
	return rep, nil
}

// verifySegment checks the segment file f: its header, then every record.
// It returns why the header is damaged, if it is but the records can be
// read without it (see checkSegmentHeader).
func verifySegment(f vfs.File, name string, base uint64, sc *scanner, limit, durable uint64) (segmentScan, int64, string, error) {
	damaged, err := checkSegmentHeader(f, name, base)
	if err != nil {
		return segmentScan{}, 0, "", err
	}
	size, err := f.Size()
	if err != nil {
		return segmentScan{}, 0, "", err
	}
	res, err := scanSegment(f, base, 1<<30, sc, limit, durable)
	return res, size, damaged, err
}
