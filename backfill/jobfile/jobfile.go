// Package jobfile reads declarative backfill jobs from YAML:
//
//	name: normalize-emails
//	version: 2
//	table: users
//	key: [id]
//	where: email <> lower(email) AND created_at < @cutoff
//	set:
//	  email: lower(email)
//	params:
//	  cutoff: {type: timestamptz, required: true}
//	chunk: 1000
//	on_data_error: halt
//	validate:
//	  - name: no_upper_emails
//	    sql: SELECT count(*) FROM users WHERE email <> lower(email)
//	    expect: 0
//	rollback: true
//	throttle:
//	  chunk_time: 500ms
//	  max_rate: 5000
//	  queries:
//	    - {name: queue, sql: "SELECT count(*) FROM jobs", max: 1000}
//
// A job has either set (column: SQL expression) or statement (SQL run per
// chunk with @lo and @hi bound to the chunk's first and last keys).
// Each field is decoded with its type (chunk is a whole number, required a
// boolean…); a value of the wrong type, an unknown or repeated field, a
// missing one and an empty file are errors naming the field and its line,
// and, through Annotate, so is what the runner rejects (an unknown table or
// column, bad SQL).
package jobfile

import (
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/backfill"
	"github.com/rewindhq/rewind/backfill/throttle"
)

// spec is the file's schema.
type spec struct {
	Name        string
	Version     string
	Table       string
	Key         []string
	Where       string
	Set         map[string]string
	Statement   string
	Params      map[string]paramSpec
	Chunk       *int // nil: not given
	OnDataError string
	Validate    []backfill.Validation
	Rollback    *bool // nil: not given (before-images are kept)
	Throttle    *throttle.Spec
}

type paramSpec struct {
	Type     string
	Required bool
	Default  *string
	Secret   bool
}

// File is a parsed job file.
type File struct {
	Path  string
	spec  spec
	lines map[string]int // field path ("where", "set.email", "params.cutoff") → line
}

// Load reads and parses a job file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &rewind.ValidationError{Field: "job file", Value: path, Reason: err.Error()}
	}
	return Parse(path, b)
}

// Parse parses a job file's content; path names it in errors. Each field
// is decoded with its type, and an error names the field and its line.
func Parse(path string, b []byte) (*File, error) {
	f := &File{Path: path, lines: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, f.errorf("", "is not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil, f.errorf("", "is empty: a job needs name, version, table, key, and set or statement")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, f.errorf("", "must be a mapping of fields (name: …, table: …), not %s", kindName(root))
	}
	f.index("", root)
	if err := f.decode(root); err != nil {
		return nil, err
	}
	return f, f.check()
}

// fieldDecoders decode each top-level field of a job file.
var fieldDecoders = map[string]func(f *File, v *yaml.Node) error{
	"name":          func(f *File, v *yaml.Node) error { return f.scalar("name", v, &f.spec.Name) },
	"version":       func(f *File, v *yaml.Node) error { return f.scalar("version", v, &f.spec.Version) },
	"table":         func(f *File, v *yaml.Node) error { return f.scalar("table", v, &f.spec.Table) },
	"where":         func(f *File, v *yaml.Node) error { return f.scalar("where", v, &f.spec.Where) },
	"statement":     func(f *File, v *yaml.Node) error { return f.scalar("statement", v, &f.spec.Statement) },
	"on_data_error": func(f *File, v *yaml.Node) error { return f.scalar("on_data_error", v, &f.spec.OnDataError) },
	"key":           (*File).decodeKey,
	"set":           (*File).decodeSet,
	"params":        (*File).decodeParams,
	"chunk":         (*File).decodeChunk,
	"validate":      (*File).decodeValidate,
	"throttle":      (*File).decodeThrottle,
	"rollback": func(f *File, v *yaml.Node) error {
		var b bool
		if err := f.boolean("rollback", "rollback", v, &b); err != nil {
			return err
		}
		f.spec.Rollback = &b
		return nil
	},
}

func (f *File) decode(root *yaml.Node) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if l, dup := seen[k.Value]; dup {
			return f.errorf("", "line %d: field %q is given twice (first at line %d)", k.Line, k.Value, l)
		}
		seen[k.Value] = k.Line
		dec, ok := fieldDecoders[k.Value]
		if !ok {
			return f.errorf("", "line %d: unknown field %q (the fields are %s)", k.Line, k.Value,
				strings.Join(slices.Sorted(maps.Keys(fieldDecoders)), ", "))
		}
		if err := dec(f, v); err != nil {
			return err
		}
	}
	return nil
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
	return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
}

