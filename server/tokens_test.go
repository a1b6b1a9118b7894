package server_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/server"
)

// TestTokenTTLMustBePositive checks that the API refuses a TTL that is
// zero, negative or under a second, which would make a token expired at
// birth, with an error naming the field, and creates nothing.
func TestTokenTTLMustBePositive(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	for _, ttl := range []string{`"0s"`, `"-5s"`, `"0.5s"`} {
		status, body := do(t, b, "POST", "/rewind.v1.TokenService/CreateToken", "",
			`{"name":"t","scopes":["read:*"],"ttl":`+ttl+`}`, 0)
		if status != 400 || !strings.Contains(string(body), "ttl") {
			t.Errorf("ttl %s: %d %s; want 400 naming ttl", ttl, status, body)
		}
		if strings.Contains(string(body), "seconds:") || ttl != `"0.5s"` && !strings.Contains(string(body), `ttl \"`+strings.Trim(ttl, `"`)) {
			t.Errorf("ttl %s: %s; want the value as sent, not protobuf's text form", ttl, body)
		}
	}
	for _, ttl := range []time.Duration{-time.Hour, time.Millisecond} {
		if _, _, err := c.CreateExpiringToken(ctx, "t", ttl, "read:*"); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("client ttl %s: %v; want invalid argument", ttl, err)
		}
	}
	toks, err := c.ListTokens(ctx, true)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens after refused creations: %v %v; want only the admin's", toks, err)
	}
}

// TestTokenErrorsAreDocumented creates a token under a name in use and
// revokes one that does not exist: each answer must carry the documented
// detail code and a message with rewind's prefix that says what to do.
func TestTokenErrorsAreDocumented(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{})
	create := `{"name":"dup","scopes":["read:*"]}`
	if status, body := do(t, b, "POST", "/rewind.v1.TokenService/CreateToken", "", create, 0); status != 200 {
		t.Fatalf("create: %d %s", status, body)
	}
	hc := h2c()
	for _, c := range []struct{ name, path, body, code, detail, says string }{
		{"name in use", "/rewind.v1.TokenService/CreateToken", create, "already_exists",
			"already_exists", "revoke it first or pick another name"},
		{"unknown token", "/rewind.v1.TokenService/RevokeToken", `{"idOrName":"nope"}`,
			"not_found", "not_found", "rewind token list"},
	} {
		a := h2Exchange(t, hc, b.url+c.path, b.admin, "application/json", c.body)
		switch {
		case a.code != c.code || a.detail.GetCode() != c.detail:
			t.Errorf("%s: %d %s (detail %q): %s; want %s with detail %s", c.name, a.status, a.code,
				a.detail.GetCode(), a.message, c.code, c.detail)
		case !strings.HasPrefix(a.message, "rewind: ") || !strings.Contains(a.message, c.says):
			t.Errorf("%s: the message %q does not start with \"rewind: \" and say %q", c.name, a.message, c.says)
		}
		checkDetail(t, a)
		if !documentedInTable(t, a.detail.GetCode()) {
			t.Errorf("%s: the detail code %q is not in docs/server.md's table of errors", c.name, a.detail.GetCode())
		}
	}
}

// documentedInTable reports whether docs/server.md's table of errors has a
// row for the rewind code.
func documentedInTable(t *testing.T, code string) bool {
	t.Helper()
	doc, err := os.ReadFile("../docs/server.md")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(doc), "\n| `"+code+"` | ")
}
