package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestEveryIntegerFlagIsDecimal walks every command: each whole-number
// flag refuses 0x10, 0o20, 0b10000, 020 read as octal and 1_000, and takes
// 16 as 16. pflag's own integer flags parse any base (backfill set
// --workers 0x10 was 16); config.IntVar and friends do not.
func TestEveryIntegerFlagIsDecimal(t *testing.T) {
	t.Parallel()
	a := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	var walk func(*cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		check := func(f *pflag.Flag) {
			switch f.Value.Type() {
			case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
			default:
				return
			}
			seen++
			old := f.Value.String()
			defer f.Value.Set(old)
			for _, v := range []string{"0x10", "0X10", "0o20", "0b10000", "1_000", " 16", "16 "} {
				if err := f.Value.Set(v); err == nil {
					t.Errorf("%s --%s (%s) accepted %q as %s", c.CommandPath(), f.Name, f.Value.Type(), v, f.Value.String())
				}
			}
			if err := f.Value.Set("16"); err != nil || f.Value.String() != "16" {
				t.Errorf("%s --%s: 16 = %s, %v", c.CommandPath(), f.Name, f.Value.String(), err)
			}
			if err := f.Value.Set("020"); err == nil && f.Value.String() != "20" {
				t.Errorf("%s --%s read 020 as %s", c.CommandPath(), f.Name, f.Value.String())
			}
		}
		c.LocalFlags().VisitAll(check)
	}
	walk(a.rootCmd())
	if seen == 0 {
		t.Fatal("no integer flag found")
	}
}
