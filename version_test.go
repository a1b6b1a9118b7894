package rewind

import (
	"strings"
	"testing"
)

func TestParseExpectedVersion(t *testing.T) {
	for in, want := range map[string]ExpectedVersion{"": Any, "any": Any, "No-Stream": NoStream, "exists": StreamExists,
		"0": 0, "42": 42, "9223372036854775807": 9223372036854775807} {
		if got, err := ParseExpectedVersion(in); err != nil || got != want {
			t.Errorf("ParseExpectedVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, reason := range map[string]string{"99999999999999999999": "too large", "9223372036854775808": "too large",
		"-1": "version number", "1.5": "version number", "seven": "version number"} {
		if _, err := ParseExpectedVersion(in); CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), reason) {
			t.Errorf("ParseExpectedVersion(%q): %v; want an invalid-argument error saying %q", in, err, reason)
		}
	}
}
