package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
)

// pgError gives a PostgreSQL connection failure or lock wait its code and a
// message that says what happened and what to do, instead of the driver's
// text alone: a database that cannot be reached is "unavailable" (exit 9)
// even when the wait for it ran out (not "interrupted"), one that does not
// exist is "not found", a refused login "unauthenticated", a lock held by
// another session past --lock-timeout "locked". ok is false for other
// errors.
// flag names the flags and variables the connection string came from, for
// the advice ("check that --store (or $REWIND_STORE) names it").
func pgError(err error, flag string) (code rewind.Code, msg string, ok bool) {
	if errors.Is(err, context.Canceled) {
		return "", "", false // interrupted (Ctrl-C, SIGTERM) while connecting: exit 130
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Config != nil {
		code, msg, ok := connectError(ce, flag)
		// What the command was connecting for ("connect to the ledger
		// database"), when it said so.
		full := trimPrefix(err.Error())
		if i := strings.Index(full, ce.Error()); i > 0 {
			msg = strings.TrimSuffix(full[:i], ": ") + ": " + msg
		}
		return code, msg, ok
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		doing := "while trying to " + context0(err)
		if strings.HasPrefix(context0(err), pe.Message) {
			// Nothing said what the command was doing: the driver's
			// message alone ("canceling statement due to lock timeout").
			doing = "(" + pe.Message + ")"
		}
		// Every lock granted on a relation, to a session other than the
		// waiting one: row locks show as RowShareLock/RowExclusiveLock on
		// the table, table locks as their own modes.
		find := "SELECT l.pid, l.relation::regclass, l.mode, a.state, a.query FROM pg_locks l JOIN pg_stat_activity a " +
			"USING (pid) WHERE l.granted AND l.relation IS NOT NULL AND l.pid <> pg_backend_pid() AND a.datname = current_database()"
		if m := lockedTable.FindStringSubmatch(doing); m != nil {
			find = fmt.Sprintf("SELECT l.pid, l.mode, a.state, a.query FROM pg_locks l JOIN pg_stat_activity a USING (pid) "+
				"WHERE l.relation = '%s'::regclass AND l.granted", strings.ReplaceAll(m[1], "'", "''"))
		}
		return rewind.CodeLocked, fmt.Sprintf("a table, row or run this command needs is locked by another database session, "+
			"and the wait for it ran out (--lock-timeout) %s; find the session holding the lock (%s), "+
			"wait for it to end and try again, or raise --lock-timeout", doing, find), true
	}
	return "", "", false
}

func connectError(ce *pgconn.ConnectError, flag string) (rewind.Code, string, bool) {
	c := ce.Config
	where := fmt.Sprintf("the database %q at %s:%d", c.Database, c.Host, c.Port)
	if strings.HasPrefix(c.Host, "/") {
		where = fmt.Sprintf("the database %q at socket %s", c.Database, c.Host)
	}
	check := "check that PostgreSQL runs there and that " + flag + " names it"
	var pe *pgconn.PgError
	var op *net.OpError
	switch {
	case errors.As(ce, &pe) && pe.Code == "3D000":
		return rewind.CodeNotFound, fmt.Sprintf("%s does not exist: %s; check the database name in %s", where, pe.Message, flag), true
	case errors.As(ce, &pe) && strings.HasPrefix(pe.Code, "28"):
		return rewind.CodeUnauthenticated, fmt.Sprintf("%s refused user %q: %s; check the user and password in %s "+
			"(and pg_hba.conf)", where, c.User, pe.Message, flag), true
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
	if strings.Contains(reason, "receive message") {
		reason = "what answered there does not speak PostgreSQL's protocol (" + reason + "): is it the right host and port?"
	}
	return rewind.CodeClosed, fmt.Sprintf("cannot connect to %s: %s; %s", where, reason, check), true
}

// fromFlag marks the error of a connection made with one flag's
// connection string (the ledger's --ledger-dsn of replay run, whose
// source may be --store), so that the advice names that flag.
type fromFlag struct {
	flag string
	err  error
}

func (e *fromFlag) Error() string { return e.err.Error() }
func (e *fromFlag) Unwrap() error { return e.err }

// dsnFlag names where this command's connection strings came from: --store
// (or $REWIND_STORE), copy's --from and --to, or --dsn and --ledger-dsn.
func (a *app) dsnFlag() string {
	var given []string
	for _, f := range []string{"--store", "--from", "--to", "--dsn", "--ledger-dsn"} {
		for _, arg := range a.args {
			if arg == f || strings.HasPrefix(arg, f+"=") {
				given = append(given, f)
				break
			}
		}
	}
	switch {
	case a.storeURL != "" && (len(given) == 0 || given[0] == "--store"):
		return "--store (or $REWIND_STORE)"
	case len(given) > 0 && (given[0] == "--from" || given[0] == "--to"):
		return "--from and --to"
	}
	return "--dsn (or --ledger-dsn, $REWIND_DSN, $REWIND_LEDGER_DSN)"
}

// lockedTable finds the table a lock wait was for in what the command was
// doing ("check the job's where against table public.users").
var lockedTable = regexp.MustCompile(`\btable (\S+)$`)

// context0 is err's message up to the driver's own text: what the command
// was doing when the lock wait ran out.
func context0(err error) string {
	msg := trimPrefix(err.Error())
	if i := strings.Index(msg, ": ERROR: "); i >= 0 {
		return msg[:i]
	}
	return strings.TrimPrefix(msg, "ERROR: ")
}

// maskPasswords masks, in a message about to be printed, the passwords of
// the connection strings this command was given (--dsn, --ledger-dsn and
// their environment variables) as the driver reads them, and anything
// that looks like a DSN password: an error may quote a connection string
// the driver could not parse, or part of one.
func (a *app) maskPasswords(msg string) string {
	var dsns []string
	for _, env := range []string{"REWIND_DSN", "REWIND_LEDGER_DSN", "REWIND_STORE"} {
		if v := os.Getenv(env); v != "" {
			dsns = append(dsns, v)
		}
	}
	for i, arg := range a.args {
		for _, flag := range []string{"--dsn", "--ledger-dsn", "--store"} {
			switch {
			case arg == flag && i+1 < len(a.args):
				dsns = append(dsns, a.args[i+1])
			case strings.HasPrefix(arg, flag+"="):
				dsns = append(dsns, strings.TrimPrefix(arg, flag+"="))
			}
		}
	}
	for _, dsn := range dsns {
		if cfg, err := pgconn.ParseConfig(dsn); err == nil && len(cfg.Password) >= 3 {
			msg = strings.ReplaceAll(msg, cfg.Password, "***")
		}
		if tail := urlPasswordTail(dsn); tail != "" {
			msg = strings.ReplaceAll(msg, tail+"@", "***@")
			if len(tail) >= 3 {
				msg = strings.ReplaceAll(msg, tail, "***")
			}
		}
	}
	return audit.MaskText(msg)
}

// urlPasswordTail is, in a URL DSN whose authority holds more than one
// '@' (postgres://u:pa@ssWORD9@host/db), what lies between the first and
// the last: the driver ends the userinfo at the first '@' and takes the
// rest as the host ("ssWORD9@host"), but a password with an unescaped '@'
// is the likelier intent, and the driver's messages print the host.
func urlPasswordTail(dsn string) string {
	i := strings.Index(dsn, "://")
	if i < 0 {
		return ""
	}
	auth := dsn[i+3:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	first, last := strings.IndexByte(auth, '@'), strings.LastIndexByte(auth, '@')
	if first < 0 || last <= first {
		return ""
	}
	return auth[first+1 : last]
}
