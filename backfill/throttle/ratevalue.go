package throttle

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
)

// MinRate is the lowest cap on a run's rate, in rows per second: one row
// per 100 s. A lower cap would wait longer than any run lasts.
const MinRate = 0.01

// rateText is a rate as people write it: a plain decimal number.
var rateText = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// ParseRate reads a rate in rows per second written as a plain decimal
// number ("500", "2.5"); 0 means no cap. Other spellings that Go reads
// as numbers (1_000, 0x1p4, 1e3, Inf) are refused, so that what is
// recorded is what the person meant.
func ParseRate(s string) (float64, error) {
	if !rateText.MatchString(s) {
		return 0, errors.New("must be rows per second written as a decimal number, such as 500 or 2.5")
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, errors.New("must be rows per second written as a decimal number, such as 500 or 2.5")
	}
	return r, CheckRate(r)
}

// CheckRate checks a cap on a run's rate: 0 (no cap), or from MinRate.
func CheckRate(r float64) error {
	switch {
	case math.IsNaN(r) || math.IsInf(r, 0) || r < 0:
		return fmt.Errorf("must be 0 (no cap) or a positive number of rows per second, not %g", r)
	case r > 0 && r < MinRate:
		return fmt.Errorf("must be 0 (no cap) or at least %g rows per second (one row per 100 s), not %g", MinRate, r)
	}
	return nil
}
