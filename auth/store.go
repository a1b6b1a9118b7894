package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode"

	"github.com/rewindhq/rewind"

	"github.com/rewindhq/rewind/eventlog/vfs"
)

// FileName is the name of the token file in the data directory.
const FileName = "tokens.json"

// Store keeps tokens in a file. It is safe for concurrent use. While a
// Store is open it holds an exclusive lock, so a server and a CLI cannot
// edit the same file at once.
type Store struct {
	path string
	lock io.Closer

	now func() time.Time // the clock of creations, revocations and expiry; nil: time.Now

	mu      sync.RWMutex
	tokens  []*Token                 // in creation order
	revoked map[string]chan struct{} // by token id: closed when it is revoked
}

type fileJSON struct {
	Tokens []tokenJSON `json:"tokens"`
}

// Open loads the tokens of dir (none when the file does not exist yet) and
// locks the file. It fails with ErrLocked when another process has it open.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// The same lock as the event log's (gofrs/flock), on every OS.
	lock, err := vfs.Default.Lock(filepath.Join(dir, FileName+".lock"))
	if errors.Is(err, vfs.ErrLocked) {
		return nil, fmt.Errorf("%w: another rewind process (probably the server) has the tokens of %s open; "+
			"manage tokens through it with --server", ErrLocked, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lock tokens: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), lock: lock}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		s.Close()
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	var f fileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		s.Close()
		return nil, s.corrupt(err)
	}
	for _, j := range f.Tokens {
		t, err := j.token()
		if err != nil {
			s.Close()
			return nil, s.corrupt(err)
		}
		s.tokens = append(s.tokens, t)
	}
	return s, nil
}

// corrupt is the error for a token file that cannot be read as one:
// marked as corruption, naming the file and what to do.
func (s *Store) corrupt(err error) error {
	return fmt.Errorf("%w: token file %s is damaged (%w); restore it from a backup, "+
		"or move it away and create tokens again (a first start then makes a new admin token)",
		rewind.ErrCorruption, s.path, err)
}

// SetClock sets the clock that dates creations and revocations and decides
// expiry; for tests. Defaults to time.Now. Call it before the Store is
// shared.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

func (s *Store) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}

// Close releases the lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Empty reports whether no token was ever created.
func (s *Store) Empty() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.tokens) == 0
}

// Bootstrap creates the first admin token, named "admin" with scope admin:*,
// when no token exists. Its secret is envSecret when that is given
// (REWIND_ADMIN_TOKEN), else a new random one. It returns the secret to
// show once, or "" when tokens already existed or the secret was given.
func (s *Store) Bootstrap(envSecret string) (secret string, err error) {
	if !s.Empty() {
		return "", nil
	}
	admin := []Scope{{Action: Admin, Pattern: "*"}}
	if envSecret != "" {
		if len(envSecret) < MinCustomSecret {
			return "", &rewind.ValidationError{Field: "REWIND_ADMIN_TOKEN",
				Reason: fmt.Sprintf("must be at least %d characters; use a long random string", MinCustomSecret)}
		}
		_, err := s.create("admin", admin, 0, envSecret)
		return "", err
	}
	_, secret, err = s.Create("admin", admin, 0)
	return secret, err
}

// Limits of a token.
const (
	// MaxNameLen bounds a token's name.
	MaxNameLen = 64
	// MaxScopes bounds the scopes of one token.
	MaxScopes = 64
)

// Create makes a token and returns it with its secret, which is not stored
// and cannot be shown again. With a ttl the token expires that long after
// its creation; 0 means it works until it is revoked.
func (s *Store) Create(name string, scopes []Scope, ttl time.Duration) (Token, string, error) {
	t, err := s.create(name, scopes, ttl, "")
	if err != nil {
		return Token{}, "", err
	}
	return t.Token, t.secret, nil
}

type created struct {
	Token
	secret string
}

