package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a private, throwaway PostgreSQL cluster (initdb) on a port of
// its own, for tests that stop, crash, restore or fail over a server: the
// shared one must not be touched. PostgreSQL refuses to run as root, so
// when the tests run as root the cluster's files belong to, and its
// commands run as, the postgres user. Needs the server binaries
// (pg_config --bindir, or /usr/lib/postgresql/*/bin).
type Cluster struct {
	t    testing.TB
	Dir  string // the data directory
	Port int
	// DSN connects to its postgres database as the postgres user.
	DSN string
	bin string
	run []string // the prefix that runs a command as the cluster's owner
}

// ClusterOptions configures NewCluster.
type ClusterOptions struct {
	// Settings are extra postgresql.conf lines ("fsync = off").
	Settings []string
}

// binDir finds the PostgreSQL server binaries.
func binDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("pgtest: no PostgreSQL server binaries (initdb): install postgresql")
}

// freePort returns a TCP port free at the moment.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newClusterDir makes an empty directory the cluster's owner can use, and
// the prefix of commands run as that owner.
func newClusterDir(t testing.TB) (string, []string) {
	dir, err := os.MkdirTemp("", "rewind-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() != 0 {
		return dir, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("pgtest: running as root, and there is no postgres user to run PostgreSQL as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir, []string{"runuser", "-u", "postgres", "--"}
}

func (c *Cluster) cmd(name string, args ...string) *exec.Cmd {
	full := append(append(append([]string{}, c.run...), filepath.Join(c.bin, name)), args...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Dir = "/"
	return cmd
}

func (c *Cluster) must(name string, args ...string) {
	c.t.Helper()
	if out, err := c.cmd(name, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("pgtest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// NewCluster initialises and starts a cluster, stopped (immediately) when
// the test ends. It listens on 127.0.0.1 only, with trust authentication
// and replication allowed, so that Standby can copy it.
func NewCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, run := newClusterDir(t)
	c := &Cluster{t: t, Dir: filepath.Join(dir, "data"), Port: freePort(t), bin: bin, run: run}
	c.must("initdb", "-D", c.Dir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	conf := append([]string{"listen_addresses = '127.0.0.1'", fmt.Sprintf("port = %d", c.Port),
		"unix_socket_directories = ''", "wal_level = replica", "max_wal_senders = 10", "wal_keep_size = '256MB'",
		"hot_standby = on", "logging_collector = off", "shared_buffers = '32MB'", "max_connections = 50"}, o.Settings...)
	c.appendConf(conf...)
	c.appendHBA("host replication all 127.0.0.1/32 trust")
	c.setDSN()
	c.Start()
	t.Cleanup(func() { c.cmd("pg_ctl", "-D", c.Dir, "-m", "immediate", "-w", "stop").Run() })
	return c
}

func (c *Cluster) setDSN() {
	c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
}

// appendConf adds lines to postgresql.conf (later lines win), as the owner.
func (c *Cluster) appendConf(lines ...string) {
	c.t.Helper()
	c.appendFile("postgresql.conf", lines...)
}

func (c *Cluster) appendHBA(lines ...string) {
	c.t.Helper()
	c.appendFile("pg_hba.conf", lines...)
}

func (c *Cluster) appendFile(name string, lines ...string) {
	c.t.Helper()
	f, err := os.OpenFile(filepath.Join(c.Dir, name), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + strings.Join(lines, "\n") + "\n"); err != nil {
		c.t.Fatal(err)
	}
}

// Start starts the cluster and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	c.must("pg_ctl", "-D", c.Dir, "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60", "start")
	c.waitReady()
}

func (c *Cluster) waitReady() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgtest: cluster %s not ready: %v\n%s", c.Dir, err, c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the cluster: mode "fast" (clean) or "immediate" (as a crash:
// recovery runs at the next start).
func (c *Cluster) Stop(mode string) {
	c.t.Helper()
	c.must("pg_ctl", "-D", c.Dir, "-m", mode, "-w", "-t", "60", "stop")
}

// Log returns the server's log so far.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	return string(b)
}

// Standby copies the cluster with pg_basebackup into a new cluster that
// streams from it, and starts it. With synchronous, the primary waits for
// the standby to flush each commit (synchronous_commit = on with the
// standby as its only synchronous standby), so that a commit the primary
// acknowledged survives the standby's promotion.
func (c *Cluster) Standby(synchronous bool) *Cluster {
	c.t.Helper()
	dir, run := newClusterDir(c.t)
	s := &Cluster{t: c.t, Dir: filepath.Join(dir, "data"), Port: freePort(c.t), bin: c.bin, run: run}
	c.must("pg_basebackup", "-D", s.Dir, "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-X", "stream", "-R", "--no-sync", "--checkpoint=fast", "-d", "application_name=standby")
	s.appendConf(fmt.Sprintf("port = %d", s.Port), "primary_conninfo = 'host=127.0.0.1 port="+strconv.Itoa(c.Port)+
		" user=postgres application_name=standby'")
	s.setDSN()
	s.Start()
	c.t.Cleanup(func() { s.cmd("pg_ctl", "-D", s.Dir, "-m", "immediate", "-w", "stop").Run() })
	if synchronous {
		c.SQL("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
		c.SQL("SELECT pg_reload_conf()")
	}
	// Wait until it streams (and, synchronous, is the sync standby).
	deadline := time.Now().Add(60 * time.Second)
	for {
		var state, sync string
		err := c.queryRow("SELECT state, sync_state FROM pg_stat_replication WHERE application_name = 'standby'", &state, &sync)
		if err == nil && state == "streaming" && (!synchronous || sync == "sync") {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgtest: the standby does not stream (%q %q %v)\n%s", state, sync, err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Promote promotes a standby to a primary and waits until it accepts
// writes.
func (c *Cluster) Promote() {
	c.t.Helper()
	c.must("pg_ctl", "-D", c.Dir, "-w", "-t", "60", "promote")
	deadline := time.Now().Add(60 * time.Second)
	for {
		var inRecovery bool
		if err := c.queryRow("SELECT pg_is_in_recovery()", &inRecovery); err == nil && !inRecovery {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgtest: the promoted standby is still in recovery\n%s", c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SQL runs statements on the cluster's postgres database.
func (c *Cluster) SQL(sql string, args ...any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		c.t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

func (c *Cluster) queryRow(sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// Dump writes a pg_dump of database db (custom format) to a file and
// returns its path; Restore loads such a dump into database db (created
// empty first) of c.
func (c *Cluster) Dump(db string) string {
	c.t.Helper()
	path := filepath.Join(filepath.Dir(c.Dir), "dump-"+db+".pgdump")
	c.must("pg_dump", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "-Fc", "-f", path, db)
	return path
}

// Restore creates database db in c and restores the dump at path into it.
func (c *Cluster) Restore(path, db string) {
	c.t.Helper()
	c.SQL("CREATE DATABASE " + pgx.Identifier{db}.Sanitize())
	// The dump's directory belongs to another cluster's owner, readable by it.
	c.must("pg_restore", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "-d", db, "--no-owner", path)
}

// Database returns the DSN of database db on c.
func (c *Cluster) Database(db string) string { return WithDatabase(c.DSN, db) }
