package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/backfill/internal/pgparse"
)

// A job's SQL (where, set, statement) is read with PostgreSQL's own lexer
// and parser (package pgparse). Two things follow from it:
//
//   - Bind sites: @name is not PostgreSQL syntax; the runner replaces each
//     @name with a positional parameter $n itself, at the places
//     PostgreSQL's lexer sees code (never inside a string, a quoted
//     identifier or a comment), and binds every name it replaced. An @name
//     the job does not declare is an error, never a NULL.
//   - Shape: a where or set is exactly one expression, a statement is
//     exactly one INSERT, UPDATE, DELETE or MERGE, and the tree tells what
//     a statement writes.

// sqlSyntaxError is what the parser says about SQL it cannot read.
type sqlSyntaxError struct {
	msg string
	pos int // 1-based character position in the parsed text, 0 when unknown
}

func (e *sqlSyntaxError) Error() string { return e.msg }

func parserError(err error) error {
	var pe *pgparse.Error
	if errors.As(err, &pe) {
		return &sqlSyntaxError{msg: pe.Message, pos: pe.Cursorpos}
	}
	return fmt.Errorf("read SQL: %w", err)
}

// parseSQL returns sql's parse tree, as pg_query's JSON decodes.
func parseSQL(sql string) (map[string]any, error) {
	s, err := pgparse.ParseJSON(sql)
	if err != nil {
		return nil, parserError(err)
	}
	var tree map[string]any
	if err := json.Unmarshal([]byte(s), &tree); err != nil {
		return nil, fmt.Errorf("read the parse tree: %w", err)
	}
	return tree, nil
}

var (
	bindNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	positionalRE = regexp.MustCompile(`^\$[0-9]+$`)
)

const opChars = "~!@#^&|`?+-*/%<>="

func isOperator(s string) bool { return s != "" && strings.Trim(s, opChars) == "" }

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// bound is SQL with its @name bind sites replaced by $1, $2… (numbered in
// order of first appearance) and the names in that order.
type bound struct {
	sql   string
	names []string
	// segs is the SQL around the bind sites (one more than sites), and
	// sites the index in names of each bind site, for render.
	segs  []string
	sites []int
}

// typed is a value bound with its type stated: its bind sites read
// ($n::typ), so that PostgreSQL takes the parameter as that type instead
// of inferring one from where it stands. A job's parameters are bound so
// (typ is their declared type, a name typeNameRE accepts), and the chunk
// bounds of a statement job with their key column's type.
type typed struct {
	typ string
	v   any
}

// render returns b's SQL with each bind site replaced by its positional
// parameter, cast to its type when its argument is typed, and the
// arguments in order. A name without a value is an error, never NULL.
func (b *bound) render(a map[string]any) (string, []any, error) {
	args := make([]any, len(b.names))
	types := make([]string, len(b.names))
	for i, n := range b.names {
		v, ok := a[n]
		if !ok {
			return "", nil, fmt.Errorf("backfill: @%s has no value", n)
		}
		if tv, ok := v.(typed); ok {
			types[i], v = tv.typ, tv.v
		}
		args[i] = v
	}
	var out strings.Builder
	for i, s := range b.segs {
		out.WriteString(s)
		if i == len(b.sites) {
			break
		}
		k := b.sites[i]
		if types[k] == "" {
			fmt.Fprintf(&out, "$%d", k+1)
		} else {
			fmt.Fprintf(&out, "($%d::%s)", k+1, types[k])
		}
	}
	return out.String(), args, nil
}

// positionalError is a $n parameter in a job's SQL, which would bind
// nothing the job declares.
type positionalError struct{ param string }

func (e *positionalError) Error() string {
	return fmt.Sprintf("uses the positional parameter %s; name job parameters @name instead", e.param)
}

