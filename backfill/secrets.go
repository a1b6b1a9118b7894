package backfill

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// renderings returns the texts a parameter's value may be shown as: as
// given, and as it reads once parsed by its type, the way PostgreSQL and
// Go print it (a bigint given as 007 is printed 7, a timestamp given as
// 2026-01-01 is printed 2026-01-01 00:00:00+00). Masking only the text as
// given would miss the others, which database messages quote.
func (p Param) renderings() []string {
	out := []string{p.Text}
	add := func(s ...string) { out = append(out, s...) }
	switch v := p.Value.(type) {
	case int64:
		add(strconv.FormatInt(v, 10))
	case int32:
		add(strconv.FormatInt(int64(v), 10))
	case float64:
		add(strconv.FormatFloat(v, 'g', -1, 64), strconv.FormatFloat(v, 'f', -1, 64))
	case pgtype.Numeric:
		if t, err := v.Value(); err == nil {
			add(fmt.Sprint(t))
		}
	case uuid.UUID:
		add(v.String())
	case time.Time:
		if p.Type == "date" {
			add(v.Format(time.DateOnly))
			break
		}
		for _, t := range []time.Time{v, v.UTC(), v.Local()} {
			add(t.Format("2006-01-02 15:04:05.999999-07"), t.Format("2006-01-02 15:04:05.999999-07:00"),
				t.Format(time.RFC3339Nano), t.Format("2006-01-02T15:04:05.999999"), t.Format("2006-01-02 15:04:05.999999"), t.String())
		}
	}
	if shown, ok := serverShown.Load(p.Type + "\x00" + p.Text); ok {
		out = append(out, shown.([]string)...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

// serverShown holds, by type and text as given, how PostgreSQL printed a
// secret parameter's value (see learnRenderings): a job file binds text,
// which only the server's input function parses, and only the server
// knows how its output function prints the result under the session's
// TimeZone, DateStyle and IntervalStyle (a timestamptz given as
// 2031-07-19T01:02:03+05:00 is printed 2031-07-18 20:02:03+00, a bigint
// given as 0031415926 is printed 31415926). Shared by every job of the
// process, so that a job used by several goroutines is never written to.
var serverShown sync.Map

// learnRenderings asks the server how it prints each secret parameter's
// value, as text (::text, what casts and error messages quote) and in
// JSON, in this session's settings, and adds those to what Redact masks.
func learnRenderings(ctx context.Context, db querier, params Params, args pgx.NamedArgs) error {
	for _, name := range params.secretNames() {
		par := params[name]
		if par.Value == nil || par.Text == "" {
			continue
		}
		var text, js *string
		err := db.QueryRow(ctx, "SELECT @"+name+"::text, to_jsonb(@"+name+") #>> '{}'", bindArgs(args)).Scan(&text, &js)
		if err != nil {
			return fmt.Errorf("read how parameter %s prints: %w", name, err)
		}
		key := par.Type + "\x00" + par.Text
		var shown []string
		if old, ok := serverShown.Load(key); ok {
			shown = old.([]string)
		}
		for _, s := range []*string{text, js} {
			if s != nil && *s != "" && !slices.Contains(shown, *s) {
				shown = append(slices.Clip(shown), *s)
			}
		}
		serverShown.Store(key, shown)
	}
	return nil
}

// learnColumnRenderings adds to what Redact masks how each secret
// parameter's value prints once cast to each type of the job table's
// columns: a value written into a column is stored, and quoted back by
// PostgreSQL ("Failing row contains (…)"), as the column's type prints
// it (bigint 0031415926 in a numeric(14,2) column as 31415926.00, a
// timestamptz in a timestamp column as the session's local time). A cast
// the server refuses is a column the value cannot be written into, and
// is passed over. Boolean columns are passed over: true and false are
// everywhere.
func learnColumnRenderings(ctx context.Context, db querier, params Params, args pgx.NamedArgs, types []string) {
	slices.Sort(types)
	types = slices.Compact(types)
	for _, name := range params.secretNames() {
		par := params[name]
		if par.Value == nil || par.Text == "" {
			continue
		}
		key := par.Type + "\x00" + par.Text
		for _, typ := range types {
			if typ == "boolean" || typ == par.Type {
				continue
			}
			var text *string
			if err := db.QueryRow(ctx, "SELECT ((@"+name+")::"+typ+")::text", bindArgs(args)).Scan(&text); err != nil ||
				text == nil || *text == "" {
				continue
			}
			var shown []string
			if old, ok := serverShown.Load(key); ok {
				shown = old.([]string)
			}
			if !slices.Contains(shown, *text) {
				serverShown.Store(key, append(slices.Clip(shown), *text))
			}
		}
	}
}

// Redact returns s with every rendering of every secret parameter's value
// replaced by "***": the text as given, the forms its type prints it in
// (see renderings) and the forms the server printed it in (see
// learnRenderings), each where it stands as a whole token. A rendering
// that begins (ends) with a letter, digit or '_' is masked only where
// the character before (after) it is none of those: the secret bigint 7
// is masked in "(1, 7, x)" and "n = 7." but "17", "1.7" and the hash
// "ad55b917722c…" are left alone, so that a short secret neither damages
// unrelated text nor shows where it is not. The price: a secret glued to
// other letters or digits (@token || 'x' printed as "s3cretx") is not
// masked there. Boolean secrets are not masked in text (true and false
// are everywhere).
func (p Params) Redact(s string) string {
	var masks []string
	for _, k := range p.secretNames() {
		par := p[k]
		if par.Text == "" || par.Type == "boolean" {
			continue
		}
		masks = append(masks, par.renderings()...)
	}
	// Longer texts first, so that a secret containing another is masked whole.
	slices.SortStableFunc(masks, func(a, b string) int { return len(b) - len(a) })
	for _, m := range masks {
		s = replaceWords(s, m)
	}
	return s
}

// replaceWords replaces w by "***" where it is not part of a longer word
// or number (the characters on both sides are looked at in the whole of
// s, not in what is left after an earlier match).
func replaceWords(s, w string) string {
	var b strings.Builder
	from, done := 0, 0
	for {
		k := strings.Index(s[from:], w)
		if k < 0 {
			b.WriteString(s[done:])
			return b.String()
		}
		i := from + k
		j := i + len(w)
		if (i > 0 && wordAt(s, i-1) && wordByte(w[0])) || (j < len(s) && wordAt(s, j) && wordByte(w[len(w)-1])) {
			from = i + 1 // a later, overlapping occurrence may stand alone
			continue
		}
		b.WriteString(s[done:i])
		b.WriteString("***")
		from, done = j, j
	}
}

// wordAt reports whether s[i] belongs to a word or number: a letter, a
// digit, '_', or a '.' between digits (7 is not a word of 1.75).
func wordAt(s string, i int) bool {
	if s[i] == '.' {
		return i > 0 && i+1 < len(s) && isDigit(s[i-1]) && isDigit(s[i+1])
	}
	return wordByte(s[i])
}

func wordByte(c byte) bool {
	return c == '_' || isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
