package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Several servers may serve one store, but a store's consumer groups must
// be run by one engine at a time (two would deliver every event twice and
// fence each other out of the groups' state streams). The servers elect
// that one through PostgreSQL: the owner holds a session advisory lock on
// a connection of its own, and advertises where it answers in the
// groups_owner row. A server that dies loses its session, and with it the
// lock; another one takes it over.

const (
	// groupsCheck is how often a candidate tries the lock and the owner
	// checks its lock's connection (each check must answer within it).
	groupsCheck = 500 * time.Millisecond
	// GroupsGrace is how long a new owner waits, after taking the lock
	// from an owner that did not release it, before it runs the groups:
	// longer than an owner that lost its connection takes to notice (at
	// most two checks) and to stop its engine (GroupsStopTimeout), so
	// that the two never run at once.
	GroupsGrace = 3 * time.Second
	// GroupsStopTimeout bounds the last commit of an owner that lost its
	// lock: a commit that does not land by then is not made (its acks are
	// within the redelivery bound).
	GroupsStopTimeout = time.Second
)

// CampaignGroups blocks until this process owns the store's consumer
// groups, or ctx ends. url is where the process serves them (what
// GroupsOwner tells the others). The returned channel is closed when the
// ownership is lost (the lock's connection failed a check): the caller
// must then stop its engine within GroupsStopTimeout. release gives the
// ownership up cleanly, once the caller's engine has written its last
// commit; it must be called exactly once, also after a loss.
func (s *Store) CampaignGroups(ctx context.Context, url string) (lost <-chan struct{}, release func(), err error) {
	k1, k2 := lockKeys(s.cfg.Schema, lockGroups)
	for {
		if err := s.checkOpen(); err != nil {
			return nil, nil, err
		}
		conn, err := s.groupsConn(ctx)
		if err == nil {
			err = s.takeGroupsLock(ctx, conn, k1, k2, url)
			if err == nil {
				l := &groupsLease{conn: conn, lost: make(chan struct{}), release: make(chan struct{}),
					done: make(chan struct{}), k1: k1, k2: k2, schema: s.cfg.Schema}
				go l.keep()
				return l.lost, l.giveUp, nil
			}
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		s.cfg.Logger.Warn("pgstore: could not campaign for the consumer groups; trying again", "schema", s.cfg.Schema,
			"err", err, "retry_in", groupsCheck)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(groupsCheck):
		}
	}
}

// groupsConn opens the connection that holds the groups lock. The server
// side's TCP keepalives end the session of a host that vanished without
// closing its socket (a crash of the machine, a partition) in about 8 s,
// which releases the lock.
func (s *Store) groupsConn(ctx context.Context) (*pgx.Conn, error) {
	cc := s.pool.Config().ConnConfig.Copy()
	cc.RuntimeParams["application_name"] = "rewind consumer groups"
	cc.RuntimeParams["tcp_keepalives_idle"] = "5"
	cc.RuntimeParams["tcp_keepalives_interval"] = "1"
	cc.RuntimeParams["tcp_keepalives_count"] = "3"
	return pgx.ConnectConfig(ctx, cc)
}

// takeGroupsLock waits for the lock on conn, then advertises url. When the
// previous owner did not release (it died, or lost its connection), it
// waits GroupsGrace more before returning.
func (s *Store) takeGroupsLock(ctx context.Context, conn *pgx.Conn, k1, k2 int32, url string) error {
	for {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", k1, k2).Scan(&got); err != nil {
			return err
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(groupsCheck):
		}
	}
	table := quoteIdent(s.cfg.Schema) + ".groups_owner"
	var released bool
	err := conn.QueryRow(ctx, "SELECT released FROM "+table).Scan(&released)
	if errors.Is(err, pgx.ErrNoRows) {
		released, err = true, nil
	}
	if err != nil {
		return fmt.Errorf("read the consumer groups' owner: %w", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO "+table+" (id, url, pid, since, released) "+
		"VALUES (true, $1, pg_backend_pid(), now(), false) ON CONFLICT (id) DO UPDATE "+
		"SET url = $1, pid = pg_backend_pid(), since = now(), released = false", url); err != nil {
		return fmt.Errorf("advertise the consumer groups' owner: %w", err)
	}
	if released {
		return nil
	}
	s.cfg.Logger.Info("pgstore: took over the consumer groups from an owner that did not release them; "+
		"waiting for it to have stopped", "schema", s.cfg.Schema, "grace", GroupsGrace)
	deadline := time.Now().Add(GroupsGrace)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(groupsCheck, time.Until(deadline))):
		}
		if err := ping(ctx, conn); err != nil {
			return err
		}
	}
	return nil
}

func ping(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, groupsCheck)
	defer cancel()
	_, err := conn.Exec(ctx, "SELECT 1")
	return err
}

// groupsLease is a held groups lock: keep checks its connection until the
// holder gives it up.
type groupsLease struct {
	conn    *pgx.Conn
	lost    chan struct{}
	release chan struct{}
	done    chan struct{}
	k1, k2  int32
	schema  string
}

func (l *groupsLease) keep() {
	defer close(l.done)
	t := time.NewTicker(groupsCheck)
	defer t.Stop()
	for {
		select {
		case <-l.release:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			// Marked released, so that the next owner need not wait.
			l.conn.Exec(ctx, "UPDATE "+quoteIdent(l.schema)+".groups_owner SET released = true WHERE pid = pg_backend_pid()")
			l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", l.k1, l.k2)
			l.conn.Close(ctx)
			return
		case <-t.C:
			if err := ping(context.Background(), l.conn); err != nil {
				close(l.lost)
				l.conn.Close(context.Background())
				<-l.release
				return
			}
		}
	}
}

func (l *groupsLease) giveUp() {
	close(l.release)
	<-l.done
}

// GroupsOwner returns the URL the owner of the store's consumer groups
// advertised, or "" when no process owns them now (none runs, or one is
// taking over).
func (s *Store) GroupsOwner(ctx context.Context) (string, error) {
	if err := s.checkOpen(); err != nil {
		return "", err
	}
	k1, k2 := lockKeys(s.cfg.Schema, lockGroups)
	var url string
	err := s.pool.QueryRow(ctx, "SELECT o.url FROM "+quoteIdent(s.cfg.Schema)+".groups_owner o "+
		"JOIN pg_locks l ON l.pid = o.pid WHERE l.locktype = 'advisory' AND l.granted "+
		"AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "+
		"AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2",
		int64(uint32(k1)), int64(uint32(k2))).Scan(&url)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", s.dbError("find the consumer groups' owner", err)
	}
	return url, nil
}
