package middleware

import (
	"context"

	"github.com/rewindhq/rewind/consumer"
)

// Poison parks an event at once when the handler's error is one that no
// redelivery can fix (isPoison says which: an event that does not decode,
// a failed validation), instead of burning its deliveries and backoff.
// The park's reason is "poison" and its last error the handler's.
func Poison(isPoison func(error) bool) consumer.Middleware {
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) error {
			err := h(ctx, m)
			if err != nil && isPoison(err) {
				return consumer.Park("poison", err)
			}
			return err
		}
	}
}
