package server_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/internal/pgtest"
	"github.com/rewindhq/rewind/pgstore"
	"github.com/rewindhq/rewind/server"
)

// A PostgreSQL store whose database goes away: /readyz turns unready and
// the gRPC health check NOT_SERVING, saying PostgreSQL is unavailable, and
// appends fail as unavailable (a code clients retry); once it is back,
// the same server is ready and appends again — an outage is not a store
// failure that lasts until a restart.
func TestPostgresOutageOverTheAPI(t *testing.T) {
	t.Parallel()
	pg := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	if _, err := pgstore.Migrate(ctx, pg.DSN, pgstore.Config{}); err != nil {
		t.Fatal(err)
	}
	ps, err := pgstore.Open(ctx, pg.DSN, pgstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, c, b := setup(t, server.Config{Backend: ps})
	gh := grpchealth.NewClient(http.DefaultClient, b.url, connect.WithGRPC())
	probe := func() (int, string, grpchealth.Status) {
		code, body := get(t, b.url+"/readyz")
		res, err := gh.Check(ctx, &grpchealth.CheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return code, body, res.Status
	}
	if _, err := c.Append(ctx, "s", rewind.Any, ev("T", `{}`)); err != nil {
		t.Fatal(err)
	}
	if code, body, st := probe(); code != 200 || st != grpchealth.StatusServing {
		t.Fatalf("before the outage: readyz %d %s, grpc %v", code, body, st)
	}
	pg.Stop("immediate")
	var code int
	var body string
	var st grpchealth.Status
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		code, body, st = probe()
		if code == http.StatusServiceUnavailable && strings.Contains(body, "unavailable") && st == grpchealth.StatusNotServing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("while PostgreSQL is down: readyz %d %s, grpc %v; want 503 saying it is unavailable, NOT_SERVING",
				code, body, st)
		}
	}
	// /readyz needs no token: its reason says what is wrong, not where
	// the database is nor who connects to it (the server log does).
	// (Once the session is gone, the probe's new connection is refused.)
	time.Sleep(time.Second)
	code, body, _ = probe()
	for _, secret := range []string{strconv.Itoa(pg.Port), "127.0.0.1", `"postgres"`, "user=", "database="} {
		if strings.Contains(body, secret) {
			t.Fatalf("readyz during the outage shows %q: %s", secret, body)
		}
	}
	if !strings.Contains(body, "PostgreSQL") || !strings.Contains(body, "server log") {
		t.Fatalf("readyz during the outage does not say what is wrong and where to look: %s", body)
	}
	if _, m := get(t, b.url+"/metrics"); !strings.Contains(m, "rewind_store_unavailable 1") {
		t.Fatalf("metrics lack rewind_store_unavailable 1")
	}
	impatient, err := client.New(b.url, client.Config{Token: b.admin, MaxRetries: 1, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer impatient.Close()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = impatient.Append(actx, "s", rewind.Any, ev("T", `{}`))
	cancel()
	if !errors.Is(err, rewind.ErrClosed) || rewind.CodeOf(err) != rewind.CodeClosed {
		t.Fatalf("append while PostgreSQL is down: %v (code %s), want unavailable", err, rewind.CodeOf(err))
	}
	pg.Start()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		code, body, st = probe()
		if code == 200 && st == grpchealth.StatusServing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL is back, the server is not ready: readyz %d %s, grpc %v", code, body, st)
		}
	}
	if _, err := c.Append(ctx, "s", rewind.Any, ev("T", `{}`)); err != nil {
		t.Fatalf("append once PostgreSQL is back: %v", err)
	}
	if _, m := get(t, b.url+"/metrics"); !strings.Contains(m, "rewind_store_unavailable 0") ||
		!strings.Contains(m, "rewind_store_failed 0") {
		t.Fatalf("metrics once PostgreSQL is back lack rewind_store_unavailable 0 and rewind_store_failed 0")
	}
}