// scalar decodes a text field: any scalar, as written (version: 2 is "2").
func (f *File) scalar(field string, v *yaml.Node, out *string) error {
	if v.Kind != yaml.ScalarNode {
		return f.errorf(field, "must be text, not %s", kindName(v))
	}
	if v.Tag != "!!null" {
		*out = v.Value
	}
	return nil
}

func (f *File) decodeKey(v *yaml.Node) error {
	var one string
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		f.spec.Key = []string{v.Value}
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return f.errorf("key", "must be a column name or a list of them, not %s", kindName(v))
	}
	for _, c := range v.Content {
		if err := f.scalar("key", c, &one); err != nil {
			return err
		}
		f.spec.Key = append(f.spec.Key, one)
	}
	return nil
}

func (f *File) decodeSet(v *yaml.Node) error {
	if v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return f.errorf("set", "must be a mapping of column: SQL expression, not %s", kindName(v))
	}
	f.spec.Set = map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		col := v.Content[i].Value
		if _, dup := f.spec.Set[col]; dup {
			return f.errorf("set."+col, "column %s is given twice", col)
		}
		var e string
		val := v.Content[i+1]
		if err := f.scalar("set."+col, val, &e); err != nil {
			return err
		}
		if val.Tag == "!!null" && val.Value != "~" {
			e = val.Value // "email: NULL" is SQL's NULL (an empty value stays empty)
		}
		f.spec.Set[col] = e
	}
	return nil
}

func (f *File) decodeChunk(v *yaml.Node) error {
	var n int
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil {
		return f.errorf("chunk", "must be a whole number of rows between 1 and 1,000,000, not %s", kindName(v))
	}
	f.spec.Chunk = &n
	return nil
}

// paramFields decode the fields of one parameter's declaration.
var paramFields = map[string]func(f *File, field string, v *yaml.Node, p *paramSpec) error{
	"type": func(f *File, field string, v *yaml.Node, p *paramSpec) error { return f.scalar(field, v, &p.Type) },
	"default": func(f *File, field string, v *yaml.Node, p *paramSpec) error {
		var d string
		if err := f.scalar(field, v, &d); err != nil || v.Tag == "!!null" {
			return err
		}
		p.Default = &d
		return nil
	},
	"required": func(f *File, field string, v *yaml.Node, p *paramSpec) error {
		return f.boolean(field, "required", v, &p.Required)
	},
	"secret": func(f *File, field string, v *yaml.Node, p *paramSpec) error {
		return f.boolean(field, "secret", v, &p.Secret)
	},
}

func (f *File) boolean(field, name string, v *yaml.Node, out *bool) error {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(out) != nil {
		return f.errorf(field, "%s must be true or false, not %s", name, kindName(v))
	}
	return nil
}

func (f *File) decodeParams(v *yaml.Node) error {
	if v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return f.errorf("params", "must be a mapping of name: {type: …}, not %s", kindName(v))
	}
	f.spec.Params = map[string]paramSpec{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		name, decl := v.Content[i].Value, v.Content[i+1]
		field := "params." + name
		if _, dup := f.spec.Params[name]; dup {
			return f.errorf(field, "parameter %s is declared twice", name)
		}
		if decl.Kind != yaml.MappingNode {
			return f.errorf(field, "must be a mapping such as {type: text}, not %s", kindName(decl))
		}
		var p paramSpec
		for j := 0; j+1 < len(decl.Content); j += 2 {
			k := decl.Content[j]
			dec, ok := paramFields[k.Value]
			if !ok {
				return f.errorf(field, "line %d: unknown field %q (the fields are default, required, secret, type)", k.Line, k.Value)
			}
			if err := dec(f, field, decl.Content[j+1], &p); err != nil {
				return err
			}
		}
		f.spec.Params[name] = p
	}
	return nil
}

// index records the line of every mapping key, two levels deep.
func (f *File) index(prefix string, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := prefix + n.Content[i].Value
		f.lines[k] = n.Content[i].Line
		if prefix == "" {
			f.index(k+".", n.Content[i+1])
		}
	}
}

// Line returns the line of a field ("where", "set.email"), or 0.
func (f *File) Line(field string) int { return f.lines[field] }

func (f *File) errorf(field, format string, args ...any) error {
	where := f.Path
	if l := f.lines[field]; l > 0 {
		where = fmt.Sprintf("%s line %d", f.Path, l)
	}
	name := "job file " + where
	if field != "" {
		name = fmt.Sprintf("%s (job file %s)", field, where)
	}
	return &rewind.ValidationError{Field: name, Reason: fmt.Sprintf(format, args...)}
}

