// Package bench measures rewind against the limits of the machine it runs
// on. Every figure is meant to be read as a ratio to a reference measured
// in the same run (see Disk), never as an absolute promise.
package bench

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strconv"
	"time"
)

// Latencies keeps append latencies for percentiles: every sample up to a
// cap, then a uniform reservoir sample, so memory stays bounded however
// long the run (8 bytes a sample; 64Ki samples by default).
type Latencies struct {
	Cap     int
	samples []time.Duration
	seen    uint64
	rng     uint64
}

// Add records one latency.
func (l *Latencies) Add(d time.Duration) {
	l.seen++
	if l.Cap == 0 {
		l.Cap = 1 << 16
	}
	if len(l.samples) < l.Cap {
		l.samples = append(l.samples, d)
		return
	}
	l.rng = l.rng*6364136223846793005 + 1442695040888963407
	if j := (l.rng >> 1) % l.seen; j < uint64(l.Cap) {
		l.samples[j] = d
	}
}

// Merge adds o's samples.
func (l *Latencies) Merge(o *Latencies) {
	for _, d := range o.samples {
		l.Add(d)
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) in microseconds.
func (l *Latencies) Percentile(p float64) float64 {
	if len(l.samples) == 0 {
		return 0
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i].Nanoseconds()) / 1e3
}

// PeakRSSMB returns the process's peak resident set size in MB (VmHWM), and
// its current one (VmRSS).
func PeakRSSMB() (peak, current float64) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(string(f[1]), 64)
		switch string(f[0]) {
		case "VmHWM:":
			peak = kb / 1024
		case "VmRSS:":
			current = kb / 1024
		}
	}
	return peak, current
}

func round(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(x*p+0.5)) / p
}
