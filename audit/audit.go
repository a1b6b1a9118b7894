package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/internal/buildinfo"
)

// Genesis is the link of the first entry: 64 zeros.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Entry is one record of the ledger.
type Entry struct {
	// Seq numbers entries from 1, without gaps. The backend assigns it; the
	// hash covers it, so that an entry moved to another position is found.
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

// body is the canonical encoding of an entry, what its hash covers besides
// the link: every field but PrevHash and Hash. It starts with the entry's
// own sequence number, so that an entry moved to another position (entries
// removed and the rest renumbered, two entries swapped) shows where it
// belongs, and the entry that was moved is the one named.
type body struct {
	Seq int64 `json:"seq"`
	bodyV1
}

// bodyV1 is the body of entries written before bodies held their sequence
// number. Verify still accepts them, before the first entry of the
// current form.
type bodyV1 struct {
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

func (e *Entry) v1() bodyV1 {
	return bodyV1{Time: e.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano), Kind: e.Kind, Subject: e.Subject,
		Actor: e.Actor, Host: e.Host, Version: e.Version, Revision: e.Revision, Command: e.Command,
		Attrs: e.Attrs, Counts: e.Counts, Message: e.Message}
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("audit: encode entry: %v", err)) // strings and ints always encode
	}
	return b
}

// Body returns the canonical encoding of what e's hash covers: JSON with a
// fixed field order starting with the sequence number, map keys sorted,
// the time in UTC to the microsecond, Go's escaping. Backends store these
// bytes verbatim; Verify hashes the stored bytes, never a re-encoding.
func (e *Entry) Body() []byte { return encode(body{Seq: e.Seq, bodyV1: e.v1()}) }

// seqPrefix opens every body (with the sequence number after it).
const seqPrefix = `{"seq":`

// BodyTail returns Body without its opening {"seq":N, for backends that
// assign sequence numbers in the database: the body is {"seq":, the
// number in decimal, a comma, then the tail.
func (e *Entry) BodyTail() []byte {
	c := *e
	c.Seq = 0
	return c.Body()[len(seqPrefix)+2:]
}

// ParseBody decodes a stored body into e's fields (all but PrevHash and
// Hash; Seq only when the body holds it). It accepts only the exact bytes
// Body writes (or wrote, for entries of earlier versions): a body that
// decodes to the same entry but differs in a byte (a key's case, spacing,
// an escaped letter, an added field) is refused.
func ParseBody(b []byte, e *Entry) error {
	_, err := parseBody(b, e)
	return err
}

