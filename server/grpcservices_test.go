package server_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rewindhq/rewind/server"
)

// h2c is an HTTP client that speaks HTTP/2 without TLS, as gRPC clients do.
func h2c() *http.Client {
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// TestGRPCHealth checks the standard health service: no token needed, the
// server and each rewind service SERVING, unknown services NotFound, and a
// watch that sees NOT_SERVING when shutdown begins and then ends. It sees
// it during the drain delay: with none (the default), the stream may be cut
// before the update reaches it (a clean-clone CI run saw none). The delay
// is 2 s: with 500 ms, a clean-clone CI run on a loaded 2-core machine saw
// none either (2026-12-02).
func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	_, _, b := setup(t, server.Config{ShutdownTimeout: 10 * time.Minute, DrainDelay: 2 * time.Second})
	hc := grpchealth.NewClient(h2c(), b.url, connect.WithGRPC())
	for _, service := range []string{"", "rewind.v1.EventStoreService", "rewind.v1.TokenService"} {
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: service})
		if err != nil || res.Status != grpchealth.StatusServing {
			t.Fatalf("check %q without a token: %+v %v", service, res, err)
		}
	}
	if _, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: "nope.v1.Nope"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("check of an unknown service: %v, want NotFound", err)
	}

	wctx, cancel := context.WithTimeout(ctx, answerDeadline)
	defer cancel()
	events := hc.Watch(wctx, &grpchealth.CheckRequest{})
	if ev := <-events; ev.Err != nil || ev.Response.Status != grpchealth.StatusServing {
		t.Fatalf("first watch event: %+v", ev)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	var seen []grpchealth.Status
	for ev := range events {
		if ev.Err != nil {
			break
		}
		seen = append(seen, ev.Response.Status)
	}
	if !slices.Contains(seen, grpchealth.StatusNotServing) {
		t.Errorf("the watch saw %v during shutdown, want NOT_SERVING", seen)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(answerDeadline):
		t.Fatal("shutdown waits for the health watch")
	}
}

// TestGRPCReflection checks that grpcurl-style tools can list and describe
// the API without its .proto files, with a token of any scope, and not
// without one.
func TestGRPCReflection(t *testing.T) {
	t.Parallel()
	_, admin, b := setup(t, server.Config{})
	_, reader, err := admin.CreateToken(ctx, "reader", "read:orders-*")
	if err != nil {
		t.Fatal(err)
	}
	rc := grpcreflect.NewClient(h2c(), b.url, connect.WithGRPC())

	anon := rc.NewStream(ctx)
	_, err = anon.ListServices()
	if connect.CodeOf(errors.Unwrap(err)) != connect.CodeUnauthenticated && connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("reflection without a token: %v, want Unauthenticated", err)
	}
	anon.Close()

	stream := rc.NewStream(ctx, grpcreflect.WithRequestHeaders(http.Header{"Authorization": {"Bearer " + reader}}))
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []protoreflect.FullName{"rewind.v1.EventStoreService", "rewind.v1.TokenService",
		"grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, without %s", names, want)
		}
	}
	files, err := stream.FileContainingSymbol("rewind.v1.EventStoreService")
	if err != nil || len(files) == 0 || files[0].GetPackage() != "rewind.v1" {
		t.Fatalf("describe rewind.v1.EventStoreService: %d files, %v", len(files), err)
	}
}
