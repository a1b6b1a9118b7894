package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/buildinfo"
)

// Genesis is the link of the first entry: 64 zeros.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Entry is one record of the ledger.
type Entry struct {
	// Seq numbers entries from 1, without gaps. The backend assigns it.
	Seq int64 `json:"seq"`
	// Time is when the entry was appended, by the backend's clock, to the
	// microsecond. The backend assigns it.
	Time time.Time `json:"time"`
	// Kind says what happened, such as "backfill.run.started".
	Kind string `json:"kind"`
	// Subject is what the entry is about: a run id, a stream name.
	Subject string `json:"subject,omitempty"`
	Origin
	// Attrs carry what else the entry records: a job hash, parameters
	// (masked), a chunk's key range.
	Attrs map[string]string `json:"attrs,omitempty"`
	// Counts carry numbers: rows seen, rows changed, attempts.
	Counts map[string]int64 `json:"counts,omitempty"`
	// Message is a free-form note, such as an error.
	Message string `json:"message,omitempty"`
	// PrevHash is the hash of the entry before (Genesis for the first).
	PrevHash string `json:"prev_hash"`
	// Hash is this entry's hash, computed by Seal.
	Hash string `json:"hash"`
}

// Origin says who did something, from where and with which build.
type Origin struct {
	// Actor is who: given with --actor, else the operating-system user.
	Actor string `json:"actor"`
	// Host is the machine's host name.
	Host string `json:"host"`
	// Version and Revision identify the rewind build.
	Version  string `json:"version"`
	Revision string `json:"revision"`
	// Command is the command line, with secrets masked.
	Command string `json:"command,omitempty"`
}

// CurrentOrigin describes the running process: actor (or the operating
// system user when empty), host name, build, and args masked by MaskArgs.
func CurrentOrigin(actor string, args []string, secretParams []string) Origin {
	if actor == "" {
		actor = osUser()
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	b := buildinfo.Get()
	return Origin{Actor: actor, Host: host, Version: b.Version, Revision: strings.TrimPrefix(buildinfo.Identity(), b.Version+" "),
		Command: MaskArgs(args, secretParams)}
}

func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

// body is what an entry's hash covers besides the link: every field but
// Seq, PrevHash and Hash. Seq is left out so that the chain, not the
// numbering, defines the order; Verify checks the numbering separately.
type body struct {
	Time     string            `json:"time"`
	Kind     string            `json:"kind"`
	Subject  string            `json:"subject"`
	Actor    string            `json:"actor"`
	Host     string            `json:"host"`
	Version  string            `json:"version"`
	Revision string            `json:"revision"`
	Command  string            `json:"command"`
	Attrs    map[string]string `json:"attrs"`
	Counts   map[string]int64  `json:"counts"`
	Message  string            `json:"message"`
}

// Body returns the canonical encoding of what e's hash covers: JSON with a
// fixed field order, map keys sorted, the time in UTC to the microsecond.
func (e *Entry) Body() []byte {
	b, err := json.Marshal(body{
		Time: e.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano), Kind: e.Kind, Subject: e.Subject,
		Actor: e.Actor, Host: e.Host, Version: e.Version, Revision: e.Revision, Command: e.Command,
		Attrs: e.Attrs, Counts: e.Counts, Message: e.Message,
	})
	if err != nil {
		panic(fmt.Sprintf("audit: encode entry: %v", err)) // strings and ints always encode
	}
	return b
}

// ParseBody decodes what Body returns into e's fields (all but Seq, PrevHash
// and Hash), for backends that store the body as it was hashed.
func ParseBody(b []byte, e *Entry) error {
	var v body
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, v.Time)
	if err != nil {
		return fmt.Errorf("entry time: %w", err)
	}
	e.Time, e.Kind, e.Subject, e.Message = t, v.Kind, v.Subject, v.Message
	e.Origin = Origin{Actor: v.Actor, Host: v.Host, Version: v.Version, Revision: v.Revision, Command: v.Command}
	e.Attrs, e.Counts = v.Attrs, v.Counts
	return nil
}

// Seal sets e.PrevHash to prev and e.Hash to
// hex(sha256(prev as 32 bytes ‖ e.Body())).
func (e *Entry) Seal(prev string) error {
	h, err := hashOf(prev, e.Body())
	if err != nil {
		return err
	}
	e.PrevHash, e.Hash = prev, h
	return nil
}

