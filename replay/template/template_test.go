package template_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/replay/mask"
	"github.com/rewindhq/rewind/replay/template"
)

const good = `name: copy-orders
version: 3
description: copy a day of orders to staging
params:
  since: {type: time, required: true}
  upto: {type: bound, default: "2026-12-01T00:00:00Z"}
  dest: {type: text, default: /srv/staging}
  expect: {type: integer}
  kinds: {type: text, default: OrderPlaced}
window:
  from: ${since}
  to: ${upto}
filter:
  prefix: orders-
  types: [OrderPaid, "${kinds}"]
target:
  kind: store
  data_dir: ${dest}/rewind
pacing:
  rate: 500
  burst: 10
checks:
  events: ${expect}
  min_events: 1
  max_events: 100000
  types: {OrderPaid: 3}
mask:
  OrderPlaced:
    customer.email: hash
    card.number: mask
    items[].note: drop
  "*":
    ssn: mask
`

func TestResolveGood(t *testing.T) {
	t.Parallel()
	tp, err := template.Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if tp.Name != "copy-orders" || tp.Version != "3" || len(tp.Hash) != 64 || tp.Production {
		t.Fatalf("%+v", tp)
	}
	sp, err := tp.Resolve([]string{"since=2026-11-01T00:00:00Z", "expect=42", "kinds=OrderShipped"})
	if err != nil {
		t.Fatal(err)
	}
	w := sp.Window
	if !w.From.Time.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) || !w.To.Time.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) ||
		w.StreamPrefix != "orders-" || strings.Join(w.Types, ",") != "OrderPaid,OrderShipped" {
		t.Fatalf("window %+v", w)
	}
	if sp.Target.Kind != "store" || sp.Target.DataDir != "/srv/staging/rewind" || !sp.Masking {
		t.Fatalf("target %+v masking %v", sp.Target, sp.Masking)
	}
	if sp.Pacing.Rate != 500 || sp.Pacing.Burst != 10 || *sp.Checks.Events != 42 || *sp.Checks.MinEvents != 1 || sp.Checks.Types["OrderPaid"] != 3 {
		t.Fatalf("pacing %+v checks %+v", sp.Pacing, sp.Checks)
	}
	if !sp.Mask.Needs("OrderPlaced") || !sp.Mask.Needs("Anything") || !sp.Mask.HasHash() {
		t.Fatalf("mask %+v", sp.Mask)
	}
	// An optional parameter left out leaves its check out; a position bound.
	sp, err = tp.Resolve([]string{"since=2026-11-01T00:00:00Z", "upto=900"})
	if err != nil || sp.Checks.Events != nil || sp.Window.To != replay.AtPosition(900) {
		t.Fatalf("%+v %v", sp, err)
	}
	// A verify target, or production, is not masked.
	for _, alt := range []string{
		strings.Replace(good, "  kind: store\n  data_dir: ${dest}/rewind\n", "  kind: verify\n", 1),
		"production: true\n" + good,
	} {
		alt = strings.Replace(alt, "  dest: {type: text, default: /srv/staging}\n", "", 1)
		alt = strings.Replace(alt, "${dest}", "/srv", 1)
		tp, err := template.Parse("alt.yaml", []byte(alt))
		if err != nil {
			t.Fatal(err)
		}
		sp, err := tp.Resolve([]string{"since=2026-11-01T00:00:00Z"})
		if err != nil || sp.Masking || len(sp.Mask) == 0 {
			t.Fatalf("masking %v for %s: %v", sp.Masking, sp.Target, err)
		}
	}
}

// A minimal valid template: the hostile cases change one thing in it.
const base = `name: t
version: 1
target:
  kind: verify
`

