package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFailedFirstStartKeepsNoAdminToken starts `rewind serve` on a new
// data directory in ways that fail (the port taken, a TLS file missing):
// no admin token whose secret nobody saw may be left behind, and the next
// good start then creates one and prints its secret. A token can also be
// created offline on the data directory while no server holds it.
func TestFailedFirstStartKeepsNoAdminToken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	for name, args := range map[string][]string{
		"port taken":      {"--addr", taken.Addr().String()},
		"TLS file absent": {"--addr", "127.0.0.1:0", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			code, out, errOut := exe(t, cleanEnv(), "", append([]string{"serve", "--data-dir", dir}, args...)...)
			if code == 0 {
				t.Fatalf("serve succeeded: %s %s", out, errOut)
			}
			if strings.Contains(out, "rwd_") {
				t.Fatalf("a failed start printed a secret: %q", out)
			}
			code, out, errOut = exe(t, cleanEnv(), "", "--data-dir", dir, "token", "list", "--all", "--json")
			var toks []tokenOut
			if code == 0 && (json.Unmarshal([]byte(out), &toks) != nil || len(toks) != 0) {
				t.Fatalf("a failed start left tokens whose secret nobody saw: %s", out)
			}
			if code != 0 && code != 3 {
				t.Fatalf("token list: %d %s", code, errOut)
			}
		})
	}
	t.Run("offline recovery", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		startServerIn(t, dir) // its admin secret is "lost"
		if code, _, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "token", "create", "--name", "ops",
			"--allow", "admin:*"); code != 6 {
			t.Fatalf("token create on a served data directory: %d %s", code, errOut)
		}
	})
	t.Run("offline recovery after stop", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		code, _, errOut := exe(t, cleanEnv(), "", "serve", "--data-dir", dir, "--addr", taken.Addr().String())
		if code == 0 {
			t.Fatalf("serve: %s", errOut)
		}
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := exe(t, cleanEnv(), "", "--data-dir", dir, "token", "create", "--name", "ops", "--allow", "admin:*", "--json")
		var tok tokenOut
		if code != 0 || json.Unmarshal([]byte(out), &tok) != nil || !strings.HasPrefix(tok.Secret, "rwd_") {
			t.Fatalf("offline token create: %d %q %s", code, out, errOut)
		}
	})
}
