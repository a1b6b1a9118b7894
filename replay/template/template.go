// Package template reads replay templates: versioned YAML files that name
// a window of the log, its filters, a target, pacing, validation checks and
// the sensitive fields to mask, with typed parameters.
//
//	name: rebuild-orders
//	version: 3
//	params:
//	  since: {type: time, required: true}
//	  dest:  {type: text, default: /var/lib/rewind/staging}
//	  expect: {type: integer}
//	window:
//	  from: ${since}
//	  to: 2026-12-01T00:00:00Z
//	filter:
//	  prefix: orders-
//	  types: [OrderPlaced, OrderPaid]
//	target:
//	  kind: store
//	  data_dir: ${dest}
//	pacing: {rate: 5000}
//	checks:
//	  events: ${expect}
//	mask:
//	  OrderPlaced:
//	    customer.email: hash
//	    card.number: mask
//	    notes: drop
//
// Parse checks the file: every key is known and given once, every value
// has its type, every parameter reference is declared and every declared
// parameter used. Resolve binds parameter values (name=value) and checks
// the whole again with them. A mistake is an *Error naming the file, the
// key and its line; it matches rewind.ErrInvalidArgument.
package template

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/replay/mask"
)

// Error says what is wrong in a template, or in a parameter given for it.
type Error struct {
	// Path is the template file.
	Path string
	// Line is the line of Key in the file; 0 when the mistake has no line
	// (a parameter given on the command line, an empty file).
	Line int
	// Key is the dotted key ("window.from", "params.since", "--param since").
	Key string
	// Value is the offending value, "***" when it holds a secret parameter.
	Value  string
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("replay template " + printable(e.Path))
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + printable(e.Key))
	}
	if e.Value != "" {
		// Masked before it is shortened: a DSN cut before its '@' would
		// no longer show where its password ends.
		fmt.Fprintf(&b, " %q", shorten(audit.MaskText(e.Value)))
	}
	b.WriteString(": " + e.Reason)
	return audit.MaskText(b.String())
}

// Is makes errors.Is(err, rewind.ErrInvalidArgument) true.
func (e *Error) Is(target error) bool { return target == rewind.ErrInvalidArgument }

// printable is s as an error prints it: as it is when it is one line of
// plain text, else quoted with Go escapes, so that a path or a name given
// with a newline or an escape sequence can neither forge a line nor drive
// the terminal.
func printable(s string) string {
	if !audit.PlainText(s) {
		return strconv.Quote(s)
	}
	return s
}