// bindSites finds sql's bind sites with PostgreSQL's lexer: an operator
// token ending in @ immediately followed by a name (@cutoff, or the @lo of
// "id>=@lo", which PostgreSQL would read as the operator >=@). Quoted text
// and comments are single tokens, so nothing in them is a bind site.
func bindSites(sql string) (*bound, error) {
	toks, err := pgparse.Scan(sql)
	if err != nil {
		return nil, parserError(err)
	}
	var out strings.Builder
	b := &bound{}
	ordinal := map[string]int{}
	last := 0
	for i, t := range toks {
		text := sql[t.Start:t.End]
		if positionalRE.MatchString(text) {
			return nil, &positionalError{param: text}
		}
		if i+1 == len(toks) || !isOperator(text) || !strings.HasSuffix(text, "@") || toks[i+1].Start != t.End {
			continue
		}
		name := sql[toks[i+1].Start:toks[i+1].End]
		if !bindNameRE.MatchString(name) {
			continue
		}
		n, ok := ordinal[name]
		if !ok {
			b.names = append(b.names, name)
			n = len(b.names)
			ordinal[name] = n
		}
		at := t.End - 1 // the @
		seg := sql[last:at]
		if at > 0 && isIdentByte(sql[at-1]) {
			seg += " " // a$1 would be one identifier
		}
		out.WriteString(seg)
		out.WriteString("$" + strconv.Itoa(n))
		b.segs, b.sites = append(b.segs, seg), append(b.sites, n-1)
		last = toks[i+1].End
	}
	out.WriteString(sql[last:])
	b.segs = append(b.segs, sql[last:])
	b.sql = out.String()
	return b, nil
}

// bindCache holds the statements the runner sends, rewritten: the same few
// statements run for every chunk.
var bindCache struct {
	sync.Mutex
	m map[string]*bound
}

func cachedBindSites(sql string) (*bound, error) {
	bindCache.Lock()
	b, ok := bindCache.m[sql]
	bindCache.Unlock()
	if ok {
		return b, nil
	}
	b, err := bindSites(sql)
	if err != nil {
		return nil, err
	}
	bindCache.Lock()
	defer bindCache.Unlock()
	if bindCache.m == nil || len(bindCache.m) >= 1024 {
		bindCache.m = map[string]*bound{}
	}
	bindCache.m[sql] = b
	return b, nil
}

// bindArgs are named arguments bound at the bind sites PostgreSQL's lexer
// finds (see bindSites). Passed as a query's only argument, they replace
// pgx.NamedArgs, whose own lexer can disagree with PostgreSQL's about
// what is quoted. A name without a value is an error, never NULL.
type bindArgs map[string]any

// RewriteQuery implements pgx.QueryRewriter.
func (a bindArgs) RewriteQuery(_ context.Context, _ *pgx.Conn, sql string, _ []any) (string, []any, error) {
	b, err := cachedBindSites(sql)
	if err != nil {
		return "", nil, fmt.Errorf("backfill: bind the parameters of %q: %w", sql, err)
	}
	return b.render(a)
}

// expr is a checked where or set expression.
type expr struct {
	names []string       // @names it binds
	tree  map[string]any // its parse tree (the expression's node)
}

// exprError is a reason why a where or set is not one expression.
func exprError(field, sql, reason string) error {
	return &rewind.ValidationError{Field: field, Value: sql, Reason: reason}
}

