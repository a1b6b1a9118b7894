package server_test

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/eventlog"
	"github.com/rewindhq/rewind/eventlog/vfs"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Issue 9: a failed store answers appends with a code the client does not
// retry as transient, /readyz turns unready with the reason, the gRPC
// health check says NOT_SERVING, the info and a metric say it, and a
// graceful stop reports it.
func TestAFailedStoreOverTheAPI(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	efs := vfs.WithErrors(vfs.NewMem(), func(op vfs.Op, path string) error {
		// One fsync fails; the store removes the append's bytes (its own
		// fsync then works) and answers "failed".
		if op == vfs.OpSync && strings.HasSuffix(path, ".seg") && armed.CompareAndSwap(true, false) {
			return syscall.ENOSPC
		}
		return nil
	})
	s, c, b := setup(t, server.Config{Store: store.Config{Log: eventlog.Config{FS: efs}}})
	if _, err := c.Append(ctx, "s", rewind.Any, ev("T", `{}`)); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, b.url+"/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("readyz before the failure: %d %s", code, body)
	}
	armed.Store(true)
	// A client that retries transient errors for a long time: a failed
	// store must not be one.
	patient, err := client.New(b.url, client.Config{Token: b.admin, MaxRetries: 1000, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer patient.Close()
	start := time.Now()
	_, err = patient.Append(ctx, "s", rewind.Any, ev("T", `{}`))
	var ce *connect.Error
	if !errors.Is(err, rewind.ErrFailed) || rewind.CodeOf(err) != rewind.CodeFailed || !errors.As(err, &ce) ||
		ce.Code() != connect.CodeFailedPrecondition {
		t.Fatalf("append on a failed store: %v (code %s)", err, rewind.CodeOf(err))
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("the failure was retried for %v as if transient", time.Since(start))
	}
	if _, err := c.Append(ctx, "s", rewind.Any, ev("T", `{}`)); !errors.Is(err, rewind.ErrFailed) {
		t.Fatalf("a later append: %v", err)
	}
	code, body := get(t, b.url+"/readyz")
	var rd struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	json.Unmarshal([]byte(body), &rd)
	if code != http.StatusServiceUnavailable || rd.Ready || !strings.Contains(rd.Reason, "no space left on device") {
		t.Fatalf("readyz after the failure: %d %s", code, body)
	}
	if err := c.Ping(ctx); !errors.Is(err, rewind.ErrFailed) {
		t.Fatalf("ping: %v", err)
	}
	h, err := c.Health(ctx)
	if err != nil || !strings.Contains(h.Failed, "no space left") {
		t.Fatalf("health: %+v %v", h, err)
	}
	gh := grpchealth.NewClient(http.DefaultClient, b.url, connect.WithGRPC())
	if res, err := gh.Check(ctx, &grpchealth.CheckRequest{}); err != nil || res.Status != grpchealth.StatusNotServing {
		t.Fatalf("grpc health: %+v %v", res, err)
	}
	if _, m := get(t, b.url+"/metrics"); !strings.Contains(m, "rewind_store_failed 1") {
		t.Fatalf("metrics lack rewind_store_failed 1")
	}
	_ = s
	if err := b.stop(); !errors.Is(err, rewind.ErrFailed) {
		t.Fatalf("graceful stop of a failed server: %v, want the failure", err)
	}
}

// Issue 9: a recovery cut is visible beyond one log line: server info,
// /readyz, a metric; and a subscriber resuming across it (interval or
// none durability, where readers may have seen the positions it took back)
// is told, rather than handed other events at the same positions.
func TestACutIsVisibleAndSubscribersAreTold(t *testing.T) {
	t.Parallel()
	mem := vfs.NewMem()
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Store: store.Config{Log: eventlog.Config{FS: mem, Durability: eventlog.None}}}
	_, c, b := setup(t, cfg)
	for range 20 {
		if _, err := c.Append(ctx, "s", rewind.Any, ev("T", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for range 20 {
		if _, err := sub.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seen, epoch := sub.Position(), sub.(rewind.EpochReporter).Epoch()
	if seen != 20 || epoch != 1 {
		t.Fatalf("position %d epoch %d", seen, epoch)
	}
	// The power fails: in none mode nothing reached the disk.
	after := mem.Crash(vfs.TornWrites, rand.New(rand.NewPCG(1, 2)))
	b.stop()
	cfg.Addr = strings.TrimPrefix(b.url, "http://")
	cfg.Store.Log.FS = after
	cfg.AdminToken = b.admin
	_, _, b2 := setup(t, cfg)
	code, body := get(t, b2.url+"/readyz")
	if code != 200 || !strings.Contains(body, `"epoch":2`) || !strings.Contains(body, `"kind":"cut"`) {
		t.Fatalf("readyz after a cut: %d %s", code, body)
	}
	if _, m := get(t, b2.url+"/metrics"); !strings.Contains(m, "rewind_log_epoch 2") ||
		!strings.Contains(m, `rewind_recovery_events{kind="cut"} 1`) {
		t.Fatalf("metrics after a cut lack the epoch or the cut")
	}
	c2 := newClient(t, b2.url, b.admin)
	h, err := c2.Health(ctx)
	if err != nil || h.Epoch != 2 || len(h.Recovery) == 0 || h.Recovery[0].Kind != "cut" || !h.Recovery[0].DataLoss {
		t.Fatalf("health after a cut: %+v %v", h, err)
	}
	// New events take the positions the cut gave back.
	for range 25 {
		if _, err := c2.Append(ctx, "s", rewind.Any, ev("U", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	// The old subscription reconnects by itself and is told; so is a new
	// one resumed with the old position and epoch.
	if _, err := sub.Next(ctx); !errors.Is(err, rewind.ErrEpochChanged) || rewind.CodeOf(err) != rewind.CodeEpochChanged {
		t.Fatalf("the subscription resumed across the cut with %v, want epoch_changed", err)
	}
	if _, err := c2.Subscribe(ctx, rewind.SubscribeOptions{After: seen, Epoch: epoch}); !errors.Is(err, rewind.ErrEpochChanged) {
		t.Fatalf("a subscription resumed after %d of epoch %d: %v", seen, epoch, err)
	}
	for _, err := range c2.ReadAll(ctx, rewind.ReadAllOptions{From: seen + 1, Epoch: epoch}) {
		if !errors.Is(err, rewind.ErrEpochChanged) {
			t.Fatalf("a read resumed after %d of epoch %d: %v", seen, epoch, err)
		}
		break
	}
}

// TestEpochFromTheFutureIsRefused reads and subscribes with an epoch newer
// than the log's, from the start, from a position and from a time: the log
// never had that epoch, so the call fails with epoch_changed (this is not
// the log the client read), whatever the starting point.
func TestEpochFromTheFutureIsRefused(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatal(err)
	}
	hc := h2c()
	for _, body := range []string{`{"epoch":"77"}`, `{"epoch":"77","fromPosition":"1"}`,
		`{"epoch":"77","fromTime":"2020-01-01T00:00:00Z"}`} {
		a := h2Exchange(t, hc, b.url+pReadAll, b.admin, "application/json", body)
		if a.code != "failed_precondition" || a.detail.GetCode() != "epoch_changed" {
			t.Errorf("ReadAll %s: %d %s: %s; want epoch_changed", body, a.status, a.code, a.message)
		}
	}
	for _, body := range []string{`{"epoch":"77"}`, `{"epoch":"77","afterPosition":"1"}`,
		`{"epoch":"77","fromTime":"2020-01-01T00:00:00Z"}`} {
		a := h2Exchange(t, hc, b.url+pSubscribe, b.admin, "application/connect+json", env(0, body))
		if a.code != "failed_precondition" || a.detail.GetCode() != "epoch_changed" {
			t.Errorf("Subscribe %s: %d %s: %s; want epoch_changed", body, a.status, a.code, a.message)
		}
	}
}
