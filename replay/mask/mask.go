// Package mask hides sensitive fields of events' JSON data during a
// replay: each field, named by a path per event type, is masked (replaced
// by "***"), hashed (a keyed HMAC-SHA256, stable across runs so that joins
// on the field still work) or dropped.
//
// The rules fail closed. A path that meets a value of another shape than it
// names (a string where it expects an object, an object where it expects a
// list) applies its action to that whole value rather than passing it
// through. An event of a type with rules whose data is not JSON, or whose
// top-level value is not what the paths start from, cannot be masked: Apply
// refuses it with an *UnmaskableError and never returns its data. Events of
// types without rules pass unchanged, byte for byte, whatever their data.
package mask

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/rewindhq/rewind"
)

// Action is what happens to a sensitive field.
type Action string

const (
	// Mask replaces the value, of whatever type, by the string "***".
	Mask Action = "mask"
	// Hash replaces the value by the lower-case hex HMAC-SHA256 of it under
	// the masker's key: a string's UTF-8 bytes, any other value's compact
	// JSON (object keys sorted, numbers as written).
	Hash Action = "hash"
	// Drop removes the field from its object (or the element from its list).
	Drop Action = "drop"
)

// Masked is what Mask puts in place of a value.
const Masked = "***"

// AnyType is the event type whose rules apply to events of every type.
const AnyType = "*"

// MinKeyLen is the shortest key Hash accepts, in bytes.
const MinKeyLen = 16

// ErrBadRule: a path or an action is malformed, or two paths overlap.
var ErrBadRule = errors.New("mask: bad rule")

// ErrUnmaskable: an event's data cannot be masked.
var ErrUnmaskable = errors.New("mask: event data cannot be masked")

// MetadataPrefix starts a path that names a metadata key rather than a
// field of the data: "metadata:tenant" is the event's metadata value of
// key "tenant".
const MetadataPrefix = "metadata:"

// Rule is one sensitive field of an event type.
type Rule struct {
	// Path names the field: object keys separated by dots, a key followed
	// by [] for every element of the list it holds ("items[].sku"), or []
	// alone first for a top-level list ("[].card"). Keys cannot contain
	// '.', '[', ']' or be empty. A path MetadataPrefix + KEY names the
	// metadata value of KEY instead (metadata is flat: no dots, no lists).
	Path   string
	Action Action
	steps  []step
	meta   string // the metadata key of a metadata rule
}

// step is one segment of a path: an object key, or every element of a list.
type step struct {
	key  string
	each bool
}

// ParsePath checks a path and splits it into steps.
func ParsePath(path string) ([]step, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: a path must not be empty", ErrBadRule)
	}
	var steps []step
	for i, piece := range strings.Split(path, ".") {
		name, brackets := piece, ""
		if i := strings.IndexByte(piece, '['); i >= 0 {
			name, brackets = piece[:i], piece[i:]
		}
		switch {
		case name == "" && (i > 0 || brackets == ""):
			return nil, fmt.Errorf("%w: path %q has an empty key (keys are separated by one dot; [] follows a key, or starts the path for a top-level list)", ErrBadRule, path)
		case strings.ContainsAny(name, "]*"):
			return nil, fmt.Errorf("%w: path %q: key %q may not hold ']' or '*' (write every element of a list as key[])", ErrBadRule, path, name)
		}
		if name != "" {
			steps = append(steps, step{key: name})
		}
		for brackets != "" {
			if !strings.HasPrefix(brackets, "[]") {
				return nil, fmt.Errorf("%w: path %q: only [] (every element) may follow a key, not %q", ErrBadRule, path, brackets)
			}
			steps = append(steps, step{each: true})
			brackets = brackets[2:]
		}
	}
	return steps, nil
}

// Rules are the sensitive fields of each event type (AnyType: of every
// type).
type Rules map[string][]Rule

// Add checks a rule and adds it to the event type's.
func (r Rules) Add(eventType, path string, act Action) error {
	switch act {
	case Mask, Hash, Drop:
	default:
		return fmt.Errorf("%w: action %q is not one of mask, hash, drop", ErrBadRule, act)
	}
	if key, ok := strings.CutPrefix(path, MetadataPrefix); ok {
		return r.addMetadata(eventType, path, key, act)
	}
	steps, err := ParsePath(path)
	if err != nil {
		return err
	}
	if act == Drop && steps[len(steps)-1].each {
		return fmt.Errorf("%w: path %q ends in []: drop the list with its key instead", ErrBadRule, path)
	}
	if act == Drop && len(steps) == 0 {
		return fmt.Errorf("%w: the whole event cannot be dropped", ErrBadRule)
	}
	rule := Rule{Path: path, Action: act, steps: steps}
	for _, t := range []string{eventType, AnyType} {
		for _, o := range r[t] {
			if o.meta == "" && overlap(o.steps, steps) {
				return fmt.Errorf("%w: path %q overlaps %q (of %s): give one of them", ErrBadRule, path, o.Path, typeName(t))
			}
		}
	}
	if eventType == AnyType {
		for t, rules := range r {
			for _, o := range rules {
				if o.meta == "" && overlap(o.steps, steps) {
					return fmt.Errorf("%w: path %q overlaps %q (of %s): give one of them", ErrBadRule, path, o.Path, typeName(t))
				}
			}
		}
	}
	r[eventType] = append(r[eventType], rule)
	return nil
}