func (f *File) check() error {
	s := &f.spec
	for _, req := range []struct{ field, v string }{{"name", s.Name}, {"version", s.Version}, {"table", s.Table}} {
		if strings.TrimSpace(req.v) == "" {
			return f.errorf(req.field, "is required")
		}
	}
	switch {
	case len(s.Key) == 0:
		return f.errorf("key", "is required: the columns of a primary key or unique index")
	case len(s.Set) == 0 && s.Statement == "":
		return f.errorf("set", "a job needs set (column: SQL expression) or statement")
	case len(s.Set) > 0 && s.Statement != "":
		return f.errorf("statement", "give set or statement, not both")
	case s.OnDataError != "" && s.OnDataError != "halt" && s.OnDataError != "skip":
		return f.errorf("on_data_error", "must be halt or skip, not %q", s.OnDataError)
	case s.Chunk != nil && (*s.Chunk < 1 || *s.Chunk > 1_000_000):
		return f.errorf("chunk", "must be between 1 and 1,000,000 rows, not %d", *s.Chunk)
	}
	if err := f.checkThrottle(); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(s.Params)) {
		p := s.Params[name]
		if !paramNameRE.MatchString(name) {
			return f.errorf("params."+name, "%q cannot be written as @%s: use letters, digits and '_', not starting with a digit", name, name)
		}
		if _, ok := parsers[normType(p.Type)]; !ok {
			return f.errorf("params."+name, "type %q is not one of %s", p.Type, strings.Join(typeNames(), ", "))
		}
		if p.Default != nil {
			if _, err := parseValue(p.Type, *p.Default); err != nil {
				return f.errorf("params."+name, "default %q: %v", *p.Default, err)
			}
		}
	}
	return nil
}

var paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Job builds the job with parameter values given as name=value.
func (f *File) Job(values []string) (*backfill.Job, error) {
	given := map[string]string{}
	for _, kv := range values {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &rewind.ValidationError{Field: "--param", Value: kv, Reason: "must be name=value"}
		}
		if _, ok := f.spec.Params[k]; !ok {
			return nil, &rewind.ValidationError{Field: "--param", Value: k,
				Reason: fmt.Sprintf("job file %s declares no such parameter (declared: %s)", f.Path, declared(f.spec.Params))}
		}
		given[k] = v
	}
	params := backfill.Params{}
	for name, p := range f.spec.Params {
		v, ok := given[name]
		if !ok && p.Default != nil {
			v, ok = *p.Default, true
		}
		if !ok {
			if p.Required {
				return nil, f.errorf("params."+name, "parameter %s is required: give --param %s=VALUE", name, name)
			}
			// declared, not given, no default: bound as NULL
			params[name] = backfill.Param{Type: normType(p.Type), Secret: p.Secret}
			continue
		}
		if _, err := parseValue(p.Type, v); err != nil {
			shown := v
			if p.Secret || audit.IsSecret(name, nil) {
				shown = "***"
			}
			return nil, &rewind.ValidationError{Field: "--param " + name, Value: shown, Reason: err.Error()}
		}
		// The value is bound as its text, which PostgreSQL reads with the
		// type's input function: exactly the literal 'v'::type. Parsing it
		// here only names a bad value early.
		params[name] = backfill.Param{Type: normType(p.Type), Value: v, Text: v, Secret: p.Secret}
	}
	s := &f.spec
	chunk := 0 // the default
	if s.Chunk != nil {
		chunk = *s.Chunk
	}
	return &backfill.Job{Name: s.Name, Version: s.Version, ChunkSize: chunk, OnDataError: backfill.Policy(s.OnDataError),
		Source: &backfill.Table{Name: s.Table, Key: s.Key, Where: s.Where},
		Set:    s.Set, Statement: s.Statement, Params: params, Validate: s.Validate,
		NoRollback: s.Rollback != nil && !*s.Rollback}, nil
}

// SecretParams lists the parameters declared secret.
func (f *File) SecretParams() []string {
	var out []string
	for k, p := range f.spec.Params {
		if p.Secret || audit.IsSecret(k, nil) {
			out = append(out, k)
		}
	}
	return out
}

func declared(p map[string]paramSpec) string {
	if len(p) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(p)), ", ")
}

// Annotate adds the job file and line to a validation error the runner
// returned about one of the file's fields (an unknown table, column, bad
// SQL in where, set or statement).
func (f *File) Annotate(err error) error {
	var ve *rewind.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	field := ve.Field
	switch {
	case field == "column" || field == "key":
		field = "key"
		if ve.Value != "" && !slices.Contains(f.spec.Key, ve.Value) {
			field = "where"
		}
	case strings.HasPrefix(field, "job "):
		field = strings.TrimPrefix(field, "job ")
	}
	if _, ok := f.lines[field]; !ok {
		return err
	}
	c := *ve
	c.Field = fmt.Sprintf("%s (job file %s line %d)", ve.Field, f.Path, f.lines[field])
	return &c
}

