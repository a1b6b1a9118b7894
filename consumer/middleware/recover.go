package middleware

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/rewindhq/rewind/consumer"
)

// PanicError is the error a recovered panic becomes.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// Recover turns a panic of the handler into a *PanicError, so that the
// event is nak'ed (and parked after its last delivery) instead of the
// process dying. Wrap it in Poison to park panicking events at once.
func Recover() consumer.Middleware {
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, m *consumer.Message) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return h(ctx, m)
		}
	}
}
