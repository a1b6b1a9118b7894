package config

import (
	"errors"
	"strconv"

	"github.com/spf13/pflag"
)

// Strict flag values. pflag's own accept more than rewind documents:
// booleans as 1, t or TRUE, and numbers in any base (0x10, 010 for 8,
// 1_000), and strconv a leading plus sign. These accept only true or
// false, and whole numbers in decimal (a minus sign, no plus), so a value
// means what it reads as, as the float and duration flags do. Their types are pflag's names, so
// that --help and the messages of ValueError stay the same.

// BoolVar defines a boolean flag that accepts only true or false (and no
// value at all, meaning true).
func BoolVar(fs *pflag.FlagSet, p *bool, name string, value bool, usage string) {
	*p = value
	fs.VarPF((*boolValue)(p), name, "", usage).NoOptDefVal = "true"
}

// IntVar defines a flag of a whole number in decimal.
func IntVar(fs *pflag.FlagSet, p *int, name string, value int, usage string) {
	*p = value
	fs.Var((*intValue)(p), name, usage)
}

// Int64Var defines a flag of a whole number in decimal.
func Int64Var(fs *pflag.FlagSet, p *int64, name string, value int64, usage string) {
	*p = value
	fs.Var((*int64Value)(p), name, usage)
}

// Uint64Var defines a flag of a whole number, 0 or more, in decimal.
func Uint64Var(fs *pflag.FlagSet, p *uint64, name string, value uint64, usage string) {
	*p = value
	fs.Var((*uint64Value)(p), name, usage)
}

var errNotBool = errors.New("must be true or false")

type boolValue bool

func (b *boolValue) Set(s string) error {
	switch s {
	case "true":
		*b = true
	case "false":
		*b = false
	default:
		return errNotBool
	}
	return nil
}
func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) Type() string     { return "bool" }
func (b *boolValue) IsBoolFlag() bool { return true }

// noPlus refuses a leading plus sign, which strconv takes, with
// strconv's own error for a malformed number.
func noPlus(fn, s string) error {
	if len(s) > 0 && s[0] == '+' {
		return &strconv.NumError{Func: fn, Num: s, Err: strconv.ErrSyntax}
	}
	return nil
}

type intValue int

func (n *intValue) Set(s string) error {
	if err := noPlus("ParseInt", s); err != nil {
		return err
	}
	v, err := strconv.ParseInt(s, 10, strconv.IntSize)
	if err != nil {
		return err
	}
	*n = intValue(v)
	return nil
}
func (n *intValue) String() string { return strconv.Itoa(int(*n)) }
func (n *intValue) Type() string   { return "int" }

type int64Value int64

func (n *int64Value) Set(s string) error {
	if err := noPlus("ParseInt", s); err != nil {
		return err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	*n = int64Value(v)
	return nil
}
func (n *int64Value) String() string { return strconv.FormatInt(int64(*n), 10) }
func (n *int64Value) Type() string   { return "int64" }

type uint64Value uint64

func (n *uint64Value) Set(s string) error {
	if err := noPlus("ParseUint", s); err != nil {
		return err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return err
	}
	*n = uint64Value(v)
	return nil
}
func (n *uint64Value) String() string { return strconv.FormatUint(uint64(*n), 10) }
func (n *uint64Value) Type() string   { return "uint64" }
