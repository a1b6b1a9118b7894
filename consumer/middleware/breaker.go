package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/rewindhq/rewind/consumer"
)

// BreakerConfig configures CircuitBreaker. The zero value is the default.
type BreakerConfig struct {
	// Name names the breaker in OnStateChange.
	Name string
	// ConsecutiveFailures opens the breaker. Defaults to 5.
	ConsecutiveFailures uint32
	// OpenFor is how long the breaker stays open before letting a trial
	// event through. Defaults to 30 s.
	OpenFor time.Duration
	// HalfOpenRequests is how many trial events run while half open.
	// Defaults to 1.
	HalfOpenRequests uint32
	// OnStateChange is called when the breaker opens, half-opens or closes.
	OnStateChange func(name string, from, to gobreaker.State)
}

// ErrBreakerOpen is the cause of the naks the breaker makes while open.
var ErrBreakerOpen = errors.New("middleware: circuit breaker open")

// CircuitBreaker stops calling the handler after ConsecutiveFailures
// failures in a row (sony/gobreaker): while it is open, each event is
// nak'ed at once to come back after OpenFor, without running the handler,
// so that a failing dependency is not hammered and events are not burned
// through their deliveries. Errors that park an event do not count as
// failures of the dependency.
func CircuitBreaker(cfg BreakerConfig) consumer.Middleware {
	if cfg.ConsecutiveFailures == 0 {
		cfg.ConsecutiveFailures = 5
	}
	if cfg.OpenFor == 0 {
		cfg.OpenFor = 30 * time.Second
	}
	if cfg.HalfOpenRequests == 0 {
		cfg.HalfOpenRequests = 1
	}
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: cfg.HalfOpenRequests,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.ConsecutiveFailures },
		IsExcluded: func(err error) bool {
			var park *consumer.ParkError
			return errors.As(err, &park)
		},
		OnStateChange: cfg.OnStateChange,
	})
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) error {
			_, err := cb.Execute(func() (struct{}, error) { return struct{}{}, h(ctx, m) })
			if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
				return consumer.RetryAfter(cfg.OpenFor, ErrBreakerOpen)
			}
			return err
		}
	}
}