// CheckPath refuses a template path that is not one line of plain text
// (audit.PlainText): the path is printed by plan and run and recorded in
// the ledger (template_file), where a newline could forge a line of
// `rewind audit log` and an escape sequence drive a terminal.
func CheckPath(path string) error {
	if !audit.PlainText(path) {
		return &Error{Path: path, Reason: "the path of a template must be one line of plain text (no control or format characters, " +
			"valid UTF-8): it is printed and recorded in the audit ledger; rename the file"}
	}
	return nil
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// Param is a declared parameter.
type Param struct {
	Name string
	// Type is one of text, integer, number, boolean, time, position, bound.
	Type     string
	Required bool
	Default  *string
	// Secret parameters are recorded and printed as "***".
	Secret      bool
	Description string
	Line        int
}

// Target is where a replay goes.
type Target struct {
	// Kind is "verify" (nothing is written: counts, digest, checks),
	// "store" (an embedded store in DataDir, as replay.IntoStore copies)
	// or "group" (a bounded consumer group of the source store, named
	// Group, that delivers the window to its members).
	Kind    string
	DataDir string
	// Group names the group of a group target; OrderBy is its order
	// ("stream", "metadata:NAME" or empty).
	Group   string
	OrderBy string
	// Line is the line of the target's key, for errors found later (the
	// target is the source store).
	Line int
}

// Writes reports whether the target receives events.
func (t Target) Writes() bool { return t.Kind != "verify" }

func (t Target) String() string {
	switch t.Kind {
	case "store":
		return "store " + t.DataDir
	case "group":
		return "group " + t.Group
	}
	return t.Kind
}

// Checks are what a replay's window must hold; each nil or empty one is
// not checked.
type Checks struct {
	Events    *int64           `json:"events,omitempty"`
	MinEvents *int64           `json:"min_events,omitempty"`
	MaxEvents *int64           `json:"max_events,omitempty"`
	Digest    string           `json:"digest,omitempty"`
	Types     map[string]int64 `json:"types,omitempty"`
}

// Template is a parsed template file.
type Template struct {
	Path    string
	Hash    string // hex SHA-256 of the file's bytes
	Name    string
	Version string
	Params  map[string]*Param
	// Production says the target is production: masking does not apply.
	Production bool
	sections   map[string]*yaml.Node // window, filter, target, pacing, checks, mask
	lines      map[string]int
}

// Spec is a template with its parameters bound: what to replay.
type Spec struct {
	Window replay.Window
	Pacing replay.Pacing
	Target Target
	Checks Checks
	// Mask holds the sensitive fields; nil when the template declares none.
	Mask mask.Rules
	// Masking is true when the fields are to be masked: the template
	// declares some, the target writes, and it is not production.
	Masking bool
	// Params are the values bound, by name ("" for a parameter declared,
	// not given, without a default), secret ones as "***".
	Params map[string]string
	// secret holds the fields ("window.from", "filter.types", "target",
	// "checks") whose value holds a secret parameter's: they are recorded
	// and printed as "***".
	secret map[string]bool
	// secretTexts are the secret parameters' values and the texts of the
	// fields they went into (a group name, a prefix, a data directory):
	// Hide replaces each by "***" in any message.
	secretTexts []string
}

// Secret reports whether a field's value holds a secret parameter's.
func (sp *Spec) Secret(field string) bool { return sp.secret[field] }

// addSecret notes a text that holds a secret parameter's value.
func (sp *Spec) addSecret(s string) {
	if s != "" && s != Masked && !slices.Contains(sp.secretTexts, s) {
		sp.secretTexts = append(sp.secretTexts, s)
	}
}

// Hide returns s with every secret parameter's value, and every field
// text that holds one, replaced by "***", and the passwords of the
// connection strings in it masked (audit.MaskText, which also knows the
// postgres:/ form filepath.Clean makes of a URL in a data_dir): what may
// be printed or recorded of a message that can quote them (an error of
// the store, the engine or the operating system repeats the name or path
// it was given).
func (sp *Spec) Hide(s string) string {
	if sp == nil || len(sp.secretTexts) == 0 {
		return audit.MaskText(s)
	}
	texts := slices.Clone(sp.secretTexts)
	// Longest first, so that a field is hidden whole rather than around
	// the parameter's value inside it.
	slices.SortFunc(texts, func(a, b string) int { return len(b) - len(a) })
	for _, t := range texts {
		s = strings.ReplaceAll(s, t, Masked)
		if q := strconv.Quote(t); q[1:len(q)-1] != t {
			s = strings.ReplaceAll(s, q[1:len(q)-1], Masked) // as %q escapes it
		}
	}
	return audit.MaskText(s)
}

// Load reads and parses a template file.
func Load(path string) (*Template, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	bad := func(reason string) error { return &Error{Path: path, Reason: reason} }
	// A regular file of bounded size: a FIFO would block the read, a
	// device or a huge file exhaust memory.
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, bad("cannot be read: " + strings.TrimPrefix(err.Error(), "stat "+path+": "))
	case !fi.Mode().IsRegular():
		return nil, bad("is not a regular file (" + fi.Mode().Type().String() + "): give a template file")
	case fi.Size() > MaxTemplateSize:
		return nil, bad(fmt.Sprintf("is %d bytes: a template is at most %d", fi.Size(), MaxTemplateSize))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, bad("cannot be read: " + strings.TrimPrefix(err.Error(), "open "+path+": "))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTemplateSize+1))
	if err != nil {
		return nil, bad("cannot be read: " + err.Error())
	}
	if len(b) > MaxTemplateSize {
		return nil, bad(fmt.Sprintf("is over %d bytes: a template is at most that", MaxTemplateSize))
	}
	return Parse(path, b)
}

// MaxTemplateSize is the largest template file, in bytes.
const MaxTemplateSize = 1 << 20

var topKeys = []string{"name", "version", "description", "params", "production", "window", "filter", "target", "pacing", "checks", "mask"}

