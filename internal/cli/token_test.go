package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestTokenTTL creates expiring tokens through the server and in a data
// directory, and checks the bounds of --ttl.
func TestTokenTTL(t *testing.T) {
	t.Parallel()
	url, admin := startServer(t)
	before := time.Now()
	code, out, errOut := run(t, t.TempDir(), "", "--server", url, "--token", admin, "token", "create",
		"--name", "ci", "--allow", "read:*", "--ttl", "24h", "--json")
	var tok tokenOut
	if code != 0 || json.Unmarshal([]byte(out), &tok) != nil {
		t.Fatalf("token create --ttl: %d %q %s", code, out, errOut)
	}
	if tok.ExpiresAt.Before(before.Add(24*time.Hour)) || tok.ExpiresAt.After(time.Now().Add(24*time.Hour)) {
		t.Fatalf("expires at %v, want 24h after its creation", tok.ExpiresAt)
	}
	code, out, _ = run(t, t.TempDir(), "", "--server", url, "--token", admin, "token", "list")
	if code != 0 || !strings.Contains(out, "expires "+tok.ExpiresAt.Format(time.RFC3339)) {
		t.Fatalf("token list does not show the expiry: %d %q", code, out)
	}

	offline := t.TempDir()
	code, out, errOut = run(t, offline, "", "token", "create", "--name", "ops", "--allow", "read:*", "--ttl", "1h", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &tok) != nil || tok.ExpiresAt.IsZero() {
		t.Fatalf("offline token create --ttl: %d %q %s", code, out, errOut)
	}
	for _, ttl := range []string{"10ms", "-1h", "0s", "0"} {
		if code, _, errOut := run(t, offline, "", "token", "create", "--name", "bad", "--allow", "read:*",
			"--ttl", ttl); code != 2 || !strings.Contains(errOut, "at least 1s") {
			t.Errorf("--ttl %s: %d %s, want a usage error saying at least 1s", ttl, code, errOut)
		}
	}
}