// addMetadata adds a rule of a metadata key.
func (r Rules) addMetadata(eventType, path, key string, act Action) error {
	if key == "" || strings.ContainsFunc(key, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return fmt.Errorf("%w: path %q names no metadata key (write %sKEY, such as %stenant)", ErrBadRule, path,
			MetadataPrefix, MetadataPrefix)
	}
	check := func(t string, rules []Rule) error {
		for _, o := range rules {
			if o.meta == key {
				return fmt.Errorf("%w: path %q is given twice (of %s): give it once", ErrBadRule, path, typeName(t))
			}
		}
		return nil
	}
	for t, rules := range r {
		if t == eventType || t == AnyType || eventType == AnyType {
			if err := check(t, rules); err != nil {
				return err
			}
		}
	}
	r[eventType] = append(r[eventType], Rule{Path: path, Action: act, meta: key})
	return nil
}

func typeName(t string) string {
	if t == AnyType {
		return "every type"
	}
	return "type " + t
}

// overlap reports whether one path is the other or lies under it: masking
// one would change what the other sees.
func overlap(a, b []step) bool {
	n := min(len(a), len(b))
	return slices.Equal(a[:n], b[:n])
}

// Needs reports whether rules apply to events of type t.
func (r Rules) Needs(t string) bool { return len(r[t]) > 0 || len(r[AnyType]) > 0 }

// HasHash reports whether any rule hashes (and so needs a key).
func (r Rules) HasHash() bool {
	for _, rules := range r {
		for _, x := range rules {
			if x.Action == Hash {
				return true
			}
		}
	}
	return false
}

// Masker applies rules with a key.
type Masker struct {
	rules Rules
	key   []byte
}

// New returns a masker. A key of at least MinKeyLen bytes is needed when a
// rule hashes; it is not needed otherwise.
func New(rules Rules, key []byte) (*Masker, error) {
	if rules.HasHash() && len(key) < MinKeyLen {
		return nil, &rewind.ValidationError{Field: "mask key", Reason: fmt.Sprintf(
			"the template hashes fields: give a key of at least %d bytes with --mask-key-file or $REWIND_MASK_KEY (got %d bytes)", MinKeyLen, len(key))}
	}
	return &Masker{rules: rules, key: slices.Clone(key)}, nil
}

// KeyID names the key without revealing it: the first 16 hex digits of
// HMAC-SHA256(key, "rewind mask key id"). Two runs that hashed with the
// same key have the same id; "" without a key.
func (m *Masker) KeyID() string {
	if len(m.key) == 0 {
		return ""
	}
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte("rewind mask key id"))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// UnmaskableError says which event could not be masked and why.
type UnmaskableError struct {
	Position rewind.Position
	Stream   string
	Type     string
	Reason   string
}

func (e *UnmaskableError) Error() string {
	return fmt.Sprintf("mask: the event at position %d (stream %q, type %q) cannot be masked: %s; nothing of it is written "+
		"(narrow the window or the types, or fix the template's mask paths)", e.Position, e.Stream, e.Type, e.Reason)
}

// Is makes the error match ErrUnmaskable and rewind.ErrInvalidArgument.
func (e *UnmaskableError) Is(target error) bool {
	return target == ErrUnmaskable || target == rewind.ErrInvalidArgument
}

// Apply returns ev's data with its type's rules applied, and how many
// values it masked, hashed or dropped. Data of a type without rules, or in
// which no path was found, is returned as it is (the same slice). Data that
// was changed is compact JSON with object keys sorted and numbers as
// written. Data that cannot be masked is refused with an *UnmaskableError.
//
// Metadata rules are not applied here: see ApplyMetadata.
func (m *Masker) Apply(ev *rewind.RecordedEvent) ([]byte, int, error) {
	var rules []Rule // a new slice: the masker's own are never changed
	for _, rs := range [][]Rule{m.rules[ev.Type], m.rules[AnyType]} {
		for _, r := range rs {
			if r.meta == "" {
				rules = append(rules, r)
			}
		}
	}
	if len(rules) == 0 || len(ev.Data) == 0 {
		return ev.Data, 0, nil // nothing to mask, or nothing there
	}
	refuse := func(why string) ([]byte, int, error) {
		return nil, 0, &UnmaskableError{Position: ev.Position, Stream: ev.Stream, Type: ev.Type, Reason: why}
	}
	d := json.NewDecoder(bytes.NewReader(ev.Data))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		return refuse("its data is not JSON (content type " + strconv.Quote(ev.ContentType) + ")")
	}
	if _, err := d.Token(); err != io.EOF {
		return refuse("its data is not one JSON value (more follows it)")
	}
	if doc == nil {
		return ev.Data, 0, nil // null holds nothing
	}
	// A key given twice in one object: readers differ on which value
	// counts (Go's decoder keeps the last, others the first), and the
	// event's bytes, passed on when no path matched the decoded value,
	// would carry an earlier one unmasked. Fail closed.
	if key, dup := duplicateKey(ev.Data); dup {
		return refuse(fmt.Sprintf("its data gives the key %q twice in one object", key))
	}
	total := 0
	for _, r := range rules {
		switch _, isMap := doc.(map[string]any); {
		case r.steps[0].each && !isList(doc), !r.steps[0].each && !isMap:
			return refuse(fmt.Sprintf("path %q starts from %s, but the data is %s", r.Path, shape(r.steps[0]), kind(doc)))
		}
		var n int
		doc, _, n = m.apply(doc, r.steps, r.Action)
		total += n
	}
	if total == 0 {
		return ev.Data, 0, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return refuse(err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), total, nil
}

