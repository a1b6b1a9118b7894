package consumer

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestDeliveryList holds the deadline list to a sorted slice under random
// inserts (mostly in deadline order, as the ack wait makes them, some
// earlier), removals anywhere and moves (in-progress).
func TestDeliveryList(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	base := time.Unix(1e9, 0)
	for round := range 200 {
		l := deliveryList{link: byDeadline}
		var model []*delivery
		now := 0
		insert := func(d *delivery) {
			l.insertByDeadline(d)
			// After the last one due at or before it.
			i := len(model)
			for i > 0 && model[i-1].deadline.After(d.deadline) {
				i--
			}
			model = slices.Insert(model, i, d)
		}
		removeAt := func(i int) {
			l.remove(model[i])
			model = slices.Delete(model, i, i+1)
		}
		for op := range 300 {
			switch k := r.IntN(10); {
			case k < 5 || len(model) == 0:
				now += r.IntN(3)
				due := now
				if r.IntN(8) == 0 {
					due -= r.IntN(50) // a clock that went back, a shorter ack wait
				}
				insert(&delivery{id: DeliveryID(op), deadline: base.Add(time.Duration(due))})
			case k < 8:
				removeAt(r.IntN(len(model)))
			default:
				i := r.IntN(len(model))
				d := model[i]
				removeAt(i)
				now++
				d.deadline = base.Add(time.Duration(now))
				insert(d)
			}
			if l.n != len(model) {
				t.Fatalf("round %d op %d: %d in the list, want %d", round, op, l.n, len(model))
			}
			var back []*delivery
			for d := l.tail; d != nil; d = d.byDeadline.prev {
				back = append(back, d)
			}
			slices.Reverse(back)
			i := 0
			for d := l.front(); d != nil; d = d.byDeadline.next {
				if i >= len(model) || d != model[i] || back[i] != d {
					t.Fatalf("round %d op %d: the list differs from the model at %d", round, op, i)
				}
				i++
			}
			if i != len(model) {
				t.Fatalf("round %d op %d: %d walked, want %d", round, op, i, len(model))
			}
		}
		// Removing what is not in the list changes nothing.
		if len(model) > 0 {
			d := model[0]
			removeAt(0)
			l.remove(d)
			if l.n != len(model) {
				t.Fatalf("a second remove changed the list")
			}
		}
	}
}
