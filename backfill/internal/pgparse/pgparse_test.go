package pgparse

import (
	"errors"
	"testing"
)

// corpus is SQL of the kinds a backfill job holds, and broken SQL.
var corpus = []string{
	"SELECT\nemail <> lower(email) AND created_at < $1\n",
	"UPDATE users SET email = lower(email) WHERE id BETWEEN $1 AND $2 AND email <> lower(email)",
	"WITH d AS (DELETE FROM other WHERE true RETURNING id) UPDATE s.items SET n = 1 WHERE id >=@lo",
	"SELECT 'a''b', E'\\'', $$x$$, $t$ y $t$, \"q\"\"id\", U&'\\0041' -- c\n /* n /* m */ */",
	"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1",
	"SELECT d < date'2020-01-01\\' ) OR ( true ) --'",
	"SELECT (",
	"SELECT 'unterminated",
	"UPDATE t SET a = 1; DELETE FROM u",
}

func TestScanAndParse(t *testing.T) {
	t.Parallel()
	toks, err := Scan("SELECT 'a b' -- c")
	if err != nil || len(toks) != 3 || toks[1] != (Token{Start: 7, End: 12}) || toks[2] != (Token{Start: 13, End: 17}) {
		t.Fatalf("tokens %v, %v", toks, err)
	}
	_, err = ParseJSON("SELECT (")
	var pe *Error
	if !errors.As(err, &pe) || pe.Message != "syntax error at end of input" || pe.Cursorpos != 9 {
		t.Fatalf("error %#v", err)
	}
	for _, sql := range corpus {
		if _, err := Scan(sql); err != nil && !errors.As(err, &pe) {
			t.Errorf("scan %q: %v", sql, err)
		}
	}
}
