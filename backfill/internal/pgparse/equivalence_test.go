//go:build cgo

package pgparse

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	wazero "github.com/wasilibs/go-pgquery/parser"
)

// With cgo, the binary links libpg_query natively; without, it runs the
// WebAssembly build. The tests run with cgo, so this one holds the
// WebAssembly build to the same answers.
func TestWebAssemblyBuildAgrees(t *testing.T) {
	t.Parallel()
	for _, sql := range corpus {
		nativeToks, nerr := Scan(sql)
		wb, werr := wazero.ScanToProtobuf(sql)
		if (nerr == nil) != (werr == nil) {
			t.Fatalf("scan %q: native %v, webassembly %v", sql, nerr, werr)
		}
		if nerr == nil {
			wasmToks, err := tokens(wb, len(sql))
			if err != nil || !slices.Equal(nativeToks, wasmToks) {
				t.Fatalf("scan %q: native %v, webassembly %v (%v)", sql, nativeToks, wasmToks, err)
			}
		}
		native, nerr := ParseJSON(sql)
		wasm, werr := wazero.ParseToJSON(sql)
		var pe *Error
		var we *wazero.Error
		switch {
		case nerr != nil || werr != nil:
			if !errors.As(nerr, &pe) || !errors.As(werr, &we) || pe.Message != we.Message || pe.Cursorpos != we.Cursorpos {
				t.Fatalf("parse %q: native %v, webassembly %v", sql, nerr, werr)
			}
		case !sameTree(t, native, wasm):
			t.Fatalf("parse %q:\nnative      %s\nwebassembly %s", sql, native, wasm)
		}
	}
}

// sameTree compares two parse trees, leaving out libpg_query's version.
func sameTree(t *testing.T, a, b string) bool {
	var x, y map[string]any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	delete(x, "version")
	delete(y, "version")
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}
