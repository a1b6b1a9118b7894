//go:build !unix

package replay_test

import "time"

// processCPU is not measured here: the benchmarks' cpu-ns/event reads 0.
func processCPU() time.Duration { return 0 }
