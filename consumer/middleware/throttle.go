package middleware

import (
	"context"

	"golang.org/x/time/rate"

	"github.com/rewindhq/rewind/consumer"
)

// Throttle lets events through at most at limiter's rate (with its
// burst): each waits for a token before the handler runs. Share one
// limiter between the members of a process to cap the process. A wait the
// context ends naks the event.
func Throttle(limiter *rate.Limiter) consumer.Middleware {
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) error {
			if err := limiter.Wait(ctx); err != nil {
				return err
			}
			return h(ctx, m)
		}
	}
}
