package middleware

import (
	"context"
	"time"

	"github.com/rewindhq/rewind/consumer"
)

// Timeout gives each run of the handler a context that ends after d. The
// handler must watch its context: a handler that ignores it is not
// interrupted. An error the deadline caused naks the event as any other.
func Timeout(d time.Duration) consumer.Middleware {
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return h(ctx, m)
		}
	}
}