// parseExpr checks that sql is exactly one SQL expression, as the runner
// wraps it in parentheses inside its own statements: nothing that closes
// them, ends the statement, names a column alias or adds a clause.
func parseExpr(field, sql string) (*expr, error) {
	b, err := bindSites(sql)
	if err != nil {
		return nil, sqlTextError(field, sql, err, 0)
	}
	const prefix = "SELECT\n"
	tree, err := parseSQL(prefix + b.sql + "\n")
	if err != nil {
		return nil, sqlTextError(field, sql, err, len(prefix))
	}
	stmts, _ := tree["stmts"].([]any)
	if len(stmts) != 1 {
		return nil, exprError(field, sql, "must be one SQL expression, not several statements")
	}
	stmt, _ := stmts[0].(map[string]any)
	kind, sel := pgparse.Node(stmt["stmt"])
	if kind != "SelectStmt" {
		return nil, exprError(field, sql, "must be one SQL expression")
	}
	for k, v := range sel {
		switch {
		case k == "targetList", k == "limitOption" && v == "LIMIT_OPTION_DEFAULT", k == "op" && v == "SETOP_NONE":
		default:
			return nil, exprError(field, sql, "must be one SQL expression, without clauses of its own (FROM, LIMIT, UNION…)")
		}
	}
	targets, _ := sel["targetList"].([]any)
	if len(targets) != 1 {
		return nil, exprError(field, sql, "must be one SQL expression, not a list")
	}
	_, rt := pgparse.Node(targets[0])
	if _, named := rt["name"]; named || rt["val"] == nil {
		return nil, exprError(field, sql, "must be one SQL expression, without an alias")
	}
	val, _ := rt["val"].(map[string]any)
	if k, col := pgparse.Node(val); k == "ColumnRef" {
		if f, _ := col["fields"].([]any); len(f) > 0 {
			if k, _ := pgparse.Node(f[len(f)-1]); k == "A_Star" {
				return nil, exprError(field, sql, "must be one SQL expression, not *")
			}
		}
	}
	if err := sessionFuncError(field, sql, val); err != nil {
		return nil, err
	}
	return &expr{names: b.names, tree: val}, nil
}

// funcNames lists the names of the functions a parse tree calls (without
// their schema).
func funcNames(tree any) []string {
	var out []string
	pgparse.Walk(tree, func(kind string, body map[string]any) {
		if kind != "FuncCall" {
			return
		}
		parts, _ := body["funcname"].([]any)
		if len(parts) == 0 {
			return
		}
		_, last := pgparse.Node(parts[len(parts)-1])
		if fn, _ := last["sval"].(string); fn != "" && !slices.Contains(out, fn) {
			out = append(out, fn)
		}
	})
	return out
}

// sessionFuncError refuses SQL that calls one of sessionFuncs.
func sessionFuncError(field, sql string, tree any) error {
	fn, does := pgparse.SessionFunc(tree)
	if fn == "" {
		return nil
	}
	return exprError(field, sql, fmt.Sprintf("calls %s(), which %s: its effect can outlive the dry run or chunk that "+
		"runs it, on the runner's pooled connections, so a job's SQL may not call it", fn, does))
}

// sqlTextError explains SQL that could not be read; offset is the length
// of what the runner put before it.
func sqlTextError(field, sql string, err error, offset int) error {
	var pe *positionalError
	if errors.As(err, &pe) {
		return exprError(field, sql, pe.Error())
	}
	var se *sqlSyntaxError
	if errors.As(err, &se) {
		reason := se.msg
		if p := se.pos - offset; se.pos > 0 && p > 0 && p <= len([]rune(sql))+1 {
			reason += fmt.Sprintf(" (at character %d)", p)
		}
		return exprError(field, sql, reason)
	}
	return err
}

// alwaysNull reports whether an expression is NULL whatever the row: a
// NULL constant (cast or not), or a parameter bound to NULL.
func (e *expr) alwaysNull(args map[string]any) bool {
	v := e.tree
	for {
		kind, body := pgparse.Node(v)
		switch kind {
		case "TypeCast":
			v, _ = body["arg"].(map[string]any)
			continue
		case "A_Const":
			return body["isnull"] == true
		case "ParamRef":
			n, _ := body["number"].(float64)
			if i := int(n) - 1; i >= 0 && i < len(e.names) {
				val, ok := args[e.names[i]]
				if tv, isTyped := val.(typed); isTyped {
					val = tv.v
				}
				return ok && val == nil
			}
		}
		return false
	}
}

