package backfill

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
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
	slices.Sort(out)
	out = slices.Compact(out)
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

// Redact returns s with every rendering of every secret parameter's value
// replaced by "***": the text as given wherever it appears, and the
// forms its type prints it in (see renderings) wherever they stand as a
// whole word, so that the secret bigint 7 is masked in "(1, 7, x)" but
// "17" is left alone. Boolean secrets are not masked in text (true and
// false are everywhere).
func (p Params) Redact(s string) string {
	type mask struct {
		text  string
		whole bool
	}
	var masks []mask
	for _, k := range p.secretNames() {
		par := p[k]
		if par.Text == "" || par.Type == "boolean" {
			continue
		}
		for _, r := range par.renderings() {
			masks = append(masks, mask{r, r != par.Text})
		}
	}
	// Longer texts first, so that a secret containing another is masked whole.
	slices.SortStableFunc(masks, func(a, b mask) int { return len(b.text) - len(a.text) })
	for _, m := range masks {
		if !m.whole {
			s = strings.ReplaceAll(s, m.text, "***")
			continue
		}
		s = replaceWords(s, m.text)
	}
	return s
}

// replaceWords replaces w by "***" where it is not part of a longer word
// or number.
func replaceWords(s, w string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, w)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := i + len(w)
		if (i > 0 && wordAt(s, i-1) && wordByte(w[0])) || (j < len(s) && wordAt(s, j) && wordByte(w[len(w)-1])) {
			b.WriteString(s[:j])
		} else {
			b.WriteString(s[:i])
			b.WriteString("***")
		}
		s = s[j:]
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
