package eventlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/eventlog/vfs"
)

var errLocked = rewind.ErrLocked

// Entry is one record to append: an opaque payload and a caller-defined kind.
type Entry struct {
	Kind    uint8
	Payload []byte
}

// Log is a durable, append-only sequence of checksummed records in segment
// files. It is safe for concurrent use.
type Log struct {
	dir  string
	cfg  Config
	fs   vfs.FS
	lock *dirLock

	// mu guards the fields below it and the Log.mu-guarded fields of every
	// segment. It is never held during I/O except by rare admin operations
	// (Close, retention's list update).
	mu       sync.Mutex
	segs     []*segment // in base order; the last is the active segment
	next     uint64     // position of the next record
	lastTs   int64
	pending  *group
	flushing *group // the last group taken by the flusher
	spareBuf []byte
	failed   *rewind.FailedError // the write or fsync that failed the log
	closed   bool

	segments atomic.Pointer[[]*segment] // a copy of segs for readers
	visible  atomic.Uint64              // last position readers may see
	first    atomic.Uint64              // first position still in the log

	notifyMu sync.Mutex
	notifyCh chan struct{}

	counters       counters
	pendingAppends atomic.Int64 // appends in the pending group

	kick     chan struct{}
	zeroKick chan *segment // nil unless Sync and preallocating
	retain   chan struct{} // a segment was sealed: apply retention
	stop     chan struct{}
	wg       sync.WaitGroup
	recovery []Cut
	damage   []Damage  // found by recovery: in the newest segment's records, in any segment's header
	missing  []Missing // found by Open: segments gone that retention did not remove
	openedAt time.Time // when Open ran, by Config.Now
	// shortened: Open found the log ending before what the state file
	// knows was acknowledged, and began an epoch. startUnproven: the state
	// file was missing and the first segment starts here, after 1.
	shortened     bool
	startUnproven uint64

	retainMu sync.Mutex // one retention pass at a time
	stateMu  sync.Mutex // serialises changes of the state file
	state    *logState  // as last written; replaced, never changed in place

	meanGroupBytes float64 // flusher only
}

// group is what one flush writes: the records of every append made while
// the previous flush was running. Appenders wait on done.
type group struct {
	buf   []byte
	spans []span
	idx   []pendingIndex
	seal  []*segment // segments sealed by this group, sealed before its spans are written
	// created lists the segments whose files writing this group created
	// (or tried to): undoing the group removes them.
	created []*segment
	first   uint64
	last    uint64
	sync    time.Duration // fsync time
	done    chan struct{}
	err     error
}

type span struct {
	seg        *segment
	off        int64
	start, end int
}

type pendingIndex struct {
	seg *segment
	e   indexEntry
}

func newGroup(buf []byte) *group { return &group{buf: buf[:0], done: make(chan struct{})} }

// Open opens or creates the log in dir, recovering its tail: a torn or
// corrupt tail, or the records of a batch that was not completely written,
// are cut, and each cut is logged and returned by Recovery.
func Open(dir string, cfg Config) (*Log, error) {
	l, err := open(dir, cfg)
	if err != nil && rewind.IsDiskFailure(err) && !errors.Is(err, rewind.ErrFailed) {
		// A full or failing disk while creating or opening the files
		// is the store's disk failing, as it is on a later write.
		return nil, &rewind.FailedError{Op: "open the log in " + dir, Cause: err}
	}
	return l, err
}

