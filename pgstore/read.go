package pgstore

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/store"
)

// readPage is how many events one query of ReadAll or a subscription reads.
const readPage = 500

// ReadStream returns the readable events of a stream; see rewind.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, opts rewind.ReadStreamOptions) ([]rewind.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := store.ValidateStreamName(stream); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"}
	}
	var limit *int64
	if opts.Limit > 0 {
		l := int64(opts.Limit)
		limit = &l
	}
	q, bound := s.q.readForward, int64(min(opts.From, 1<<63-1))
	if opts.Backward {
		q = s.q.readBackward
		if opts.From == 0 {
			bound = 1<<63 - 1
		}
	}
	rows, err := s.pool.Query(ctx, q, stream, bound, limit)
	if err != nil {
		return nil, s.dbError("read stream", err)
	}
	defer rows.Close()
	var out []rewind.RecordedEvent
	found := false
	var version, deleted int64
	var dec eventDecoder
	dec.start(rows, 2)
	for rows.Next() {
		var r row
		ok, err := dec.next(rows, &r, &version, &deleted)
		if err != nil {
			return nil, s.dbError("read stream", err)
		}
		found = true
		if ok {
			out = append(out, r.ev)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbError("read stream", err)
	}
	if !found || version == deleted {
		return nil, notFound(stream, uint64(version))
	}
	return out, nil
}

// StreamInfo describes a stream; see rewind.Store.
func (s *Store) StreamInfo(ctx context.Context, stream string) (rewind.StreamInfo, error) {
	if err := ctx.Err(); err != nil {
		return rewind.StreamInfo{}, err
	}
	if err := s.checkOpen(); err != nil {
		return rewind.StreamInfo{}, err
	}
	if err := store.ValidateStreamName(stream); err != nil {
		return rewind.StreamInfo{}, err
	}
	rows, err := s.pool.Query(ctx, s.q.streamInfo, stream)
	if err != nil {
		return rewind.StreamInfo{}, s.dbError("stream info", err)
	}
	infos, err := collectInfos(rows)
	if err != nil {
		return rewind.StreamInfo{}, s.dbError("stream info", err)
	}
	if len(infos) == 0 {
		return rewind.StreamInfo{}, notFound(stream, 0)
	}
	return infos[0], nil
}

func collectInfos(rows pgx.Rows) ([]rewind.StreamInfo, error) {
	var out []rewind.StreamInfo
	for rows.Next() {
		var name string
		var version, deleted, first, last int64
		if err := rows.Scan(&name, &version, &deleted, &first, &last); err != nil {
			rows.Close()
			return nil, err
		}
		info := rewind.StreamInfo{Stream: name, Version: uint64(version), Deleted: version == deleted}
		if !info.Deleted {
			info.FirstVersion = uint64(deleted) + 1
			info.FirstPosition, info.LastPosition = rewind.Position(first), rewind.Position(last)
			info.Count = uint64(version - deleted)
		}
		out = append(out, info)
	}
	return out, rows.Err()
}

// ListStreams returns streams sorted by name (byte-wise); see rewind.Store.
func (s *Store) ListStreams(ctx context.Context, opts rewind.ListStreamsOptions) ([]rewind.StreamInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"}
	}
	limit := opts.Limit
	if limit == 0 {
		limit = rewind.DefaultListStreamsLimit
	}
	rows, err := s.pool.Query(ctx, s.q.listStreams, sqlPrefix(opts.Prefix), sqlAfter(opts.After), opts.IncludeDeleted, limit)
	if err != nil {
		return nil, s.dbError("list streams", err)
	}
	infos, err := collectInfos(rows)
	if err != nil {
		return nil, s.dbError("list streams", err)
	}
	return infos, nil
}

// LastPosition returns the position of the last committed event. Every
// position up to it is committed: positions are given out in commit order.
func (s *Store) LastPosition(ctx context.Context) (rewind.Position, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	var last int64
	if err := s.pool.QueryRow(ctx, s.q.head).Scan(&last); err != nil {
		return 0, s.dbError("read the last position", err)
	}
	return rewind.Position(last), nil
}

// Location says where the store is: host, port, database and schema (no
// user or password).
func (s *Store) Location() string { return s.location }

// Describe describes the store; Durability is "sync": an append returns
// once PostgreSQL has committed it, which under the server's default
// synchronous_commit means flushed to its WAL.
func (s *Store) Describe(ctx context.Context) (rewind.StoreInfo, error) {
	if err := s.checkOpen(); err != nil {
		return rewind.StoreInfo{}, err
	}
	var last, streams int64
	if err := s.pool.QueryRow(ctx, s.q.count).Scan(&last, &streams); err != nil {
		return rewind.StoreInfo{}, s.dbError("describe", err)
	}
	return rewind.StoreInfo{Location: s.location, Durability: "sync", FirstPosition: 1,
		LastPosition: rewind.Position(last), Streams: int(streams)}, nil
}

// validFilter checks a read's filter as every store does
// (store.ValidateReadFilter) and returns it with no type listed twice.
func validFilter(f rewind.Filter) (rewind.Filter, error) {
	err := store.ValidateReadFilter(&f)
	return f, err
}

// noName is a prefix that begins no stream name: names hold no control
// characters (store.ValidateStreamName).
const noName = "\x01"

