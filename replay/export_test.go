package replay

import (
	"context"
	"time"
)

// Schedule runs a pacer over events recorded at the given times with a
// clock that moves only by the sleeps it asks for plus handle after each
// delivery, and returns each sleep it asked for.
func Schedule(p Pacing, recorded []time.Time, handle time.Duration) []time.Duration {
	pc := newPacer(p)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sleeps []time.Duration
	pc.now = func() time.Time { return now }
	pc.sleep = func(_ context.Context, d time.Duration) error {
		sleeps = append(sleeps, max(d, 0))
		now = now.Add(max(d, 0))
		return nil
	}
	for _, t := range recorded {
		n := len(sleeps)
		pc.wait(context.Background(), t)
		if len(sleeps) == n {
			sleeps = append(sleeps, 0) // the first event of a timed replay
		}
		now = now.Add(handle)
	}
	return sleeps
}
