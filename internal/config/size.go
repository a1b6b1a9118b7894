package config

import (
	"fmt"
	"math"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/rewindhq/rewind"
)

// Size is a number of bytes written with or without a unit: 1048576,
// 1MiB, 64KiB, 64MB (decimal units are powers of 1000, binary ones of
// 1024; case does not matter). It is a pflag.Value, so flags, environment
// variables and the config file accept the same forms.
type Size int64

// Set parses s.
func (z *Size) Set(s string) error {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	switch {
	case err != nil && strings.HasPrefix(err.Error(), "too large"), err == nil && n > math.MaxInt64:
		return &rewind.ValidationError{Field: "size", Value: s,
			Reason: fmt.Sprintf("is too large: the largest is %s", Size(math.MaxInt64))}
	case err != nil:
		return &rewind.ValidationError{Field: "size", Value: s,
			Reason: "must be a number of bytes, with or without a unit: 1048576, 512KiB, 32MiB, 1GiB or 64MB"}
	}
	*z = Size(n)
	return nil
}

// String writes z exactly, in the largest binary unit that divides it.
func (z Size) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"EiB", 1 << 60}, {"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if z != 0 && int64(z)%u.n == 0 {
			return fmt.Sprintf("%d%s", int64(z)/u.n, u.name)
		}
	}
	return fmt.Sprint(int64(z))
}

// Type is the name --help shows for a size.
func (z *Size) Type() string { return "size" }

// MarshalText writes z as String does, for YAML and JSON.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }
