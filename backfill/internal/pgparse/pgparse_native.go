//go:build cgo

package pgparse

import (
	"errors"

	"github.com/pganalyze/pg_query_go/v6/parser"
)

func scan(sql string) ([]byte, error) {
	b, err := parser.ScanToProtobuf(sql)
	return b, convert(err)
}

func parseJSON(sql string) (string, error) {
	s, err := parser.ParseToJSON(sql)
	return s, convert(err)
}

func convert(err error) error {
	var pe *parser.Error
	if errors.As(err, &pe) {
		return &Error{Message: pe.Message, Cursorpos: pe.Cursorpos}
	}
	return err
}
