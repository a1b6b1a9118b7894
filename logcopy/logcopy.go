package logcopy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"maps"
	"slices"
	"time"

	"github.com/rewindhq/rewind"
)

// Source is a store a copy reads: its log as records, and where it ends.
type Source interface {
	rewind.LogExporter
	rewind.Describer
}

// Target is a store a copy writes.
type Target interface {
	Source
	rewind.LogImporter
}

// analyzer is a target that updates its query planner's statistics after
// a bulk import (PostgreSQL).
type analyzer interface {
	Analyze(ctx context.Context) error
}

// identifier is a store that can tell which store it is whatever the
// spelling of its address (PostgreSQL: 127.0.0.1 and localhost are one
// server).
type identifier interface {
	Identity(ctx context.Context) (string, error)
}

// sameStore reports whether src and dst are one store: the same identity
// when both have one, else the same location.
func sameStore(ctx context.Context, src Source, dst Target, si, ti rewind.StoreInfo) (bool, error) {
	a, aok := src.(identifier)
	b, bok := dst.(identifier)
	if !aok || !bok {
		return si.Location == ti.Location, nil
	}
	ia, err := a.Identity(ctx)
	if err != nil {
		return false, fmt.Errorf("identify the source: %w", err)
	}
	ib, err := b.Identity(ctx)
	if err != nil {
		return false, fmt.Errorf("identify the target: %w", err)
	}
	return ia == ib, nil
}

// Options tunes a copy or a verification.
type Options struct {
	// Batch is how many records one import writes (one transaction in
	// PostgreSQL), rounded up to the end of the source batch it ends in.
	// Defaults to 5000.
	Batch int
	// TimePrecision is the precision recorded-at times are compared at:
	// PostgreSQL keeps microseconds, the embedded store nanoseconds, so a
	// copy that involves PostgreSQL compares them to the microsecond.
	// Defaults to 1 ns.
	TimePrecision time.Duration
	// Progress, when set, is called after each import with the target's
	// last position and the position the copy ends at.
	Progress func(done, end rewind.Position)
}

func (o Options) withDefaults() Options {
	if o.Batch <= 0 {
		o.Batch = 5000
	}
	if o.TimePrecision <= 0 {
		o.TimePrecision = time.Nanosecond
	}
	return o
}

// Result says what a copy did.
type Result struct {
	// TargetBefore is the target's last position when the copy began: the
	// records up to it were there already (checked to be the source's).
	TargetBefore rewind.Position `json:"target_before"`
	// End is the last position copied: the source's last position when
	// the copy began.
	End rewind.Position `json:"end"`
	// Copied counts the records written.
	Copied int64 `json:"copied"`
	// Seconds is how long the copy itself took (without the checks).
	Seconds float64 `json:"seconds"`
	// Verified holds the final comparison of the two logs, when made.
	Verified *Verification `json:"verification,omitempty"`
}

// Verification is a comparison of two logs over positions 1 to End.
type Verification struct {
	End          rewind.Position `json:"end"`
	SourceCount  int64           `json:"source_count"`
	TargetCount  int64           `json:"target_count"`
	SourceDigest string          `json:"source_digest"`
	TargetDigest string          `json:"target_digest"`
	// Equal is true when every record matches.
	Equal bool `json:"equal"`
}

// MismatchError says where two logs first differ.
type MismatchError struct {
	Position rewind.Position
	Reason   string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("logcopy: the logs differ at position %d: %s", e.Position, e.Reason)
}

// RefusedError is a copy refused before anything was written: the target
// holds another log, or the source's positions cannot be kept.
type RefusedError struct {
	Reason string
	Cause  error
}

func (e *RefusedError) Error() string {
	return "logcopy: copy refused, nothing was written: " + e.Reason
}
func (e *RefusedError) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, rewind.ErrInvalidArgument) true: the copy was
// asked for something it must not do (exit status 2 in the CLI).
func (e *RefusedError) Is(target error) bool { return target == rewind.ErrInvalidArgument }

