package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/server"
)

// setupPG starts a server on a PostgreSQL store of its own database.
func setupPG(t *testing.T) *bundle {
	t.Helper()
	db := pgtest.New(t)
	if _, err := pgstore.Migrate(ctx, db.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	ps, err := pgstore.Open(ctx, db.DSN, pgstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, c, b := setup(t, server.Config{Backend: ps})
	if _, err := c.Append(ctx, "a-1", rewind.Any, ev("T", `{}`)); err != nil {
		t.Fatal(err)
	}
	return b
}

// A NUL character in a stream prefix or an after is a client's input, not
// a server failure: a PostgreSQL store answers as the embedded one does,
// 200 with what matches (no stream name holds NUL), never 500.
func TestNULInPrefixOverPostgres(t *testing.T) {
	t.Parallel()
	b := setupPG(t)
	cases := []struct {
		method, body string
		found        bool // whether stream a-1 is in the answer
	}{
		{"ListStreams", `{"prefix":"a\u0000"}`, false},
		{"ListStreams", `{"after":"a\u0000"}`, true},
		{"ListStreams", `{"after":"a-1\u0000"}`, false},
		{"ReadAll", `{"filter":{"streamPrefix":"a\u0000"}}`, false},
		{"ReadAll", `{"filter":{"streamPrefix":"a-\u0000x"},"limit":10}`, false},
	}
	for _, c := range cases {
		_, body := do(t, b, "POST", c.method, "", c.body, 200)
		if !json.Valid(body) || strings.Contains(string(body), `"a-1"`) != c.found {
			t.Fatalf("%s %s: %s; want a-1 in it: %v", c.method, c.body, body, c.found)
		}
	}
}
