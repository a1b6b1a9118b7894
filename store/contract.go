package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/rewindhq/rewind"
)

// The embedded store keeps the rewind.Store contract and offers every
// optional capability.
var (
	_ rewind.Store          = (*Store)(nil)
	_ rewind.LastPositioner = (*Store)(nil)
	_ rewind.Describer      = (*Store)(nil)
	_ rewind.Retainer       = (*Store)(nil)
	_ rewind.Verifier       = (*Store)(nil)
	_ rewind.HealthReporter = (*Store)(nil)
	_ rewind.Subscription   = (*Subscription)(nil)
	_ rewind.Poller         = (*Subscription)(nil)
	_ rewind.EpochReporter  = (*Subscription)(nil)
)

// checkOpen fails with rewind.ErrClosed once Close has begun.
func (s *Store) checkOpen() error {
	select {
	case <-s.closed:
		return fmt.Errorf("%w: the store is closed", rewind.ErrClosed)
	default:
		return nil
	}
}

// LastPosition returns the position of the last acknowledged event.
func (s *Store) LastPosition(ctx context.Context) (rewind.Position, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	return rewind.Position(s.log.Last()), nil
}

// Describe describes the store: its directory, durability, log bounds,
// streams and files.
func (s *Store) Describe(ctx context.Context) (rewind.StoreInfo, error) {
	if err := s.checkOpen(); err != nil {
		return rewind.StoreInfo{}, err
	}
	i := s.Info()
	return rewind.StoreInfo{Location: i.Dir, Durability: i.Durability, FirstPosition: i.FirstPosition,
		LastPosition: i.LastPosition, Streams: i.Streams, Segments: i.Segments, Bytes: i.Bytes}, nil
}

// Verify reads every record of the log and checks its checksum and
// framing (see eventlog.Log.Verify). It returns nil when all is intact,
// and otherwise a *rewind.CorruptionError per problem, joined.
func (s *Store) Verify(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	rep, err := s.log.Verify(ctx, nil)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range rep.Problems {
		reason := p.Reason
		if p.Tail {
			reason += " (a torn tail: the next open cuts it)"
		}
		errs = append(errs, &rewind.CorruptionError{Segment: p.Segment, Offset: p.Offset,
			Position: rewind.Position(p.Position), Reason: reason})
	}
	return errors.Join(errs...)
}
