package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// healthTTL is how long a probe of PostgreSQL answers Health: the server
// asks for it at each readiness probe, metrics scrape and page of ReadAll,
// which must not each cost a round trip.
const healthTTL = 500 * time.Millisecond

// healthProbeTimeout bounds one probe: a database that does not answer
// within it is reported unavailable.
const healthProbeTimeout = 2 * time.Second

// healthCache is the last probe of PostgreSQL.
type healthCache struct {
	mu          sync.Mutex
	at          time.Time
	unavailable string
	logged      string // the last failure logged in full
}

// Health reports whether PostgreSQL can be reached (rewind.HealthReporter):
// Unavailable says why not, and clears by itself once it can again. It
// is never Failed: PostgreSQL keeps its own data safe, and an outage is not
// a reason to restart the server. The epoch is always 1 (the log is never
// cut back).
func (s *Store) Health(ctx context.Context) (rewind.Health, error) {
	if err := s.checkOpen(); err != nil {
		return rewind.Health{}, err
	}
	h := rewind.Health{Epoch: logEpoch}
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if time.Since(s.health.at) >= healthTTL {
		s.health.unavailable = s.probe(ctx)
		s.health.at = time.Now()
	}
	h.Unavailable = s.health.unavailable
	return h, nil
}

// probe pings PostgreSQL, as an append would reach it (a connection of
// the pool, which reconnects), and says why it cannot; "" when it can.
// The reason goes where anyone may read it (the server's /readyz needs no
// token), so it says what failed without where the database is or who
// connects to it; the store's logger gets the driver's full message, once
// for each new one.
func (s *Store) probe(ctx context.Context) string {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthProbeTimeout)
	defer cancel()
	err := s.pool.Ping(pctx)
	switch {
	case err == nil:
		s.health.logged = ""
		return ""
	case pctx.Err() != nil:
		return "PostgreSQL did not answer within " + healthProbeTimeout.String()
	}
	if full := s.dbError("ping", err).Error(); full != s.health.logged {
		s.health.logged = full
		s.cfg.Logger.Warn("pgstore: PostgreSQL is unavailable", "location", s.location, "error", full)
	}
	return "PostgreSQL is unavailable: " + publicReason(err) + " (the server log has the details)"
}

// publicReason says why a ping failed in words that name no host, port,
// user or database: the errno of a failed dial, the SQLSTATE PostgreSQL
// answered, or the kind of failure.
func publicReason(err error) string {
	var pe *pgconn.PgError
	var dns *net.DNSError
	var errno syscall.Errno
	switch {
	case errors.As(err, &pe):
		return "PostgreSQL answered SQLSTATE " + pe.Code
	case errors.As(err, &dns):
		return "the database host name does not resolve"
	case errors.As(err, &errno):
		return "cannot connect: " + errno.Error()
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed"
	case pgconn.Timeout(err):
		return "the connection timed out"
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return "cannot connect"
	}
	return "the connection failed"
}

// logEpoch is the log's epoch (see rewind.Health): always 1. The embedded
// store begins a new epoch when its recovery cuts positions it may have
// given out; PostgreSQL never takes back a commit, and nothing in this
// store cuts the log back. A database restored from an older backup is not
// noticed as a new epoch: see docs/postgres.md.
const logEpoch = 1

// checkEpoch refuses a reader resuming after position after in an epoch
// newer than this log's (rewind.SubscribeOptions.Epoch): that position was
// not read in this log. 0 (unknown) and 1 pass.
func checkEpoch(after rewind.Position, epoch uint64) error {
	if epoch > logEpoch {
		return &rewind.EpochError{After: after, Epoch: epoch, Current: logEpoch}
	}
	return nil
}