// Parse parses a template's content; path names it in errors.
func Parse(path string, b []byte) (*Template, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	t := &Template{Path: path, Hash: hex.EncodeToString(sum[:]), Params: map[string]*Param{},
		sections: map[string]*yaml.Node{}, lines: map[string]int{}}
	if len(b) > MaxTemplateSize {
		return nil, t.errLine(0, "", "", "is %d bytes: a template is at most %d", len(b), MaxTemplateSize)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, t.errLine(yamlLine(err), "", "", "is not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	// One document: what follows a "---" would otherwise be ignored, with
	// whatever a reviewer read in it (mask rules).
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, t.errLine(more.Line, "", "", "holds more than one YAML document (a second one after ---): a template is one")
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil, t.errLine(0, "", "", "is empty: a template needs name, version and target")
	}
	root := doc.Content[0]
	if err := t.checkTree("", root); err != nil {
		return nil, err
	}
	fields, err := t.mapping("", root, topKeys)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"name", "version", "target"} {
		if fields[k] == nil {
			return nil, t.errLine(0, k, "", "is required")
		}
	}
	for _, k := range []string{"name", "version", "description"} {
		if v := fields[k]; v != nil {
			if refRE.MatchString(v.Value) {
				return nil, t.err(k, v, "", "cannot use a parameter")
			}
			s, err := t.scalarText(k, v)
			if err != nil {
				return nil, err
			}
			if k != "description" && strings.TrimSpace(s) == "" {
				return nil, t.err(k, v, "", "must not be empty")
			}
			// Printed by plan and run, and recorded: one line of plain text,
			// no escape sequence for the reader's terminal.
			if k != "description" && !audit.PlainText(s) {
				return nil, t.err(k, v, "", "must be one line of plain text (no control or format characters)")
			}
			switch k {
			case "name":
				t.Name = s
			case "version":
				t.Version = s
			}
		}
	}
	if v := fields["production"]; v != nil {
		if t.Production, err = t.boolean("production", v, v.Value); err != nil {
			return nil, err
		}
	}
	if v := fields["params"]; v != nil {
		if err := t.decodeParams(v); err != nil {
			return nil, err
		}
	}
	for _, k := range []string{"window", "filter", "target", "pacing", "checks", "mask"} {
		if v := fields[k]; v != nil {
			t.sections[k] = v
		}
	}
	used := map[string]bool{}
	if err := t.checkRefs(used); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(t.Params)) {
		if !used[name] {
			return nil, t.errLine(t.Params[name].Line, "params."+name, "", "is declared but never used: write ${%s} where it goes, or remove it", name)
		}
	}
	// Everything that does not wait for a parameter's value is checked now.
	if _, err := t.resolve(nil, true); err != nil {
		return nil, err
	}
	return t, nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func (t *Template) err(key string, n *yaml.Node, value, format string, args ...any) *Error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return t.errLine(line, key, value, format, args...)
}

func (t *Template) errLine(line int, key, value, format string, args ...any) *Error {
	if line == 0 {
		line = t.lines[key]
	}
	return &Error{Path: t.Path, Line: line, Key: key, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// checkTree refuses what the YAML decoder lets through into a node tree:
// a key given twice in a mapping, aliases, merge keys, keys that are not
// plain text. It records the line of every key.
func (t *Template) checkTree(prefix string, n *yaml.Node) error {
	switch n.Kind {
	case yaml.AliasNode:
		return t.err(strings.TrimSuffix(prefix, "."), n, "", "uses an alias (*%s): write the value out", n.Value)
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if err := t.checkTree(prefix, c); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return t.err(strings.TrimSuffix(prefix, "."), k, "", "has a key that is not plain text (%s)", k.Value)
			}
			key := prefix + k.Value
			if first, dup := seen[k.Value]; dup {
				return t.err(key, k, "", "is given twice (first at line %d)", first)
			}
			seen[k.Value] = k.Line
			if _, ok := t.lines[key]; !ok {
				t.lines[key] = k.Line
			}
			if err := t.checkTree(key+".", n.Content[i+1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// mapping returns the values of a mapping's keys, refusing a key not in
// allowed (allowed nil: any key).
func (t *Template) mapping(key string, n *yaml.Node, allowed []string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		what := "the template"
		if key != "" {
			what = key
		}
		return nil, t.err(key, n, "", "%s must be a mapping of keys, not %s", what, kindName(n))
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			return nil, t.err(join(key, k.Value), k, "", "is not a known key (the keys here are %s)", strings.Join(allowed, ", "))
		}
		out[k.Value] = n.Content[i+1]
	}
	return out, nil
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	if n.Tag == "!!null" {
		return "empty"
	}
	return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), shorten(n.Value))
}

func (t *Template) scalarText(key string, n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", t.err(key, n, "", "must be text, not %s", kindName(n))
	}
	return n.Value, nil
}

