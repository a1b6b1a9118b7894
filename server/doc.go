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
// Every RPC but the health checks needs a bearer token (package auth)
// whose scopes allow it; ReadAll and Subscribe deliver only the events of
// streams the token may read. Authentication can be turned off only on a
// loopback listen address. The standard gRPC health service needs no
// token; gRPC server reflection needs one of any scope.
//
// # Hostile input
//
// A client's mistake is answered with a 4xx (or a client-error gRPC
// status) and a message that says what to fix, never a 5xx: malformed
// bodies, envelopes, timeouts and content codings included. Every error
// answer, whoever made it (a handler, the middleware, connect-go),
// carries a rewind.v1.ErrorDetail with rewind's code: detailWriter adds it
// on the way out when it is missing. rpc_timeout
// bounds the reading of every request (a stream's: its first message), a
// request refused on its headers is answered at once and its HTTP/1.x
// connection closed, and a server-wide budget bounds the bytes of appends
// in progress. docs/server.md lists every limit.
//
// A subscription delivers the log in position order, each event once,
// first catching up from the log and then live. It is flow-controlled: the
// server reads the next batch only after the previous one was handed to
// the connection, so a slow client costs at most one batch of memory
// (about 0.6 MiB), and one whose message waits longer than
// SlowSubscriberTimeout to be read is ended with ResourceExhausted.
// Every message carries the position to resume after.
//
// # Shutdown
//
// Run returns when its context ends, after a graceful shutdown: /readyz
// and gRPC health turn unready at once, subscriptions end with an
// Unavailable status that names the position to resume after, other
// requests are served for DrainDelay, then the listener closes, requests
// still waiting for their body are refused and streams whose client reads
// nothing have their connection closed after a second (Unavailable to
// gRPC clients), requests being processed (appends included) finish within
// ShutdownTimeout, and the store is fsynced and closed, which releases
// the data directory.
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
