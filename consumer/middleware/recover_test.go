package middleware

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rewindhq/rewind/consumer"
)

func TestRecover(t *testing.T) {
	t.Parallel()
	h := Recover()(func(context.Context, *consumer.Message) error { panic("boom") })
	err := h(context.Background(), msg(nil))
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "recover_test.go") {
		t.Fatalf("err %v", err)
	}
	// A panic that Poison classifies parks the event.
	h = consumer.Chain(func(context.Context, *consumer.Message) error { panic("boom") },
		Poison(func(err error) bool { return errors.As(err, &pe) }), Recover())
	var park *consumer.ParkError
	if err := h(context.Background(), msg(nil)); !errors.As(err, &park) || park.Reason != "poison" {
		t.Fatalf("poisoned panic: %v", err)
	}
}
