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
	// boolean, timestamptz, date, uuid, double precision.
	Type string
	// Value is the Go value bound to @name.
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

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// validate checks what can be checked without a database.
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
	_, isTable := j.Source.(*Table)
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
	if t, ok := j.Source.(*Table); ok {
		if err := checkExpr("where", t.Where); err != nil {
			return err
		}
	}
	for _, col := range slices.Sorted(maps.Keys(j.Set)) {
		if err := checkExpr("set "+col, j.Set[col]); err != nil {
			return err
		}
	}
	return nil
}

// checkExpr accepts one SQL expression: the runner wraps it in
// parentheses inside its own statements, so an expression that closes
// them, ends the statement or comments the rest out would escape the
// chunk's key range. Quoted text is skipped: '…' (with E'…' escapes),
// "…" and $tag$…$tag$.
func checkExpr(field, expr string) error {
	bad := func(reason string) error {
		return &rewind.ValidationError{Field: "job " + field, Value: expr, Reason: reason}
	}
	depth := 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; {
		case c == '\'':
			escapes := i > 0 && (expr[i-1] == 'E' || expr[i-1] == 'e')
			for i++; i < len(expr); i++ {
				if escapes && expr[i] == '\\' {
					i++
				} else if expr[i] == '\'' {
					if i+1 < len(expr) && expr[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
			if i >= len(expr) {
				return bad("has an unterminated string")
			}
		case c == '"':
			end := strings.IndexByte(expr[i+1:], '"')
			if end < 0 {
				return bad("has an unterminated quoted identifier")
			}
			i += end + 1
		case c == '$' && (i == 0 || !isIdentByte(expr[i-1])):
			end := strings.IndexByte(expr[i+1:], '$')
			if end < 0 || !dollarTag(expr[i+1:i+1+end]) {
				continue // a parameter such as $1, not a dollar quote
			}
			tag := expr[i : i+end+2]
			close := strings.Index(expr[i+len(tag):], tag)
			if close < 0 {
				return bad("has an unterminated dollar-quoted string")
			}
			i += len(tag) + close + len(tag) - 1
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth < 0 {
				return bad("closes a parenthesis it did not open; give one expression")
			}
		case c == ';':
			return bad("contains ';'; give one expression, not statements")
		case c == '-' && i+1 < len(expr) && expr[i+1] == '-', c == '/' && i+1 < len(expr) && expr[i+1] == '*':
			return bad("contains a comment; remove it")
		}
	}
	if depth != 0 {
		return bad("leaves a parenthesis open")
	}
	return nil
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// dollarTag reports whether s can be the tag between the $ signs of a
// dollar quote: empty, or an identifier not starting with a digit.
func dollarTag(s string) bool {
	for i := range len(s) {
		if !isIdentByte(s[i]) || i == 0 && s[i] >= '0' && s[i] <= '9' {
			return false
		}
	}
	return true
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
	params := map[string]string{}
	for k, p := range j.Params {
		params[k] = p.Type + ":" + p.Text
		if p.secret(k) {
			params[k] = p.Type + ":***"
		}
	}
	d["params"] = params
	return d
}

// Hash is the job hash: a SHA-256 over the job's definition and its
// parameters (secret ones included, so a changed secret changes the hash).
func (j *Job) Hash() string {
	d := j.Describe()
	params := map[string]string{}
	for k, p := range j.Params {
		params[k] = p.Type + ":" + p.Text
	}
	d["params"] = params
	b, err := json.Marshal(d) // map keys are sorted: the encoding is canonical
	if err != nil {
		panic(fmt.Sprintf("backfill: encode job: %v", err))
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// namedArgs returns the parameters as named arguments.
func (p Params) namedArgs() map[string]any {
	args := make(map[string]any, len(p)+8)
	for k, v := range p {
		args[k] = v.Value
	}
	return args
}
