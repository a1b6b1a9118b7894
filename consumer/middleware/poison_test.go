package middleware

import (
	"context"
	"errors"
	"testing"

	"github.com/rewindhq/rewind/consumer"
)

var errDecode = errors.New("cannot decode")

func TestPoison(t *testing.T) {
	t.Parallel()
	isPoison := func(err error) bool { return errors.Is(err, errDecode) }
	h := Poison(isPoison)(func(context.Context, *consumer.Message) error { return errDecode })
	var park *consumer.ParkError
	if err := h(context.Background(), msg(nil)); !errors.As(err, &park) || !errors.Is(err, errDecode) {
		t.Fatalf("err %v", err)
	}
	transient := errors.New("timeout")
	h = Poison(isPoison)(func(context.Context, *consumer.Message) error { return transient })
	if err := h(context.Background(), msg(nil)); err != transient {
		t.Fatalf("a transient error changed: %v", err)
	}
}
