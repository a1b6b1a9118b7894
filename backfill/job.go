package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/audit"
)

// Job is a backfill: a source to iterate in key order, a change to make to
// each chunk of it, and where the change goes. Exactly one of Set,
// Statement and Process is given.
type Job struct {
	// Name identifies the job across runs, such as "normalize-emails".
	Name string
	// Version is the job's version: bump it whenever the job's code or
	// meaning changes, since a Process function cannot be hashed.
	Version string
	// Source is what the job iterates: a *Table or an *Events window.
	Source Source
	// Set updates the source table: column → SQL expression over the row's
	// columns and the job's @parameters. Rows whose columns already hold
	// the values are not written. Needs a *Table source.
	Set map[string]string
	// Statement is SQL run once per chunk, with the chunk's first and last
	// keys bound as @lo and @hi (one column key) or @lo_COLUMN and
	// @hi_COLUMN (composite key), and the job's @parameters. Needs a
	// *Table source.
	Statement string
	// Process computes the changes of a chunk in Go; Sink writes them.
	Process ProcessFunc
	// Sink receives what Process returns: a *TableSink or a *StoreSink.
	Sink Sink
	// Params are typed values the job's SQL refers to as @name. They are
	// part of the job hash.
	Params Params
	// ChunkSize is the number of source rows or events per chunk, each
	// applied in one transaction. Defaults to 1000.
	ChunkSize int
	// OnDataError is the policy for data errors. Defaults to Halt.
	OnDataError Policy
	// Validate are SQL assertions about the data the job leaves behind,
	// run read-only by Runner.Validate and by a canary (see validate.go).
	// They are recorded with a run but not part of the job hash: they
	// check what the job writes, they do not change it.
	Validate []Validation
	// NoRollback keeps no before-images: the chunks do not save the old
	// values of what they change, and the run cannot be rolled back
	// (Runner.Rollback refuses it). Defaults to false: every chunk saves
	// its before-images in its own transaction (see docs/backfill.md,
	// Rollback). A job file says rollback: false.
	NoRollback bool
}

// Policy says what a run does with a data error.
type Policy string

// The data-error policies.
const (
	// Halt stops the run at the failing chunk, naming the key; nothing of
	// that chunk is written. Resuming retries the chunk.
	Halt Policy = "halt"
	// Skip writes the failing keys and their errors to the quarantine and
	// applies the rest of the chunk; retry-failed processes them later.
	Skip Policy = "skip"
)

// ProcessFunc computes the changes for a chunk of items. It runs inside the
// chunk's transaction, after the source rows were locked, and may run more
// than once for a chunk (retries, dry runs), so it must not have side
// effects of its own. Return an *ItemError (or several, joined) for items
// it cannot handle.
type ProcessFunc func(ctx context.Context, items []Item) ([]Change, error)

// Key is a row's key, one value per key column in PostgreSQL's text form,
// or an event's position.
type Key []string

func (k Key) String() string {
	if len(k) == 0 {
		return ""
	}
	if len(k) == 1 {
		return k[0]
	}
	return "(" + strings.Join(k, ", ") + ")"
}

// Item is one input of a chunk.
type Item struct {
	Key Key
	// Row holds a table row's columns by name.
	Row map[string]any
	// Event is the event, for an *Events source.
	Event *rewind.RecordedEvent
}

// Change is one output of a process function.
type Change struct {
	// Key is the input item the change comes from. Quarantine and event
	// ids refer to it.
	Key Key
	// Row is the row to write, for a *TableSink: columns by name,
	// including the sink's key columns.
	Row map[string]any
	// Stream and Event are the event to append, for a *StoreSink. A zero
	// Event.ID is replaced by an id derived from the job hash, the key and
	// the change's index, so that a retried chunk appends nothing twice.
	Stream string
	Event  rewind.Event
}

// Bounds delimit a chunk: the keys after After (or from Lo when After is
// nil) up to and including Hi.
type Bounds struct {
	After Key `json:"after,omitempty"`
	Lo    Key `json:"lo"`
	Hi    Key `json:"hi"`
	// Count is the number of items the planner saw in the chunk.
	Count int64 `json:"count"`
}

