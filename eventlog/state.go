package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

// The log keeps a small state file beside its segments, log-state.json,
// replaced atomically (written, fsynced, renamed) whenever it changes:
//
//   - start: the first position of the log. It moves only when retention
//     removes segments, and is written before they are removed, so that a
//     missing oldest segment that retention did not remove is known for
//     the data loss it is.
//   - epochs: the log's history of recovery cuts. A cut that removes
//     positions starts a new epoch from its first position: positions from
//     there on are given to new records, and a reader that saw the old ones
//     must not resume as if nothing happened (CheckEpoch).
//   - durable: the last position known to be on disk in the current epoch,
//     recorded at each open (recovery fsyncs what it keeps), each clean
//     close, and whenever the store's index snapshot covers a later
//     position (NoteDurable). Those records were acknowledged: damage at or
//     before it is never taken for a torn tail, and a log found ending
//     before it has lost them.
//   - newest: the base of the newest segment file, recorded when a roll
//     created it, before any of its records is acknowledged, so that a
//     newest segment removed or lost is known for the data loss it is.
//   - losses: the last maxLosses findings of data loss, so that later opens
//     (Health, stat, verify) keep reporting a loss the bytes no longer show.
const stateName = "log-state.json"

// maxLosses bounds the losses the state file remembers.
const maxLosses = 16

// Epoch is one stretch of the log's history between recovery cuts.
type Epoch struct {
	Epoch uint64 `json:"epoch"`
	// From is the first position whose record belongs to this epoch: the
	// first position the cut that began it removed (1 for the first epoch).
	From uint64    `json:"from"`
	At   time.Time `json:"at"`
	// Cuts is what the recovery that began the epoch cut.
	Cuts []Cut `json:"cuts,omitempty"`
}

type logState struct {
	Format int     `json:"format"`
	Start  uint64  `json:"start"`
	Epochs []Epoch `json:"epochs"`
	// Running is the durability mode of the process that has the log open
	// in interval or none mode, cleared by a clean Close: found set at
	// Open, the last such run ended without closing.
	Running string `json:"running,omitempty"`
	Durable uint64 `json:"durable,omitempty"`
	Newest  uint64 `json:"newest,omitempty"`
	Losses  []Loss `json:"losses,omitempty"`
	CRC     string `json:"crc32c,omitempty"`
}