func (t *Template) boolean(key string, n *yaml.Node, v string) (bool, error) {
	// Written out, a boolean is one (production: "true" is text); from a
	// parameter, its text is true or false.
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!bool" || n.Tag == "!!str" && !literal(n)) {
		switch v {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, t.err(key, n, "", "must be true or false, not %s", kindOf(n, v))
}

// kindOf names a scalar's value as written, or its node's kind.
func kindOf(n *yaml.Node, v string) string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return strconv.Quote(shorten(v))
	}
	return kindName(n)
}

// Parameter types.
var paramTypes = []string{"text", "integer", "number", "boolean", "time", "position", "bound"}

var paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (t *Template) decodeParams(n *yaml.Node) error {
	if n.Tag == "!!null" {
		return nil
	}
	fields, err := t.mapping("params", n, nil)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		key := "params." + name
		if !paramNameRE.MatchString(name) {
			return t.errLine(0, key, "", "cannot be referred to as ${%s}: use letters, digits and '_', not starting with a digit", name)
		}
		decl, err := t.mapping(key, fields[name], []string{"type", "required", "default", "secret", "description"})
		if err != nil {
			return err
		}
		p := &Param{Name: name, Line: t.lines[key]}
		if decl["type"] == nil {
			return t.errLine(0, key, "", "needs a type: one of %s", strings.Join(paramTypes, ", "))
		}
		if p.Type, err = t.scalarText(key+".type", decl["type"]); err != nil {
			return err
		}
		if !slices.Contains(paramTypes, p.Type) {
			return t.err(key+".type", decl["type"], p.Type, "is not a parameter type (the types are %s)", strings.Join(paramTypes, ", "))
		}
		for k, out := range map[string]*bool{"required": &p.Required, "secret": &p.Secret} {
			if v := decl[k]; v != nil {
				if *out, err = t.boolean(key+"."+k, v, v.Value); err != nil {
					return err
				}
			}
		}
		// Named like a secret (password, token…): secret whatever it says.
		p.Secret = p.Secret || audit.IsSecret(name, nil)
		if v := decl["description"]; v != nil {
			if p.Description, err = t.scalarText(key+".description", v); err != nil {
				return err
			}
		}
		if v := decl["default"]; v != nil {
			d, err := t.scalarText(key+".default", v)
			if err != nil {
				return err
			}
			if p.Required {
				return t.err(key+".default", v, "", "a required parameter has no default (a default makes it optional)")
			}
			if reason := checkParam(p.Type, d); reason != "" {
				shown := d
				if p.Secret {
					shown = "***"
				}
				return t.err(key+".default", v, shown, "%s", reason)
			}
			p.Default = &d
		}
		t.Params[name] = p
	}
	return nil
}

// Line returns the line of a dotted key ("target.data_dir"), or 0.
func (t *Template) Line(key string) int { return t.lines[key] }