func (s *Store) create(name string, scopes []Scope, ttl time.Duration, custom string) (created, error) {
	if err := validateName(name); err != nil {
		return created{}, err
	}
	switch {
	case len(scopes) == 0:
		return created{}, &rewind.ValidationError{Field: "scopes",
			Reason: `a token needs at least one scope, such as "read:*" or "write:orders-*"`}
	case len(scopes) > MaxScopes:
		return created{}, &rewind.ValidationError{Field: "scopes",
			Reason: fmt.Sprintf("a token has at most %d scopes, got %d; use patterns such as orders-*", MaxScopes,
				len(scopes))}
	case ttl < 0 || ttl > 0 && ttl < time.Second:
		return created{}, &rewind.ValidationError{Field: "ttl", Value: ttl.String(),
			Reason: "must be at least 1s, such as 24h; leave it out for a token that lasts until it is revoked"}
	}
	for _, sc := range scopes {
		if err := checkPattern(sc); err != nil {
			return created{}, err
		}
	}
	id, err := newID()
	if err != nil {
		return created{}, err
	}
	secret := custom
	if secret == "" {
		if secret, err = newSecret(id); err != nil {
			return created{}, err
		}
	}
	now := s.clock().UTC()
	t := &Token{ID: id, Name: name, Scopes: slices.Clone(scopes), CreatedAt: now.Truncate(time.Second),
		Custom: custom != "", hash: hashOf(secret)}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.tokens {
		if o.Name == name && o.Live(now) {
			return created{}, fmt.Errorf("%w: a token named %q exists (id %s); revoke it first or pick another name",
				ErrNameTaken, name, o.ID)
		}
	}
	if err := s.saveLocked(append(slices.Clone(s.tokens), t)); err != nil {
		return created{}, err
	}
	s.tokens = append(s.tokens, t)
	return created{Token: *t, secret: secret}, nil
}

func validateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return &rewind.ValidationError{Field: "token name", Value: name,
			Reason: fmt.Sprintf("must be 1 to %d characters", MaxNameLen)}
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return &rewind.ValidationError{Field: "token name", Value: name,
				Reason: "may only contain letters, digits, '-', '_' and '.'"}
		}
	}
	return nil
}

// checkPattern applies the stream name rules on characters to the pattern
// of a new token's scope: no invisible or direction-changing characters
// (Unicode's format characters and the other default-ignorable ones, as
// package store refuses in names), which would make the pattern print as
// another one. ParseScope does not check them, so that tokens created
// before this rule still load.
func checkPattern(sc Scope) error {
	for i, r := range sc.Pattern {
		if unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
			unicode.Is(unicode.Variation_Selector, r) {
			return &rewind.ValidationError{Field: "scope", Value: sc.String(), Reason: fmt.Sprintf(
				"the pattern must not contain invisible or direction-changing characters (found %U at byte %d)", r, i)}
		}
	}
	return nil
}

// List returns the tokens in creation order; revoked and expired ones
// only when asked.
func (s *Store) List(includeRevoked bool) []Token {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.clock()
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		if includeRevoked || t.Live(now) {
			out = append(out, *t)
		}
	}
	return out
}

// Revoke revokes the token with this id, or the live token with this name.
// Requests using it fail from then on.
func (s *Store) Revoke(idOrName string) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	i := slices.IndexFunc(s.tokens, func(t *Token) bool { return t.ID == idOrName })
	if i < 0 { // by name: the live token, else the newest expired one not yet revoked
		i = slices.IndexFunc(s.tokens, func(t *Token) bool { return t.Name == idOrName && t.Live(now) })
	}
	if i < 0 {
		i = lastIndexFunc(s.tokens, func(t *Token) bool { return t.Name == idOrName && !t.Revoked() })
	}
	if i < 0 {
		return Token{}, fmt.Errorf("%w: no token has id or name %q; see 'rewind token list'", ErrTokenNotFound, idOrName)
	}
	if s.tokens[i].Revoked() {
		return *s.tokens[i], nil
	}
	next := slices.Clone(s.tokens)
	t := *next[i]
	t.RevokedAt = now.UTC().Truncate(time.Second)
	next[i] = &t
	if err := s.saveLocked(next); err != nil {
		return Token{}, err
	}
	s.tokens = next
	if ch, ok := s.revoked[t.ID]; ok {
		close(ch)
		delete(s.revoked, t.ID)
	}
	return t, nil
}

