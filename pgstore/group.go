package pgstore

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// Group commit. Appends take turns on the append lock, each waiting for its
// own WAL flush (see doc.go), so the store's appends of one process go
// through one committer that writes the appends waiting at that moment
// together, in one transaction: one lock, one head update, one insert, one
// commit and one flush for all of them. Each append is still checked on
// its own (its stream's expected version, in arrival order within the
// group), and one that fails is answered alone; the others are written.

// groupMaxEvents bounds the events of one group transaction (a single
// append may be larger: it is then a group of its own).
const groupMaxEvents = 10_000

// appendReq is an append waiting for the committer.
type appendReq struct {
	ctx      context.Context
	stream   string
	expected rewind.ExpectedVersion
	events   []rewind.Event
	b        *batch
	size     int

	res  rewind.AppendResult
	err  error
	done chan struct{}

	// set while its group runs
	firstOff  int64 // offset of its first event in the group (1-based); 0 when it writes nothing
	dependent bool  // its answer rests on appends of the same group (a conflict with one of them)
}

func (r *appendReq) answer(res rewind.AppendResult, err error) {
	r.res, r.err = res, err
	close(r.done)
}

// committer runs group transactions until ctx ends.
func (s *Store) committer(ctx context.Context) {
	for {
		var first *appendReq
		select {
		case <-ctx.Done():
			return
		case first = <-s.reqs:
		}
		group := []*appendReq{first}
		events, bytes := len(first.events), first.size
	fill:
		for events < groupMaxEvents && bytes < s.cfg.MaxBatchBytes {
			select {
			case r := <-s.reqs:
				group = append(group, r)
				events, bytes = events+len(r.events), bytes+r.size
			default:
				break fill
			}
		}
		s.runGroup(ctx, group)
	}
}

// runGroup writes a group of appends in one transaction and answers each.
func (s *Store) runGroup(ctx context.Context, group []*appendReq) {
	var live, later []*appendReq
	seen := map[uuid.UUID]bool{}
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.answer(rewind.AppendResult{}, err)
			continue
		}
		// Two appends of the same ids in one group: the later one waits
		// for the earlier one's commit, then is answered from it.
		overlap := false
		for i, id := range r.b.ids {
			if !r.b.generated[i] && seen[id] {
				overlap = true
			}
		}
		if overlap {
			later = append(later, r)
			continue
		}
		for i, id := range r.b.ids {
			if !r.b.generated[i] {
				seen[id] = true
			}
		}
		live = append(live, r)
	}
	if len(live) > 1 {
		s.grouped.Add(1)
	}
	if len(live) > 0 {
		rerun := s.writeGroup(ctx, live)
		later = append(rerun, later...)
	}
	for _, r := range later {
		s.runAlone(ctx, r)
	}
}

// runAlone writes one append as a group of its own, trying again while its
// ids meet appends that roll back.
func (s *Store) runAlone(ctx context.Context, r *appendReq) {
	for attempt := 0; attempt < 100; attempt++ {
		rerun := s.writeGroup(ctx, []*appendReq{r})
		if len(rerun) == 0 {
			return
		}
	}
	r.answer(rewind.AppendResult{}, errors.New("pgstore: append retried 100 times, always racing appends of the same ids that rolled back"))
}

type streamState struct {
	version, deleted uint64
	touched          bool  // an earlier append of the group writes to it
	firstOff         int64 // offset of the group's first event that makes it readable again (0: none)
	lastOff          int64
}