func open(dir string, cfg Config) (*Log, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := c.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := lockDir(c.FS, dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		dir:      dir,
		cfg:      c,
		fs:       c.FS,
		lock:     lock,
		notifyCh: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		retain:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
		openedAt: c.Now().UTC(),
	}
	if err := l.load(); err != nil {
		for _, s := range l.segs {
			s.closeFiles()
		}
		lock.unlock()
		return nil, err
	}
	err = l.markRunning(l.next, len(l.recovery) > 0 || l.shortened)
	if err == nil {
		err = l.recordFindings()
	}
	if err != nil {
		for _, s := range l.segs {
			s.closeFiles()
		}
		lock.unlock()
		return nil, err
	}
	l.pending = newGroup(nil)
	l.publishSegments()
	l.visible.Store(l.next - 1)
	l.first.Store(l.state.Start)
	for _, cut := range l.recovery {
		l.cfg.Logger.Warn("eventlog: recovery cut the log's tail", cut.attrs()...)
	}
	for _, m := range l.missing {
		l.cfg.Logger.Error("eventlog: data loss: "+m.String()+"; reads of them fail; restore the segments from a backup",
			"first_position", m.FirstPosition, "last_position", m.LastPosition)
	}
	l.wg.Add(1)
	go l.flusher()
	if c.Durability == Sync && !c.NoPreallocate {
		l.zeroKick = make(chan *segment, 1)
		l.wg.Add(1)
		go l.zeroer()
	}
	if c.Durability == Interval { // fsync the active segment every SyncInterval
		l.wg.Add(1)
		go l.every(c.SyncInterval, nil, func() { l.syncActive() })
	}
	if c.MaxAge > 0 || c.MaxBytes > 0 {
		l.wg.Add(1)
		go l.every(c.RetentionInterval, l.retain, func() {
			if _, err := l.ApplyRetention(); err != nil {
				l.cfg.Logger.Error("eventlog: retention failed", "err", err)
			}
		})
	}
	return l, nil
}

func (l *Log) publishSegments() {
	segs := append([]*segment(nil), l.segs...)
	l.segments.Store(&segs)
}

// FS returns the filesystem the log's files live in.
func (l *Log) FS() vfs.FS { return l.fs }

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// Durability returns the configured durability mode.
func (l *Log) Durability() Durability { return l.cfg.Durability }

// First returns the first position still in the log. It is 1 until
// retention removes a segment. When the log is empty, First is Last()+1.
func (l *Log) First() uint64 { return l.first.Load() }

// Last returns the last position readers can see: in Sync mode the last
// fsynced record, otherwise the last record written to the operating system.
func (l *Log) Last() uint64 { return l.visible.Load() }

// Assigned returns the last position given to an append, acknowledged or not.
func (l *Log) Assigned() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next - 1
}

// Changed returns a channel that is closed when Last next advances. Take
// the channel before checking Last to never miss an advance.
func (l *Log) Changed() <-chan struct{} {
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	return l.notifyCh
}

func (l *Log) notify() {
	l.notifyMu.Lock()
	close(l.notifyCh)
	l.notifyCh = make(chan struct{})
	l.notifyMu.Unlock()
}

// counters are updated by the flusher without locks.
type counters struct {
	flushes, records, fsyncs, fsyncNanos atomic.Int64
}

// Stats counts the log's segments and bytes and what the flusher did since
// Open: Records/Flushes is the mean group-commit size, FsyncNanos/Fsyncs the
// mean fsync latency.
type Stats struct {
	Segments   int
	Bytes      int64
	Flushes    int64
	Records    int64
	Fsyncs     int64
	FsyncNanos int64
}

// Stats returns the log's current counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{Segments: len(l.segs), Flushes: l.counters.flushes.Load(), Records: l.counters.records.Load(),
		Fsyncs: l.counters.fsyncs.Load(), FsyncNanos: l.counters.fsyncNanos.Load()}
	for _, s := range l.segs {
		st.Bytes += s.size
	}
	return st
}

// Recovery returns what opening the log cut from its tail.
func (l *Log) Recovery() []Cut { return l.recovery }

// Damage returns the damage that opening the log found: damaged records of
// its newest segment with intact records after them (kept, and refused on
// read), and damaged segment headers in any segment (the records are read
// without them; see Damage.Header).
func (l *Log) Damage() []Damage { return l.damage }

// Appended is the result of Append.
type Appended struct {
	// First is the position of the batch's first record; the others follow
	// without gaps.
	First uint64
	// Timestamp is the batch's timestamp, Unix nanoseconds.
	Timestamp int64
	g         *group
}

