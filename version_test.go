package rewind

import (
	"errors"
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

func TestExpectedVersionCheck(t *testing.T) {
	for _, c := range []struct {
		e       ExpectedVersion
		version uint64
		exists  bool
		ok      bool
	}{
		{Any, 0, false, true}, {Any, 3, true, true}, {NoStream, 0, false, true}, {NoStream, 3, true, false},
		{NoStream, 3, false, true}, {StreamExists, 3, true, true}, {StreamExists, 0, false, false},
		{Exactly(3), 3, true, true}, {Exactly(3), 2, true, false},
	} {
		err := c.e.Check("s", c.version, c.exists)
		var wev *WrongExpectedVersionError
		if (err == nil) != c.ok || !c.ok && (!errors.As(err, &wev) || wev.Actual != c.version || wev.Exists != c.exists) {
			t.Errorf("%s.Check(%d, %v) = %v", c.e, c.version, c.exists, err)
		}
	}
}
