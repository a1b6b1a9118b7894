// Package server serves an embedded store over rewind's API (package
// api/rewind/v1) with connect-go, so one port speaks gRPC (over h2c or
// TLS), gRPC-Web and Connect's HTTP/JSON, which curl can call.
//
// # What the server guarantees
//
// An append is acknowledged under the store's durability mode: with the
// default (sync) its events were fsynced before the response is sent. On
// any error nothing was written. Appends are idempotent on event ids, so a
// client that assigns ids may retry after a lost response.
//
// Every RPC but Health needs a bearer token (package auth) whose scopes
// allow it; ReadAll and Subscribe deliver only the events of streams the
// token may read. Authentication can be turned off only on a loopback
// listen address.
//
// A subscription delivers the log in position order, each event once,
// first catching up from the log and then live. It is flow-controlled: the
// server reads the next batch only after the previous one was handed to
// the connection, so a slow client costs at most one batch of memory.
// Every message carries the position to resume after.
//
// # Shutdown
//
// Run returns when its context ends, after a graceful shutdown: the
// listener closes, subscriptions end with an Unavailable status that
// names the position to resume after, in-flight requests (appends
// included) finish within ShutdownTimeout, and the store is fsynced and
// closed, which releases the data directory.
//
// # Observability
//
// /metrics serves Prometheus metrics (appends, append latency, fsync
// latency and group-commit size, subscriptions and their lag, RPC results
// by code); /healthz says the process is up and /readyz whether it
// accepts requests. Logs are slog records with a request id, which the
// server also returns in the X-Request-Id header. With an OTLP endpoint
// configured, every RPC is traced.
package server
