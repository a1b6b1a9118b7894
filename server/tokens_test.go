package server_test

import (
	"errors"
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