// statementInfo is what a checked statement binds and writes.
type statementInfo struct {
	names   []string
	targets []relation // every table the statement writes, CTEs included
	// withWrites are the tables its data-modifying WITH parts write.
	withWrites []relation
	// kind is the statement's node: InsertStmt, UpdateStmt, DeleteStmt or
	// MergeStmt.
	kind string
	// ref is how the statement's own columns name the table it writes:
	// its alias, or its name.
	ref string
	// returning: the statement has a RETURNING clause of its own.
	returning bool
	// assigned lists the columns its UPDATE parts assign (UPDATE SET, ON
	// CONFLICT DO UPDATE SET, MERGE's WHEN … THEN UPDATE SET).
	assigned []string
	// end is the length of the statement's text without a trailing
	// semicolon and comments: where a RETURNING clause can follow it.
	end int
	// rows, for an UPDATE or DELETE, is the statement's choice of rows
	// as the parts of a SELECT (see rowsOf); nil when they could not be
	// told apart.
	rows *rowsSQL
}

// rowsSQL is the text of an UPDATE's or DELETE's parts that choose its
// rows, taken from the statement: with, the WITH clause before it; rel, the
// table with its alias; from, its FROM (UPDATE) or USING (DELETE) list;
// where, its condition. "with SELECT … FROM rel, from WHERE where" selects
// the rows the statement changes, without changing them.
type rowsSQL struct{ with, rel, from, where string }

// rowsOf finds the parts of an UPDATE or DELETE with PostgreSQL's
// lexer: its keywords at the statement's own level of parentheses. It
// returns nil when it cannot tell them apart (the caller then has no
// preview of the rows, never a wrong one: the runner checks the rows the
// statement really changes as it runs).
func rowsOf(sql, kind string, toks []pgparse.Token, end int) *rowsSQL {
	type word struct {
		text       string
		start, end int
	}
	var words []word // tokens at depth 0, comments left out
	depth := 0
	for _, t := range toks {
		text := sql[t.Start:t.End]
		switch {
		case t.End > end, strings.HasPrefix(text, "--"), strings.HasPrefix(text, "/*"):
			continue
		case text == "(" || text == "[":
			depth++
			continue
		case text == ")" || text == "]":
			depth--
			continue
		}
		if depth == 0 {
			words = append(words, word{strings.ToUpper(text), t.Start, t.End})
		}
	}
	find := func(from int, w string) int {
		for i := from; i < len(words); i++ {
			// IS [NOT] DISTINCT FROM is an operator, not a clause.
			if words[i].text == w && (w != "FROM" || i == 0 || words[i-1].text != "DISTINCT") {
				return i
			}
		}
		return -1
	}
	r := &rowsSQL{}
	var relStart, relEnd, listKw int
	switch kind {
	case "UpdateStmt":
		u := find(0, "UPDATE")
		set := find(u+1, "SET")
		if u < 0 || set < 0 {
			return nil
		}
		r.with = sql[:words[u].start]
		relStart, relEnd = words[u].end, words[set].start
		listKw = find(set+1, "FROM")
	case "DeleteStmt":
		d := find(0, "DELETE")
		if d < 0 || d+1 >= len(words) || words[d+1].text != "FROM" {
			return nil
		}
		r.with = sql[:words[d].start]
		relStart = words[d+1].end
		listKw = find(d+2, "USING")
		relEnd = end
		if listKw >= 0 {
			relEnd = words[listKw].start
		} else if w := find(d+2, "WHERE"); w >= 0 {
			relEnd = words[w].start
		}
	default:
		return nil
	}
	r.rel = sql[relStart:relEnd]
	where := find(0, "WHERE")
	if where >= 0 && (words[where].start < relStart || where != len(words)-1 && find(where+1, "WHERE") >= 0) {
		return nil // a WHERE before the table or two of them: not a shape this reads
	}
	if listKw >= 0 {
		listEnd := end
		if where >= 0 {
			listEnd = words[where].start
		}
		if listEnd < words[listKw].end {
			return nil
		}
		r.from = sql[words[listKw].end:listEnd]
	}
	if where >= 0 {
		r.where = sql[words[where].end:end]
	}
	return r
}