func hashOf(prev string, body []byte) (string, error) {
	p, err := hex.DecodeString(prev)
	if err != nil || len(p) != sha256.Size {
		return "", fmt.Errorf("%w: previous hash %q is not 64 hex digits", ErrTampered, prev)
	}
	h := sha256.New()
	h.Write(p)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Validate checks what a caller must fill in before appending e.
func (e *Entry) Validate() error {
	switch {
	case e.Kind == "":
		return &rewind.ValidationError{Field: "audit entry kind", Reason: "must not be empty"}
	case e.Actor == "":
		return &rewind.ValidationError{Field: "audit entry actor", Reason: "must not be empty"}
	}
	return nil
}

// ErrTampered is matched by every *TamperError.
var ErrTampered = errors.New("audit: ledger tampered")

// Problem classifies what Verify found.
type Problem string

// The problems Verify names.
const (
	Altered  Problem = "altered"
	Removed  Problem = "removed"
	Inserted Problem = "inserted"
)

// TamperError names the first entry at which the chain does not hold. It
// matches ErrTampered and rewind.ErrCorruption.
type TamperError struct {
	// Seq is the entry that was altered or inserted, or the first one
	// missing when entries were removed.
	Seq     int64
	Problem Problem
	Reason  string
}

func (e *TamperError) Error() string {
	return fmt.Sprintf("audit: ledger tampered: entry %d %s: %s", e.Seq, e.Problem, e.Reason)
}

// Is makes errors.Is match ErrTampered and rewind.ErrCorruption.
func (e *TamperError) Is(target error) bool {
	return target == ErrTampered || target == rewind.ErrCorruption
}

// MaskArgs joins a command line, replacing secrets with "***": the values
// of flags whose name says password, secret, token or key, passwords inside
// DSNs, and `--param name=value` values whose name is in secretParams or
// looks secret.
func MaskArgs(args []string, secretParams []string) string {
	out := make([]string, len(args))
	maskNext := false
	for i, a := range args {
		switch {
		case maskNext:
			out[i], maskNext = maskValue(args[i-1], a, secretParams), false
		case strings.HasPrefix(a, "-") && strings.Contains(a, "="):
			name, v, _ := strings.Cut(a, "=")
			out[i] = name + "=" + maskValue(name, v, secretParams)
		default:
			out[i] = MaskDSN(a)
			maskNext = strings.HasPrefix(a, "-")
		}
	}
	return strings.Join(out, " ")
}

func maskValue(flag, v string, secretParams []string) string {
	name := strings.TrimLeft(flag, "-")
	if name == "param" || name == "p" {
		k, val, ok := strings.Cut(v, "=")
		if ok && IsSecret(k, secretParams) {
			return k + "=***"
		}
		return k + "=" + MaskDSN(val)
	}
	if IsSecret(name, nil) {
		return "***"
	}
	return MaskDSN(v)
}

// MaskParams returns params with the values of secret ones replaced by "***".
func MaskParams(params map[string]string, secretParams []string) map[string]string {
	if params == nil {
		return nil
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		if IsSecret(k, secretParams) {
			v = "***"
		}
		out[k] = MaskDSN(v)
	}
	return out
}

// IsSecret reports whether a parameter or flag is secret: declared so, or
// named like one (password, secret, token, api key, credential).
func IsSecret(name string, declared []string) bool {
	n := strings.ToLower(name)
	for _, d := range declared {
		if strings.EqualFold(d, name) {
			return true
		}
	}
	for _, w := range []string{"password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// MaskDSN hides the password of a URL-style DSN (postgres://u:p@h) or of a
// key=value one (password=p).
func MaskDSN(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		at := strings.IndexByte(rest, '@')
		if colon := strings.IndexByte(rest, ':'); at > 0 && colon >= 0 && colon < at {
			s = s[:i+3] + rest[:colon] + ":***" + rest[at:]
		}
	}
	if j := strings.Index(strings.ToLower(s), "password="); j >= 0 {
		end := strings.IndexAny(s[j:], " &")
		if end < 0 {
			end = len(s) - j
		}
		s = s[:j] + "password=***" + s[j+end:]
	}
	return s
}
