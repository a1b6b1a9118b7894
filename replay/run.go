package replay

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/rewindhq/rewind"
)

// Handler receives the events of a replay, one at a time, in position
// order. The event is valid until the handler returns; Clone it to keep
// it. An error ends the replay: ErrStop ends it without an error, any other
// error is returned by Run.
type Handler func(ctx context.Context, ev *rewind.RecordedEvent) error

// DefaultBatchSize is how many events a replay reads at once when
// Options.BatchSize is 0: a batch of decoded events (about 11 KiB) stays in
// the L1 cache while the handler takes them. (On the loaded 2-core machine
// of docs/benchmarks.md, 64 and 256 could not be told apart.)
const DefaultBatchSize = 64

// Options tunes a replay.
type Options struct {
	// Pacing says how fast events are delivered. Defaults to as fast as
	// possible.
	Pacing Pacing
	// Digest computes Result.Digest. It costs a SHA-256 pass over every
	// delivered event (about its size in bytes at 1–2 GB/s). Defaults to
	// false.
	Digest bool
	// BatchSize is how many events are read from the store at once.
	// Defaults to DefaultBatchSize.
	BatchSize int
}

// Result says what a replay delivered.
type Result struct {
	// From and To are the window resolved to positions, both inclusive, as
	// the log stood when the replay started: To is cut at the last
	// position acknowledged then. From > To means the window was empty.
	// Replaying From..To by position again delivers the same events
	// (unless retention removed some since).
	From rewind.Position `json:"from"`
	To   rewind.Position `json:"to"`
	// Events counts the events the handler took (returned nil or ErrStop).
	Events int64 `json:"events"`
	// FirstPosition and LastPosition are those of the first and last
	// events the handler took; 0 when there were none.
	FirstPosition rewind.Position `json:"first_position"`
	LastPosition  rewind.Position `json:"last_position"`
	// Digest, with Options.Digest, is the hex SHA-256 over the delivered
	// events' position, id, stream, type and data, in order: two replays
	// delivered the same events exactly when their digests match.
	Digest string `json:"digest,omitempty"`
	// Stopped is true when the handler ended the replay with ErrStop.
	Stopped bool `json:"stopped,omitempty"`
}

// Run replays the window of s into h and returns what it delivered.
//
// Events are delivered in position order, from the window's From to its To,
// both inclusive, and never after To, even while appends continue: the
// window is resolved to positions once, when Run starts, and a bounded
// replay never waits for events to come. The same window over the same log
// delivers the same events, byte for byte, every time.
//
// A window or options that do not validate fail with an *Error before
// anything is read. A From that retention removed fails with a
// *rewind.TruncatedError. When h fails, Run returns the result so far and
// an error wrapping h's that names the event's position.
//
// Run reads through the store's rewind.BatchReader when it has one (no
// allocation per event) and through ReadAll otherwise.
func Run(ctx context.Context, s rewind.Store, w Window, h Handler, opts Options) (Result, error) {
	if err := w.Validate(); err != nil {
		return Result{}, err
	}
	if err := opts.Pacing.Validate(); err != nil {
		return Result{}, err
	}
	if opts.BatchSize < 0 {
		return Result{}, &Error{Field: "batch size", Value: fmt.Sprint(opts.BatchSize), Reason: "must not be negative", Err: ErrBadPacing}
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	from, to, err := resolve(ctx, s, &w)
	if err != nil {
		return Result{}, err
	}
	r := &run{h: h, res: Result{From: from, To: to}, pace: newPacer(opts.Pacing), streams: streamSet(w.Streams)}
	if opts.Digest {
		r.digest = sha256.New()
	}
	if from <= to {
		if br, ok := s.(rewind.BatchReader); ok {
			err = r.batches(ctx, br, w.filter(), opts.BatchSize)
		} else {
			err = r.readAll(ctx, s, w.filter())
		}
	}
	if errors.Is(err, ErrStop) {
		r.res.Stopped, err = true, nil
	}
	if r.digest != nil {
		r.res.Digest = hex.EncodeToString(r.digest.Sum(nil))
	}
	return r.res, err
}

// run is the state of one replay.
type run struct {
	h       Handler
	res     Result
	pace    *pacer
	streams map[string]struct{}
	digest  hash.Hash
	scratch []byte // the digest's per-event header, reused
}

func streamSet(streams []string) map[string]struct{} {
	if len(streams) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(streams))
	for _, s := range streams {
		m[s] = struct{}{}
	}
	return m
}