// relation is a table as the parser read it (names already case-folded).
type relation struct{ schema, name string }

func (r relation) String() string {
	if r.schema == "" {
		return r.name
	}
	return r.schema + "." + r.name
}

// sql is the relation as SQL, quoted.
func (r relation) sql() string {
	if r.schema == "" {
		return quote(r.name)
	}
	return quote(r.schema) + "." + quote(r.name)
}

var writeKinds = map[string]bool{"InsertStmt": true, "UpdateStmt": true, "DeleteStmt": true, "MergeStmt": true}

// parseStatement checks that sql is exactly one INSERT, UPDATE, DELETE or
// MERGE, and returns the parameters it binds and every table it writes.
func parseStatement(field, sql string) (*statementInfo, error) {
	b, err := bindSites(sql)
	if err != nil {
		return nil, sqlTextError(field, sql, err, 0)
	}
	tree, err := parseSQL(b.sql)
	if err != nil {
		return nil, sqlTextError(field, sql, err, 0)
	}
	stmts, _ := tree["stmts"].([]any)
	if len(stmts) != 1 {
		return nil, exprError(field, sql, fmt.Sprintf("must be exactly one statement, not %d", len(stmts)))
	}
	stmt, _ := stmts[0].(map[string]any)
	if kind, _ := pgparse.Node(stmt["stmt"]); !writeKinds[kind] {
		return nil, exprError(field, sql, "must be one UPDATE, DELETE, INSERT or MERGE of the job's table")
	}
	if err := sessionFuncError(field, sql, stmt["stmt"]); err != nil {
		return nil, err
	}
	info := &statementInfo{names: b.names}
	writes := func(v any) []relation {
		var out []relation
		pgparse.Walk(v, func(kind string, body map[string]any) {
			if !writeKinds[kind] {
				return
			}
			rel, _ := body["relation"].(map[string]any)
			schema, _ := rel["schemaname"].(string)
			name, _ := rel["relname"].(string)
			out = append(out, relation{schema: schema, name: name})
		})
		return out
	}
	info.targets = writes(stmt["stmt"])
	kind, top := pgparse.Node(stmt["stmt"])
	info.withWrites = writes(top["withClause"])
	info.kind = kind
	rel, _ := top["relation"].(map[string]any)
	info.ref, _ = rel["relname"].(string)
	if alias, ok := rel["alias"].(map[string]any); ok {
		if a, _ := alias["aliasname"].(string); a != "" {
			info.ref = a
		}
	}
	_, info.returning = top["returningList"]
	assigned := func(targets any) {
		l, _ := targets.([]any)
		for _, t := range l {
			if _, rt := pgparse.Node(t); rt != nil {
				if n, _ := rt["name"].(string); n != "" {
					info.assigned = append(info.assigned, n)
				}
			}
		}
	}
	assigned(top["targetList"]) // UPDATE's SET; an INSERT's columns are in "cols"
	if oc, ok := top["onConflictClause"].(map[string]any); ok {
		assigned(oc["targetList"])
	}
	if whens, ok := top["mergeWhenClauses"].([]any); ok {
		for _, w := range whens {
			if _, mw := pgparse.Node(w); mw != nil && mw["commandType"] == "CMD_UPDATE" {
				assigned(mw["targetList"])
			}
		}
	}
	// The statement's text ends at its last token that is neither a
	// semicolon nor a comment.
	toks, err := pgparse.Scan(sql)
	if err != nil {
		return nil, sqlTextError(field, sql, parserError(err), 0)
	}
	for _, t := range toks {
		text := sql[t.Start:t.End]
		if text != ";" && !strings.HasPrefix(text, "--") && !strings.HasPrefix(text, "/*") {
			info.end = t.End
		}
	}
	info.rows = rowsOf(sql, kind, toks, info.end)
	return info, nil
}
