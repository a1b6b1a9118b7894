package cli

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rewindhq/rewind/backfill"
)

// TestEveryIntegerFlagIsDecimal walks every command: each whole-number
// flag refuses 0x10, 0o20, 0b10000, 020 read as octal, 1_000 and +16
// (set --max-rate refused +5, set --workers took +2), and takes
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
			for _, v := range []string{"0x10", "0X10", "0o20", "0b10000", "1_000", " 16", "16 ", "+16"} {
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

// A reason or actor already stored with control characters (recorded
// before they were refused, or written into the control table by hand)
// is printed escaped by status and the progress line: it cannot forge a
// line or reach the terminal as an escape sequence.
func TestControlTextIsPrintedEscaped(t *testing.T) {
	t.Parallel()
	c := &backfill.Control{Requested: "pause", Actor: "ev\x1b[2Jil", SetBy: "x\ny",
		Reason: backfill.PauseReason{Kind: backfill.PauseOperator, Detail: "line1\nstate        finished\x1b[31m\xff"}}
	two := 2
	c.Workers = &two
	for _, s := range []string{controlLine(c), overrides(&backfill.Run{Control: c}), printable(c.Reason.Detail)} {
		if strings.ContainsAny(s, "\n\x1b") || !utf8.ValidString(s) {
			t.Errorf("printed raw: %q", s)
		}
	}
	if got := controlLine(c); !strings.Contains(got, `line1\nstate`) || !strings.Contains(got, `ev\x1b[2Jil`) {
		t.Errorf("controlLine = %q", got)
	}
	for _, s := range []string{"right\u202eleft", "zero\u200bwidth", "line\u2028separator"} {
		if got := printable(s); got == s || !utf8.ValidString(got) || strings.ContainsAny(got, "\u202e\u200b\u2028") {
			t.Errorf("printable(%q) = %q, printed raw", s, got)
		}
	}
	if printable("alice — fenêtre") != "alice — fenêtre" {
		t.Error("plain text is changed")
	}
}