// batches reads the window through the store's fast path.
func (r *run) batches(ctx context.Context, br rewind.BatchReader, f rewind.Filter, size int) error {
	c, err := br.ReadBatches(ctx, rewind.BatchReadOptions{From: r.res.From, To: r.res.To, Filter: f})
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]rewind.RecordedEvent, 0, size)
	// Without a stream set or pacing, nothing is decided per event but the
	// handler's call: the batch goes to the handler in one loop.
	direct := r.streams == nil && r.pace == nil
	for {
		buf, err = c.NextBatch(ctx, buf)
		if direct {
			if err := r.deliverBatch(ctx, buf); err != nil {
				return err
			}
		} else {
			for i := range buf {
				if err := r.deliver(ctx, &buf[i]); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readAll reads the window through the contract's ReadAll.
func (r *run) readAll(ctx context.Context, s rewind.Store, f rewind.Filter) error {
	for ev, err := range s.ReadAll(ctx, rewind.ReadAllOptions{From: r.res.From, Filter: f}) {
		if err != nil {
			return err
		}
		if ev.Position > r.res.To {
			return nil
		}
		if err := r.deliver(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// deliver hands one event that the store's filter kept to the handler.
func (r *run) deliver(ctx context.Context, ev *rewind.RecordedEvent) error {
	if r.streams != nil {
		if _, ok := r.streams[ev.Stream]; !ok {
			return nil
		}
	}
	if r.pace != nil {
		if err := r.pace.wait(ctx, ev.RecordedAt); err != nil {
			return err
		}
	}
	err := r.h(ctx, ev)
	if err != nil && !errors.Is(err, ErrStop) {
		return r.failed(ev, err)
	}
	r.took(ev)
	return err
}

// deliverBatch hands evs to the handler in turn, as deliver does each,
// when no event is to be skipped or paced: the result is counted once
// per batch unless the digest needs each event as it is taken.
func (r *run) deliverBatch(ctx context.Context, evs []rewind.RecordedEvent) error {
	if r.digest != nil {
		for i := range evs {
			err := r.h(ctx, &evs[i])
			if err != nil && !errors.Is(err, ErrStop) {
				return r.failed(&evs[i], err)
			}
			r.took(&evs[i])
			if err != nil {
				return err
			}
		}
		return nil
	}
	for i := range evs {
		if err := r.h(ctx, &evs[i]); err != nil {
			if !errors.Is(err, ErrStop) {
				r.tookAll(evs[:i])
				return r.failed(&evs[i], err)
			}
			r.tookAll(evs[:i+1])
			return err
		}
	}
	r.tookAll(evs)
	return nil
}

func (r *run) failed(ev *rewind.RecordedEvent, err error) error {
	return fmt.Errorf("replay: the handler failed at position %d (stream %q, version %d): %w", ev.Position, ev.Stream, ev.Version, err)
}

// tookAll counts evs as taken, without a digest.
func (r *run) tookAll(evs []rewind.RecordedEvent) {
	if len(evs) == 0 {
		return
	}
	if r.res.Events == 0 {
		r.res.FirstPosition = evs[0].Position
	}
	r.res.Events += int64(len(evs))
	r.res.LastPosition = evs[len(evs)-1].Position
}

func (r *run) took(ev *rewind.RecordedEvent) {
	if r.res.Events == 0 {
		r.res.FirstPosition = ev.Position
	}
	r.res.Events++
	r.res.LastPosition = ev.Position
	if r.digest != nil {
		// Each field with its length, so that no two event lists hash the
		// same bytes.
		b := binary.BigEndian.AppendUint64(r.scratch[:0], uint64(ev.Position))
		b = append(b, ev.ID[:]...)
		b = binary.AppendUvarint(b, uint64(len(ev.Stream)))
		b = append(b, ev.Stream...)
		b = binary.AppendUvarint(b, uint64(len(ev.Type)))
		b = append(b, ev.Type...)
		b = binary.AppendUvarint(b, uint64(len(ev.Data)))
		r.scratch = b
		r.digest.Write(b)
		r.digest.Write(ev.Data)
	}
}
