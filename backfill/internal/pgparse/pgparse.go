// Package pgparse reads SQL with PostgreSQL's own lexer and parser:
// libpg_query, which is PostgreSQL's parser source made into a library.
//
// With cgo (the default where a C compiler is found) libpg_query is linked
// natively through github.com/pganalyze/pg_query_go; without cgo (a
// cross-compiled binary) the same library runs as WebAssembly on wazero
// through github.com/wasilibs/go-pgquery, which needs no C toolchain but
// compiles its module when a process first parses: about 2 s of CPU, 12 s
// under the race detector. Both give the same answers; a test compares
// them.
package pgparse

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Error is the parser's complaint about SQL it cannot read.
type Error struct {
	Message string
	// Cursorpos is the 1-based character position of the error in the
	// SQL, or 0.
	Cursorpos int
}

func (e *Error) Error() string { return e.Message }

// Token is the byte range of one token of PostgreSQL's lexer.
type Token struct{ Start, End int }

// Scan returns sql's tokens as PostgreSQL's lexer reads them. Quoted
// strings, quoted identifiers and comments are single tokens.
func Scan(sql string) ([]Token, error) {
	b, err := scan(sql)
	if err != nil {
		return nil, err
	}
	return tokens(b, len(sql))
}

// tokens decodes a pg_query.ScanResult of SQL n bytes long: its field 2
// holds the tokens, each a ScanToken whose fields 1 and 2 are its start and
// end byte offsets.
func tokens(b []byte, n int) ([]Token, error) {
	var toks []Token
	err := eachField(b, func(num protowire.Number, v []byte, _ uint64) error {
		if num != 2 || v == nil {
			return nil
		}
		var t Token
		err := eachField(v, func(num protowire.Number, _ []byte, x uint64) error {
			switch num {
			case 1:
				t.Start = int(x)
			case 2:
				t.End = int(x)
			}
			return nil
		})
		if err == nil && (t.Start < 0 || t.End < t.Start || t.End > n) {
			err = fmt.Errorf("token [%d, %d) out of range", t.Start, t.End)
		}
		toks = append(toks, t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgparse: read the lexer's tokens: %w", err)
	}
	return toks, nil
}

// ParseJSON returns sql's parse tree as libpg_query's JSON.
func ParseJSON(sql string) (string, error) { return parseJSON(sql) }

// eachField calls fn for each field of a protobuf message: v for a
// length-delimited field, x for a varint.
func eachField(b []byte, fn func(num protowire.Number, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, v, x); err != nil {
			return err
		}
	}
	return nil
}