// sqlPrefix returns a prefix PostgreSQL can take that matches the same
// names as p. A prefix is no name and may hold a NUL character, which
// PostgreSQL's text cannot (SQLSTATE 22021); no stream name holds one, so
// such a prefix matches nothing, as noName does.
func sqlPrefix(p string) string {
	if strings.IndexByte(p, 0) >= 0 {
		return noName
	}
	return p
}

// sqlAfter returns a bound PostgreSQL can take that the same names sort
// after, byte-wise (the names' COLLATE "C"), as a after. A name sorts
// after p+"\x00"+rest exactly when it sorts after p: no name holds NUL,
// so a longer name starting with p has a byte above NUL where a has its
// NUL, and p itself sorts before a.
func sqlAfter(a string) string {
	if i := strings.IndexByte(a, 0); i >= 0 {
		return a[:i]
	}
	return a
}

func filterTypes(f rewind.Filter) []string {
	if f.Types == nil {
		return []string{}
	}
	return f.Types
}

// ceilMicro rounds t up to PostgreSQL's microseconds, so that "recorded at
// or after t" keeps its meaning for a t between two microseconds.
func ceilMicro(t time.Time) time.Time {
	if tr := t.Truncate(time.Microsecond); !tr.Equal(t) {
		return tr.Add(time.Microsecond)
	}
	return t
}

// start resolves where a read or subscription starts: the first position
// to read, given the log's last one.
func (s *Store) start(ctx context.Context, from rewind.Position, fromTime time.Time, last int64) (int64, error) {
	switch {
	case !fromTime.IsZero():
		var p *int64
		if err := s.pool.QueryRow(ctx, s.q.firstAt, ceilMicro(fromTime)).Scan(&p); err != nil {
			return 0, s.dbError("find a time", err)
		}
		if p == nil || *p > last {
			return last + 1, nil
		}
		return *p, nil
	case from == 0:
		return 1, nil
	case uint64(from) > uint64(last)+1:
		return 0, &rewind.ValidationError{Field: "position", Value: from.String(),
			Reason: fmt.Sprintf("is beyond the end of the log (last position %d)", last)}
	}
	return int64(from), nil
}

// ReadAll iterates over the log from opts' start to the last position
// committed when it starts; see rewind.Store. It reads pages of 500.
func (s *Store) ReadAll(ctx context.Context, opts rewind.ReadAllOptions) iter.Seq2[*rewind.RecordedEvent, error] {
	return func(yield func(*rewind.RecordedEvent, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(nil, err)
			return
		}
		if err := s.checkOpen(); err != nil {
			yield(nil, err)
			return
		}
		var err error
		if opts.Filter, err = validFilter(opts.Filter); err != nil {
			yield(nil, err)
			return
		}
		switch {
		case opts.From != 0 && !opts.FromTime.IsZero():
			yield(nil, &rewind.ValidationError{Field: "from", Reason: "give a position or a time, not both"})
			return
		case opts.Limit < 0:
			yield(nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"})
			return
		}
		if err := checkEpoch(max(opts.From, 1)-1, opts.Epoch); err != nil {
			yield(nil, err)
			return
		}
		end, err := s.LastPosition(ctx)
		if err != nil {
			yield(nil, err)
			return
		}
		from, err := s.start(ctx, opts.From, opts.FromTime, int64(end))
		if err != nil {
			yield(nil, err)
			return
		}
		types := filterTypes(opts.Filter)
		// A read of the whole log checks that positions follow each
		// other (GapError); a filtered one cannot tell a hole from events
		// its filter skips.
		whole := opts.Filter.StreamPrefix == "" && len(types) == 0
		var dec eventDecoder
		n := 0
		for from <= int64(end) {
			page := readPage
			if opts.Limit > 0 {
				page = min(page, opts.Limit-n)
			}
			rows, err := s.pool.Query(ctx, s.q.readAll, from, int64(end), sqlPrefix(opts.Filter.StreamPrefix), types, page)
			if err != nil {
				yield(nil, s.dbError("read all", err))
				return
			}
			evs := make([]rewind.RecordedEvent, 0, page)
			dec.start(rows, 0)
			for rows.Next() {
				var r row
				if _, err := dec.next(rows, &r); err != nil {
					rows.Close()
					yield(nil, s.dbError("read all", err))
					return
				}
				evs = append(evs, r.ev)
			}
			if err := rows.Err(); err != nil {
				yield(nil, s.dbError("read all", err))
				return
			}
			var gap error
			if whole {
				// A full page must cover its positions; a short one
				// must also reach the end.
				k := contiguous(evs, from-1)
				if k < len(evs) || len(evs) < page && from+int64(k) <= int64(end) {
					evs, gap = evs[:k], &GapError{Schema: s.cfg.Schema, Missing: rewind.Position(from + int64(k))}
				}
			}
			for i := range evs {
				if !yield(&evs[i], nil) {
					return
				}
				if n++; opts.Limit > 0 && n >= opts.Limit {
					return
				}
			}
			if gap != nil {
				yield(nil, gap)
				return
			}
			if len(evs) < page {
				return
			}
			from = int64(evs[len(evs)-1].Position) + 1
		}
	}
}
