package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
)

func setup(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"orders-*", "orders-1", true},
		{"orders-*", "orders-", true},
		{"orders-*", "order-1", false},
		{"orders-*", "xorders-1", false},
		{"*-audit", "users-audit", true},
		{"*-audit", "users-audit2", false},
		{"a*b*c", "a-b-b-c", true},
		{"a*b*c", "a-c-b", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"**", "x", true},
	} {
		if got := Match(c.pattern, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want Scope
		bad  string
	}{
		{in: "read:*", want: Scope{Read, "*"}},
		{in: "write:orders-*", want: Scope{Write, "orders-*"}},
		{in: "admin:*", want: Scope{Admin, "*"}},
		{in: "read", bad: "must be"},
		{in: "delete:*", bad: "unknown action"},
		{in: "read:", bad: "needs a stream pattern"},
		{in: "read:a b", bad: "spaces"},
	} {
		got, err := ParseScope(c.in)
		if c.bad != "" {
			if !errors.Is(err, rewind.ErrInvalidArgument) || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("ParseScope(%q) error %v, want one saying %q", c.in, err, c.bad)
			}
			continue
		}
		if err != nil || got != c.want || got.String() != c.in {
			t.Errorf("ParseScope(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestScopesImplyLowerActions(t *testing.T) {
	t.Parallel()
	tok := &Token{Scopes: []Scope{{Write, "orders-*"}, {Read, "users-*"}}}
	for _, c := range []struct {
		a      Action
		stream string
		want   bool
	}{
		{Read, "orders-1", true}, {Write, "orders-1", true}, {Admin, "orders-1", false},
		{Read, "users-1", true}, {Write, "users-1", false}, {Read, "other", false},
	} {
		if got := tok.Allows(c.a, c.stream); got != c.want {
			t.Errorf("Allows(%v, %q) = %v, want %v", c.a, c.stream, got, c.want)
		}
	}
	if tok.IsAdmin() || !(&Token{Scopes: []Scope{{Admin, "*"}}}).IsAdmin() {
		t.Error("IsAdmin must need admin:*")
	}
}

func TestCreateAuthenticateRevokePersist(t *testing.T) {
	t.Parallel()
	s, dir := setup(t)
	tok, secret, err := s.Create("orders-svc", []Scope{{Write, "orders-*"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "rwd_"+tok.ID+"_") {
		t.Fatalf("secret %q does not carry the id %s", secret, tok.ID)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, FileName))
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), secret[len(secret)-20:]) {
		t.Fatal("the token file contains the secret")
	}
	if fi, _ := os.Stat(filepath.Join(dir, FileName)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := s.Authenticate(secret)
	if err != nil || got.ID != tok.ID {
		t.Fatalf("authenticate: %v %v", got, err)
	}
	flipped := secret[:len(secret)-1] + "A" // the same secret but for its last character
	if strings.HasSuffix(secret, "A") {
		flipped = secret[:len(secret)-1] + "B"
	}
	for _, bad := range []string{"", "nope", secret + "x", flipped, "rwd_" + tok.ID + "_" + strings.Repeat("A", 43)} {
		if _, err := s.Authenticate(bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("authenticate(%q): %v, want unauthenticated", bad, err)
		}
	}
	if _, _, err := s.Create("orders-svc", []Scope{{Read, "*"}}, 0); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
	watch := s.WhenRevoked(tok.ID)
	select {
	case <-watch:
		t.Fatal("WhenRevoked is closed before the revocation")
	default:
	}
	if _, err := s.Revoke("orders-svc"); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan struct{}{watch, s.WhenRevoked(tok.ID), s.WhenRevoked("unknown")} {
		select {
		case <-ch:
		default:
			t.Fatal("WhenRevoked is not closed after the revocation (or for an unknown token)")
		}
	}
	if _, err := s.Authenticate(secret); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := s.Revoke("ghost"); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}

	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open while locked: %v", err)
	}
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if l := s2.List(true); len(l) != 1 || !l[0].Revoked() || l[0].Scopes[0] != (Scope{Write, "orders-*"}) {
		t.Fatalf("reloaded tokens %+v", l)
	}
	if len(s2.List(false)) != 0 {
		t.Fatal("List(false) shows a revoked token")
	}
	if _, err := s2.Authenticate(secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token after reload: %v", err)
	}
}

func TestBootstrap(t *testing.T) {
	t.Parallel()
	t.Run("generated", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		secret, err := s.Bootstrap("")
		if err != nil || secret == "" {
			t.Fatalf("bootstrap: %q %v", secret, err)
		}
		tok, err := s.Authenticate(secret)
		if err != nil || !tok.IsAdmin() {
			t.Fatalf("admin token: %+v %v", tok, err)
		}
		again, err := s.Bootstrap("")
		if err != nil || again != "" || len(s.List(true)) != 1 {
			t.Fatalf("second bootstrap created another token: %q %v", again, err)
		}
	})
	t.Run("from environment", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		if _, err := s.Bootstrap("short"); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Fatalf("short admin token: %v", err)
		}
		env := "an-operator-chosen-secret-of-some-length"
		secret, err := s.Bootstrap(env)
		if err != nil || secret != "" {
			t.Fatalf("bootstrap: %q %v", secret, err)
		}
		if tok, err := s.Authenticate(env); err != nil || !tok.IsAdmin() {
			t.Fatalf("env admin token: %+v %v", tok, err)
		}
		if _, err := s.Authenticate(env + "x"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("wrong env token accepted: %v", err)
		}
	})
}

