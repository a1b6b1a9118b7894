//go:build !cgo

package pgparse

import (
	"errors"
	"sync"

	parser "github.com/wasilibs/go-pgquery/parser"
)

// mu keeps one WebAssembly instance per process: each new instance
// compiles the module again, which takes seconds.
var mu sync.Mutex

func scan(sql string) ([]byte, error) {
	mu.Lock()
	defer mu.Unlock()
	b, err := parser.ScanToProtobuf(sql)
	return b, convert(err)
}

func parseJSON(sql string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
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