// Unbootstrap removes the admin token that Bootstrap created with secret
// when it is still the only token, as if the start that created it never
// happened: for a start that could not show the secret to anyone. It
// reports whether it removed it.
func (s *Store) Unbootstrap(secret string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) != 1 || !s.tokens[0].matches(hashOf(secret)) {
		return false, nil
	}
	if err := s.saveLocked(nil); err != nil {
		return false, err
	}
	s.tokens = nil
	return true, nil
}

// WhenRevoked returns a channel that is closed once the token with this id
// is revoked (at once if it is already). Long-lived requests, such as
// subscriptions, end on it: a token checked when a stream opened must not
// outlive its revocation.
func (s *Store) WhenRevoked(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.IndexFunc(s.tokens, func(t *Token) bool { return t.ID == id }); i < 0 || s.tokens[i].Revoked() {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	ch, ok := s.revoked[id]
	if !ok {
		if s.revoked == nil {
			s.revoked = map[string]chan struct{}{}
		}
		ch = make(chan struct{})
		s.revoked[id] = ch
	}
	return ch
}

// Authenticate returns the token whose secret this is. It fails with an
// error matching ErrUnauthenticated that says whether the secret was
// missing, unknown or revoked.
func (s *Store) Authenticate(secret string) (*Token, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: this server requires a token: send \"Authorization: Bearer TOKEN\" "+
			"(CLI: --token or REWIND_TOKEN)", ErrUnauthenticated)
	}
	sum := hashOf(secret)
	id := idOf(secret)
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found *Token
	for _, t := range s.tokens {
		// Generated secrets are found by their id; operator-chosen ones are
		// compared with every custom token, without stopping early.
		if (id != "" && t.ID == id || t.Custom) && t.matches(sum) {
			found = t
		}
	}
	switch {
	case found == nil:
		return nil, fmt.Errorf("%w: the token is not known to this server; check it, or create one with 'rewind token create'",
			ErrUnauthenticated)
	case found.Revoked():
		return nil, fmt.Errorf("%w: token %q was revoked at %s; ask an admin for a new one",
			ErrUnauthenticated, found.Name, found.RevokedAt.Format(time.RFC3339))
	case found.Expired(s.clock()):
		return nil, fmt.Errorf("%w: token %q expired at %s; ask an admin for a new one",
			ErrUnauthenticated, found.Name, found.ExpiresAt.Format(time.RFC3339))
	}
	return found, nil
}

func lastIndexFunc[T any](s []T, f func(T) bool) int {
	for i := len(s) - 1; i >= 0; i-- {
		if f(s[i]) {
			return i
		}
	}
	return -1
}

// saveLocked writes tokens to the file atomically: a temporary file,
// fsynced, renamed over the old one, and the directory fsynced.
func (s *Store) saveLocked(tokens []*Token) error {
	err := s.write(tokens)
	if err != nil && rewind.IsDiskFailure(err) {
		// A full or failing disk is the data directory's disk failing,
		// reported as the store's would be.
		return fmt.Errorf("%w: %w; free disk space or repair the device, then try again", rewind.ErrFailed, err)
	}
	return err
}

func (s *Store) write(tokens []*Token) error {
	file := fileJSON{Tokens: make([]tokenJSON, len(tokens))}
	for i, t := range tokens {
		file.Tokens[i] = t.toJSON()
	}
	b, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save tokens: %w", err)
	}
	d, err := os.Open(filepath.Dir(s.path))
	if err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	return nil
}