// TestTokenTTL checks that a token created with a TTL works until it runs
// out and is then refused as a revoked one is, on a clock the test moves.
func TestTokenTTL(t *testing.T) {
	t.Parallel()
	s, dir := setup(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	tok, secret, err := s.Create("ci", []Scope{{Read, "*"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("expires at %v, want %v", tok.ExpiresAt, now.Add(time.Hour))
	}
	now = now.Add(time.Hour - time.Second)
	if _, err := s.Authenticate(secret); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	now = now.Add(time.Second)
	if _, err := s.Authenticate(secret); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("at expiry: %v, want unauthenticated: expired", err)
	}
	if l := s.List(false); len(l) != 0 {
		t.Fatalf("List(false) shows an expired token: %+v", l)
	}
	if l := s.List(true); len(l) != 1 || !l[0].Expired(now) {
		t.Fatalf("List(true): %+v", l)
	}
	// The name is free again; revoking by name finds the live token.
	again, _, err := s.Create("ci", []Scope{{Read, "*"}}, 0)
	if err != nil {
		t.Fatalf("the name of an expired token: %v", err)
	}
	if r, err := s.Revoke("ci"); err != nil || r.ID != again.ID {
		t.Fatalf("revoke by name: %+v %v, want the live token %s", r, err, again.ID)
	}
	// The expiry survives a reopen.
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.SetClock(func() time.Time { return now })
	if _, err := s2.Authenticate(secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("expired token after reopen: %v", err)
	}
	for _, ttl := range []time.Duration{-time.Hour, time.Millisecond} {
		if _, _, err := s2.Create("bad", []Scope{{Read, "*"}}, ttl); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("ttl %v: %v, want invalid", ttl, err)
		}
	}
}

// TestTokenLimits checks the documented bounds of a token.
func TestTokenLimits(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	many := make([]Scope, MaxScopes+1)
	for i := range many {
		many[i] = Scope{Read, fmt.Sprintf("s%d-*", i)}
	}
	if _, _, err := s.Create("many", many, 0); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("%d scopes: %v, want invalid", len(many), err)
	}
	if _, _, err := s.Create("enough", many[:MaxScopes], 0); err != nil {
		t.Fatalf("%d scopes: %v", MaxScopes, err)
	}
	if _, _, err := s.Create(strings.Repeat("n", MaxNameLen+1), many[:1], 0); !errors.Is(err, rewind.ErrInvalidArgument) {
		t.Fatalf("a long name: %v, want invalid", err)
	}
}

// TestCreateRefusesInvisiblePatterns checks that a new token's scope
// pattern follows the stream name rules on characters: a pattern with a
// zero-width space or a bidi override would print as another one (and
// match no stream, since no stream name may hold it). Nothing is created.
func TestCreateRefusesInvisiblePatterns(t *testing.T) {
	s, _ := setup(t)
	for _, p := range []string{"orders-\u200b*", "\u202eorders", "a\ufeffb", "x\u00ady"} {
		_, _, err := s.Create("t", []Scope{{Action: Read, Pattern: p}}, 0)
		var ve *rewind.ValidationError
		if !errors.As(err, &ve) || ve.Field != "scope" || !strings.Contains(ve.Reason, "invisible") {
			t.Errorf("pattern %q: %v; want a validation error of the scope naming invisible characters", p, err)
		}
	}
	if toks := s.List(true); len(toks) != 0 {
		t.Errorf("refused creations left tokens: %v", toks)
	}
}

func TestAllowsPrefix(t *testing.T) {
	t.Parallel()
	tok := &Token{Scopes: []Scope{{Read, "orders-*"}, {Write, "users-eu-*"}, {Read, "*-audit"}}}
	for _, c := range []struct {
		a      Action
		prefix string
		want   bool
	}{
		{Read, "orders-", true}, {Read, "orders-eu-", true}, {Read, "order", false}, {Read, "", false},
		{Write, "orders-", false}, {Read, "users-eu-1", true}, {Read, "users-", false}, {Read, "x-audit", false},
	} {
		if got := tok.AllowsPrefix(c.a, c.prefix); got != c.want {
			t.Errorf("AllowsPrefix(%v, %q) = %t, want %t", c.a, c.prefix, got, c.want)
		}
	}
	if !(&Token{Scopes: []Scope{{Read, "*"}}}).AllowsPrefix(Read, "") {
		t.Error("read:* must allow every prefix")
	}
}