// SecretParams lists the parameters whose values are never shown or
// recorded.
func (t *Template) SecretParams() []string {
	var out []string
	for name, p := range t.Params {
		if p.Secret {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// checkParam returns why v is not a value of type typ, or "". A value of
// any type is one line of plain text: a text parameter goes into fields
// that are printed and recorded (param.NAME, a data_dir), where a newline
// could forge a line of `rewind audit log` and an escape sequence drive a
// terminal.
func checkParam(typ, v string) string {
	if !audit.PlainText(v) {
		return "must be one line of plain text (no control or format characters such as a newline, a tab or an escape; valid UTF-8)"
	}
	if _, err := replay.ParseBound("", v); (typ == "time" || typ == "bound") && isZeroTime(err) {
		return replay.ZeroTimeReason
	}
	switch typ {
	case "integer":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil || !integerText.MatchString(v) {
			return "is not an integer (a whole number such as 1200)"
		}
	case "number":
		if f, err := strconv.ParseFloat(v, 64); err != nil || !numberText.MatchString(v) || f > 1e300 || f < -1e300 {
			return "is not a number (a decimal such as 2.5)"
		}
	case "boolean":
		if v != "true" && v != "false" {
			return "is not a boolean (true or false)"
		}
	case "time":
		if b, err := replay.ParseBound("", v); err != nil || b.Time.IsZero() {
			return "is not an RFC 3339 time (such as 2026-11-23T10:00:00Z)"
		}
	case "position":
		if p, err := strconv.ParseUint(v, 10, 64); err != nil || p == 0 {
			return "is not a position (a whole number from 1)"
		}
	case "bound":
		if b, err := replay.ParseBound("", v); err != nil || b.IsZero() {
			return "is not a position (from 1) or an RFC 3339 time (such as 2026-11-23T10:00:00Z)"
		}
	}
	return ""
}

// refRE finds parameter references: ${name}.
// Numbers as people write them: decimal, no sign but -, no leading zero,
// no _ or exponent or hexadecimal (which Go's parsers take).
var (
	integerText = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
	numberText  = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)
)

var refRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// paramSections are the sections whose values may hold references.
var paramSections = []string{"window", "filter", "target", "pacing", "checks"}

// checkRefs checks every reference of the sections that take them, marks
// the parameters used, and refuses references elsewhere.
func (t *Template) checkRefs(used map[string]bool) error {
	var walk func(key string, n *yaml.Node, allowed bool) error
	walk = func(key string, n *yaml.Node, allowed bool) error {
		switch n.Kind {
		case yaml.ScalarNode:
			if !strings.Contains(n.Value, "${") {
				return nil
			}
			if !allowed {
				return t.err(key, n, "", "cannot use a parameter (they go in %s)", strings.Join(paramSections, ", "))
			}
			rest := refRE.ReplaceAllStringFunc(n.Value, func(m string) string {
				name := m[2 : len(m)-1]
				used[name] = true
				return ""
			})
			if strings.Contains(rest, "${") {
				return t.err(key, n, "", "has a '${' that does not open a reference ${name} closed by '}'")
			}
			for _, m := range refRE.FindAllStringSubmatch(n.Value, -1) {
				if _, ok := t.Params[m[1]]; !ok {
					return t.err(key, n, "", "refers to ${%s}, which params does not declare (declared: %s)", m[1], t.declared())
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if err := walk(fmt.Sprintf("%s[%d]", key, i), c, allowed); err != nil {
					return err
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if strings.Contains(k.Value, "${") {
					return t.err(join(key, k.Value), k, "", "a key cannot use a parameter")
				}
				if err := walk(join(key, k.Value), n.Content[i+1], allowed); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(t.sections)) {
		if err := walk(k, t.sections[k], slices.Contains(paramSections, k)); err != nil {
			return err
		}
	}
	return nil
}

func (t *Template) declared() string {
	if len(t.Params) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(t.Params)), ", ")
}

// Resolve binds parameter values given as name=value and returns the
// replay the template describes. A required parameter not given, a value
// of the wrong type, a parameter given twice or not declared, and a field
// whose value (with the parameters) is wrong are *Errors.
func (t *Template) Resolve(values []string) (*Spec, error) {
	given := map[string]string{}
	for _, kv := range values {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &Error{Path: t.Path, Key: "--param", Reason: "must be name=value (the value is not shown: it may be a secret)"}
		}
		p, declared := t.Params[k]
		if !declared {
			return nil, &Error{Path: t.Path, Key: "--param " + k, Reason: "the template declares no such parameter (declared: " + t.declared() + ")"}
		}
		if _, dup := given[k]; dup {
			return nil, &Error{Path: t.Path, Key: "--param " + k, Reason: "is given twice"}
		}
		if reason := checkParam(p.Type, v); reason != "" {
			shown := v
			if p.Secret {
				shown = "***"
			}
			return nil, &Error{Path: t.Path, Key: "--param " + k, Value: shown, Reason: reason + " (parameter " + k + " is of type " + p.Type + ")"}
		}
		given[k] = v
	}
	for _, name := range slices.Sorted(maps.Keys(t.Params)) {
		p := t.Params[name]
		if _, ok := given[name]; ok {
			continue
		}
		switch {
		case p.Default != nil:
			given[name] = *p.Default
		case p.Required:
			return nil, t.errLine(p.Line, "params."+name, "", "is required: give --param %s=VALUE (%s)", name, p.Type)
		}
	}
	return t.resolve(given, false)
}

// errSkip: a field refers to a parameter without a value while Parse
// checks what it can.
var errSkip = errors.New("skip")

// value is a scalar with its references replaced.
type value struct {
	s      string
	secret bool // a secret parameter's value is in it
	n      *yaml.Node
	key    string
}

// shown is the value for an error message.
func (v value) shown() string {
	if v.secret {
		return "***"
	}
	return v.s
}

// scalar returns n's text with references replaced by vals. With partial,
// a reference to a parameter without a value gives errSkip. An unset
// optional parameter is the empty text.
func (t *Template) scalar(key string, n *yaml.Node, vals map[string]string, partial bool) (value, error) {
	if n.Kind != yaml.ScalarNode {
		return value{}, t.err(key, n, "", "must be a single value, not %s", kindName(n))
	}
	v := value{n: n, key: key}
	skip := false
	v.s = refRE.ReplaceAllStringFunc(n.Value, func(m string) string {
		name := m[2 : len(m)-1]
		s, ok := vals[name]
		if !ok && partial {
			skip = true
		}
		if t.Params[name].Secret {
			v.secret = true
		}
		return s
	})
	if skip {
		return v, errSkip
	}
	if n.Tag == "!!null" {
		v.s = ""
	}
	return v, nil
}

func (t *Template) resolve(vals map[string]string, partial bool) (*Spec, error) {
	sp := &Spec{Params: map[string]string{}, secret: map[string]bool{}}
	for name, p := range t.Params {
		v := vals[name]
		if p.Secret && v != "" {
			sp.addSecret(v)
			v = "***"
		}
		sp.Params[name] = audit.MaskDSN(v)
	}
	r := &resolver{t: t, vals: vals, partial: partial, sp: sp}
	for _, step := range []func() error{r.window, r.filter, r.target, r.pacing, r.checks, r.mask} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if !partial {
		if err := sp.Window.Validate(); err != nil {
			return nil, t.fromReplayError(err)
		}
		if err := sp.Pacing.Validate(); err != nil {
			return nil, t.fromReplayError(err)
		}
	}
	sp.Masking = len(sp.Mask) > 0 && sp.Target.Writes() && !t.Production
	if err := t.checkGroupTarget(sp); err != nil {
		return nil, err
	}
	return sp, nil
}

// checkGroupTarget refuses what a group target cannot do: a group
// delivers the log's events as they are (no masking), when its members
// fetch them (no pacing), selected by a stream prefix and types (no list
// of stream names).
func (t *Template) checkGroupTarget(sp *Spec) error {
	if sp.Target.Kind != "group" {
		return nil
	}
	switch {
	case sp.Masking:
		return t.errLine(t.lines["mask"], "mask", "", "a group target delivers the events as the log holds them: "+
			"masking cannot apply; use a store target for a masked copy, or declare production: true")
	case t.sections["pacing"] != nil:
		return t.errLine(t.lines["pacing"], "pacing", "", "a group target is paced by its members (they fetch "+
			"and ack): remove pacing")
	case len(sp.Window.Streams) > 0:
		return t.errLine(t.lines["filter.streams"], "filter.streams", "", "a group selects streams by a prefix: "+
			"use filter.prefix with a group target")
	}
	return nil
}

// fromReplayError names the template's key and line in a window or pacing
// error of package replay.
func (t *Template) fromReplayError(err error) error {
	var re *replay.Error
	if !errors.As(err, &re) {
		return err
	}
	key := map[string]string{"window": "window.from", "streams": "filter.streams", "speed": "pacing.speed", "rate": "pacing.rate",
		"pacing": "pacing", "burst": "pacing.burst"}[re.Field]
	if strings.HasPrefix(re.Field, "streams[") {
		key = "filter." + re.Field
	}
	if strings.HasPrefix(re.Field, "types[") {
		key = "filter." + re.Field
	}
	if key == "" {
		key = re.Field
	}
	line := t.lines[key]
	if line == 0 {
		line = t.lines[strings.SplitN(key, "[", 2)[0]]
	}
	return &Error{Path: t.Path, Line: line, Key: key, Value: re.Value, Reason: re.Reason}
}