// parseBody is ParseBody, also returning whether the body holds its
// sequence number.
func parseBody(b []byte, e *Entry) (withSeq bool, err error) {
	var v body
	withSeq = bytes.HasPrefix(b, []byte(seqPrefix))
	var dst any = &v.bodyV1
	if withSeq {
		dst = &v
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(dst); err != nil {
		return withSeq, err
	}
	if d.More() {
		return withSeq, errors.New("data after the entry")
	}
	t, err := time.Parse(time.RFC3339Nano, v.Time)
	if err != nil {
		return withSeq, fmt.Errorf("entry time: %w", err)
	}
	c := Entry{Time: t, Kind: v.Kind, Subject: v.Subject, Message: v.Message, Attrs: v.Attrs, Counts: v.Counts,
		Origin: Origin{Actor: v.Actor, Host: v.Host, Version: v.Version, Revision: v.Revision, Command: v.Command}}
	canon := encode(c.v1())
	if withSeq {
		c.Seq = v.Seq
		canon = c.Body()
	}
	if !bytes.Equal(canon, b) {
		return withSeq, errors.New("it is not in the canonical form its writer produced (a byte was changed, added or removed)")
	}
	if withSeq {
		e.Seq = c.Seq
	}
	e.Time, e.Kind, e.Subject, e.Message, e.Origin, e.Attrs, e.Counts = c.Time, c.Kind, c.Subject, c.Message, c.Origin, c.Attrs, c.Counts
	return withSeq, nil
}

// Seal sets e.PrevHash to prev and e.Hash to
// hex(sha256(prev as 32 bytes ‖ e.Body())). e.Seq must be set.
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

// Head names an entry by its sequence number and hash, written SEQ:HASH.
// The head of a ledger, recorded outside it (a ticket, a commit, another
// system's log) and given back to Verify, pins every entry up to it: a
// ledger rewritten from any entry up to the head, or cut short of it, no
// longer verifies against it.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

func (h Head) String() string { return fmt.Sprintf("%d:%s", h.Seq, h.Hash) }

// ParseHead parses SEQ:HASH as Head.String writes it.
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(strings.TrimSpace(s), ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if _, herr := hex.DecodeString(hash); !ok || err != nil || n < 1 || len(hash) != 2*sha256.Size || herr != nil {
		return Head{}, &rewind.ValidationError{Field: "head", Value: s,
			Reason: "must be SEQ:HASH as printed by `rewind audit head` or `rewind audit verify`: a sequence number from 1, a colon and 64 hex digits"}
	}
	return Head{Seq: n, Hash: strings.ToLower(hash)}, nil
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
	// Altered: the entry's bytes, or its hash, changed.
	Altered Problem = "altered"
	// Removed: the entry is missing (the entries after it may have been
	// renumbered to hide the gap).
	Removed Problem = "removed"
	// Inserted: the entry was not appended through the ledger.
	Inserted Problem = "inserted"
	// Moved: the entry is stored at another position (swapped with
	// another, or a copy of it put in another's place).
	Moved Problem = "moved"
)

// TamperError names the first entry at which the chain does not hold. It
// matches ErrTampered and rewind.ErrCorruption.
type TamperError struct {
	// Seq is the entry that was altered, inserted or moved, or the first
	// one missing when entries were removed.
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
// named like one: containing password, passwd, passphrase, secret, token,
// apikey or credential, or with a word (between _, - and .) that is key,
// pwd, pass, auth, authorization, cookie, session, bearer or private
// (private_key, access_key, db_pwd; not author or monkey).
func IsSecret(name string, declared []string) bool {
	n := strings.ToLower(name)
	for _, d := range declared {
		if strings.EqualFold(d, name) {
			return true
		}
	}
	for _, w := range []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "api_key", "api-key", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	for _, w := range strings.FieldsFunc(n, func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
		switch w {
		case "key", "pwd", "pass", "auth", "authorization", "cookie", "session", "bearer", "private":
			return true
		}
	}
	return false
}

// MaskDSN hides the passwords of a DSN: of a URL-style one
// (postgres://u:p@h, the password up to the last '@' of the authority,
// and ?password=p; also with one slash, postgres:/u:p@h, the form
// filepath.Clean makes of a URL inside a path), and of a keyword/value one, whatever its spacing,
// quoting and escaping (password=p, password = p, password='p q',
// password=p\ q), sslpassword too. The result is then checked against
// the driver's own reading of s (pgconn.ParseConfig): unless the driver
// reads the masked text's password as "***" (or none), and if any part of
// the password it read in s is still in the text, the whole of s is
// replaced by "***" rather than recorded with part of a password.
func MaskDSN(s string) string {
	masked := s
	if loc := urlScheme.FindStringIndex(masked); loc != nil {
		i := loc[1]
		rest := masked[i:]
		auth := rest
		if q := strings.IndexAny(auth, "?#"); q >= 0 {
			auth = auth[:q]
		}
		if at := strings.LastIndexByte(auth, '@'); at > 0 {
			if colon := strings.IndexByte(auth[:at], ':'); colon >= 0 {
				masked = masked[:i] + rest[:colon] + ":***" + rest[at:]
			}
		}
	}
	masked = maskKeywordPasswords(maskSlashlessUserinfo(masked))
	if !strings.Contains(s, "=") && !strings.Contains(s, "://") {
		return masked
	}
	cfg, err := pgconn.ParseConfig(s)
	if err != nil || cfg.Password == "" {
		return masked
	}
	if after, err := pgconn.ParseConfig(masked); err == nil && (after.Password == "***" || after.Password == "") {
		return masked // the password the driver reads is the mask
	}
	for _, piece := range passwordPieces(cfg.Password) {
		if strings.Contains(masked, piece) {
			return "***"
		}
	}
	return masked
}

// passwordPieces are the parts of a password that must not be left in a
// masked DSN: the password as read, as written escaped (libpq's \ and
// URL %-escapes), and each of its runs of 4 or more characters between
// spaces, quotes and backslashes (what a mask that stopped early leaves).
// Shorter runs are not looked for: they are too likely to stand in the
// DSN for another reason.
func passwordPieces(pw string) []string {
	out := []string{url.QueryEscape(pw), url.PathEscape(pw), strings.NewReplacer(`\`, `\\`, " ", `\ `, "'", `\'`).Replace(pw)}
	if len(pw) >= 4 {
		out = append(out, pw)
	}
	for _, f := range strings.FieldsFunc(pw, func(r rune) bool { return r == ' ' || r == '\'' || r == '\\' || r == '%' }) {
		if len(f) >= 4 {
			out = append(out, f)
		}
	}
	return slices.DeleteFunc(out, func(p string) bool { return len(p) < 4 })
}

// MaskText masks the passwords of the connection strings in a message:
// each URL in it (from its scheme's ":/" or "://" to the next space,
// quote or backquote) is masked by MaskDSN on its own, and so is each keyword/value
// password. A message is not one DSN: masking it whole took the text
// between its first "://" and its last '@' for a URL's userinfo.
func MaskText(msg string) string {
	msg = urlInText.ReplaceAllStringFunc(msg, MaskDSN)
	return maskKeywordPasswords(maskSlashlessUserinfo(msg))
}

// maskSlashlessUserinfo masks the password of each URL written without
// slashes after its scheme's colon, scheme:user:password@host (a DSN
// mistyped postgres:u:p@h, which the driver does not read as a URL but a
// person does): the text between the second colon and the last '@' before
// the next space, quote, '?' or '#'. The scheme starts with a letter, not
// inside a word, and the user holds no space, '/', ':' or '@', so that
// times (06:11:43), ratios and "note: a:b" stay as they are.
func maskSlashlessUserinfo(s string) string {
	return slashlessUserinfo.ReplaceAllString(s, "${1}***@")
}

// slashlessUserinfo matches scheme:user:password@ with its scheme at the
// start of the text or after a character that cannot be in a scheme.
var slashlessUserinfo = regexp.MustCompile("((?:^|[^A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*:[^\\s\"'`<>/?#@:]*:)[^\\s\"'`<>?#]*@")

// maskKeywordPasswords replaces the value of each keyword/value password
// (kvPassword) by "***", keeping the keyword and the '=' as written
// (PASSWORD = p is PASSWORD = ***). An unquoted value ends at a space, but a double quote followed
// by nothing but quotes and punctuation (`"`, `":`, `")`) is left after
// the mask: it closes the quoted text the DSN stands in (`window.to
// "password=p": must be…`), not the password. A quote with more after it
// (`password=ab"cd`) is part of the password and masked with it.
func maskKeywordPasswords(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range kvPassword.FindAllStringSubmatchIndex(s, -1) {
		end := m[1]
		if val := s[m[4]:m[5]]; !strings.HasPrefix(val, "'") {
			for i := 0; i < len(val); i++ {
				if val[i] == '"' && (i == 0 || val[i-1] != '\\') && closingQuote.MatchString(val[i:]) {
					end = m[4] + i
					break
				}
			}
		}
		b.WriteString(s[last:m[4]]) // the keyword and '=' as written
		b.WriteString("***")
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// closingQuote matches the end of an unquoted keyword value that closes a
// quotation around it: quotes, then punctuation only.
var closingQuote = regexp.MustCompile(`^"+[:,;.)\]}]*$`)

// urlScheme matches the start of a URL: its scheme, a colon and one or
// more slashes (postgres://, and postgres:/ as filepath.Clean leaves it).
var urlScheme = regexp.MustCompile(`[A-Za-z0-9+.-]*:/+`)

// urlInText matches a URL in a message, with one slash or more after its
// scheme's colon.
var urlInText = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*:/+[^\\s\"'`<>]*")

// MaskEntry returns e with the passwords of the connection strings in
// every text it records masked by MaskText: its subject, actor, command,
// message and each attribute's value, whatever field a DSN went into (a
// parameter inside a path, a filter, an error that quotes it). Backends
// call it on every entry they append, the one point every field passes,
// so that no password reaches the ledger in any form MaskText knows.
func MaskEntry(e Entry) Entry {
	e.Subject, e.Actor, e.Command, e.Message = MaskText(e.Subject), MaskText(e.Actor), MaskText(e.Command), MaskText(e.Message)
	if e.Attrs != nil {
		attrs := make(map[string]string, len(e.Attrs))
		for k, v := range e.Attrs {
			attrs[k] = MaskText(v)
		}
		e.Attrs = attrs
	}
	return e
}

// DSNProblem says what is wrong with a connection string the driver
// could not parse (err from pgconn.ParseConfig or pgxpool.ParseConfig),
// without quoting the string: the driver's message quotes it with the
// password replaced, which a password whose end it could not find
// defeats.
func DSNProblem(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+3:]
	}
	msg = strconvText.ReplaceAllString(msg, "")
	if strings.Contains(msg, "percent-encoded") {
		msg += ": in the URL form a '%' must begin a %XX escape; write %25 for a '%' in the password"
	}
	return MaskText(msg)
}

// strconvText is the parser's own detail in a connection string error,
// which says nothing more than the message around it.
var strconvText = regexp.MustCompile(` ?\(strconv\.[A-Za-z]+: [^)]*\)`)

// kvPassword matches a password in a DSN: a keyword (any case, optional
// spaces around '=') and its value, quoted (with \' escapes) or up to an
// unescaped space or '&'.
var kvPassword = regexp.MustCompile(`(?i)\b(ssl)?password\s*=\s*('(?:[^'\\]|\\.)*'?|(?:[^\s&\\]|\\.?)*)`)