// Plan checks that src can be copied into dst and returns the target's and
// the source's last positions. It writes nothing.
func Plan(ctx context.Context, src Source, dst Target, opts Options) (from, end rewind.Position, err error) {
	opts = opts.withDefaults()
	si, err := src.Describe(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("describe the source: %w", err)
	}
	ti, err := dst.Describe(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("describe the target: %w", err)
	}
	if same, err := sameStore(ctx, src, dst, si, ti); err != nil {
		return 0, 0, err
	} else if same {
		return 0, 0, &RefusedError{Reason: fmt.Sprintf("the source and the target are the same store (%s and %s)",
			si.Location, ti.Location)}
	}
	if si.LastPosition > 0 && si.FirstPosition > 1 {
		return 0, 0, &RefusedError{Reason: fmt.Sprintf("the source's log starts at position %d (retention removed the "+
			"positions before it), and a target's log starts at 1: its positions cannot be kept", si.FirstPosition)}
	}
	if ti.LastPosition > 0 && ti.FirstPosition > 1 {
		return 0, 0, &RefusedError{Reason: fmt.Sprintf("the target's log starts at position %d (retention removed "+
			"the positions before it): it is not a copy of the source", ti.FirstPosition)}
	}
	if ti.LastPosition > si.LastPosition {
		return 0, 0, &RefusedError{Reason: fmt.Sprintf("the target is ahead of the source (target at position %d, "+
			"source at %d): it holds another log, or more of this one", ti.LastPosition, si.LastPosition)}
	}
	if ti.LastPosition > 0 {
		v, err := compare(ctx, src, dst, ti.LastPosition, opts)
		var me *MismatchError
		if errors.As(err, &me) {
			return 0, 0, &RefusedError{Reason: fmt.Sprintf("the target (at position %d) is not a prefix of the source: "+
				"they differ at position %d (%s)", ti.LastPosition, me.Position, me.Reason), Cause: err}
		}
		if err != nil {
			return 0, 0, err
		}
		if !v.Equal {
			return 0, 0, &RefusedError{Reason: "the target is not a prefix of the source"}
		}
	}
	return ti.LastPosition, si.LastPosition, nil
}

// Copy copies src's log into dst from dst's last position on, up to src's
// last position when it begins, then verifies the two logs over the whole
// range. It refuses, writing nothing, what Plan refuses.
func Copy(ctx context.Context, src Source, dst Target, opts Options) (Result, error) {
	opts = opts.withDefaults()
	from, end, err := Plan(ctx, src, dst, opts)
	if err != nil {
		return Result{}, err
	}
	res := Result{TargetBefore: from, End: end}
	start := time.Now()
	n, err := transfer(ctx, src, dst, from, end, opts)
	res.Copied, res.Seconds = n, time.Since(start).Seconds()
	if err != nil {
		return res, err
	}
	if a, ok := dst.(analyzer); ok && n > 0 {
		if err := a.Analyze(ctx); err != nil {
			return res, err
		}
	}
	v, err := Verify(ctx, src, dst, end, opts)
	res.Verified = &v
	return res, err
}

