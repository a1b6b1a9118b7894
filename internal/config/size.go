package config

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"

	"github.com/rewindhq/rewind"
)

// Size is a number of bytes written with or without a unit: 1048576,
// 1MiB, 64KiB, 64MB (decimal units are powers of 1000, binary ones of
// 1024; case does not matter). It is a pflag.Value, so flags, environment
// variables and the config file accept the same forms.
type Size int64

// Set parses s: a whole or decimal number, then optionally one space and
// a unit. Nothing else is accepted (no spaces around, no other units such
// as "M" or "Mb"), and the result must be a whole number of bytes.
func (z *Size) Set(s string) error {
	bad := func(reason string) error { return &rewind.ValidationError{Field: "size", Value: s, Reason: reason} }
	const what = "must be a number of bytes, with or without a unit: 1048576, 512KiB, 32MiB, 1GiB or 64MB"
	m := sizePattern.FindStringSubmatch(s)
	if m == nil {
		return bad(what)
	}
	unit, ok := sizeUnits[strings.ToLower(m[3])]
	if !ok {
		return bad(fmt.Sprintf("has an unknown unit %q: use B, KiB, MiB, GiB, TiB, PiB, EiB (powers of 1024) or "+
			"KB, MB, GB, TB, PB, EB (powers of 1000)", m[3]))
	}
	// n = digits × unit / 10^len(fraction), exactly.
	n, _ := new(big.Int).SetString(m[1]+m[2], 10)
	n.Mul(n, new(big.Int).SetUint64(unit))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(m[2]))), nil)
	q, r := new(big.Int).QuoRem(n, den, new(big.Int))
	switch {
	case r.Sign() != 0:
		return bad("is not a whole number of bytes")
	case !q.IsInt64():
		return bad(fmt.Sprintf("is too large: the largest is %s", Size(math.MaxInt64)))
	}
	*z = Size(q.Int64())
	return nil
}

// sizePattern is a size: digits, an optional fraction, an optional single
// space and an optional unit.
var sizePattern = regexp.MustCompile(`^([0-9]+)(?:\.([0-9]+))?(?: ?([A-Za-z]+))?$`)

// sizeUnits are the units a size takes, in lower case.
var sizeUnits = map[string]uint64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15, "eb": 1e18,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50, "eib": 1 << 60,
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