// writeGroup runs one group transaction. It answers every append it can
// and returns those to run again, alone: the appends of a group that failed
// or rolled back whose answer rested on it, and all of them when an id
// turned out to be recorded already.
func (s *Store) writeGroup(ctx context.Context, group []*appendReq) (rerun []*appendReq) {
	fail := func(err error) []*appendReq {
		for _, r := range group {
			r.answer(rewind.AppendResult{}, err)
		}
		return nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fail(s.dbError("connect", err))
	}
	defer conn.Release()
	// Lock the streams in name order: groups of several processes never
	// wait for each other in a cycle.
	names := make([]string, 0, len(group))
	for _, r := range group {
		names = append(names, r.stream)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	states := make(map[string]*streamState, len(names))
	var bb pgx.Batch
	bb.Queue("BEGIN")
	for _, n := range names {
		bb.Queue(s.q.lockStream, n)
	}
	br := conn.SendBatch(ctx, &bb)
	_, err = br.Exec()
	for _, n := range names {
		if err != nil {
			break
		}
		st := &streamState{}
		err = br.QueryRow().Scan(&st.version, &st.deleted)
		states[n] = st
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback(ctx, conn)
		dropIfReadOnly(ctx, conn, err)
		return fail(s.dbError("lock streams", err))
	}
	// Check each append in arrival order, against the streams as the
	// group's earlier appends leave them.
	var writers []*appendReq
	var total int64
	for _, r := range group {
		r.firstOff, r.dependent = 0, false
		st := states[r.stream]
		if err := r.expected.Check(r.stream, st.version, st.version > st.deleted); err != nil {
			res, known, err2 := s.resolve(ctx, conn, r.stream, r.events, r.b)
			switch {
			case known || err2 != nil:
				r.answer(res, err2)
			case st.touched:
				r.err, r.dependent = err, true
			default:
				r.answer(rewind.AppendResult{}, err)
			}
			continue
		}
		n := int64(len(r.events))
		r.firstOff = total + 1
		r.res = rewind.AppendResult{FirstVersion: st.version + 1, LastVersion: st.version + uint64(n)}
		if st.version == st.deleted && st.firstOff == 0 {
			st.firstOff = r.firstOff
		}
		st.version += uint64(n)
		st.touched = true
		total += n
		st.lastOff = total
		writers = append(writers, r)
	}
	dependents := func() []*appendReq {
		var out []*appendReq
		for _, r := range group {
			if r.dependent {
				r.dependent, r.err = false, nil
				out = append(out, r)
			}
		}
		return out
	}
	if len(writers) == 0 {
		rollback(ctx, conn)
		return dependents()
	}
	wb, ends, rolledBack := s.groupBatch(group, writers, states, total)
	br = conn.SendBatch(ctx, wb)
	var base int64
	var recordedAt time.Time
	err = br.QueryRow().Scan(&base, &recordedAt)
	if err == nil {
		err = endResults(br, ends)
	}
	if err = closeAfterEnd(br, err); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "events_event_id" {
			rollback(ctx, conn)
			if len(group) == 1 {
				// Some ids are recorded already: answer from them.
				r := group[0]
				res, known, err := s.resolve(ctx, conn, r.stream, r.events, r.b)
				if known || err != nil {
					r.answer(res, err)
					return nil
				}
				return group // they met an append that rolled back
			}
			// Find out which, one append at a time, in arrival order.
			for _, r := range group {
				if r.firstOff > 0 || r.dependent {
					r.firstOff, r.dependent, r.err = 0, false, nil
					rerun = append(rerun, r)
				}
			}
			return rerun
		}
		werr := s.writeError(ctx, conn, err)
		for _, r := range writers {
			r.answer(rewind.AppendResult{}, werr)
		}
		return dependents()
	}
	if rolledBack {
		for _, r := range writers {
			r.answer(rewind.AppendResult{}, errTestRollback)
		}
		return dependents()
	}
	s.signal()
	for _, r := range writers {
		n := int64(len(r.events))
		r.res.FirstPosition = rewind.Position(base + r.firstOff)
		r.res.LastPosition = rewind.Position(base + r.firstOff + n - 1)
		r.answer(r.res, nil)
	}
	for _, r := range group {
		if r.dependent {
			r.answer(rewind.AppendResult{}, r.err)
		}
	}
	return nil
}

// groupBatch builds the group's write and the end of its transaction.
func (s *Store) groupBatch(group, writers []*appendReq, states map[string]*streamState, total int64) (*pgx.Batch, int, bool) {
	n := int(total)
	var (
		streams   = make([]string, 0, n)
		versions  = make([]int64, 0, n)
		ids       = make([]uuid.UUID, 0, n)
		gen       = make([]bool, 0, n)
		types     = make([]string, 0, n)
		schemas   = make([]int32, 0, n)
		contents  = make([]string, 0, n)
		data      = make([][]byte, 0, n)
		metadata  = make([]*string, 0, n)
		occurred  = make([]*int64, 0, n)
		batchFrom = make([]int64, 0, n)
		batchTo   = make([]int64, 0, n)
	)
	for _, r := range writers {
		b := r.b
		last := r.firstOff + int64(len(r.events)) - 1
		for i := range r.events {
			streams = append(streams, r.stream)
			versions = append(versions, int64(r.res.FirstVersion)+int64(i))
			batchFrom, batchTo = append(batchFrom, r.firstOff), append(batchTo, last)
		}
		ids, gen, types = append(ids, b.ids...), append(gen, b.generated...), append(types, b.types...)
		schemas, contents, data = append(schemas, b.schemas...), append(contents, b.contents...), append(data, b.data...)
		metadata, occurred = append(metadata, b.metadata...), append(occurred, b.occurred...)
	}
	var names []string
	var stVersions, firstOffs, lastOffs []int64
	for name, st := range states {
		if st.lastOff == 0 {
			continue
		}
		names = append(names, name)
		stVersions, firstOffs, lastOffs = append(stVersions, int64(st.version)), append(firstOffs, st.firstOff),
			append(lastOffs, st.lastOff)
	}
	var wb pgx.Batch
	wb.Queue(s.q.insert, s.lk1, s.lk2, total, textArray(streams), int8Array(versions), uuidArray(ids), gen,
		textArray(types), schemas, textArray(contents), byteaArray(data), nullTextArray(metadata), nullInt8Array(occurred),
		int8Array(batchFrom), int8Array(batchTo), textArray(names), int8Array(stVersions), int8Array(firstOffs),
		int8Array(lastOffs), channel(s.cfg.Schema))
	// A test's fates: the longest pause any append of the group asks
	// for, and a rollback if any asks for one.
	var sleep time.Duration
	rollback := false
	if s.testFate != nil {
		for _, r := range group {
			d, rb := s.testFate(r.ctx)
			sleep, rollback = max(sleep, d), rollback || rb
		}
	}
	ends := 1
	if sleep > 0 {
		wb.Queue("SELECT pg_sleep($1::float8)", sleep.Seconds())
		ends++
	}
	if rollback {
		wb.Queue("ROLLBACK")
	} else {
		wb.Queue("COMMIT")
		if s.testKillAfterCommit != nil && slices.ContainsFunc(group, func(r *appendReq) bool { return s.testKillAfterCommit(r.ctx) }) {
			wb.Queue(killSelf) // not an end: read by the batch's Close
		}
	}
	return &wb, ends, rollback
}
