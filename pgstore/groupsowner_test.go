package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestGroupsElection: two stores of one schema (two servers) campaign for
// the consumer groups. One wins and is advertised; the other waits until
// it gives them up, then wins. An owner whose lock's session is ended
// from the outside (as when its connection drops) learns it through lost,
// is no longer advertised, and the other takes over. A campaign ends with
// its context.
func TestGroupsElection(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	a := db.open(t, Config{Schema: "groups_election"})
	b, err := Open(context.Background(), db.DSN, Config{Schema: "groups_election"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	owner := func(s *Store, want string) {
		t.Helper()
		var got string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if got, err = s.GroupsOwner(ctx); err != nil {
				t.Fatal(err)
			}
			if got == want {
				return
			}
		}
		t.Fatalf("the groups' owner is %q, want %q", got, want)
	}
	owner(a, "")
	lostA, releaseA, err := a.CampaignGroups(ctx, "http://a:1")
	if err != nil {
		t.Fatal(err)
	}
	owner(b, "http://a:1")

	type won struct {
		lost    <-chan struct{}
		release func()
		err     error
	}
	bWon := make(chan won, 1)
	go func() {
		lost, release, err := b.CampaignGroups(ctx, "http://b:2")
		bWon <- won{lost, release, err}
	}()
	owner(b, "http://a:1") // b campaigns meanwhile
	select {
	case w := <-bWon:
		t.Fatalf("b won the groups while a held them: %v", w.err)
	case <-lostA:
		t.Fatal("a lost the groups while nothing happened to its connection")
	default:
	}
	releaseA()
	w := <-bWon
	if w.err != nil {
		t.Fatal(w.err)
	}
	owner(a, "http://b:2")

	// b's session ends from the outside: b learns it, nobody is
	// advertised, and a takes over (after the grace, since b did not
	// release).
	db.Exec(t, "SELECT pg_terminate_backend(pid) FROM groups_election.groups_owner")
	select {
	case <-w.lost:
	case <-time.After(30 * time.Second):
		t.Fatal("b was not told that it lost the groups")
	}
	owner(a, "")
	lostA, releaseA, err = a.CampaignGroups(ctx, "http://a:1")
	if err != nil {
		t.Fatal(err)
	}
	w.release() // after a loss too
	owner(b, "http://a:1")
	select {
	case <-lostA:
		t.Fatal("a lost the groups while nothing happened to its connection")
	default:
	}

	cctx, cancel := context.WithCancel(ctx)
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	if _, _, err := b.CampaignGroups(cctx, "http://b:2"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a campaign whose context ended: %v, want context.Canceled", err)
	}
	releaseA()
	owner(b, "")
}