// FromRun rebuilds a declarative job from the definition a run recorded
// (backfill.Job.Describe), for resuming without the job file. Jobs with
// secret parameters need the file and the values again.
func FromRun(d map[string]any) (*backfill.Job, error) {
	str := func(k string) string { s, _ := d[k].(string); return s }
	src, _ := d["source"].(map[string]any)
	if src == nil || src["table"] == nil {
		return nil, &rewind.ValidationError{Field: "job", Reason: "the run's job is not a declarative table job; pass its job file"}
	}
	job := &backfill.Job{Name: str("name"), Version: str("version"), Statement: str("statement"),
		OnDataError: backfill.Policy(str("on_data_error")), Params: backfill.Params{}}
	if n, ok := d["chunk_size"].(float64); ok {
		job.ChunkSize = int(n)
	}
	if keep, ok := d["rollback"].(bool); ok {
		job.NoRollback = !keep
	}
	t := &backfill.Table{}
	t.Name, _ = src["table"].(string)
	t.Where, _ = src["where"].(string)
	for _, k := range asList(src["key"]) {
		t.Key = append(t.Key, k)
	}
	t.Columns = asList(src["columns"])
	job.Source = t
	if set, ok := d["set"].(map[string]any); ok {
		job.Set = map[string]string{}
		for k, v := range set {
			job.Set[k], _ = v.(string)
		}
	}
	if err := validationsFromRun(d, job); err != nil {
		return nil, err
	}
	params, _ := d["params"].(map[string]any)
	for name, v := range params {
		typ, text, given := strings.Cut(fmt.Sprint(v), ":")
		if !given { // declared without a value: NULL
			job.Params[name] = backfill.Param{Type: typ}
			continue
		}
		if text == "***" {
			return nil, &rewind.ValidationError{Field: "--param " + name,
				Reason: "is secret and not recorded; pass the job file and --param again"}
		}
		if _, err := parseValue(typ, text); err != nil {
			return nil, err
		}
		job.Params[name] = backfill.Param{Type: typ, Value: text, Text: text}
	}
	return job, nil
}

func asList(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// Parameter types and their parsers.
var parsers = map[string]func(string) (any, error){
	"text": func(s string) (any, error) { return s, nil },
	"bigint": func(s string) (any, error) {
		v, err := strconv.ParseInt(s, 10, 64)
		return v, numErr(err, "a bigint (a whole number)")
	},
	"integer": func(s string) (any, error) {
		v, err := strconv.ParseInt(s, 10, 32)
		return int32(v), numErr(err, "an integer (a whole number within ±2147483647)")
	},
	"numeric": func(s string) (any, error) {
		if _, ok := new(big.Rat).SetString(s); !ok {
			return nil, errors.New("is not a numeric (e.g. 12.50)")
		}
		var n pgtype.Numeric
		return n, n.Scan(s)
	},
	"double precision": func(s string) (any, error) {
		v, err := strconv.ParseFloat(s, 64)
		return v, numErr(err, "a double precision number")
	},
	"boolean": func(s string) (any, error) {
		v, err := strconv.ParseBool(s)
		return v, numErr(err, "a boolean (true or false)")
	},
	"timestamptz": func(s string) (any, error) {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
			if t, err := time.Parse(layout, s); err == nil {
				return t, nil
			}
		}
		return nil, errors.New("is not a timestamptz (e.g. 2024-01-31T00:00:00Z or 2024-01-31)")
	},
	"date": func(s string) (any, error) {
		t, err := time.Parse("2006-01-02", s)
		return t, numErr(err, "a date (YYYY-MM-DD)")
	},
	"uuid": func(s string) (any, error) {
		u, err := uuid.Parse(s)
		return u, numErr(err, "a uuid")
	},
}

var aliases = map[string]string{"int8": "bigint", "int": "integer", "int4": "integer", "float8": "double precision",
	"float": "double precision", "bool": "boolean", "timestamp with time zone": "timestamptz", "string": "text", "decimal": "numeric"}

func normType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	if a, ok := aliases[t]; ok {
		return a
	}
	return t
}

func typeNames() []string { return slices.Sorted(maps.Keys(parsers)) }

func parseValue(typ, s string) (any, error) {
	p, ok := parsers[normType(typ)]
	if !ok {
		return nil, fmt.Errorf("unknown parameter type %q", typ)
	}
	return p(s)
}

func numErr(err error, what string) error {
	if err != nil {
		return errors.New("is not " + what)
	}
	return nil
}
