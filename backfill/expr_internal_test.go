package backfill

import (
	"errors"
	"testing"

	"github.com/rewindhq/rewind"
)

// Found in review: a where or set expression that closes the runner's
// parentheses escaped the chunk's key range, and every chunk changed the
// whole table.
func TestCheckExprAcceptsOneExpression(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "NOT done", "a = 'x;--)' AND b", "f(a, (b)) > 0", `"weird)col" > 0`,
		"$$a)$$ = x", "$q$ ;) $q$ <> x", `E'it\'s)' = x`, "a = 'it''s)'", "x = $1 + $2", "coalesce(n, 0) - 1",
		"n / 2", "a-b"} {
		if err := checkExpr("where", ok); err != nil {
			t.Errorf("checkExpr(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"n >= 0) OR (n >= 0", "0) AS int), id = CAST((7", "a; DROP TABLE x", "a -- the rest",
		"a /* c */", "(a", "a)", "'abc", `"abc`, "$t$abc", `E'abc\'`} {
		err := checkExpr("where", bad)
		if !errors.Is(err, rewind.ErrInvalidArgument) {
			t.Errorf("checkExpr(%q) = %v, want a validation error", bad, err)
		}
	}
}
