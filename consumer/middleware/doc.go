// Package middleware holds consumer.Middleware, one per file: Retry
// (in-process retries with exponential backoff), Timeout, Recover (a
// panic becomes an error), CircuitBreaker, Dedup (with an in-memory and a
// PostgreSQL store), Correlation (correlation and causation ids), Throttle
// and Poison (errors that park their event at once).
//
// Order matters: the first middleware given to consumer.Chain is the
// outermost. A usual chain is
//
//	consumer.Chain(h, middleware.Recover(), middleware.Correlation(),
//		middleware.Dedup(store, middleware.DedupConfig{}), middleware.Poison(isPoison),
//		middleware.CircuitBreaker(middleware.BreakerConfig{}), middleware.Retry(middleware.RetryConfig{}),
//		middleware.Timeout(10*time.Second))
//
// so that a panic anywhere is recovered, a duplicate is skipped before any
// work, and each retry gets its own timeout.
package middleware
