package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
)

// Sentinel errors. Authenticate's errors match ErrUnauthenticated, which
// is rewind.ErrUnauthenticated; a missing scope is ErrPermissionDenied,
// which is rewind.ErrPermissionDenied. They are rewind's own, so that
// their messages read "rewind: unauthenticated: …", without a second
// prefix, when a server sends them to its clients; this package's own
// sentinels carry the same prefix, for the same reason.
var (
	ErrUnauthenticated  = rewind.ErrUnauthenticated
	ErrPermissionDenied = rewind.ErrPermissionDenied
	ErrTokenNotFound    = errors.New("rewind: token not found")
	ErrNameTaken        = &codedError{"rewind: token name already in use", rewind.ErrAlreadyExists}
	ErrLocked           = &codedError{"rewind: token file in use", rewind.ErrLocked}
)

// codedError is a sentinel of this package that also matches a rewind
// sentinel, so that rewind.CodeOf classifies it.
type codedError struct {
	msg  string
	also error
}

func (e *codedError) Error() string { return e.msg }

func (e *codedError) Is(target error) bool { return target == e.also }

// Token is an access token. Its secret is not kept, only its hash.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []Scope   `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	// RevokedAt is set once the token is revoked.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// ExpiresAt, when set, is when the token stops working (its TTL ran
	// out): from then on it is refused as a revoked one is.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Custom marks a token whose secret was chosen by the operator
	// (REWIND_ADMIN_TOKEN) rather than generated: it has no id inside.
	Custom bool `json:"custom,omitempty"`

	hash [sha256.Size]byte
}

// Revoked reports whether the token was revoked.
func (t *Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// Expired reports whether the token's TTL has run out at now.
func (t *Token) Expired(now time.Time) bool { return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) }

// Live reports whether the token works at now: neither revoked nor
// expired.
func (t *Token) Live(now time.Time) bool { return !t.Revoked() && !t.Expired(now) }

// Allows reports whether one of the token's scopes allows action on stream.
func (t *Token) Allows(action Action, stream string) bool {
	for _, s := range t.Scopes {
		if s.Allows(action, stream) {
			return true
		}
	}
	return false
}

// AllowsAll reports whether the token allows action on every stream,
// through a scope whose pattern is only "*".
func (t *Token) AllowsAll(action Action) bool {
	for _, s := range t.Scopes {
		if s.Action >= action && s.Pattern != "" && strings.Trim(s.Pattern, "*") == "" {
			return true
		}
	}
	return false
}

// AllowsPrefix reports whether the token allows action on every stream
// whose name starts with prefix: through a scope whose pattern is only
// "*", or is a plain name ending in "*" that prefix starts with (such as
// "orders-*" for the prefix "orders-eu-"). It may say no to a combination
// of scopes that together would cover the prefix.
func (t *Token) AllowsPrefix(action Action, prefix string) bool {
	if t.AllowsAll(action) {
		return true
	}
	for _, s := range t.Scopes {
		head, ok := strings.CutSuffix(s.Pattern, "*")
		if s.Action >= action && ok && !strings.Contains(head, "*") && strings.HasPrefix(prefix, head) {
			return true
		}
	}
	return false
}

// IsAdmin reports whether the token has admin:*, which manages tokens.
func (t *Token) IsAdmin() bool {
	for _, s := range t.Scopes {
		if s.Action == Admin && s.Pattern == "*" {
			return true
		}
	}
	return false
}

// ScopeStrings returns the scopes in their text form.
func (t *Token) ScopeStrings() []string {
	out := make([]string, len(t.Scopes))
	for i, s := range t.Scopes {
		out[i] = s.String()
	}
	return out
}

// tokenJSON is how a token is stored.
type tokenJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Hash      string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Custom    bool      `json:"custom,omitempty"`
}

func (t *Token) toJSON() tokenJSON {
	return tokenJSON{ID: t.ID, Name: t.Name, Scopes: t.ScopeStrings(), Hash: hex.EncodeToString(t.hash[:]),
		CreatedAt: t.CreatedAt, RevokedAt: t.RevokedAt, ExpiresAt: t.ExpiresAt, Custom: t.Custom}
}

func (j *tokenJSON) token() (*Token, error) {
	scopes, err := ParseScopes(j.Scopes)
	if err != nil {
		return nil, fmt.Errorf("token %s: %w", j.ID, err)
	}
	h, err := hex.DecodeString(j.Hash)
	if err != nil || len(h) != sha256.Size {
		return nil, fmt.Errorf("token %s: bad sha256 %q", j.ID, j.Hash)
	}
	t := &Token{ID: j.ID, Name: j.Name, Scopes: scopes, CreatedAt: j.CreatedAt, RevokedAt: j.RevokedAt,
		ExpiresAt: j.ExpiresAt, Custom: j.Custom}
	copy(t.hash[:], h)
	return t, nil
}

// Secrets look like "rwd_<id>_<43 characters>": the id finds the token
// without comparing secrets, the rest is 256 random bits.
const secretPrefix = "rwd_"

// MinCustomSecret is the shortest secret accepted from REWIND_ADMIN_TOKEN.
const MinCustomSecret = 24

func newID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func newSecret(id string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return secretPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// idOf returns the id inside a generated secret, or "".
func idOf(secret string) string {
	rest, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 12 {
		return ""
	}
	return id
}

func hashOf(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// matches compares secret's hash with the token's in constant time.
func (t *Token) matches(sum [sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(sum[:], t.hash[:]) == 1
}
