package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/client"
	"github.com/rewindhq/rewind/server"
	"github.com/rewindhq/rewind/store"
)

// pki is a throwaway CA with a server and a client certificate.
type pki struct {
	dir        string
	pool       *x509.CertPool
	clientCert tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	sc, sk := issue("rewind server", x509.ExtKeyUsageServerAuth)
	write("server.pem", sc)
	write("server-key.pem", sk)
	cc, ck := issue("orders-svc", x509.ExtKeyUsageClientAuth)
	p := &pki{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	var err2 error
	if p.clientCert, err2 = tls.X509KeyPair(cc, ck); err2 != nil {
		t.Fatal(err2)
	}
	return p
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

func TestTLSAndClientCertificates(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	_, _, b := setup(t, server.Config{TLSCert: p.path("server.pem"), TLSKey: p.path("server-key.pem"),
		TLSClientCA: p.path("ca.pem")})
	if !strings.HasPrefix(b.url, "https://") {
		t.Fatalf("URL %s is not https", b.url)
	}
	for _, protocol := range []string{"grpc", "connect", "grpcweb"} {
		c, err := client.New(b.url, client.Config{Token: b.admin, Protocol: protocol,
			TLS: &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.clientCert}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
			t.Fatalf("%s over mTLS: %v", protocol, err)
		}
		c.Close()
	}
	noCert, _ := client.New(b.url, client.Config{Token: b.admin, MaxRetries: -1, TLS: &tls.Config{RootCAs: p.pool}})
	if _, err := noCert.Append(ctx, "s", rewind.Any, ev("A", "{}")); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if res, err := plain.Get(strings.Replace(b.url, "https://", "http://", 1) + "/healthz"); err == nil {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Fatalf("the TLS port answered plain HTTP: %s", body)
		}
	}
}

func TestMetricsAndHealthEndpoints(t *testing.T) {
	t.Parallel()
	_, c, b := setup(t, server.Config{})
	if _, err := c.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, rewind.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	get := func(path string) (int, string) {
		res, err := http.Get(b.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	status, body := get("/metrics")
	for _, want := range []string{"rewind_append_events_total 1", "rewind_append_bytes_total 2",
		"rewind_append_duration_seconds_count 1", "rewind_fsync_duration_seconds_count", "rewind_group_commit_events_count",
		"rewind_subscriptions_active 1", `rewind_subscription_lag_events{subscription="1",token="admin"}`,
		`rewind_rpc_requests_total{code="ok",procedure="/rewind.v1.EventStoreService/Append"} 1`} {
		if status != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if status, _ := get("/healthz"); status != 200 {
		t.Fatalf("/healthz: %d", status)
	}
	if status, _ := get("/readyz"); status != 200 {
		t.Fatalf("/readyz: %d", status)
	}
	c.Append(ctx, "s", rewind.NoStream, ev("A", "{}")) // fails: counted by code
	if _, body := get("/metrics"); !strings.Contains(body, `rewind_rpc_requests_total{code="aborted",procedure="/rewind.v1.EventStoreService/Append"} 1`) {
		t.Fatalf("/metrics does not count errors by code:\n%s", body)
	}
	// Made-up paths share one label, so that nobody can grow the metrics.
	for i := range 3 {
		res, err := http.Post(fmt.Sprintf("%s/rewind.v1.junk%d", b.url, i), "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if _, body := get("/metrics"); strings.Contains(body, "junk") ||
		!strings.Contains(body, `rewind_rpc_requests_total{code="unimplemented",procedure="unknown"} 3`) {
		t.Fatalf("/metrics labels unknown paths by path:\n%s", body)
	}
}

// TestTracesExportedOverOTLP points the server at a local HTTP endpoint
// that records OTLP requests, makes an RPC, shuts down (which flushes the
// spans) and checks that a trace of the RPC arrived.
func TestTracesExportedOverOTLP(t *testing.T) {
	t.Parallel()
	got := make(chan []byte, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			got <- body
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(200)
	}))
	defer collector.Close()
	_, c, b := setup(t, server.Config{OTLPEndpoint: collector.URL})
	if _, err := c.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatal(err)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-got:
		if !strings.Contains(string(body), "rewind.v1.EventStoreService/Append") {
			t.Fatalf("the exported spans do not name the RPC: %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no trace reached the OTLP endpoint")
	}
}

// On shutdown the store is closed (fsynced, its directory released) before
// the trace spans are flushed: a collector that hangs must not hold the
// data back.
func TestShutdownClosesTheStoreBeforeFlushingTraces(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // a collector that accepts and does not answer
		w.WriteHeader(200)
	}))
	defer collector.Close()
	defer close(release)
	_, c, b := setup(t, server.Config{OTLPEndpoint: collector.URL, ShutdownTimeout: time.Minute})
	if _, err := c.Append(ctx, "s", rewind.Any, ev("A", "{}")); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	for {
		s, err := store.Open(b.dir, store.Config{})
		if err == nil {
			defer s.Close()
			if info, err := s.StreamInfo(ctx, "s"); err != nil || info.Version != 1 {
				t.Fatalf("the store after shutdown: %+v, %v", info, err)
			}
			break
		}
		if !errors.Is(err, rewind.ErrLocked) {
			t.Fatal(err)
		}
		select {
		case err := <-stopped:
			t.Fatalf("shutdown returned (%v) before the store could be opened", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case err := <-stopped:
		t.Fatalf("shutdown returned (%v) although the collector never answered: the test proves nothing", err)
	default:
	}
}