func TestHostileTemplates(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		file   string
		params []string
		key    string // the key the error names
		line   int    // its line (0: none)
		reason string // a part of the message
	}{
		{"empty", ``, nil, "", 0, "is empty"},
		{"only a comment", "# nothing\n", nil, "", 0, "is empty"},
		{"not YAML", "name: [unclosed\n", nil, "", 0, "not valid YAML"},
		{"a list", "- a\n- b\n", nil, "", 1, "must be a mapping"},
		{"a scalar", "hello\n", nil, "", 1, "must be a mapping"},
		{"unknown top key", base + "windw:\n  from: 1\n", nil, "windw", 5, "not a known key"},
		{"duplicate top key", base + "name: u\n", nil, "name", 5, "given twice (first at line 1)"},
		{"duplicate nested key", base + "window:\n  from: 1\n  from: 2\n", nil, "window.from", 7, "given twice (first at line 6)"},
		{"duplicate mask path", base + "mask:\n  T:\n    a: mask\n    a: hash\n", nil, "mask.T.a", 8, "given twice"},
		{"duplicate param", "params:\n  x: {type: text}\n  x: {type: text}\n" + base, nil, "params.x", 3, "given twice"},
		{"missing name", "version: 1\ntarget: {kind: verify}\n", nil, "name", 0, "is required"},
		{"missing version", "name: t\ntarget: {kind: verify}\n", nil, "version", 0, "is required"},
		{"missing target", "name: t\nversion: 1\n", nil, "target", 0, "is required"},
		{"empty name", strings.Replace(base, "name: t", "name: ''", 1), nil, "name", 1, "must not be empty"},
		{"name a list", strings.Replace(base, "name: t", "name: [a]", 1), nil, "name", 1, "must be text"},
		{"name with a parameter", "params:\n  x: {type: text}\nname: ${x}\nversion: 1\ntarget: {kind: verify}\n", nil, "name", 3, "cannot use a parameter"},
		{"unknown window key", base + "window:\n  start: 1\n", nil, "window.start", 6, "not a known key"},
		{"window a list", base + "window: [1, 2]\n", nil, "window", 5, "must be a mapping"},
		{"from not a bound", base + "window:\n  from: yesterday\n", nil, "window.from", 6, "must be a position"},
		{"from zero", base + "window:\n  from: 0\n", nil, "window.from", 6, "must be a position"},
		{"from negative", base + "window:\n  from: -5\n", nil, "window.from", 6, "must be a position"},
		{"from a float", base + "window:\n  from: 1.5\n", nil, "window.from", 6, "must be a position"},
		{"from a bool", base + "window:\n  from: true\n", nil, "window.from", 6, "must be a position"},
		{"from empty", base + "window:\n  from:\n", nil, "window.from", 6, "leave the key out"},
		{"from a mapping", base + "window:\n  from: {position: 1}\n", nil, "window.from", 6, "single value"},
		// The zero time is Go's "no bound": a window.to of it replayed the whole log.
		{"to the zero time", base + "window:\n  to: 0001-01-01T00:00:00Z\n", nil, "window.to", 6, "zero time"},
		{"from the zero time", base + "window:\n  from: '0001-01-01T01:00:00+01:00'\n", nil, "window.from", 6, "zero time"},
		{"to the zero time by a time parameter", "params:\n  a: {type: time, required: true}\n" + base +
			"window:\n  to: ${a}\n", []string{"a=0001-01-01T00:00:00Z"}, "--param a", 0, "zero time"},
		{"to the zero time by a bound parameter", "params:\n  a: {type: bound, required: true}\n" + base +
			"window:\n  to: ${a}\n", []string{"a=0001-01-01T00:00:00Z"}, "--param a", 0, "zero time"},
		{"to the zero time by a text parameter", "params:\n  a: {type: text, required: true}\n" + base +
			"window:\n  to: ${a}\n", []string{"a=0001-01-01T00:00:00Z"}, "window.to", 8, "zero time"},
		{"date without time", base + "window:\n  to: 2026-11-23\n", nil, "window.to", 6, "RFC 3339"},
		{"from > to positions", base + "window:\n  from: 10\n  to: 9\n", nil, "window.from", 6, "is after window.to"},
		{"from > to times", base + "window:\n  from: 2026-11-02T00:00:00Z\n  to: 2026-11-01T00:00:00Z\n", nil, "window.from", 6, "is after window.to"},
		{"from > to by parameters", "params:\n  a: {type: position, required: true}\n  b: {type: position, required: true}\n" + base +
			"window:\n  from: ${a}\n  to: ${b}\n", []string{"a=20", "b=3"}, "window.from", 9, "is after window.to"},
		{"unknown target kind", strings.Replace(base, "kind: verify", "kind: kafka", 1), nil, "target.kind", 4, "not a target kind"},
		{"target without kind", "name: t\nversion: 1\ntarget:\n  data_dir: /x\n", nil, "target", 3, "needs a kind"},
		{"target a scalar", "name: t\nversion: 1\ntarget: verify\n", nil, "target", 3, "must be a mapping"},
		{"target unknown key", base + "  dir: /x\n", nil, "target.dir", 5, "not a known key"},
		{"store without data_dir", strings.Replace(base, "kind: verify", "kind: store", 1), nil, "target.data_dir", 0, "is required"},
		{"store relative dir", strings.Replace(base, "kind: verify", "kind: store\n  data_dir: staging/x", 1), nil, "target.data_dir", 5, "absolute"},
		{"verify with data_dir", base + "  data_dir: /x\n", nil, "target.data_dir", 5, "writes nothing"},
		{"filter streams and prefix", base + "filter:\n  prefix: a-\n  streams: [a-1]\n", nil, "filter.prefix", 6, "not both"},
		{"filter types a scalar", base + "filter:\n  types: OrderPlaced\n", nil, "filter.types", 6, "must be a list"},
		{"filter empty type", base + "filter:\n  types: [A, '']\n", nil, "filter.types[1]", 6, "must not be empty"},
		// Empty filters and target fields widened the replay silently.
		{"filter empty prefix", base + "filter:\n  prefix: ''\n", nil, "filter.prefix", 6, "must not be empty"},
		{"filter null prefix", base + "filter:\n  prefix: null\n", nil, "filter.prefix", 6, "must not be empty"},
		{"filter prefix from an empty parameter", "params:\n  tenant: {type: text}\n" + base + "filter:\n  prefix: '${tenant}'\n",
			nil, "filter.prefix", 8, "must not be empty"},
		{"target kind empty", strings.Replace(base, "kind: verify", "kind: ''", 1), nil, "target.kind", 4, "or group"},
		{"target order_by empty", "name: t\nversion: 1\ntarget: {kind: group, group: g, order_by: ''}\n", nil, "target.order_by", 3, "must not be empty"},
		{"checks type key not a type", base + "checks:\n  types: {\"bad type\": 0}\n", nil, "checks.types.bad type", 6, "space"},
		{"filter nested list", base + "filter:\n  streams: [[a]]\n", nil, "filter.streams[0]", 6, "single value"},
		{"pacing speed and rate", base + "pacing:\n  speed: 2\n  rate: 10\n", nil, "pacing.rate", 7, "not both"},
		{"pacing negative rate", base + "pacing:\n  rate: -1\n", nil, "pacing.rate", 6, "positive"},
		{"pacing rate text", base + "pacing:\n  rate: fast\n", nil, "pacing.rate", 6, "positive"},
		{"pacing rate quoted", base + "pacing:\n  rate: '10'\n", nil, "pacing.rate", 6, "positive"},
		{"pacing rate .nan", base + "pacing:\n  rate: .nan\n", nil, "pacing.rate", 6, "positive"},
		{"pacing speed below the minimum", base + "pacing:\n  speed: 0.00000000001\n", nil, "pacing.speed", 6, "from 0.000001"},
		{"pacing rate below the minimum", base + "pacing:\n  rate: 0.0000001\n", nil, "pacing.rate", 6, "from 0.000001"},
		{"pacing speed above the maximum", base + "pacing:\n  speed: 10000000000000\n", nil, "pacing.speed", 6, "to 1000000000000"},
		{"pacing speed from a parameter", "params:\n  s: {type: number}\n" + base + "pacing: {speed: '${s}'}\n",
			[]string{"s=0.00000000001"}, "pacing.speed", 7, "from 0.000001"},
		{"pacing burst without rate", base + "pacing:\n  burst: 3\n", nil, "pacing.burst", 6, "only with pacing.rate"},
		{"pacing burst zero", base + "pacing:\n  rate: 3\n  burst: 0\n", nil, "pacing.burst", 7, "at least 1"},
		{"checks events negative", base + "checks:\n  events: -1\n", nil, "checks.events", 6, "at least 0"},
		{"checks events a float", base + "checks:\n  events: 1.0\n", nil, "checks.events", 6, "whole number"},
		{"checks events quoted", base + "checks:\n  events: '3'\n", nil, "checks.events", 6, "whole number"},
		{"checks min > max", base + "checks:\n  min_events: 5\n  max_events: 4\n", nil, "checks.min_events", 6, "more than"},
		{"checks digest short", base + "checks:\n  digest: abc\n", nil, "checks.digest", 6, "64 hex"},
		{"checks unknown", base + "checks:\n  rows: 3\n", nil, "checks.rows", 6, "not a known key"},
		{"checks type count text", base + "checks:\n  types: {A: many}\n", nil, "checks.types.A", 6, "whole number"},
		{"production not a bool", base + "production: yes please\n", nil, "production", 5, "true or false"},
		{"production a parameter", "params:\n  p: {type: boolean}\n" + base + "production: ${p}\n", nil, "production", 7, "true or false"},
		{"unknown param field", "params:\n  x: {type: text, optional: true}\n" + base, nil, "params.x.optional", 2, "not a known key"},
		{"param without type", "params:\n  x: {required: true}\n" + base, nil, "params.x", 2, "needs a type"},
		{"param bad type", "params:\n  x: {type: date}\n" + base, nil, "params.x.type", 2, "not a parameter type"},
		{"param bad name", "params:\n  1x: {type: text}\n" + base, nil, "params.1x", 2, "letters, digits"},
		{"param a scalar", "params:\n  x: text\n" + base, nil, "params.x", 2, "must be a mapping"},
		{"param required not bool", "params:\n  x: {type: text, required: 1}\n" + base, nil, "params.x.required", 2, "true or false"},
		{"param default of wrong type", "params:\n  x: {type: integer, default: ten}\n" + base + "checks: {events: '${x}'}\n", nil, "params.x.default", 2, "not an integer"},
		{"param required with default", "params:\n  x: {type: integer, required: true, default: 1}\n" + base, nil, "params.x.default", 2, "no default"},
		{"param never used", "params:\n  x: {type: text}\n" + base, nil, "params.x", 2, "never used"},
		{"undeclared reference", base + "window:\n  from: ${nope}\n", nil, "window.from", 6, "does not declare"},
		{"unclosed reference", "params:\n  x: {type: position}\n" + base + "window:\n  from: ${x\n", nil, "window.from", 8, "does not open a reference"},
		{"reference in mask", "params:\n  x: {type: text}\n" + base + "mask:\n  T:\n    a: ${x}\n", nil, "mask.T.a", 9, "cannot use a parameter"},
		{"reference in a key", "params:\n  x: {type: text}\n" + base + "checks:\n  types: {'${x}': 1}\n", nil, "checks.types.${x}", 8, "key cannot use"},
		{"alias", base + "window:\n  from: &a 1\n  to: *a\n", nil, "window.to", 7, "alias"},
		{"merge key", base + "filter:\n  <<: {prefix: a-}\n", nil, "filter", 6, "not plain text"},
		{"mask a list", base + "mask: [a]\n", nil, "mask", 5, "must be a mapping"},
		{"mask type empty", base + "mask:\n  T: {}\n", nil, "mask.T", 6, "JSON path"},
		{"mask bad action", base + "mask:\n  T:\n    email: redact\n", nil, "mask.T.email", 7, "not one of mask, hash, drop"},
		{"mask action a list", base + "mask:\n  T:\n    email: [mask]\n", nil, "mask.T.email", 7, "must be an action"},
		{"mask bad path", base + "mask:\n  T:\n    a..b: mask\n", nil, "mask.T.a..b", 7, "empty key"},
		{"mask overlapping paths", base + "mask:\n  T:\n    card: mask\n    card.number: hash\n", nil, "mask.T.card.number", 8, "overlaps"},
		{"mask drop a list's elements", base + "mask:\n  T:\n    tags[]: drop\n", nil, "mask.T.tags[]", 7, "ends in []"},
		{"mask overlap with every type", base + "mask:\n  '*':\n    card: mask\n  T:\n    card.n: drop\n", nil, "mask.T.card.n", 9, "overlaps"},
		// An outside test found these accepted.
		{"escape sequence in the name", "name: \"t\\e[2J\"\nversion: 1\ntarget: {kind: verify}\n", nil, "name", 1, "plain text"},
		{"mask type key not a type", base + "mask:\n  \"bad type\": {card: drop}\n", nil, "mask.bad type", 6, "space"},
		{"mask type key with $", base + "mask:\n  $x: {card: drop}\n", nil, "mask.$x", 6, "$"},
		{"text param with a newline", "params:\n  d: {type: text, required: true}\nname: t\nversion: 1\ntarget: {kind: store, data_dir: '${d}'}\n",
			[]string{"d=/tmp/x\n 999 forged"}, "--param d", 0, "plain text"},
		{"text param default with an escape", "params:\n  d: {type: text, default: \"/tmp/\\e[2J\"}\nname: t\nversion: 1\ntarget: {kind: store, data_dir: '${d}'}\n",
			nil, "params.d.default", 2, "plain text"},
		{"data_dir with a newline", "name: t\nversion: 1\ntarget: {kind: store, data_dir: \"/tmp/x\\n 999 forged\"}\n", nil, "target.data_dir", 3, "plain text"},
		{"two documents", base + "---\nmask:\n  T:\n    email: mask\n", nil, "", 5, "more than one YAML document"},
		{"production as text", base + "production: \"true\"\n", nil, "production", 5, "true or false"},
		{"rate with underscores", base + "pacing:\n  rate: 1_000\n", nil, "pacing.rate", 6, "positive"},
		{"number param in hex", "params:\n  x: {type: number}\n" + base + "pacing: {rate: '${x}'}\n", []string{"x=0x1p3"}, "--param x", 0, "not a number"},
		{"number param with underscores", "params:\n  x: {type: number}\n" + base + "pacing: {rate: '${x}'}\n", []string{"x=1_0"}, "--param x", 0, "not a number"},
		{"integer param with a plus", "params:\n  x: {type: integer}\n" + base + "checks: {events: '${x}'}\n", []string{"x=+5"}, "--param x", 0, "not an integer"},
		{"integer param with a leading zero", "params:\n  x: {type: integer}\n" + base + "checks: {events: '${x}'}\n", []string{"x=05"}, "--param x", 0, "not an integer"},
		// Parameters given on the command line.
		{"required param missing", "params:\n  x: {type: position, required: true}\n" + base + "window: {from: '${x}'}\n", nil, "params.x", 2, "is required"},
		{"param of wrong type", "params:\n  x: {type: position}\n" + base + "window: {from: '${x}'}\n", []string{"x=yesterday"}, "--param x", 0, "not a position"},
		{"param undeclared", base, []string{"y=1"}, "--param y", 0, "no such parameter"},
		{"param twice", "params:\n  x: {type: position}\n" + base + "window: {from: '${x}'}\n", []string{"x=1", "x=2"}, "--param x", 0, "given twice"},
		{"param without =", base, []string{"x"}, "--param", 0, "name=value"},
		{"text param makes a bad bound", "params:\n  x: {type: text}\n" + base + "window: {from: '${x}'}\n", []string{"x=soon"}, "window.from", 7, "must be a position"},
		{"text param makes a relative dir", "params:\n  d: {type: text, required: true}\nname: t\nversion: 1\ntarget: {kind: store, data_dir: '${d}'}\n",
			[]string{"d=rel"}, "target.data_dir", 5, "absolute"},
		{"text param makes an unknown kind", "params:\n  k: {type: text, required: true}\nname: t\nversion: 1\ntarget: {kind: '${k}'}\n",
			[]string{"k=kafka"}, "target.kind", 5, "not a target kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tp, err := template.Parse("bad.yaml", []byte(tc.file))
			if err == nil {
				_, err = tp.Resolve(tc.params)
			}
			var te *template.Error
			if !errors.As(err, &te) || !errors.Is(err, rewind.ErrInvalidArgument) {
				t.Fatalf("got %v, want a *template.Error", err)
			}
			if te.Key != tc.key || tc.line != 0 && te.Line != tc.line || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got key %q line %d: %v; want key %q line %d, %q", te.Key, te.Line, err, tc.key, tc.line, tc.reason)
			}
			if !strings.Contains(err.Error(), "bad.yaml") {
				t.Fatalf("the error does not name the file: %v", err)
			}
		})
	}
}

