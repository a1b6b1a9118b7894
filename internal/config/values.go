package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rewindhq/rewind"
)

// ValueError says why value, given to flag f through source (--name, or
// an environment variable), was refused.
func ValueError(f *pflag.Flag, source, value string, cause error) error {
	var ve *rewind.ValidationError
	if errors.As(cause, &ve) {
		return &rewind.ValidationError{Field: source, Value: value, Reason: ve.Reason}
	}
	return &rewind.ValidationError{Field: source, Value: value, Reason: reasonFor(f.Value.Type(), value, cause)}
}

// reasonFor explains what a value of pflag's type typ must be.
func reasonFor(typ, value string, cause error) string {
	var ne *strconv.NumError
	tooLarge := errors.As(cause, &ne) && errors.Is(ne.Err, strconv.ErrRange)
	switch typ {
	case "int", "int8", "int16", "int32", "int64":
		bits := intBits(typ)
		switch {
		case tooLarge && strings.HasPrefix(strings.TrimSpace(value), "-"):
			return fmt.Sprintf("is too small: the smallest is %d", -(int64(1) << (bits - 1)))
		case tooLarge:
			return fmt.Sprintf("is too large: the largest is %d", int64(math.MaxInt64>>(64-bits)))
		}
		return "must be a whole number"
	case "uint", "uint8", "uint16", "uint32", "uint64":
		if tooLarge {
			return fmt.Sprintf("is too large: the largest is %d", uint64(math.MaxUint64>>(64-intBits(typ))))
		}
		return "must be a whole number, 0 or more"
	case "float32", "float64":
		return "must be a number"
	case "bool":
		return "must be true or false"
	case "duration":
		if DurationOutOfRange(value) {
			return DurationRangeReason(value)
		}
		return "must be a duration with its unit, such as 500ms, 30s, 5m or 1h30m"
	}
	return cause.Error()
}

// DurationRangeReason says how long a duration like value can be.
func DurationRangeReason(value string) string {
	if strings.HasPrefix(value, "-") {
		return fmt.Sprintf("is too small: a duration is at least %s (about 292 years back)", time.Duration(math.MinInt64))
	}
	return fmt.Sprintf("is too large: a duration is at most %s (about 292 years)", time.Duration(math.MaxInt64))
}

// durationSyntax is the grammar time.ParseDuration accepts.
var durationSyntax = regexp.MustCompile(`^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

// DurationOutOfRange reports whether s is written as a duration but
// time.ParseDuration refuses it, which can only be for its size.
func DurationOutOfRange(s string) bool {
	if !durationSyntax.MatchString(s) {
		return false
	}
	_, err := time.ParseDuration(s)
	return err != nil
}

func intBits(typ string) uint {
	typ = strings.TrimPrefix(strings.TrimPrefix(typ, "u"), "int")
	if typ == "" {
		return strconv.IntSize
	}
	n, _ := strconv.Atoi(typ)
	return uint(n)
}
