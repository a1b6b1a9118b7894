package auth

import (
	"fmt"
	"strings"

	"github.com/rewindhq/rewind"
)

// Action is what a scope allows.
type Action int

// The actions, each implying the ones before it on the same pattern.
const (
	Read Action = iota + 1
	Write
	Admin
)

// String returns "read", "write" or "admin".
func (a Action) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Scope allows an action on the streams whose names match Pattern.
type Scope struct {
	Action  Action
	Pattern string
}

// String returns "action:pattern", the form ParseScope reads.
func (s Scope) String() string { return s.Action.String() + ":" + s.Pattern }

// MarshalText writes String, so scopes print as text in JSON.
func (s Scope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *Scope) UnmarshalText(b []byte) error {
	sc, err := ParseScope(string(b))
	if err != nil {
		return err
	}
	*s = sc
	return nil
}

// Allows reports whether s allows action on stream. Admin implies write,
// and write implies read: a writer must be able to check its own stream.
func (s Scope) Allows(action Action, stream string) bool {
	return s.Action >= action && Match(s.Pattern, stream)
}

// ParseScope reads "read:PATTERN", "write:PATTERN" or "admin:PATTERN".
func ParseScope(s string) (Scope, error) {
	action, pattern, ok := strings.Cut(s, ":")
	bad := func(reason string) error {
		return &rewind.ValidationError{Field: "scope", Value: s, Reason: reason}
	}
	if !ok {
		return Scope{}, bad(`must be "read:PATTERN", "write:PATTERN" or "admin:PATTERN", such as "write:orders-*"`)
	}
	var a Action
	switch action {
	case "read":
		a = Read
	case "write":
		a = Write
	case "admin":
		a = Admin
	default:
		return Scope{}, bad(fmt.Sprintf("unknown action %q: use read, write or admin", action))
	}
	switch {
	case pattern == "":
		return Scope{}, bad(`needs a stream pattern after the colon; "*" matches every stream`)
	case len(pattern) > 256:
		return Scope{}, bad("the pattern must be at most 256 bytes")
	case strings.ContainsFunc(pattern, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return Scope{}, bad("the pattern must not contain spaces or control characters")
	}
	return Scope{Action: a, Pattern: pattern}, nil
}

// ParseScopes parses each of ss with ParseScope.
func ParseScopes(ss []string) ([]Scope, error) {
	out := make([]Scope, 0, len(ss))
	for _, s := range ss {
		sc, err := ParseScope(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// Match reports whether name matches pattern, where "*" matches any run of
// characters (including none) and every other byte matches itself.
func Match(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