func TestSecretParamsAreNotShown(t *testing.T) {
	t.Parallel()
	file := "params:\n  token: {type: position}\n  tenant: {type: text, secret: true}\n" + base +
		"window: {from: '${token}'}\nfilter: {prefix: '${tenant}-'}\n"
	tp, err := template.Parse("s.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tp.SecretParams(), ","); got != "tenant,token" {
		t.Fatalf("secret params %s", got)
	}
	_, err = tp.Resolve([]string{"token=hunter2hunter2"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a bad secret value is shown: %v", err)
	}
	sp, err := tp.Resolve([]string{"token=12", "tenant=acme"})
	if err != nil || sp.Params["token"] != "***" || sp.Params["tenant"] != "***" || sp.Window.StreamPrefix != "acme-" {
		t.Fatalf("%+v %v", sp, err)
	}
	// The fields a secret went into are known, to be recorded as ***.
	if !sp.Secret("window.from") || !sp.Secret("filter.prefix") || sp.Secret("window.to") || sp.Secret("target") {
		t.Fatalf("secret fields of %+v", sp)
	}
}

func TestMaskRulesKeepTheFileOrder(t *testing.T) {
	t.Parallel()
	tp, err := template.Parse("m.yaml", []byte(base+"mask:\n  T:\n    b: hash\n    a: mask\n"))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tp.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := sp.Mask["T"]; len(r) != 2 || r[0].Path != "b" || r[0].Action != mask.Hash || r[1].Path != "a" {
		t.Fatalf("%+v", r)
	}
}

// FuzzParse: whatever the file, Parse and Resolve return a template or an
// *Error, never panic.
func FuzzParse(f *testing.F) {
	f.Add(good, "since=2026-11-01T00:00:00Z")
	f.Add(base+"window: {from: 1, to: 2}\nmask:\n  T: {a[].b: drop}\n", "")
	f.Add("params:\n  x: {type: bound}\n"+base+"window: {from: '${x}'}\n", "x=5")
	f.Fuzz(func(t *testing.T, file, param string) {
		tp, err := template.Parse("f.yaml", []byte(file))
		if err == nil {
			var params []string
			if param != "" {
				params = []string{param}
			}
			_, err = tp.Resolve(params)
		}
		var te *template.Error
		if err != nil && !errors.As(err, &te) {
			t.Fatalf("%T %v", err, err)
		}
	})
}

// A text parameter or a data_dir may hold any character that prints as
// itself on one line: only control and format characters are refused.
func TestPlainTextParametersAreAccepted(t *testing.T) {
	t.Parallel()
	tp, err := template.Parse("p.yaml", []byte("params:\n  d: {type: text, required: true}\nname: t\nversion: 1\ntarget: {kind: store, data_dir: '${d}'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/tmp/fenêtre — données", "/tmp/a b", `/tmp/"q"`} {
		if sp, err := tp.Resolve([]string{"d=" + d}); err != nil || sp.Target.DataDir != d {
			t.Errorf("%q: %+v %v", d, sp, err)
		}
	}
}