// Param is a typed job parameter.
type Param struct {
	// Type is a PostgreSQL type name: text, bigint, integer, numeric,
	// boolean, timestamptz, date, uuid, double precision, or any other
	// written without quotes. Every bind site of the parameter is bound
	// with this type, ($1::Type), so that PostgreSQL takes it as declared
	// rather than inferring a type from where it stands.
	Type string
	// Value is the value bound to @name; nil binds NULL. A string is
	// PostgreSQL's text form of Type, read by the type's input function
	// exactly as the literal 'Value'::Type would be (job files bind their
	// values so); other Go values are encoded as Type by pgx. A parameter
	// the job's SQL uses must be in Params, with a nil Value if it is to
	// be NULL: an @name that is not declared is an error.
	Value any
	// Text is the value as given, for the job hash and the ledger.
	Text string
	// Secret values are masked in the ledger and in output.
	Secret bool
}

// Params are a job's parameters by name.
type Params map[string]Param

// secret reports whether parameter name is secret: declared so, or named
// like one (api_token, db_password…), as the audit ledger masks them.
func (p Param) secret(name string) bool { return p.Secret || audit.IsSecret(name, nil) }

// secretNames lists the secret parameters.
func (p Params) secretNames() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if p[k].secret(k) {
			out = append(out, k)
		}
	}
	return out
}

// masked returns the parameters as text with secrets replaced by "***".
func (p Params) masked() map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = v.Text
		if v.secret(k) {
			out[k] = "***"
		}
	}
	return out
}

// described is how the job hash and a run's record show a parameter:
// "type:text", or the type alone for NULL.
func (p Param) described(text string) string {
	if p.Value == nil {
		return p.Type
	}
	return p.Type + ":" + text
}

// hasSecrets reports whether any parameter is secret: then no error's
// DETAIL is kept (see withholdDetail).
func (p Params) hasSecrets() bool { return len(p.secretNames()) > 0 }

// redactor masks every rendering of every secret parameter's value (see
// Params.Redact): the last line of defence for messages that quote a
// value, such as a database error.
func (p Params) redactor() func(string) string {
	if len(p.secretNames()) == 0 {
		return func(s string) string { return s }
	}
	return p.Redact
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// validate checks what can be checked without a database: the job's
// fields, and its SQL with PostgreSQL's parser (see expr.go).
func (j *Job) validate() error {
	bad := func(field, value, reason string) error {
		return &rewind.ValidationError{Field: "job " + field, Value: value, Reason: reason}
	}
	n := 0
	for _, set := range []bool{len(j.Set) > 0, j.Statement != "", j.Process != nil} {
		if set {
			n++
		}
	}
	t, isTable := j.Source.(*Table)
	switch {
	case !nameRE.MatchString(j.Name):
		return bad("name", j.Name, "must be 1 to 100 letters, digits, '.', '_' or '-'")
	case j.Version == "":
		return bad("version", "", "must not be empty; bump it when the job changes")
	case j.Source == nil:
		return bad("source", "", "is required: a table or a window of events")
	case n != 1:
		return bad("change", "", "give exactly one of set, statement or a process function")
	case (len(j.Set) > 0 || j.Statement != "") && !isTable:
		return bad("source", "", "set and statement jobs need a table source")
	case j.Process != nil && j.Sink == nil:
		return bad("sink", "", "a process function needs a sink")
	case j.ChunkSize < 0 || j.ChunkSize > 1_000_000:
		return bad("chunk size", fmt.Sprint(j.ChunkSize), "must be between 1 and 1,000,000")
	case j.OnDataError != "" && j.OnDataError != Halt && j.OnDataError != Skip:
		return bad("on_data_error", string(j.OnDataError), `must be "halt" or "skip"`)
	}
	if err := j.validateValidations(); err != nil {
		return err
	}
	// Recorded in every ledger entry of a run (secret values as ***):
	// refused, as a replay template's are, unless one line of plain text.
	if err := audit.CheckText("job version", j.Version); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(j.Params)) {
		if p := j.Params[name]; !p.secret(name) {
			if err := audit.CheckText("params."+name, p.Text); err != nil {
				return err
			}
		}
	}
	if !isTable {
		return nil
	}
	bounds := j.boundNames(t)
	for _, name := range slices.Sorted(maps.Keys(j.Params)) {
		switch {
		case !bindNameRE.MatchString(name):
			return &rewind.ValidationError{Field: "params." + name, Value: name,
				Reason: "a parameter name must be a letter or '_' followed by letters, digits or '_'"}
		case strings.HasPrefix(name, "_rw_"):
			return &rewind.ValidationError{Field: "params." + name, Value: name, Reason: "names starting with _rw_ are the runner's own"}
		case bounds[name]:
			return &rewind.ValidationError{Field: "params." + name, Value: name,
				Reason: "is the name of a chunk bound the runner binds in the statement; rename the parameter"}
		case !typeNameRE.MatchString(j.Params[name].Type):
			return &rewind.ValidationError{Field: "params." + name, Value: j.Params[name].Type,
				Reason: "needs a type, a PostgreSQL type name such as text, bigint, numeric, timestamptz or date: " +
					"the parameter is bound with it"}
		}
	}
	t.chunk, t.policy, t.redact = j.chunkSize(), j.policy(), j.Params.redactor()
	t.secret, t.ptypes = map[string]bool{}, map[string]string{}
	for name, p := range j.Params {
		t.ptypes[name] = p.Type
	}
	for _, name := range j.Params.secretNames() {
		t.secret[name] = true
	}
	if strings.TrimSpace(t.Where) != "" {
		e, err := parseExpr("where", t.Where)
		if err != nil {
			return err
		}
		if err := j.declared("where", t.Where, e.names, nil); err != nil {
			return err
		}
	}
	for _, col := range slices.Sorted(maps.Keys(j.Set)) {
		field := "set." + col
		if strings.TrimSpace(j.Set[col]) == "" {
			return &rewind.ValidationError{Field: field, Reason: "needs an SQL expression"}
		}
		e, err := parseExpr(field, j.Set[col])
		if err != nil {
			return err
		}
		if err := j.declared(field, j.Set[col], e.names, nil); err != nil {
			return err
		}
	}
	if j.Statement != "" {
		return j.validateStatement(t, bounds)
	}
	return nil
}

