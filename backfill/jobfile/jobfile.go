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
//
// A job has either set (column: SQL expression) or statement (SQL run per
// chunk with @lo and @hi bound to the chunk's first and last keys).
// Unknown fields are errors with their line; so are missing fields, and,
// through Annotate, what the database rejects (an unknown table or column,
// bad SQL) is reported at the line of the field that holds it.
package jobfile

import (
	"bytes"
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
)

// spec is the file's schema.
type spec struct {
	Name        string               `yaml:"name"`
	Version     string               `yaml:"version"`
	Table       string               `yaml:"table"`
	Key         stringList           `yaml:"key"`
	Where       string               `yaml:"where"`
	Set         map[string]string    `yaml:"set"`
	Statement   string               `yaml:"statement"`
	Params      map[string]paramSpec `yaml:"params"`
	Chunk       int                  `yaml:"chunk"`
	OnDataError string               `yaml:"on_data_error"`
}

type paramSpec struct {
	Type     string  `yaml:"type"`
	Required bool    `yaml:"required"`
	Default  *string `yaml:"default"`
	Secret   bool    `yaml:"secret"`
}

// stringList accepts "id" or [a, b].
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = stringList{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
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

var lineRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// Parse parses a job file's content; path names it in errors.
func Parse(path string, b []byte) (*File, error) {
	f := &File{Path: path, lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f.spec); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		msg = lineRE.ReplaceAllString(msg, `line $1: unknown field "$2"`)
		return nil, f.errorf("", "%s", msg)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil && len(root.Content) == 1 {
		f.index("", root.Content[0])
	}
	return f, f.check()
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
	case s.Chunk < 0 || s.Chunk > 1_000_000:
		return f.errorf("chunk", "must be between 1 and 1,000,000")
	}
	for name, p := range s.Params {
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
			continue
		}
		val, err := parseValue(p.Type, v)
		if err != nil {
			shown := v
			if p.Secret || audit.IsSecret(name, nil) {
				shown = "***"
			}
			return nil, &rewind.ValidationError{Field: "--param " + name, Value: shown, Reason: err.Error()}
		}
		params[name] = backfill.Param{Type: normType(p.Type), Value: val, Text: v, Secret: p.Secret}
	}
	s := &f.spec
	return &backfill.Job{Name: s.Name, Version: s.Version, ChunkSize: s.Chunk, OnDataError: backfill.Policy(s.OnDataError),
		Source: &backfill.Table{Name: s.Table, Key: s.Key, Where: s.Where},
		Set:    s.Set, Statement: s.Statement, Params: params}, nil
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
	params, _ := d["params"].(map[string]any)
	for name, v := range params {
		typ, text, _ := strings.Cut(fmt.Sprint(v), ":")
		if text == "***" {
			return nil, &rewind.ValidationError{Field: "--param " + name,
				Reason: "is secret and not recorded; pass the job file and --param again"}
		}
		val, err := parseValue(typ, text)
		if err != nil {
			return nil, err
		}
		job.Params[name] = backfill.Param{Type: typ, Value: val, Text: text}
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
