package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/rewindhq/rewind/consumer"
)

// RetryConfig configures Retry. The zero value is the default.
type RetryConfig struct {
	// MaxTries is how many times the handler runs at most (the first try
	// included). Defaults to 3.
	MaxTries uint
	// InitialInterval is the wait after the first failure; each next one
	// grows by Multiplier, up to MaxInterval, with ±RandomizationFactor
	// jitter. Default to 100 ms, 1.5, 5 s and 0.5.
	InitialInterval     time.Duration
	Multiplier          float64
	MaxInterval         time.Duration
	RandomizationFactor float64
	// Retryable says whether an error is worth another try. Defaults to
	// every error but those that park the event (consumer.Park) or ask
	// for a later redelivery (consumer.RetryAfter).
	Retryable func(error) bool
}

// Retry runs the handler again, in process, after a failure, waiting an
// exponentially growing interval (cenkalti/backoff), before the error
// reaches the group as a nak. Keep the total wait well under the group's
// ack wait, or extend it with Message.InProgress.
func Retry(cfg RetryConfig) consumer.Middleware {
	if cfg.MaxTries == 0 {
		cfg.MaxTries = 3
	}
	if cfg.Retryable == nil {
		cfg.Retryable = func(err error) bool {
			var park *consumer.ParkError
			var retry *consumer.RetryError
			return !errors.As(err, &park) && !errors.As(err, &retry)
		}
	}
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) error {
			b := backoff.NewExponentialBackOff()
			if cfg.InitialInterval > 0 {
				b.InitialInterval = cfg.InitialInterval
			}
			if cfg.Multiplier > 0 {
				b.Multiplier = cfg.Multiplier
			}
			if cfg.MaxInterval > 0 {
				b.MaxInterval = cfg.MaxInterval
			}
			if cfg.RandomizationFactor > 0 {
				b.RandomizationFactor = cfg.RandomizationFactor
			}
			_, err := backoff.Retry(ctx, func() (struct{}, error) {
				err := h(ctx, m)
				if err != nil && !cfg.Retryable(err) {
					return struct{}{}, backoff.Permanent(err)
				}
				return struct{}{}, err
			}, backoff.WithBackOff(b), backoff.WithMaxTries(cfg.MaxTries), backoff.WithMaxElapsedTime(0))
			return err
		}
	}
}
