package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// TestMain lets a test run this package's command line in a child
// process: the test binary re-executed with REWIND_CLI_MAIN=1 is `rewind`.
func TestMain(m *testing.M) {
	if os.Getenv("REWIND_CLI_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	code := pgtest.Run(m) // drops the tests' databases in the background
	removeBinary()
	os.Exit(code)
}

// startServer serves a fresh data directory in-process and returns its
// URL and admin secret.
func startServer(t *testing.T) (string, string) {
	t.Helper()
	return startServerIn(t, t.TempDir())
}

// startServerIn is startServer on the data directory dir.
func startServerIn(t *testing.T, dir string) (string, string) {
	t.Helper()
	s, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.URL(), s.AdminSecret()
}

func TestDataCommandsAgainstAServer(t *testing.T) {
	t.Parallel()
	url, admin := startServer(t)
	dir := t.TempDir() // must stay untouched: the commands talk to the server
	remote := func(stdin string, args ...string) (int, string, string) {
		return run(t, dir, stdin, append([]string{"--server", url, "--token", admin}, args...)...)
	}
	if code, _, errOut := remote("", "append", "orders-1", "--type", "Placed", "--data", `{"total":12}`,
		"--expected-version", "no-stream"); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	if code, _, errOut := remote("", "append", "orders-1", "--type", "Placed", "--expected-version", "no-stream"); code != 4 ||
		!strings.Contains(errOut, "actual version 1") {
		t.Fatalf("append with a wrong expected version: %d %s", code, errOut)
	}
	code, out, errOut := remote("", "read", "orders-1", "--json")
	if code != 0 || !strings.Contains(out, `"data":{"total":12}`) {
		t.Fatalf("read: %d %q %s", code, out, errOut)
	}
	if code, out, _ := remote("", "streams", "--json"); code != 0 || !strings.Contains(out, "orders-1") {
		t.Fatalf("streams: %d %q", code, out)
	}
	code, out, _ = remote("", "stat", "--json")
	var st storeStat
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Target != url || st.LastPosition != 1 || st.Durability != "sync" {
		t.Fatalf("stat: %d %q", code, out)
	}
	if code, _, errOut := remote("", "delete", "orders-1"); code != 0 {
		t.Fatalf("delete: %d %s", code, errOut)
	}
	if code, _, _ := remote("", "read", "orders-1"); code != 3 {
		t.Fatalf("read of a deleted stream: exit %d, want 3", code)
	}
	if code, _, errOut := run(t, dir, "", "--server", url, "--token", "wrong", "read", "orders-1"); code == 0 ||
		!strings.Contains(errOut, "not known to this server") {
		t.Fatalf("unknown token: %d %s", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("--server commands wrote to --data-dir: %v", entries)
	}
}

func TestTokenCommands(t *testing.T) {
	t.Parallel()
	url, admin := startServer(t)
	code, out, errOut := run(t, t.TempDir(), "", "--server", url, "--token", admin, "token", "create",
		"--name", "orders-svc", "--allow", "write:orders-*", "--allow", "read:*", "--json")
	var tok tokenOut
	if code != 0 || json.Unmarshal([]byte(out), &tok) != nil || !strings.HasPrefix(tok.Secret, "rwd_") {
		t.Fatalf("token create: %d %q %s", code, out, errOut)
	}
	dir := t.TempDir()
	if code, _, errOut := run(t, dir, "", "--server", url, "--token", tok.Secret, "append", "orders-9", "--type", "A"); code != 0 {
		t.Fatalf("append with the new token: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", "--server", url, "--token", tok.Secret, "append", "users-9", "--type", "A"); code == 0 ||
		!strings.Contains(errOut, "permission denied") {
		t.Fatalf("append outside the token's scope: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", "--server", url, "--token", admin, "token", "revoke", "orders-svc"); code != 0 {
		t.Fatalf("revoke: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, dir, "", "--server", url, "--token", tok.Secret, "append", "orders-9", "--type", "A"); code == 0 ||
		!strings.Contains(errOut, "revoked") {
		t.Fatalf("append with a revoked token: %d %s", code, errOut)
	}
	code, out, _ = run(t, dir, "", "--server", url, "--token", admin, "token", "list", "--all", "--json")
	if code != 0 || strings.Contains(out, tok.Secret) || !strings.Contains(out, `"revoked_at"`) {
		t.Fatalf("token list: %d %q", code, out)
	}

	// Without --server the token file of --data-dir is edited.
	offline := t.TempDir()
	if code, out, errOut := run(t, offline, "", "token", "create", "--name", "ops", "--allow", "admin:*", "--json"); code != 0 ||
		!strings.Contains(out, "rwd_") {
		t.Fatalf("offline token create: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := run(t, offline, "", "token", "revoke", "ghost"); code != 3 || !strings.Contains(errOut, "token list") {
		t.Fatalf("revoke of an unknown token: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, offline, "", "token", "create", "--name", "bad", "--allow", "root"); code != 2 ||
		!strings.Contains(errOut, "read:PATTERN") {
		t.Fatalf("bad scope: %d %s", code, errOut)
	}
}

func TestConfigPrint(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/rewind.yaml"
	os.WriteFile(path, []byte("addr: 127.0.0.1:9999\nadmin_token: do-not-print-me-0123456789abcdef\n"), 0o600)
	code, out, errOut := run(t, t.TempDir(), "", "config", "print", "--config", path, "--rpc-timeout", "5s")
	if code != 0 || !strings.Contains(out, "addr: 127.0.0.1:9999") || !strings.Contains(out, "# file "+path) ||
		!strings.Contains(out, "rpc_timeout: 5s") || !strings.Contains(out, "# flag --rpc-timeout") ||
		strings.Contains(out, "do-not-print-me") || !strings.Contains(out, "[redacted]") {
		t.Fatalf("config print: %d\n%s%s", code, out, errOut)
	}
	os.WriteFile(path, []byte("adress: 127.0.0.1:9999\n"), 0o600)
	if code, _, errOut := run(t, t.TempDir(), "", "config", "print", "--config", path); code != 2 ||
		!strings.Contains(errOut, "adress") {
		t.Fatalf("unknown key: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, t.TempDir(), "", "serve", "--addr", "0.0.0.0:0", "--no-auth"); code != 2 ||
		!strings.Contains(errOut, "loopback") {
		t.Fatalf("no-auth on every interface: %d %s", code, errOut)
	}
}

// TestServeSIGTERMDuringAppends runs `rewind serve` in a child process,
// loads it with appends, sends SIGTERM, and checks that the server exits
// 0 and that every acknowledged append is in the store afterwards.
func TestServeSIGTERMDuringAppends(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const secret = "sigterm-test-admin-secret-0123456789"
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", dir, "--addr", addr)
	cmd.Env = append(os.Environ(), "REWIND_CLI_MAIN=1", "REWIND_ADMIN_TOKEN="+secret)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	url := "http://" + addr
	for i := 0; ; i++ {
		res, err := http.Get(url + "/readyz")
		if err == nil && res.StatusCode == 200 {
			res.Body.Close()
			break
		}
		if i == 200 {
			cmd.Process.Kill()
			t.Fatalf("the server did not become ready: %v\n%s", err, stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}

	unary, err := client.New(url, client.Config{Token: secret, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := client.New(url, client.Config{Token: secret, MaxRetries: -1, StreamAppends: true})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []uuid.UUID
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := unary
			if w%2 == 0 {
				c = streamed // half the writers use AppendStream
			}
			for i := 0; ; i++ {
				evs := make([]rewind.Event, 20)
				for j := range evs {
					evs[j] = rewind.Event{ID: uuid.Must(uuid.NewV7()), Type: "Load", Data: []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))}
				}
				if _, err := c.Append(context.Background(), fmt.Sprintf("load-%d", w), rewind.Any, evs...); err != nil {
					return // the server is going away
				}
				mu.Lock()
				for _, e := range evs {
					acked = append(acked, e.ID)
				}
				mu.Unlock()
			}
		}()
	}
	// SIGTERM once appends are being acknowledged: waiting a fixed time
	// proved nothing on a loaded machine, where none had been yet.
	var before int
	for deadline := time.Now().Add(30 * time.Second); before < 100 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		before = len(acked)
		mu.Unlock()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("rewind serve after SIGTERM: %v (want exit 0)\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("rewind serve did not exit after SIGTERM\n%s", stderr.String())
	}
	wg.Wait()
	if before == 0 {
		t.Fatal("no append was acknowledged before SIGTERM: the test proved nothing")
	}
	if !strings.Contains(stderr.String(), "store fsynced and closed") {
		t.Fatalf("the server did not log a clean shutdown:\n%s", stderr.String())
	}

	s, err := store.Open(dir, store.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("reopen after SIGTERM (the lock must be released): %v", err)
	}
	defer s.Close()
	have := map[uuid.UUID]bool{}
	for e, err := range s.ReadAll(context.Background(), rewind.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		have[e.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged event %s is missing after SIGTERM (%d acknowledged)", id, len(acked))
		}
	}
	t.Logf("%d events acknowledged, all present after SIGTERM", len(acked))
}

// TestBenchThroughServer runs the --server benchmarks and the NATS
// comparison at a small scale and checks their JSON.
func TestBenchThroughServer(t *testing.T) {
	// Not parallel: the comparison starts `rewind serve` from this test
	// binary, which needs REWIND_CLI_MAIN in the environment.
	t.Setenv("REWIND_CLI_MAIN", "1")
	url, admin := startServer(t)
	dir := t.TempDir()
	code, out, errOut := run(t, dir, "", "--server", url, "--token", admin, "bench", "append", "--writers", "4",
		"--batch", "10", "--events", "2000", "--json")
	var app serverAppendResult
	if code != 0 || json.Unmarshal([]byte(out), &app) != nil || app.Events != 2000 || app.EventsPerSec <= 0 ||
		app.Durability != "sync" || app.GroupSize <= 0 {
		t.Fatalf("bench append --server: %d %q %s", code, out, errOut)
	}
	code, out, errOut = run(t, dir, "", "--server", url, "--token", admin, "bench", "read", "--events", "3000", "--json")
	var rd serverReadResult
	if code != 0 || json.Unmarshal([]byte(out), &rd) != nil || rd.Events != 3000 || rd.EventsPerSec <= 0 {
		t.Fatalf("bench read --server: %d %q %s", code, out, errOut)
	}

	nats := ""
	for _, p := range []string{os.Getenv("REWIND_NATS_SERVER"), "nats-server", "/usr/sbin/nats-server"} {
		if path, err := exec.LookPath(p); p != "" && err == nil {
			nats = path
			break
		}
	}
	if nats == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("nats-server is not installed (apt-get install nats-server); CI must run this test")
		}
		t.Skip("nats-server is not installed")
	}
	code, out, errOut = run(t, t.TempDir(), "", "bench", "nats", "--nats-server", nats, "--events", "3000",
		"--sync-events", "100", "--sync-writers", "8", "--writers", "4", "--json")
	var r natsReport
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.RewindAppend100.Events != 3000 ||
		r.NATSPublishDefault.Messages != 3000 || r.NATSPullConsume.Messages != 3000 || r.RewindSubscribe.Events != 3000 ||
		r.RewindAppend1.Events != 100 || r.RewindAppend1Stream.Events != 100 || !r.RewindAppend1Stream.StreamAppends || (r.NATSPublishSync == nil) == (r.NATSSyncUnsupported == "") ||
		r.Ratios["append_batch100_vs_nats_default_publish"] <= 0 {
		t.Fatalf("bench nats: %d %q %s", code, out, errOut)
	}
}
