package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func count(t *testing.T, dsn, sql string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The cluster harness does what the failover and restore tests need: a
// crash and restart keep committed rows, a synchronous standby has every
// commit the primary acknowledged and takes writes once promoted, and a
// dump restores into another cluster.
func TestCluster(t *testing.T) {
	t.Parallel()
	p := NewCluster(t, ClusterOptions{})
	p.SQL("CREATE TABLE t (n int)")
	p.SQL("INSERT INTO t SELECT generate_series(1, 100)")
	p.Stop("immediate")
	p.Start()
	if n := count(t, p.DSN, "SELECT count(*) FROM t"); n != 100 {
		t.Fatalf("%d rows after a crash, want 100", n)
	}
	s := p.Standby(true)
	p.SQL("INSERT INTO t SELECT generate_series(101, 150)")
	p.Stop("immediate") // the primary is lost
	s.Promote()
	if n := count(t, s.DSN, "SELECT count(*) FROM t"); n != 150 {
		t.Fatalf("%d rows on the promoted standby, want 150", n)
	}
	s.SQL("INSERT INTO t VALUES (151)")
	dump := s.Dump("postgres")
	other := NewCluster(t, ClusterOptions{})
	other.Restore(dump, "restored")
	if n := count(t, other.Database("restored"), "SELECT count(*) FROM t"); n != 151 {
		t.Fatalf("%d rows restored, want 151", n)
	}
}