// Loss is a finding of recovery that lost acknowledged records or made
// them unreadable: damaged records (kind "damage"), segment files that
// retention did not remove gone ("missing"), a log that ends before a
// position known to be on disk ("shortened"), a cut in a mode that
// acknowledges before fsyncing ("cut"), or a start the log cannot prove
// ("start"). Each is recorded in the state file when first found, so that
// it is reported by every later open and by Verify too, also once the
// bytes no longer show it.
type Loss struct {
	Kind  string    `json:"kind"`
	At    time.Time `json:"at"`
	Epoch uint64    `json:"epoch"`
	// Segment and Offset say where, when the loss is in a file.
	Segment string `json:"segment,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	// FirstPosition and LastPosition bound the positions lost; a
	// LastPosition of 0 means the end is unknown.
	FirstPosition uint64 `json:"first_position"`
	LastPosition  uint64 `json:"last_position,omitempty"`
	Reason        string `json:"reason"`
}

func (ls Loss) same(o Loss) bool {
	return ls.Kind == o.Kind && ls.Segment == o.Segment && ls.Offset == o.Offset &&
		ls.FirstPosition == o.FirstPosition && ls.LastPosition == o.LastPosition && ls.Epoch == o.Epoch
}

// Positions describes the positions lost, "positions F-L", or "positions
// from F on" when the end is unknown.
func (ls Loss) Positions() string {
	switch {
	case ls.LastPosition == 0:
		return fmt.Sprintf("positions from %d on", ls.FirstPosition)
	case ls.LastPosition == ls.FirstPosition:
		return fmt.Sprintf("position %d", ls.FirstPosition)
	}
	return fmt.Sprintf("positions %d-%d", ls.FirstPosition, ls.LastPosition)
}

func (ls Loss) String() string {
	s := fmt.Sprintf("%s at %s (epoch %d), %s", ls.Kind, ls.At.Format(time.RFC3339), ls.Epoch, ls.Positions())
	if ls.Segment != "" {
		s += fmt.Sprintf(", segment %s offset %d", ls.Segment, ls.Offset)
	}
	return s + ": " + ls.Reason
}

// Missing is a range of positions whose segment files are gone although
// retention did not remove them: data loss, reported by Open and Verify,
// and refused on read with a *rewind.CorruptionError.
type Missing struct {
	FirstPosition uint64 `json:"first_position"`
	LastPosition  uint64 `json:"last_position"`
}

func (m Missing) String() string {
	return fmt.Sprintf("positions %d-%d are missing: the segment files that held them were removed or lost, "+
		"and retention did not remove them", m.FirstPosition, m.LastPosition)
}

func (st *logState) encode() []byte {
	c := *st
	c.CRC = ""
	body, _ := json.Marshal(&c)
	c.CRC = fmt.Sprintf("%08x", crc32.Checksum(body, castagnoli))
	out, _ := json.MarshalIndent(&c, "", "  ")
	return append(out, '\n')
}

func decodeState(b []byte) (*logState, error) {
	var st logState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("not a log state: %w", err)
	}
	c := st
	c.CRC = ""
	body, _ := json.Marshal(&c)
	if want := fmt.Sprintf("%08x", crc32.Checksum(body, castagnoli)); st.CRC != want {
		return nil, fmt.Errorf("checksum mismatch (stored %q, computed %q)", st.CRC, want)
	}
	if st.Format != 1 {
		return nil, fmt.Errorf("unsupported format %d (this build reads format 1)", st.Format)
	}
	if st.Start == 0 || len(st.Epochs) == 0 || st.Epochs[0].Epoch != 1 {
		return nil, errors.New("no start position or no first epoch")
	}
	for i := 1; i < len(st.Epochs); i++ {
		if st.Epochs[i].Epoch != st.Epochs[i-1].Epoch+1 || st.Epochs[i].From == 0 {
			return nil, errors.New("epochs out of order")
		}
	}
	return &st, nil
}

// readState reads the state file; a missing one is (nil, nil).
func readState(fs vfs.FS, dir string) (*logState, error) {
	b, err := vfs.ReadFile(fs, filepath.Join(dir, stateName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stateName, err)
	}
	st, err := decodeState(b)
	if err != nil {
		return nil, &rewind.CorruptionError{Segment: stateName, Reason: err.Error() + "; restore " + stateName +
			" from a backup. Without one, move it aside (keep it: it holds the log's epochs and recorded losses) and " +
			"open again: the state is then rebuilt from the segments, and the open reports that where the log starts " +
			"and its earlier history can no longer be proven"}
	}
	return st, nil
}

// saveState replaces the state file durably. Called with l.stateMu held.
func (l *Log) saveState(st *logState) error {
	st.Format = 1
	if err := vfs.WriteFileAtomic(l.fs, l.dir, filepath.Join(l.dir, stateName), st.encode()); err != nil {
		return fmt.Errorf("write %s: %w", stateName, err)
	}
	l.state = st
	return nil
}

// beginEpoch records that recovery is about to cut positions from
// cut.FirstPosition on; it is written before the cut, so that a crash in
// between cuts again into yet another epoch rather than into none.
func (l *Log) beginEpoch(cut Cut) error {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	next := *l.state
	last := next.Epochs[len(next.Epochs)-1]
	next.Epochs = append(append([]Epoch(nil), next.Epochs...),
		Epoch{Epoch: last.Epoch + 1, From: cut.FirstPosition, At: l.cfg.Now().UTC(), Cuts: []Cut{cut}})
	// What is known on disk is known in this epoch only.
	next.Durable = min(next.Durable, cut.FirstPosition-1)
	return l.saveState(&next)
}

// markRunning records at Open that the log is open in its durability mode,
// and that everything up to next-1 is on disk (recovery fsynced what it
// kept), first starting a new epoch if the last run ended without Close in
// a mode that acknowledges before fsyncing: its readers may have seen
// positions from next on that the crash took back, and that new records
// now get. No bytes show that loss (a power cut simply drops what was not
// synced), so the unclean end itself is the evidence.
func (l *Log) markRunning(next uint64, cutNow bool) error {
	l.stateMu.Lock()
	prev := l.state.Running
	l.stateMu.Unlock()
	if prev != "" && prev != Sync.String() && !cutNow {
		cut := Cut{FirstPosition: next, Reason: fmt.Sprintf("the last run (durability %s) ended without closing the log: "+
			"positions from %d on may have been seen by readers and lost", prev, next)}
		if err := l.beginEpoch(cut); err != nil {
			return err
		}
		l.cfg.Logger.Warn("eventlog: the last run ended without closing the log; a new epoch begins",
			"durability", prev, "epoch", l.Epoch(), "from_position", next)
	}
	// Only a mode that acknowledges before fsyncing needs the mark: in
	// sync mode a crash takes back nothing a reader saw.
	mode := ""
	if l.cfg.Durability != Sync {
		mode = l.cfg.Durability.String()
	}
	return l.setRunning(mode, next-1)
}

// setRunning records that the log is open in a mode, or closed cleanly
// (""), and that positions up to durable are on disk, unless the state
// says so already.
func (l *Log) setRunning(mode string, durable uint64) error {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.state.Running == mode && l.state.Durable >= durable {
		return nil
	}
	next := *l.state
	next.Running = mode
	next.Durable = max(next.Durable, durable)
	return l.saveState(&next)
}

// NoteDurable records that position pos, fsynced, is known to have been
// acknowledged (the store calls it when its index snapshot covers pos):
// a later open then never takes damage at or before pos for a torn tail,
// and reports a log that ends before it as data loss.
func (l *Log) NoteDurable(pos uint64) error {
	if pos > l.Last() {
		return fmt.Errorf("eventlog: position %d is not written yet (last %d)", pos, l.Last())
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if pos <= l.state.Durable {
		return nil
	}
	next := *l.state
	next.Durable = pos
	return l.saveState(&next)
}

// durable returns the last position known to be on disk in this epoch.
func (l *Log) durable() uint64 {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return l.state.Durable
}

// setNewest records the base of a segment a roll created, before any of
// its records is acknowledged.
func (l *Log) setNewest(base uint64) error {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.state.Newest >= base {
		return nil
	}
	next := *l.state
	next.Newest = base
	return l.saveState(&next)
}

// recordLosses adds losses to the state file's record, unless recorded
// already, keeping the last maxLosses.
func (l *Log) recordLosses(losses ...Loss) error {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	next := *l.state
	next.Losses = append([]Loss(nil), next.Losses...)
	added := false
	for _, ls := range losses {
		if !slices.ContainsFunc(next.Losses, ls.same) {
			next.Losses = append(next.Losses, ls)
			added = true
		}
	}
	if !added {
		return nil
	}
	if n := len(next.Losses); n > maxLosses {
		next.Losses = next.Losses[n-maxLosses:]
	}
	return l.saveState(&next)
}

// Losses returns the data losses recorded in the state file, oldest
// first: those this open found and those earlier opens found (at most
// the last 16). They stay recorded after the bytes stop showing them.
func (l *Log) Losses() []Loss {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return append([]Loss(nil), l.state.Losses...)
}

// ReportShortened is how the store reports that the log ends before a
// position it knows was acknowledged (its index snapshot's), when the log
// itself had no record of that position: the loss is recorded, and since
// the positions after the log's end will be given to new records, a new
// epoch begins at the first of them, as a cut does. It does nothing when
// the log reaches last, or when this open already began an epoch there.
func (l *Log) ReportShortened(last uint64, reason string) error {
	end := l.Last()
	if last <= end {
		return nil
	}
	first := end + 1
	l.stateMu.Lock()
	e := l.state.Epochs[len(l.state.Epochs)-1]
	found := slices.ContainsFunc(l.state.Losses, func(ls Loss) bool {
		return ls.Kind == "shortened" && ls.FirstPosition == first && ls.Epoch == e.Epoch
	})
	l.stateMu.Unlock()
	if found {
		return nil // this open found the loss itself
	}
	if e.From != first || e.At.Before(l.openedAt) {
		if err := l.beginEpoch(Cut{FirstPosition: first, Reason: reason}); err != nil {
			return err
		}
	}
	return l.recordLosses(Loss{Kind: "shortened", At: l.cfg.Now().UTC(), Epoch: l.Epoch(), FirstPosition: first,
		LastPosition: last, Reason: reason})
}

// moveStart records a new first position before retention removes the
// segments before it.
func (l *Log) moveStart(start uint64) error {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if start <= l.state.Start {
		return nil
	}
	next := *l.state
	next.Start = start
	return l.saveState(&next)
}

// Epoch returns the log's current epoch: 1, plus one for each recovery
// that cut positions from the log.
func (l *Log) Epoch() uint64 {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return l.state.Epochs[len(l.state.Epochs)-1].Epoch
}

// Epochs returns the log's history of recovery cuts, oldest first.
func (l *Log) Epochs() []Epoch {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return append([]Epoch(nil), l.state.Epochs...)
}

// Missing returns the ranges of positions whose segment files are gone
// although retention did not remove them.
func (l *Log) Missing() []Missing { return l.missing }

// CheckEpoch checks that a reader which has seen the log up to position
// after, in epoch epoch, can resume after it: it fails with a
// *rewind.EpochError when a recovery cut since removed a position at or
// before after (the positions it saw now hold other records), or when the
// epoch is newer than the log's (this is not the log it read). An epoch
// of 0 means unknown: nothing is checked.
func (l *Log) CheckEpoch(after, epoch uint64) error {
	if epoch == 0 {
		return nil
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	current := l.state.Epochs[len(l.state.Epochs)-1].Epoch
	if epoch > current {
		return &rewind.EpochError{After: rewind.Position(after), Epoch: epoch, Current: current}
	}
	for _, e := range l.state.Epochs {
		if e.Epoch > epoch && e.From <= after {
			return &rewind.EpochError{After: rewind.Position(after), Epoch: epoch, Current: current, CutAt: rewind.Position(e.From)}
		}
	}
	return nil
}

// loadState reads the state file, or makes it for a log that has none:
// a new log, whose first segment file is created first (so that a log with
// a state file always has a segment, and a crash in between leaves a log
// that starts at 1), or a log written before the file existed or whose file
// was removed (which starts at its first segment, reported as possible
// data loss when that is not 1). It removes segments that an interrupted retention
// left before the start, and returns the bases of the segments to load.
func (l *Log) loadState(bases []uint64) ([]uint64, error) {
	st, err := readState(l.fs, l.dir)
	if err != nil {
		return nil, err
	}
	first := Epoch{Epoch: 1, From: 1, At: l.cfg.Now().UTC()}
	switch {
	case st == nil && len(bases) == 0:
		s := l.newSegment(1)
		if err := l.createSegmentFile(s); err != nil {
			return nil, err
		}
		s.closeFiles()
		return []uint64{1}, l.saveState(&logState{Start: 1, Epochs: []Epoch{first}, Newest: 1})
	case st == nil:
		// A log written before the state file existed, or one whose state
		// file was removed: nothing proves that positions before the first
		// segment were removed by retention rather than lost, and that is
		// reported (recordFindings) as possible data loss.
		l.cfg.Logger.Warn("eventlog: "+stateName+" is missing; recording where the log starts from its segments", "start", bases[0])
		if bases[0] > 1 {
			l.startUnproven = bases[0]
		}
		if err := l.saveState(&logState{Start: bases[0], Epochs: []Epoch{first}, Newest: bases[len(bases)-1]}); err != nil {
			return nil, err
		}
		return bases, nil
	case len(bases) == 0:
		return nil, &rewind.CorruptionError{Segment: segmentName(st.Start), Reason: fmt.Sprintf("no segment files, "+
			"but %s says the log starts at position %d: every segment was removed or lost; restore them from a "+
			"backup, or remove %s to start an empty log", stateName, st.Start, stateName)}
	}
	l.state = st
	removed := false
	for len(bases) > 0 && bases[0] < st.Start {
		// Retention recorded the new start, then was interrupted before
		// removing this segment: finish its work.
		p := filepath.Join(l.dir, segmentName(bases[0]))
		for _, f := range []string{p, strings.TrimSuffix(p, segmentExt) + indexExt} {
			if err := l.fs.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("finish retention: remove %s: %w", f, err)
			}
		}
		l.cfg.Logger.Info("eventlog: removed a segment an interrupted retention left behind", "segment", filepath.Base(p))
		bases, removed = bases[1:], true
	}
	if removed {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return nil, fmt.Errorf("sync directory %s: %w", l.dir, err)
		}
	}
	if len(bases) > 0 && bases[0] > st.Start {
		l.missing = append(l.missing, Missing{FirstPosition: st.Start, LastPosition: bases[0] - 1})
	}
	return bases, nil
}

// missingAt returns the missing range that holds pos, if any.
func (l *Log) missingAt(pos uint64) (Missing, bool) {
	for _, m := range l.missing {
		if pos >= m.FirstPosition && pos <= m.LastPosition {
			return m, true
		}
	}
	return Missing{}, false
}