// Event returns ev with its type's rules applied to its data (Apply) and
// its metadata (ApplyMetadata), and how many values were masked, hashed or
// dropped: ev itself when nothing changed, else a copy (ev is not
// changed). Data that cannot be masked is refused as Apply refuses it.
func (m *Masker) Event(ev *rewind.RecordedEvent) (*rewind.RecordedEvent, int, error) {
	data, n, err := m.Apply(ev)
	if err != nil {
		return nil, 0, err
	}
	meta, nm := m.ApplyMetadata(ev)
	if n+nm == 0 {
		return ev, 0, nil
	}
	c := *ev
	c.Data, c.Metadata = data, meta
	return &c, n + nm, nil
}

// ApplyMetadata returns ev's metadata with its type's metadata rules
// applied (a copy: ev's map is not changed), and how many values it
// masked, hashed or dropped. A value is a string: hash hashes its UTF-8
// bytes, as it hashes a JSON string, so a value hashed in the metadata
// and the same value hashed in the data match. Metadata without a key the
// rules name is returned as it is (the same map). It cannot fail.
func (m *Masker) ApplyMetadata(ev *rewind.RecordedEvent) (map[string]string, int) {
	var out map[string]string
	n := 0
	for _, rules := range [][]Rule{m.rules[ev.Type], m.rules[AnyType]} {
		for _, r := range rules {
			if r.meta == "" {
				continue
			}
			v, ok := ev.Metadata[r.meta]
			if !ok {
				continue
			}
			if out == nil {
				out = maps.Clone(ev.Metadata)
			}
			nv, drop, _ := m.act(v, r.Action)
			if drop {
				delete(out, r.meta)
			} else {
				out[r.meta] = nv.(string)
			}
			n++
		}
	}
	if out == nil {
		return ev.Metadata, 0
	}
	return out, n
}

func isList(v any) bool { _, ok := v.([]any); return ok }

func shape(s step) string {
	if s.each {
		return "a list"
	}
	return "an object"
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// apply applies act at the path's end below v and returns the new v,
// whether v itself is to be dropped, and how many values were acted on.
// A value of another shape than the path expects is acted on whole (fail
// closed); null and a missing key hold nothing.
func (m *Masker) apply(v any, steps []step, act Action) (any, bool, int) {
	if v == nil {
		return nil, false, 0
	}
	if len(steps) == 0 {
		return m.act(v, act)
	}
	s := steps[0]
	switch x := v.(type) {
	case map[string]any:
		if s.each {
			return m.act(v, act)
		}
		child, ok := x[s.key]
		if !ok {
			return v, false, 0
		}
		nv, drop, n := m.apply(child, steps[1:], act)
		if drop {
			delete(x, s.key)
		} else {
			x[s.key] = nv
		}
		return x, false, n
	case []any:
		if !s.each {
			return m.act(v, act)
		}
		out, total := x[:0], 0
		for _, el := range x {
			nv, drop, n := m.apply(el, steps[1:], act)
			total += n
			if !drop {
				out = append(out, nv)
			}
		}
		return out, false, total
	default:
		return m.act(v, act)
	}
}

func (m *Masker) act(v any, act Action) (any, bool, int) {
	switch act {
	case Drop:
		return nil, true, 1
	case Hash:
		var b []byte
		if s, ok := v.(string); ok {
			b = []byte(s)
		} else {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(v) // decoded JSON always encodes
			b = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		}
		h := hmac.New(sha256.New, m.key)
		h.Write(b)
		return hex.EncodeToString(h.Sum(nil)), false, 1
	default:
		return Masked, false, 1
	}
}

// duplicateKey reports the first key that an object of data (valid JSON)
// gives twice.
func duplicateKey(data []byte) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	type frame struct {
		keys  map[string]bool // nil for an array
		isKey bool            // the next string token of an object is a key
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err != nil {
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.keys != nil {
					top.isKey = true // the value of a key ends: a key comes next
				}
				f := &frame{}
				if t == '{' {
					f.keys, f.isKey = map[string]bool{}, true
				}
				stack = append(stack, f)
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.keys != nil && top.isKey {
				if top.keys[t] {
					return t, true
				}
				top.keys[t] = true
				top.isKey = false
				continue
			}
		}
		if top != nil && top.keys != nil {
			top.isKey = true // a scalar value ends: a key comes next
		}
	}
}
