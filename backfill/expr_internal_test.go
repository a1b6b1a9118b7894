package backfill

import (
	"errors"
	"slices"
	"testing"

	"github.com/rewindhq/rewind"
)

// Found in review: a where or set expression that closes the runner's
// parentheses escaped the chunk's key range, and every chunk changed the
// whole table. Then (issue 11): a crafted quote sequence that the
// hand-written lexer read differently from PostgreSQL slipped through;
// PostgreSQL's own parser now decides.
func TestParseExprAcceptsOneExpression(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"NOT done", "a = 'x;--)' AND b", "f(a, (b)) > 0", `"weird)col" > 0`,
		"$$a)$$ = x", "$q$ ;) $q$ <> x", `E'it\'s)' = x`, "a = 'it''s)'", "coalesce(n, 0) - 1",
		"n / 2", "a-b", "a -- a comment to the end of the line", "a /* c */", "n >= @lo", "n>=@lo"} {
		if _, err := parseExpr("where", ok); err != nil {
			t.Errorf("parseExpr(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"n >= 0) OR (n >= 0", "0) AS int), id = CAST((7", "a; DROP TABLE x",
		"(a", "a)", "'abc", `"abc`, "$t$abc", `E'abc\'`, "x = $1 + $2", "a, b", "a AS b", "a b", "*",
		"a FROM other", "a LIMIT 1", "a UNION SELECT 1", "DISTINCT a", "a /* unterminated",
		// PostgreSQL reads date'…\' as a complete string (backslashes are
		// not escapes there); the old lexer took it for an E'' string and
		// the ") OR ( true )" after it for quoted text.
		`d < date'2020-01-01\' ) OR ( true ) --'`,
	} {
		_, err := parseExpr("where", bad)
		if !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("parseExpr(%q) = %v, want a validation error", bad, err)
		}
	}
}

func TestBindSitesAreWherePostgreSQLSeesCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql   string
		want  string
		names []string
	}{
		{"id BETWEEN @lo AND @hi", "id BETWEEN $1 AND $2", []string{"lo", "hi"}},
		{"id>=@lo AND id<=@lo", "id>=$1 AND id<=$1", []string{"lo"}},
		{"'@lo' = x AND \"@hi\" = y -- @z\n AND /* @w */ v = $$@q$$", "'@lo' = x AND \"@hi\" = y -- @z\n AND /* @w */ v = $$@q$$", nil},
		{"E'\\'@lo' = x", "E'\\'@lo' = x", nil},
		{"a@b", "a $1", []string{"b"}},
		{"@ abs_of_this", "@ abs_of_this", nil},
		{"tsv @@ q", "tsv @@ q", nil},
	}
	for _, tt := range tests {
		b, err := bindSites(tt.sql)
		if err != nil || b.sql != tt.want || !slices.Equal(b.names, tt.names) {
			t.Errorf("bindSites(%q) = %q %q %v, want %q %q", tt.sql, b.sql, b.names, err, tt.want, tt.names)
		}
	}
}

func TestParseStatementFindsWhatItWrites(t *testing.T) {
	t.Parallel()
	info, err := parseStatement("statement", `WITH d AS (DELETE FROM other WHERE true RETURNING id)
		UPDATE s.items SET n = 1 WHERE id BETWEEN @lo AND @hi AND id NOT IN (SELECT id FROM d)`)
	if err != nil {
		t.Fatal(err)
	}
	want := []relation{{name: "other"}, {schema: "s", name: "items"}}
	slices.SortFunc(info.targets, func(a, b relation) int { return len(a.schema) - len(b.schema) })
	if !slices.Equal(info.targets, want) || !slices.Equal(info.names, []string{"lo", "hi"}) {
		t.Fatalf("targets %v, names %v", info.targets, info.names)
	}
	for _, bad := range []string{"SELECT 1", "UPDATE t SET a = 1; DELETE FROM u", "TRUNCATE t", "", "CREATE TABLE x (a int)"} {
		if _, err := parseStatement("statement", bad); !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("parseStatement(%q) = %v, want a validation error", bad, err)
		}
	}
}

func TestAlwaysNull(t *testing.T) {
	t.Parallel()
	args := map[string]any{"none": nil, "one": 1}
	for sql, want := range map[string]bool{"NULL": true, "NULL::int": true, "CAST(NULL AS text)": true, "@none": true,
		"@none::int": true, "@one": false, "coalesce(NULL, 1)": false, "n": false, "1": false} {
		e, err := parseExpr("set.x", sql)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.alwaysNull(args); got != want {
			t.Errorf("alwaysNull(%q) = %v, want %v", sql, got, want)
		}
	}
}

// The parts of an UPDATE or DELETE that choose its rows, read to select
// them before a run (see statementChange.checkFirstChunk).
func TestRowsOfAStatement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql  string
		want *rowsSQL
	}{
		{"UPDATE items SET n = 1 WHERE id BETWEEN @lo AND @hi",
			&rowsSQL{rel: " items ", where: " id BETWEEN @lo AND @hi"}},
		{"UPDATE ONLY items AS x SET d = x.a IS DISTINCT FROM x.b, e = extract(year FROM t) FROM y WHERE x.id=@lo; -- c",
			&rowsSQL{rel: " ONLY items AS x ", from: " y ", where: " x.id=@lo"}},
		{"WITH y AS (SELECT 1 WHERE true) update items set n = 1 from y",
			&rowsSQL{with: "WITH y AS (SELECT 1 WHERE true) ", rel: " items ", from: " y"}},
		{"DELETE FROM items i USING j WHERE i.id = j.id /* c */", &rowsSQL{rel: " items i ", from: " j ", where: " i.id = j.id"}},
		{"DELETE FROM items", &rowsSQL{rel: " items"}},
		{"INSERT INTO items VALUES (1)", nil},
		{"UPDATE items SET n = 1 WHERE CURRENT OF c", &rowsSQL{rel: " items ", where: " CURRENT OF c"}},
	}
	for _, tt := range tests {
		info, err := parseStatement("statement", tt.sql)
		if err != nil {
			t.Fatalf("%s: %v", tt.sql, err)
		}
		if (info.rows == nil) != (tt.want == nil) || info.rows != nil && *info.rows != *tt.want {
			t.Errorf("rowsOf(%q) = %+v, want %+v", tt.sql, info.rows, tt.want)
		}
	}
}