// transfer moves the records after from up to end, reading the next chunk
// while the last one is written.
func transfer(ctx context.Context, src Source, dst Target, from, end rewind.Position, opts Options) (int64, error) {
	if from >= end {
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type chunk struct {
		recs []rewind.LogRecord
		err  error
	}
	chunks := make(chan chunk, 2)
	go func() {
		defer close(chunks)
		var carry []rewind.LogRecord
		next := from + 1
		for next <= end || len(carry) > 0 {
			recs := carry
			carry = nil
			for next <= end && (len(recs) < opts.Batch || lastBatchEnd(recs) < 0) {
				got, err := src.ExportLog(ctx, next, min(opts.Batch, int(end-next+1)))
				if err == nil && len(got) == 0 {
					err = fmt.Errorf("logcopy: the source ends before position %d, the copy's end %d", next, end)
				}
				if err == nil && got[0].Position != next {
					err = fmt.Errorf("logcopy: the source has position %d where %d was expected: it has a gap, and "+
						"its positions cannot be kept", got[0].Position, next)
				}
				if err != nil {
					chunks <- chunk{err: err}
					return
				}
				recs = append(recs, got...)
				next = got[len(got)-1].Position + 1
			}
			k := lastBatchEnd(recs)
			if k < 0 {
				chunks <- chunk{err: fmt.Errorf("logcopy: the source's batch at position %d does not end by %d",
					recs[0].Position, end)}
				return
			}
			carry = slices.Clone(recs[k+1:])
			select {
			case chunks <- chunk{recs: recs[:k+1]}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var n int64
	for c := range chunks {
		if c.err != nil {
			return n, c.err
		}
		if err := dst.ImportLog(ctx, c.recs); err != nil {
			return n, fmt.Errorf("import positions %d–%d: %w", c.recs[0].Position, c.recs[len(c.recs)-1].Position, err)
		}
		n += int64(len(c.recs))
		if opts.Progress != nil {
			opts.Progress(c.recs[len(c.recs)-1].Position, end)
		}
	}
	return n, ctx.Err()
}

func lastBatchEnd(recs []rewind.LogRecord) int {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].BatchEnd {
			return i
		}
	}
	return -1
}

// Verify compares src and dst over positions 1 to end (0: the source's
// last position). It returns a *MismatchError naming the first position
// where they differ, or where one of them ends early.
func Verify(ctx context.Context, src, dst rewind.LogExporter, end rewind.Position, opts Options) (Verification, error) {
	opts = opts.withDefaults()
	if end == 0 {
		d, ok := src.(rewind.Describer)
		if !ok {
			return Verification{}, errors.New("logcopy: give the end of the range")
		}
		i, err := d.Describe(ctx)
		if err != nil {
			return Verification{}, err
		}
		end = i.LastPosition
	}
	return compare(ctx, src, dst, end, opts)
}

func compare(ctx context.Context, src, dst rewind.LogExporter, end rewind.Position, opts Options) (Verification, error) {
	v := Verification{End: end}
	hs, ht := sha256.New(), sha256.New()
	var bs, bt []byte
	var first *MismatchError
	for next := rewind.Position(1); next <= end; {
		n := min(opts.Batch, int(end-next+1))
		a, err := src.ExportLog(ctx, next, n)
		if err != nil {
			return v, fmt.Errorf("read the source: %w", err)
		}
		b, err := dst.ExportLog(ctx, next, n)
		if err != nil {
			return v, fmt.Errorf("read the target: %w", err)
		}
		v.SourceCount += int64(len(a))
		v.TargetCount += int64(len(b))
		for i := range max(len(a), len(b)) {
			var ra, rb *rewind.LogRecord
			if i < len(a) {
				ra = &a[i]
				bs = canonical(bs[:0], ra, opts.TimePrecision)
				hs.Write(bs)
			}
			if i < len(b) {
				rb = &b[i]
				bt = canonical(bt[:0], rb, opts.TimePrecision)
				ht.Write(bt)
			}
			if first != nil {
				continue
			}
			switch {
			case ra == nil:
				first = &MismatchError{Position: next + rewind.Position(i), Reason: "the source has no record there"}
			case rb == nil:
				first = &MismatchError{Position: next + rewind.Position(i), Reason: "the target has no record there"}
			case ra.Position != rb.Position:
				first = &MismatchError{Position: min(ra.Position, rb.Position), Reason: "one log has a gap there"}
			case string(bs) != string(bt):
				first = &MismatchError{Position: ra.Position, Reason: describeDiff(ra, rb, opts.TimePrecision)}
			}
		}
		if len(a) == 0 && len(b) == 0 {
			if first == nil {
				first = &MismatchError{Position: next, Reason: "both logs end before the range does"}
			}
			break
		}
		next += rewind.Position(max(len(a), len(b)))
	}
	v.SourceDigest, v.TargetDigest = digest(hs), digest(ht)
	v.Equal = first == nil && v.SourceCount == v.TargetCount && v.SourceDigest == v.TargetDigest
	if first != nil {
		return v, first
	}
	return v, nil
}

func digest(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// canonical appends r's canonical form: every field a copy keeps, with the
// defaults spelled out, recorded-at at precision p.
func canonical(dst []byte, r *rewind.LogRecord, p time.Duration) []byte {
	str := func(s string) {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, uint64(r.Position))
	str(r.Stream)
	dst = binary.AppendUvarint(dst, r.Version)
	flags := byte(0)
	if r.Delete {
		flags |= 1
	}
	if r.GeneratedID || r.Delete {
		flags |= 2
	}
	if r.BatchEnd {
		flags |= 4
	}
	dst = append(dst, flags)
	dst = append(dst, r.ID[:]...)
	str(r.Type)
	dst = binary.AppendUvarint(dst, uint64(max(r.SchemaVersion, 1)))
	ct := r.ContentType
	if ct == "" {
		ct = rewind.DefaultContentType
	}
	str(ct)
	dst = binary.AppendUvarint(dst, uint64(len(r.Metadata)))
	for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
		str(k)
		str(r.Metadata[k])
	}
	occ := int64(0)
	if !r.OccurredAt.IsZero() {
		occ = r.OccurredAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, occ)
	dst = binary.AppendVarint(dst, r.RecordedAt.Truncate(p).UnixNano())
	str(string(r.Data))
	return dst
}

// describeDiff names the first field where two records differ.
func describeDiff(a, b *rewind.LogRecord, p time.Duration) string {
	switch {
	case a.Stream != b.Stream:
		return fmt.Sprintf("stream %q against %q", a.Stream, b.Stream)
	case a.Version != b.Version:
		return fmt.Sprintf("version %d against %d", a.Version, b.Version)
	case a.Delete != b.Delete:
		return fmt.Sprintf("delete record %v against %v", a.Delete, b.Delete)
	case a.ID != b.ID:
		return fmt.Sprintf("event id %s against %s", a.ID, b.ID)
	case a.Type != b.Type:
		return fmt.Sprintf("type %q against %q", a.Type, b.Type)
	case !a.RecordedAt.Truncate(p).Equal(b.RecordedAt.Truncate(p)):
		return fmt.Sprintf("recorded at %s against %s", a.RecordedAt.Format(time.RFC3339Nano), b.RecordedAt.Format(time.RFC3339Nano))
	case string(a.Data) != string(b.Data):
		return "data differs"
	case a.BatchEnd != b.BatchEnd:
		return "batch boundaries differ"
	default:
		return "metadata, occurred-at, schema version, content type or id origin differ"
	}
}