// boundNames are the names a statement job binds to its chunk's bounds:
// @lo and @hi for a one-column key, @lo_COLUMN and @hi_COLUMN always.
func (j *Job) boundNames(t *Table) map[string]bool {
	if j.Statement == "" {
		return nil
	}
	names := map[string]bool{}
	for _, c := range t.Key {
		names["lo_"+c], names["hi_"+c] = true, true
	}
	if len(t.Key) == 1 {
		names["lo"], names["hi"] = true, true
	}
	return names
}

// validateStatement checks a statement's shape and its bind sites: every
// @name declared or a bound, and the chunk's bounds really bound (a @lo
// inside a string literal is not). What it writes is checked against the
// database when the job is prepared.
func (j *Job) validateStatement(t *Table, bounds map[string]bool) error {
	info, err := parseStatement("statement", j.Statement)
	if err != nil {
		return err
	}
	if err := j.declared("statement", j.Statement, info.names, bounds); err != nil {
		return err
	}
	// The runner checks the keys of the rows a statement changes, with a
	// RETURNING clause of its own (see statementChange.apply); what that
	// cannot see is refused.
	refuse := func(reason string) error {
		return &rewind.ValidationError{Field: "statement", Value: j.Statement, Reason: reason}
	}
	switch {
	case len(info.targets) > 1:
		var parts []string
		for _, r := range info.withWrites {
			parts = append(parts, r.String())
		}
		return refuse(fmt.Sprintf("has a data-modifying WITH part (it writes %s): the runner cannot check that it changes only "+
			"the chunk's rows; write one statement restricted to @lo..@hi, or a Go process function", strings.Join(parts, ", ")))
	case info.returning:
		return refuse("has a RETURNING clause: remove it; the runner adds its own to check that the statement changes only the chunk's rows")
	}
	for _, c := range info.assigned {
		if slices.Contains(t.Key, c) {
			return refuse(fmt.Sprintf("assigns the key column %s: a statement may not move rows between chunks "+
				"(the runner could not check which rows it changed)", c))
		}
	}
	used := map[string]bool{}
	for _, n := range info.names {
		used[n] = true
	}
	var missing []string
	for _, c := range t.Key {
		for _, side := range []string{"lo", "hi"} {
			if used[side+"_"+c] || len(t.Key) == 1 && used[side] {
				continue
			}
			if len(t.Key) == 1 {
				missing = append(missing, "@"+side)
			} else {
				missing = append(missing, "@"+side+"_"+c)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	want := "@lo and @hi (or @lo_COLUMN and @hi_COLUMN)"
	if len(t.Key) > 1 {
		want = "@lo_COLUMN and @hi_COLUMN for every key column"
	}
	return &rewind.ValidationError{Field: "statement", Value: j.Statement,
		Reason: fmt.Sprintf("must restrict itself to the chunk with %s as parameters; it does not bind %s "+
			"(text inside quotes or comments binds nothing)", want, strings.Join(missing, ", "))}
}

// declared checks that every @name a field binds is a parameter of the
// job (or one of bounds): an undeclared one would otherwise be NULL.
func (j *Job) declared(field, sql string, names []string, bounds map[string]bool) error {
	for _, n := range names {
		if _, ok := j.Params[n]; ok || bounds[n] {
			continue
		}
		decl := slices.Sorted(maps.Keys(j.Params))
		for b := range bounds {
			decl = append(decl, b+" (chunk bound)")
		}
		list := "none"
		if len(decl) > 0 {
			slices.Sort(decl)
			list = strings.Join(decl, ", ")
		}
		return &rewind.ValidationError{Field: field, Value: sql,
			Reason: fmt.Sprintf("uses @%s, which the job does not declare (declared: %s); "+
				"declare it under params, or put a space after @ if it is meant as an operator", n, list)}
	}
	return nil
}

func (j *Job) chunkSize() int {
	if j.ChunkSize == 0 {
		return 1000
	}
	return j.ChunkSize
}

func (j *Job) policy() Policy {
	if j.OnDataError == "" {
		return Halt
	}
	return j.OnDataError
}

// Describe returns the job's definition as plain data: what the job hash
// covers, with secret parameters masked.
func (j *Job) Describe() map[string]any {
	d := map[string]any{
		"name": j.Name, "version": j.Version, "chunk_size": j.chunkSize(), "on_data_error": string(j.policy()),
		"source": j.Source.describe(),
	}
	switch {
	case len(j.Set) > 0:
		d["set"] = j.Set
	case j.Statement != "":
		d["statement"] = j.Statement
	default:
		d["process"] = "go function (identified by the job version)"
		d["sink"] = j.Sink.describe()
	}
	if j.NoRollback {
		// Only when set, so that the job hash of a job that keeps its
		// before-images is what it was before they existed.
		d["rollback"] = false
	}
	params := map[string]string{}
	for k, p := range j.Params {
		params[k] = p.described(p.Text)
		if p.secret(k) {
			params[k] = p.described("***")
		}
	}
	d["params"] = params
	if len(j.Validate) > 0 {
		d["validate"] = j.Validate
	}
	return d
}

// Hash is the job hash: a SHA-256 over the job's definition and its
// parameters' types and values, secret ones by type alone (and whether
// they are NULL). A secret's value stays out of it because the hash is
// printed and stored in the ledger: a hash over the value would let
// anyone holding the ledger confirm a guessed value with a dry run. So a
// change of a secret's value alone is not a change of the job: an
// unfinished run resumes with the new value, and a finished job is not
// applied again for it (bump the job's version, or --new-run).
func (j *Job) Hash() string {
	d := j.Describe()         // secret values are "***" there
	delete(d, "validate")     // assertions about the data, not the change
	b, err := json.Marshal(d) // map keys are sorted: the encoding is canonical
	if err != nil {
		panic(fmt.Sprintf("backfill: encode job: %v", err))
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// namedArgs returns the parameters as named arguments, each bound with
// its declared type (see typed).
func (p Params) namedArgs() map[string]any {
	args := make(map[string]any, len(p)+8)
	for k, v := range p {
		args[k] = typed{typ: v.Type, v: v.Value}
	}
	return args
}

// typeNameRE accepts a type name as PostgreSQL writes it without quotes:
// words, an optional schema, modifiers and array brackets ("double
// precision", "numeric(10,2)", "timestamp(3) with time zone", "text[]").
// The type is written into the SQL (@p becomes ($1::TYPE)), so nothing
// else may pass: no quote, comment, semicolon or parenthesis of its own.
var typeNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?(\(\d+(,\s?\d+)?\))?` +
	`( [A-Za-z_][A-Za-z0-9_]*(\(\d+(,\s?\d+)?\))?)*(\[\d*\])*$`)
