package server

import (
	"context"
	"net/url"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/rewindhq/rewind/internal/buildinfo"
)

// tracing exports a span for every RPC over OTLP/HTTP when an endpoint is
// configured.
type tracing struct {
	provider *sdktrace.TracerProvider
	once     sync.Once
}

func newTracing(endpoint string) (*tracing, error) {
	if endpoint == "" {
		return &tracing{}, nil
	}
	var opt otlptracehttp.Option
	if strings.Contains(endpoint, "://") {
		if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
			endpoint = strings.TrimRight(endpoint, "/") + "/v1/traces" // the OTLP/HTTP default path
		}
		opt = otlptracehttp.WithEndpointURL(endpoint)
	} else {
		opt = otlptracehttp.WithEndpoint(endpoint)
	}
	opts := []otlptracehttp.Option{opt}
	if !strings.HasPrefix(endpoint, "https://") {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, err
	}
	res := resource.NewSchemaless(semconv.ServiceName("rewind"), semconv.ServiceVersion(buildinfo.Get().Version))
	return &tracing{provider: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// tracerProvider returns the provider, or nil when tracing is off.
func (t *tracing) tracerProvider() trace.TracerProvider {
	if t.provider == nil {
		return nil
	}
	return t.provider
}

// shutdown flushes the spans not yet exported.
func (t *tracing) shutdown(ctx context.Context) error {
	var err error
	t.once.Do(func() {
		if t.provider != nil {
			err = t.provider.Shutdown(ctx)
		}
	})
	return err
}
