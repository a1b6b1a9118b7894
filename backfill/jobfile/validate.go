package jobfile

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill"
)

// The validate block is a list of SQL assertions:
//
//	validate:
//	  - name: no_upper_emails
//	    sql: SELECT count(*) FROM users WHERE email <> lower(email)
//	    expect: 0
//	  - name: flagged
//	    sql: SELECT count(*) FROM users WHERE flagged
//	    expect: {max: 10}
//	  - name: still_wrong
//	    sql: SELECT id FROM users WHERE email <> lower(email)
//	    expect: {rows: 0}
//
// expect is a value the query's one row and column must equal (a number,
// true/false, text, or null), bounds {min: …, max: …} for that value, or
// {rows: N}, the number of rows the query returns.

func (f *File) decodeValidate(v *yaml.Node) error {
	if v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return f.errorf("validate", "must be a list of validations (- name: …, sql: …, expect: …), not %s", kindName(v))
	}
	for i, item := range v.Content {
		val, err := f.decodeValidation(i+1, item)
		if err != nil {
			return err
		}
		f.spec.Validate = append(f.spec.Validate, val)
	}
	return nil
}

var validationNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// validationFields are the fields of one validation.
var validationFields = []string{"expect", "name", "sql"}

func (f *File) decodeValidation(n int, item *yaml.Node) (backfill.Validation, error) {
	var val backfill.Validation
	field := fmt.Sprintf("validate item %d", n)
	f.lines[field] = item.Line
	if item.Kind != yaml.MappingNode {
		return val, f.errorf(field, "must be a mapping of name, sql and expect, not %s", kindName(item))
	}
	nodes := map[string]*yaml.Node{}
	for j := 0; j+1 < len(item.Content); j += 2 {
		k := item.Content[j]
		switch {
		case k.Value != "name" && k.Value != "sql" && k.Value != "expect":
			return val, f.errorf(field, "line %d: unknown field %q (the fields are expect, name, sql)", k.Line, k.Value)
		case nodes[k.Value] != nil:
			return val, f.errorf(field, "line %d: field %q is given twice", k.Line, k.Value)
		}
		nodes[k.Value] = item.Content[j+1]
	}
	for _, k := range validationFields {
		if nodes[k] == nil {
			return val, f.errorf(field, "needs %s (the fields are expect, name, sql)", k)
		}
	}
	f.lines[field+".name"] = nodes["name"].Line
	if err := f.scalar(field+".name", nodes["name"], &val.Name); err != nil {
		return val, err
	}
	if !validationNameRE.MatchString(val.Name) {
		return val, f.errorf(field+".name", "%q must be 1 to 100 letters, digits, '.', '_' or '-'", val.Name)
	}
	// From here on the validation is named by its name, as the runner
	// names it.
	field = "validate." + val.Name
	f.lines[field] = item.Line
	for _, prev := range f.spec.Validate {
		if prev.Name == val.Name {
			return val, f.errorf(field, "name %q is given twice; names identify validations in reports", val.Name)
		}
	}
	f.lines[field+".sql"], f.lines[field+".expect"] = nodes["sql"].Line, nodes["expect"].Line
	if err := f.scalar(field+".sql", nodes["sql"], &val.SQL); err != nil {
		return val, err
	}
	if strings.TrimSpace(val.SQL) == "" {
		return val, f.errorf(field+".sql", "is empty: give one SELECT")
	}
	exp, err := f.decodeExpect(field+".expect", nodes["expect"])
	val.Expect = exp
	return val, err
}

// decodeExpect decodes expect with its YAML type: a number stays the
// decimal written (0.1 is not a float's nearest value), true/false a
// boolean, text text, null NULL.
func (f *File) decodeExpect(field string, v *yaml.Node) (backfill.Expect, error) {
	var e backfill.Expect
	if v.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, x := v.Content[i], v.Content[i+1]
			f.lines[field+"."+k.Value] = k.Line
			var err error
			switch k.Value {
			case "min":
				e.Min, err = f.number(field+".min", x)
			case "max":
				e.Max, err = f.number(field+".max", x)
			case "rows":
				var n int64
				if x.Kind != yaml.ScalarNode || x.Tag != "!!int" || x.Decode(&n) != nil || n < 0 {
					return e, f.errorf(field, "rows must be a whole number of rows, 0 or more, not %s", kindName(x))
				}
				e.Rows = &n
			default:
				return e, f.errorf(field, "line %d: unknown field %q (expect is a value, {min: …, max: …} or {rows: N})", k.Line, k.Value)
			}
			if err != nil {
				return e, err
			}
		}
		if e.Rows != nil && (e.Min != nil || e.Max != nil) {
			return e, f.errorf(field, "give {rows: N} or {min: …, max: …}, not both")
		}
		if e.Rows == nil && e.Min == nil && e.Max == nil {
			return e, f.errorf(field, "is an empty mapping: give {min: …, max: …} or {rows: N}")
		}
		return e, nil
	}
	if v.Kind != yaml.ScalarNode {
		return e, f.errorf(field, "must be a value, {min: …, max: …} or {rows: N}, not %s", kindName(v))
	}
	switch v.Tag {
	case "!!null":
		e.Null = true
	case "!!bool":
		var b bool
		if err := v.Decode(&b); err != nil {
			return e, f.errorf(field, "is not a boolean: %s", kindName(v))
		}
		e.Bool = &b
	case "!!int", "!!float":
		var err error
		e.Number, err = f.number(field, v)
		return e, err
	default:
		s := v.Value
		e.Text = &s
	}
	return e, nil
}

// number reads a YAML number as its decimal text.
func (f *File) number(field string, v *yaml.Node) (*string, error) {
	var s string
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!int":
		var n int64
		if err := v.Decode(&n); err != nil {
			return nil, f.errorf(field, "%s is not a whole number this can read (at most 19 digits)", v.Value)
		}
		s = strconv.FormatInt(n, 10)
	case v.Kind == yaml.ScalarNode && v.Tag == "!!float":
		s = v.Value
		if _, err := strconv.ParseFloat(s, 64); err != nil || !isDecimal(s) {
			return nil, f.errorf(field, "must be a finite decimal number, not %s", kindName(v))
		}
	default:
		return nil, f.errorf(field, "must be a number, not %s", kindName(v))
	}
	return &s, nil
}

func isDecimal(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

// validationsFromRun rebuilds the validations a run recorded with its
// job (backfill.Job.Describe).
func validationsFromRun(d map[string]any, job *backfill.Job) error {
	raw, ok := d["validate"]
	if !ok {
		return nil
	}
	b, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(b, &job.Validate)
	}
	if err != nil {
		return &rewind.ValidationError{Field: "job", Reason: "the run's recorded validations cannot be read (" + err.Error() +
			"); pass the job file"}
	}
	return nil
}