// Wait blocks until the batch is acknowledged under the log's durability
// mode. If ctx ends first, the batch may or may not become durable.
func (a Appended) Wait(ctx context.Context) error {
	select {
	case <-a.g.done:
		return a.g.err
	default:
	}
	select {
	case <-a.g.done:
		return a.g.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Append assigns positions to entries, which form one atomic batch: after a
// crash either all of them are in the log or none. It does not wait for
// durability; call Wait on the result.
func (l *Log) Append(entries []Entry) (Appended, error) { return l.append(entries, 0) }

// AppendAt is Append with the batch's timestamp (Unix nanoseconds) given
// instead of read from the clock, for a copy from another store that keeps
// its recorded-at times. ts must not be before the last record's.
func (l *Log) AppendAt(entries []Entry, ts int64) (Appended, error) {
	if ts <= 0 {
		return Appended{}, &rewind.ValidationError{Field: "timestamp", Value: fmt.Sprint(ts), Reason: "must be positive"}
	}
	return l.append(entries, ts)
}

func (l *Log) append(entries []Entry, at int64) (Appended, error) {
	if len(entries) == 0 {
		return Appended{}, &rewind.ValidationError{Field: "batch", Reason: "must hold at least one record"}
	}
	need := int64(0)
	for _, e := range entries {
		if len(e.Payload) == 0 || len(e.Payload) > MaxPayload {
			return Appended{}, &rewind.LimitError{Limit: "record payload", Max: MaxPayload, Got: int64(len(e.Payload))}
		}
		need += int64(recordSize(len(e.Payload)))
	}
	if max := l.cfg.SegmentSize - segmentHeaderSize; need > max {
		return Appended{}, &rewind.LimitError{Limit: "batch bytes", Max: max, Got: need,
			Hint: "a batch must fit in one segment: split it or raise the segment size"}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Appended{}, fmt.Errorf("%w: the log is closed", rewind.ErrClosed)
	}
	if l.failed != nil {
		return Appended{}, l.failed
	}
	if at != 0 && at < l.lastTs {
		return Appended{}, &rewind.ValidationError{Field: "timestamp", Value: fmt.Sprint(at),
			Reason: fmt.Sprintf("goes back in time: the log's last record has %d", l.lastTs)}
	}
	g := l.pending
	seg := l.segs[len(l.segs)-1]
	if seg.size+need > l.cfg.SegmentSize && seg.last >= seg.base {
		seg = l.roll(g)
	}
	ts := at
	if at == 0 {
		ts = l.cfg.Now().UnixNano()
		if ts < l.lastTs {
			ts = l.lastTs
		}
	}
	pos, off, start := l.next, seg.size, len(g.buf)
	for i, e := range entries {
		if len(seg.index) == 0 || off-seg.index[len(seg.index)-1].off >= int64(l.cfg.IndexInterval) {
			ie := indexEntry{pos: pos, off: off, ts: ts}
			seg.index = append(seg.index, ie)
			g.idx = append(g.idx, pendingIndex{seg, ie})
		}
		var flags uint8
		if i == len(entries)-1 {
			flags = flagBatchEnd
		}
		g.buf = appendRecord(g.buf, pos, ts, e.Kind, flags, e.Payload)
		seg.lastOff = off
		off += int64(recordSize(len(e.Payload)))
		pos++
	}
	if n := len(g.spans); n > 0 && g.spans[n-1].seg == seg {
		g.spans[n-1].end = len(g.buf)
	} else {
		g.spans = append(g.spans, span{seg: seg, off: seg.size, start: start, end: len(g.buf)})
	}
	first := l.next
	seg.size, seg.last, seg.lastTs = off, pos-1, ts
	if seg.firstTs == 0 {
		seg.firstTs = ts
	}
	if len(g.spans) == 0 || g.first == 0 {
		g.first = first
	}
	l.next, l.lastTs, g.last = pos, ts, pos-1
	l.pendingAppends.Add(1)
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return Appended{First: first, Timestamp: ts, g: g}, nil
}

// roll seals the active segment and starts a new one. The files are
// handled by the flusher, in order, when it writes g.
func (l *Log) roll(g *group) *segment {
	old := l.segs[len(l.segs)-1]
	old.sealed = true
	g.seal = append(g.seal, old)
	// The index of a sealed segment ends with its last record, which gives
	// the segment's last position and time without reading it.
	seal := indexEntry{pos: old.last, off: old.lastOff, ts: old.lastTs, last: true}
	g.idx = append(g.idx, pendingIndex{old, seal})
	if n := len(old.index); old.index[n-1].pos == seal.pos {
		// A copy: readers hold snapshots of the index (indexSnapshot) and
		// read its entries without the lock, so none is written in place.
		idx := slices.Clone(old.index)
		idx[n-1].last = true
		old.index = idx
	} else {
		old.index = append(old.index, seal)
	}
	s := &segment{base: l.next, path: filepath.Join(l.dir, segmentName(l.next)), size: segmentHeaderSize, last: l.next - 1}
	s.refs.Store(1)
	l.segs = append(l.segs, s)
	l.publishSegments()
	return s
}

// flusher writes each group, fsyncs it in Sync mode, and then makes it
// visible and acknowledges its appends.
func (l *Log) flusher() {
	defer l.wg.Done()
	for {
		select {
		case <-l.kick:
		case <-l.stop:
			l.flushPending()
			return
		}
		l.flushPending()
	}
}

func (l *Log) flushPending() {
	for {
		l.mu.Lock()
		g := l.pending
		if len(g.spans) == 0 || l.failed != nil {
			l.mu.Unlock()
			return
		}
		l.flushing = g
		l.pending = newGroup(l.spareBuf)
		l.spareBuf = nil
		cohort := l.pendingAppends.Swap(0)
		l.mu.Unlock()

		err := l.write(g)
		if err == nil && len(g.created) > 0 {
			// Before any record of the new segment is acknowledged: a newest
			// segment gone is then known for the loss it is.
			err = l.setNewest(g.created[len(g.created)-1].base)
		}
		if err == nil {
			// An fsync that failed elsewhere meanwhile (the interval syncer,
			// Sync) taints this group too: after a failed fsync the kernel
			// may have dropped dirty pages that a later fsync does not redo.
			l.mu.Lock()
			if l.failed != nil {
				err = l.failed
			}
			l.mu.Unlock()
		}
		if err != nil {
			l.fail(err, g)
			return
		}
		l.counters.flushes.Add(1)
		l.counters.records.Add(int64(g.last - g.first + 1))
		if l.cfg.OnFlush != nil {
			l.cfg.OnFlush(FlushInfo{Records: int(g.last - g.first + 1), Bytes: len(g.buf), Sync: g.sync})
		}
		l.visible.Store(g.last)
		close(g.done)
		l.notify()
		if len(g.seal) > 0 {
			select {
			case l.retain <- struct{}{}:
			default:
			}
		}
		if cap(g.buf) <= 8<<20 {
			l.mu.Lock()
			l.spareBuf = g.buf[:0]
			l.mu.Unlock()
		}
		if l.cfg.Durability == Sync {
			l.gather(cohort)
		}
	}
}

// gather lets the appenders just woken by an acknowledgement run and
// append again before the next group is taken, so that one fsync covers
// all of them rather than the first few (group commit works best with full
// groups; PostgreSQL's commit_delay is the same idea). It yields the
// processor until as many appends are pending as the last group had, or
// until appends stop arriving, for at most gatherWait.
func (l *Log) gather(cohort int64) {
	if cohort <= 1 {
		runtime.Gosched()
		return
	}
	deadline := time.Now().Add(gatherWait)
	last, still := l.pendingAppends.Load(), 0
	for last < cohort && still < 3 && time.Now().Before(deadline) {
		runtime.Gosched()
		n := l.pendingAppends.Load()
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
}

// gatherWait bounds how long gather holds back an fsync: a fraction of the
// fsync itself (about 250µs on the disks we measured).
const gatherWait = 60 * time.Microsecond

// write performs the I/O of one group. A full segment is sealed before the
// next one is created, so that recovery only ever has to look at the last
// segment.
func (l *Log) write(g *group) error {
	sealed := 0
	var active *segment
	for _, sp := range g.spans {
		if sp.seg.f == nil {
			// Seal the segments before this one only: a group can roll
			// several times, and a later segment has no file yet.
			for ; sealed < len(g.seal) && g.seal[sealed].base < sp.seg.base; sealed++ {
				if err := l.seal(g.seal[sealed], g.idx); err != nil {
					return err
				}
			}
			g.created = append(g.created, sp.seg)
			if err := l.createSegmentFile(sp.seg); err != nil {
				return err
			}
		}
		end := sp.off + int64(sp.end-sp.start)
		kick := sp.seg.zero.beforeWrite(sp.off, end)
		if _, err := sp.seg.f.WriteAt(g.buf[sp.start:sp.end], sp.off); err != nil {
			return fmt.Errorf("write segment %s: %w", sp.seg.name(), err)
		}
		if kick && l.zeroKick != nil {
			l.zeroAheadIfUseful(sp.seg, len(g.buf))
		}
		active = sp.seg
	}
	for ; sealed < len(g.seal); sealed++ { // only when the new segment was already created
		if err := l.seal(g.seal[sealed], g.idx); err != nil {
			return err
		}
	}
	if err := writeIndex(active, g.idx); err != nil {
		return err
	}
	if l.cfg.Durability == Sync {
		start := time.Now()
		if err := l.fdatasync(active); err != nil {
			return err
		}
		g.sync = time.Since(start)
	}
	return nil
}

func (l *Log) fdatasync(s *segment) error {
	start := time.Now()
	if err := s.f.Datasync(); err != nil {
		return fmt.Errorf("fsync segment %s: %w", s.name(), err)
	}
	l.counters.fsyncs.Add(1)
	l.counters.fsyncNanos.Add(int64(time.Since(start)))
	return nil
}

// writeIndex appends the entries of s among entries to s's index file.
func writeIndex(s *segment, entries []pendingIndex) error {
	var buf []byte
	for _, p := range entries {
		if p.seg == s {
			buf = appendIndexEntry(buf, p.e)
		}
	}
	if len(buf) == 0 {
		return nil
	}
	if _, err := s.idx.WriteAt(buf, int64(s.idxWritten)*indexEntrySize); err != nil {
		return fmt.Errorf("write index of %s: %w", s.name(), err)
	}
	s.idxWritten += len(buf) / indexEntrySize
	return nil
}

// seal makes a full segment final: its data is trimmed to its real size and
// fsynced, and its index, which ends with an entry for its last record, is
// fsynced. After a seal, recovery never needs to look at the segment again.
func (l *Log) seal(s *segment, entries []pendingIndex) error {
	s.zero.seal()
	l.mu.Lock()
	size := s.size
	l.mu.Unlock()
	if err := s.f.Truncate(size); err != nil {
		return fmt.Errorf("trim segment %s: %w", s.name(), err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync segment %s: %w", s.name(), err)
	}
	if err := writeIndex(s, entries); err != nil {
		return err
	}
	if err := s.idx.Sync(); err != nil {
		return fmt.Errorf("fsync index of %s: %w", s.name(), err)
	}
	l.mu.Lock()
	s.durable = true
	l.mu.Unlock()
	return nil
}

// every runs fn every d, and whenever kick receives, until the log stops.
func (l *Log) every(d time.Duration, kick <-chan struct{}, fn func()) {
	defer l.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-kick:
		}
		fn()
	}
}

// syncActive fsyncs the newest segment that has a file. An append that
// just rolled leaves a newest segment without one; what was written is
// then in the segment before it, which the flusher has not sealed yet.
func (l *Log) syncActive() error {
	l.mu.Lock()
	var s *segment
	for i := len(l.segs) - 1; i >= 0 && s == nil; i-- {
		if l.segs[i].f != nil {
			s = l.segs[i]
		}
	}
	ok := s != nil && s.acquire()
	l.mu.Unlock()
	if !ok {
		return nil
	}
	defer s.release()
	if err := l.fdatasync(s); err != nil {
		l.fail(err, nil)
		return err
	}
	return nil
}

// fail makes the log refuse appends for good after a failed write or
// fsync, and answers every append waiting: inflight (the group the flusher
// was writing, if any) and the pending group, whose bytes were never
// written. The inflight group's bytes are cut from the files first, so
// that an append answered "failed" never comes back after a restart; if
// that cut fails too, its appends are answered rewind.ErrOutcomeUnknown.
func (l *Log) fail(err error, inflight *group) {
	l.mu.Lock()
	if l.failed == nil {
		if fe, ok := err.(*rewind.FailedError); ok {
			l.failed = fe
		} else {
			l.failed = &rewind.FailedError{Op: "a write or fsync of the log", Cause: err}
		}
		l.cfg.Logger.Error("eventlog: a write or fsync failed; the log refuses further appends until reopened", "err", err)
	}
	failed := l.failed
	pending := l.pending
	l.pending = newGroup(nil)
	l.mu.Unlock()
	if inflight != nil && len(inflight.spans) > 0 {
		inflight.err = failed
		if cerr := l.cutBack(inflight); cerr != nil {
			l.cfg.Logger.Error("eventlog: could not remove the bytes of the appends that failed; their outcome is unknown",
				"first_position", inflight.first, "last_position", inflight.last, "err", cerr)
			inflight.err = fmt.Errorf("%w: the bytes of positions %d-%d may be in the log, since removing them failed "+
				"(%v); after the store is back, retry with the same event ids to learn whether they were recorded: %w",
				rewind.ErrOutcomeUnknown, inflight.first, inflight.last, cerr, failed)
		}
		close(inflight.done)
	}
	if len(pending.spans) > 0 {
		pending.err = failed
		close(pending.done)
	}
	l.notify() // waiters on Changed learn of the failure
}

// cutBack makes the files what they were before g was written, durably:
// the segments g created are removed, and the one it appended to is
// truncated back to where g began, with its index. It is called once the
// log has failed, so nothing else writes.
func (l *Log) cutBack(g *group) error {
	var errs []error
	for _, s := range g.created {
		s.zero.seal()
		for _, p := range []string{s.path, strings.TrimSuffix(s.path, segmentExt) + indexExt} {
			if err := l.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			}
		}
	}
	if len(g.created) > 0 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			errs = append(errs, fmt.Errorf("sync directory %s: %w", l.dir, err))
		}
	}
	// The one segment that existed before g and got records of it: g's
	// first span (unless the write failed before it had a file).
	if sp := g.spans[0]; !slices.Contains(g.created, sp.seg) && sp.seg.f != nil {
		s := sp.seg
		s.zero.seal() // no zero-filling under the truncation
		if err := s.f.Truncate(sp.off); err != nil {
			errs = append(errs, fmt.Errorf("cut segment %s back to %d bytes: %w", s.name(), sp.off, err))
		} else if err := s.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync segment %s: %w", s.name(), err))
		}
		kept := 0
		for _, e := range l.indexSnapshot(s) {
			if e.pos < g.first && !e.last {
				kept++
			}
		}
		if err := s.idx.Truncate(int64(kept) * indexEntrySize); err != nil {
			errs = append(errs, fmt.Errorf("cut index of %s: %w", s.name(), err))
		} else if err := s.idx.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync index of %s: %w", s.name(), err))
		}
	}
	return errors.Join(errs...)
}

