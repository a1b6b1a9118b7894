package server_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/server"
)

// TestAuthMatrix calls every RPC with no token, an unknown token, a
// revoked token, a token of the wrong scope and one of the right scope,
// and checks the code, that nothing was written, and that reads of the
// whole log never deliver events the token may not read.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	s, admin, b := setup(t, server.Config{})
	secret := func(name string, scopes ...string) string {
		_, sec, err := admin.CreateToken(ctx, name, scopes...)
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}
	tokens := map[string]string{
		"none":         "",
		"unknown":      "rwd_000000000000_" + strings.Repeat("x", 43),
		"writer":       secret("writer", "write:orders-*"),
		"reader":       secret("reader", "read:orders-*"),
		"other":        secret("other", "read:users-*", "write:users-*"),
		"orders-admin": secret("orders-admin", "admin:orders-*"),
		"revoked":      secret("revoked", "admin:*"),
	}
	if _, err := admin.RevokeToken(ctx, "revoked"); err != nil {
		t.Fatal(err)
	}
	tokens["admin"] = b.admin
	for _, stream := range []string{"orders-1", "users-1"} {
		if _, err := admin.Append(ctx, stream, rewind.Any, ev("Seed", "{}")); err != nil {
			t.Fatal(err)
		}
	}
	tokenOf := map[*client.Client]string{}
	n := 0
	fresh := func(prefix string) string { // a stream to delete
		n++
		name := fmt.Sprintf("%s-del-%d", prefix, n)
		if _, err := admin.Append(ctx, name, rewind.Any, ev("Seed", "{}")); err != nil {
			t.Fatal(err)
		}
		return name
	}

	// onlyOrders fails when a whole-log read by the right token (orders-*)
	// or the wrong one (users-*) delivered events of other streams, or none.
	onlyOrders := func(streams []string, right bool) error {
		prefix := "users-"
		if right {
			prefix = "orders-"
		}
		for _, s := range streams {
			if !strings.HasPrefix(s, prefix) {
				return fmt.Errorf("leaked an event of %q to a token that may read only %s*", s, prefix)
			}
		}
		if len(streams) == 0 {
			return fmt.Errorf("delivered nothing of %s*", prefix)
		}
		return nil
	}
	readAll := func(c *client.Client) ([]string, error) {
		var streams []string
		for e, err := range c.ReadAll(ctx, rewind.ReadAllOptions{}) {
			if err != nil {
				return nil, err
			}
			streams = append(streams, e.Stream)
		}
		return streams, nil
	}
	// subscribe collects what a subscription delivers up to the log's
	// current end. The subscription's position passes events it skips, so
	// the end is reached whether or not the last events are delivered.
	subscribe := func(c *client.Client) ([]string, error) {
		last := rewind.Position(lastPosition(t, s))
		sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
		if err != nil {
			return nil, err
		}
		defer sub.Close()
		var streams []string
		for deadline := time.Now().Add(time.Minute); ; {
			wait, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			e, err := sub.Next(wait)
			timedOut := wait.Err() != nil // Next may then report the dropped stream's Canceled
			cancel()
			if err != nil && timedOut {
				if sub.Position() >= last || time.Now().After(deadline) {
					return streams, nil
				}
				continue
			}
			if err != nil {
				return nil, err
			}
			streams = append(streams, e.Stream)
		}
	}

	type rpc struct {
		name   string
		right  string // token that may call it
		wrong  string // token whose scopes do not allow it; "" when any valid token may call it
		call   func(c *client.Client, right bool) error
		before func() // prepares the call, before the log is watched
		leaky  bool   // a wrong-scope call succeeds but must deliver nothing it may not
		public bool   // needs no token
	}
	rpcs := []rpc{
		{name: "Append", right: "writer", wrong: "reader", call: func(c *client.Client, _ bool) error {
			_, err := c.Append(ctx, "orders-1", rewind.Any, ev("X", "{}"))
			return err
		}},
		{name: "AppendStream", right: "writer", wrong: "reader", call: func(c *client.Client, _ bool) error {
			sc, err := client.New(b.url, client.Config{Token: tokenOf[c], MaxRetries: -1, StreamAppends: true})
			if err != nil {
				return err
			}
			defer sc.Close()
			_, err = sc.Append(ctx, "orders-1", rewind.Any, ev("X", "{}"))
			return err
		}},
		{name: "ReadStream", right: "reader", wrong: "other", call: func(c *client.Client, _ bool) error {
			_, err := c.ReadStream(ctx, "orders-1", rewind.ReadStreamOptions{})
			return err
		}},
		{name: "GetStreamInfo", right: "writer", wrong: "other", call: func(c *client.Client, _ bool) error {
			_, err := c.StreamInfo(ctx, "orders-1")
			return err
		}},
		{name: "DeleteStream", right: "orders-admin", wrong: "writer", before: func() { fresh("orders") },
			call: func(c *client.Client, _ bool) error {
				_, err := c.DeleteStream(ctx, fmt.Sprintf("orders-del-%d", n), rewind.Any)
				return err
			}},
		{name: "ReadAll", right: "reader", wrong: "other", leaky: true, call: func(c *client.Client, right bool) error {
			streams, err := readAll(c)
			if err != nil {
				return err
			}
			return onlyOrders(streams, right)
		}},
		{name: "Subscribe", right: "reader", wrong: "other", leaky: true, call: func(c *client.Client, right bool) error {
			streams, err := subscribe(c)
			if err != nil {
				return err
			}
			return onlyOrders(streams, right)
		}},
		{name: "ListStreams", right: "reader", wrong: "other", leaky: true, call: func(c *client.Client, right bool) error {
			infos, err := c.ListStreams(ctx, rewind.ListStreamsOptions{IncludeDeleted: true})
			if err != nil {
				return err
			}
			var names []string
			for _, i := range infos {
				names = append(names, i.Stream)
			}
			return onlyOrders(names, right)
		}},
		{name: "GetServerInfo", right: "reader", call: func(c *client.Client, _ bool) error {
			_, err := c.ServerInfo(ctx)
			return err
		}},
		{name: "Health", public: true, call: func(c *client.Client, _ bool) error { return c.Ping(ctx) }},
		{name: "CreateToken", right: "admin", wrong: "orders-admin", call: func(c *client.Client, _ bool) error {
			n++
			_, _, err := c.CreateToken(ctx, fmt.Sprintf("t%d", n), "read:*")
			return err
		}},
		{name: "ListTokens", right: "admin", wrong: "orders-admin", call: func(c *client.Client, _ bool) error {
			_, err := c.ListTokens(ctx, true)
			return err
		}},
		{name: "RevokeToken", right: "admin", wrong: "orders-admin", call: func(c *client.Client, _ bool) error {
			_, err := c.RevokeToken(ctx, "other-does-not-exist")
			if errors.Is(err, rewind.ErrStreamNotFound) {
				return nil // authorized, and the token is unknown
			}
			return err
		}},
	}
	clients := map[string]*client.Client{}
	for name, tok := range tokens {
		c, err := client.New(b.url, client.Config{Token: tok, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		clients[name] = c
		tokenOf[c] = tok
	}
	tokenCount := func() int { return len(mustList(t, admin)) }
	for _, r := range rpcs {
		for _, who := range []string{"none", "unknown", "revoked", "wrong", "right"} {
			tok := who
			switch who {
			case "wrong":
				if r.wrong == "" {
					continue
				}
				tok = r.wrong
			case "right":
				tok = r.right
				if r.public {
					tok = "none"
				}
			}
			t.Run(r.name+"/"+who, func(t *testing.T) {
				if r.before != nil {
					r.before()
				}
				last := lastPosition(t, s)
				before := tokenCount()
				err := r.call(clients[tok], who == "right")
				code := rewind.CodeOf(err)
				want := rewind.CodeOK
				switch {
				case r.public:
				case who == "none" || who == "unknown" || who == "revoked":
					want = rewind.CodeUnauthenticated
				case who == "wrong" && !r.leaky:
					want = rewind.CodePermissionDenied
				}
				if code != want {
					t.Fatalf("code %s (%v), want %s", code, err, want)
				}
				if want != rewind.CodeOK {
					if got := lastPosition(t, s); got != last {
						t.Fatalf("a refused call wrote to the log: last position %d -> %d", last, got)
					}
					if got := tokenCount(); got != before {
						t.Fatalf("a refused call changed the tokens: %d -> %d", before, got)
					}
					if err.Error() == "" || !strings.Contains(err.Error(), "token") {
						t.Fatalf("the message does not say what to do: %q", err)
					}
				}
			})
		}
	}
}

func mustList(t *testing.T, c *client.Client) []client.Token {
	t.Helper()
	l, err := c.ListTokens(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAuthOffOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	_, err := server.New(server.Config{Addr: "0.0.0.0:0", NoAuth: true, DataDir: t.TempDir()})
	if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("no-auth on every interface: %v", err)
	}
	_, c, b := setup(t, server.Config{NoAuth: true})
	if b.admin == "" {
		t.Fatal("no admin token was created on the first start")
	}
	anon := newClient(t, b.url, "")
	if _, err := anon.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatalf("append without a token on a no-auth server: %v", err)
	}
	_ = c
}

func TestAdminTokenFromEnvironment(t *testing.T) {
	t.Parallel()
	secret := "an-operator-chosen-admin-secret-0123456789"
	_, _, b := setup(t, server.Config{AdminToken: secret})
	if b.admin != "" {
		t.Fatalf("the server printed a secret although REWIND_ADMIN_TOKEN gave it: %q", b.admin)
	}
	c := newClient(t, b.url, secret)
	if _, err := c.ListTokens(ctx, false); err != nil {
		t.Fatalf("admin token from the environment: %v", err)
	}
}

// TestShortAdminTokenCreatesNothing starts a server with a
// REWIND_ADMIN_TOKEN too short to be one: the start is refused with an
// error naming it, before the data directory is created.
func TestShortAdminTokenCreatesNothing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := server.New(server.Config{DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "short-secret"})
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), "REWIND_ADMIN_TOKEN") ||
		strings.Contains(err.Error(), "short-secret") {
		t.Fatalf("start with a short admin token: %v; want invalid argument naming REWIND_ADMIN_TOKEN, not its value", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused start left the data directory %s behind (%v)", dir, err)
	}
}
