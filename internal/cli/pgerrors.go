package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
)

// pgError gives a PostgreSQL connection failure or lock wait its code and a
// message that says what happened and what to do, instead of the driver's
// text alone: a database that cannot be reached is "unavailable" (exit 9)
// even when the wait for it ran out (not "interrupted"), one that does not
// exist is "not found", a refused login "unauthenticated", a lock held by
// another session past --lock-timeout "locked". ok is false for other
// errors.
func pgError(err error) (code rewind.Code, msg string, ok bool) {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Config != nil {
		return connectError(ce)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		return rewind.CodeLocked, fmt.Sprintf("a table, row or run this command needs is locked by another database session, "+
			"and the wait for it ran out (--lock-timeout): %s; find the session with "+
			"SELECT pid, state, query FROM pg_stat_activity WHERE wait_event_type IS NULL AND state <> 'idle', "+
			"wait for it to end, or raise --lock-timeout", context0(err)), true
	}
	return "", "", false
}

func connectError(ce *pgconn.ConnectError) (rewind.Code, string, bool) {
	c := ce.Config
	where := fmt.Sprintf("the database %q at %s:%d", c.Database, c.Host, c.Port)
	if strings.HasPrefix(c.Host, "/") {
		where = fmt.Sprintf("the database %q at socket %s", c.Database, c.Host)
	}
	check := "check that PostgreSQL runs there and that --dsn (or --ledger-dsn, $REWIND_DSN, $REWIND_LEDGER_DSN) names it"
	var pe *pgconn.PgError
	var op *net.OpError
	switch {
	case errors.As(ce, &pe) && pe.Code == "3D000":
		return rewind.CodeNotFound, fmt.Sprintf("%s does not exist: %s; check the database name in --dsn", where, pe.Message), true
	case errors.As(ce, &pe) && strings.HasPrefix(pe.Code, "28"):
		return rewind.CodeUnauthenticated, fmt.Sprintf("%s refused user %q: %s; check the user and password in --dsn "+
			"(and pg_hba.conf)", where, c.User, pe.Message), true
	case errors.As(ce, &pe):
		return rewind.CodeClosed, fmt.Sprintf("cannot connect to %s: the server said %q (SQLSTATE %s); %s", where, pe.Message, pe.Code, check), true
	case errors.Is(ce, context.DeadlineExceeded):
		timeout := "--connect-timeout"
		if c.ConnectTimeout > 0 {
			timeout = fmt.Sprintf("%s (--connect-timeout, or the DSN's connect_timeout)", c.ConnectTimeout)
		}
		return rewind.CodeClosed, fmt.Sprintf("cannot reach %s: no answer within %s; %s", where, timeout, check), true
	case errors.As(ce, &op):
		return rewind.CodeClosed, fmt.Sprintf("cannot reach %s: %v; %s", where, op.Err, check), true
	}
	reason := ce.Unwrap().Error()
	if i := strings.LastIndex(reason, "): "); i >= 0 { // "host:port (host): reason"
		reason = reason[i+3:]
	}
	return rewind.CodeClosed, fmt.Sprintf("cannot connect to %s: %s; %s", where, reason, check), true
}

// context0 is err's message up to the driver's own text: what the command
// was doing when the lock wait ran out.
func context0(err error) string {
	msg := trimPrefix(err.Error())
	if i := strings.Index(msg, ": ERROR: "); i >= 0 {
		return msg[:i]
	}
	return strings.TrimPrefix(msg, "ERROR: ")
}