// Err returns the failure of a log whose write or fsync failed, a
// *rewind.FailedError, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		return nil
	}
	return l.failed
}

// Sync fsyncs everything written so far, whatever the durability mode. It
// fails if the log has failed.
func (l *Log) Sync() error {
	l.waitFlushed()
	if err := l.syncActive(); err != nil {
		return err
	}
	return l.Err()
}

// waitFlushed waits until every append made before the call is written.
// It waits for the pending group, or else for the group the flusher is
// writing: groups are acknowledged in order, so either covers all before.
func (l *Log) waitFlushed() {
	l.mu.Lock()
	g := l.pending
	if len(g.spans) == 0 {
		g = l.flushing
	}
	l.mu.Unlock()
	if g != nil {
		<-g.done
	}
}

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close flushes and fsyncs what was appended, stops the log's goroutines
// and releases the directory lock. Appends after Close fail with
// rewind.ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()

	failed := l.Err()
	l.mu.Lock()
	segs := l.segs
	l.mu.Unlock()
	var errs []error
	if failed != nil {
		errs = append(errs, failed)
	}
	if active := segs[len(segs)-1]; active.f != nil && failed == nil {
		if err := active.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync segment %s: %w", active.name(), err))
		}
		if err := active.idx.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync index of %s: %w", active.name(), err))
		}
	}
	if len(errs) == 0 {
		// Everything is on disk: the next open need not start an epoch.
		l.mu.Lock()
		last := l.next - 1
		l.mu.Unlock()
		if err := l.setRunning("", last); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range segs {
		s.release()
	}
	l.lock.unlock()
	return errors.Join(errs...)
}
