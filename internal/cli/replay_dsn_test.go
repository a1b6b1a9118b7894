package cli

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dsnForms are the forms a DSN's password can take in a template
// parameter that is not declared secret: each is a regression test of
// its own (an outside tester found the first one, which filepath.Clean
// turns into postgres:/user:pass@host/db inside a data_dir, recorded in
// clear in the ledger's target).
var dsnForms = []struct{ name, value, secret string }{
	{"postgres URL", "postgres://user:DSNPW1url@db.example:5432/app", "DSNPW1url"},
	{"postgresql URL", "postgresql://user:DSNPW2url@db.example/app?sslmode=disable", "DSNPW2url"},
	{"one slash", "postgres:/user:DSNPW3one@db.example/app", "DSNPW3one"},
	{"postgresql one slash", "postgresql:/user:DSNPW4one@db.example/app", "DSNPW4one"},
	{"query password", "postgres://user@db.example/app?password=DSNPW5qry", "DSNPW5qry"},
	{"keyword/value", "host=db.example user=u password=DSNPW6kv dbname=app", "DSNPW6kv"},
	{"keyword/value quoted", "host=db.example password='DSNPW7 kvq' dbname=app", "DSNPW7"},
}

// paramOrders are the ways of giving -p dsn=VALUE on the command line,
// before and after the other flags and the template.
var paramOrders = []struct {
	name string
	args func(tpl, ledger, v string) []string
}{
	{"-p after the template", func(tpl, ledger, v string) []string {
		return []string{"replay", "run", tpl, "-p", "dsn=" + v, "--execute", "--ledger-dsn", ledger}
	}},
	{"-p last", func(tpl, ledger, v string) []string {
		return []string{"replay", "run", tpl, "--execute", "--ledger-dsn", ledger, "-p", "dsn=" + v}
	}},
	{"--param= before the template", func(tpl, ledger, v string) []string {
		return []string{"replay", "run", "--param=dsn=" + v, tpl, "--ledger-dsn=" + ledger, "--execute"}
	}},
	{"-p= attached", func(tpl, ledger, v string) []string {
		return []string{"replay", "run", "--execute", "-p=dsn=" + v, "--ledger-dsn", ledger, tpl}
	}},
	{"-pNAME attached", func(tpl, ledger, v string) []string {
		return []string{"replay", "run", tpl, "-pdsn=" + v, "--execute", "--ledger-dsn", ledger}
	}},
}

// TestReplayTemplateDSNPasswordNeverRecorded: a DSN given in a parameter
// that is not declared secret, in every form and every order of flags,
// whichever field it lands in (a data_dir, where filepath.Clean makes
// postgres:// postgres:/, a stream prefix, an event type, the parameter
// itself, the command line, a failed run's message), reaches neither the
// ledger nor stdout or stderr with its password.
func TestReplayTemplateDSNPasswordNeverRecorded(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	base := t.TempDir()
	// A store target under base (the run succeeds) and one under /proc
	// (opening it fails: the error, which repeats the path, is recorded
	// as replay.run.failed and printed).
	into := write("into.yaml", fmt.Sprintf(`name: into
version: 1
production: true
params:
  dsn: {type: text, required: true}
target: {kind: store, data_dir: "%s/${dsn}"}
`, base))
	failing := write("failing.yaml", `name: failing
version: 1
production: true
params:
  dsn: {type: text, required: true}
target: {kind: store, data_dir: "/proc/D/${dsn}"}
`)
	// Filters take no spaces: the URL forms go there.
	filters := write("filters.yaml", `name: filters
version: 1
params:
  dsn: {type: text, required: true}
filter: {prefix: "users-${dsn}", types: ["T-${dsn}"]}
target: {kind: verify}
`)
	leaks := func(what, text string) {
		t.Helper()
		for _, f := range dsnForms {
			if strings.Contains(text, f.secret) {
				t.Errorf("%s holds the password of the %s form (%s):\n%s", what, f.name, f.secret, text)
			}
		}
	}
	for i, f := range dsnForms {
		order := paramOrders[i%len(paramOrders)]
		for j, o := range paramOrders {
			tpl := into
			if j == i%len(paramOrders) {
				tpl = failing
			}
			args := append([]string{"--data-dir", src}, o.args(tpl, db.DSN, f.value)...)
			code, out, errOut := exe(t, env, "", args...)
			if tpl == into && code != 0 || tpl == failing && code == 0 {
				t.Fatalf("%s, %s, %s: exit %d %q %q", f.name, o.name, filepath.Base(tpl), code, out, errOut)
			}
			leaks(f.name+", "+o.name+": stdout and stderr", out+errOut)
		}
		for _, json := range []string{"--json", "--json=false"} {
			code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "plan", into, "-p", "dsn="+f.value, json)
			if code != 0 {
				t.Fatalf("%s: plan %s: exit %d %q %q", f.name, json, code, out, errOut)
			}
			leaks(f.name+": plan "+json, out+errOut)
		}
		if strings.ContainsAny(f.value, " '") {
			continue
		}
		code, out, errOut := exe(t, env, "", append([]string{"--data-dir", src}, order.args(filters, db.DSN, f.value)...)...)
		if code != 0 {
			t.Fatalf("%s, filters: exit %d %q %q", f.name, code, out, errOut)
		}
		leaks(f.name+", filters: stdout and stderr", out+errOut)
	}
	n, bodies := ledgerRows(t, db)
	if n < 2*len(dsnForms)*len(paramOrders) {
		t.Fatalf("the runs recorded %d entries", n)
	}
	leaks("the ledger", bodies)
	if !strings.Contains(bodies, "postgres:/user:***@db.example") || !strings.Contains(bodies, "password=***") {
		t.Fatalf("the ledger does not show the masked forms:\n%s", bodies)
	}
}

// TestReplayTemplateDSNPasswordNotInTemplateErrors: a template error
// quotes the value it refuses (a data_dir that is not absolute, a type
// with a space, a parameter of the wrong type): a DSN's password in it is
// masked, in every form, and nothing is recorded.
func TestReplayTemplateDSNPasswordNotInTemplateErrors(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	tpl := write("bad.yaml", `name: bad
version: 1
production: true
params:
  dsn: {type: text, required: true}
  n: {type: integer, default: "1"}
filter: {types: ["T ${dsn}"]}
checks: {min_events: "${n}"}
target: {kind: store, data_dir: "${dsn}"}
`)
	for _, f := range dsnForms {
		for _, p := range [][]string{{"-p", "dsn=" + f.value}, {"-p", "dsn=/ok", "-p", "n=" + f.value}} {
			for _, sub := range [][]string{{"plan"}, {"run", "--execute", "--ledger-dsn", db.DSN}} {
				args := append(append([]string{"--data-dir", src, "replay", sub[0], tpl}, p...), sub[1:]...)
				code, out, errOut := exe(t, env, "", args...)
				if code != 2 || strings.Contains(out+errOut, f.secret) {
					t.Errorf("%s, %v, %s: exit %d %q %q, want 2 without the password", f.name, p, sub[0], code, out, errOut)
				}
			}
		}
	}
	if n, bodies := ledgerRows(t, db); n != 0 {
		t.Fatalf("template errors recorded %d entries: %s", n, bodies)
	}
}

// TestReplayTemplateTargetWithAPostgresSource: with --store postgres://
// the source is no directory, and a target's data_dir is not compared
// with a --data-dir nobody gave (the default ./rewind-data): a data_dir
// that holds it was refused as "the source store".
func TestReplayTemplateTargetWithAPostgresSource(t *testing.T) {
	t.Parallel()
	_, pg := migratedPG(t)
	if code, _, errOut := exe(t, cleanEnv(), "", append(pg, "append", "s-1", "--type", "A", "--data", "1")...); code != 0 {
		t.Fatalf("append: %d %s", code, errOut)
	}
	tpl := filepath.Join(t.TempDir(), "t.yaml")
	if err := os.WriteFile(tpl, []byte("name: n\nversion: 1\ntarget: {kind: store, data_dir: /}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := exe(t, cleanEnv(), "", append(pg, "replay", "plan", tpl)...)
	if code != 0 || !strings.Contains(out, "window: 1..1, 1 events") || !strings.Contains(out, "target: store /") {
		t.Fatalf("plan: exit %d %q %q", code, out, errOut)
	}
}

// TestReplayTemplateMaskKeyFileNewline: one final newline (\n or \r\n)
// of --mask-key-file is not part of the key, as docs/replay.md says; any
// other byte is (a lone final \r was dropped too).
func TestReplayTemplateMaskKeyFileNewline(t *testing.T) {
	t.Parallel()
	src, _, write := templateSetup(t)
	tpl := write("k.yaml", "name: k\nversion: 1\ntarget: {kind: store, data_dir: "+filepath.Join(t.TempDir(), "never")+"}\n"+
		"mask: {UserRegistered: {email: hash}}\n")
	id := func(key string) string {
		h := hmac.New(sha256.New, []byte(key))
		h.Write([]byte("rewind mask key id"))
		return hex.EncodeToString(h.Sum(nil))[:16]
	}
	const k = "0123456789abcdef-key"
	for i, c := range []struct{ file, key string }{
		{k, k}, {k + "\n", k}, {k + "\r\n", k}, {k + "\r", k + "\r"}, {k + "\n\n", k + "\n"}, {k + " \n", k + " "},
	} {
		file := write(fmt.Sprintf("key%d", i), c.file)
		code, out, errOut := exe(t, cleanEnv(), "", "--data-dir", src, "replay", "plan", tpl, "--mask-key-file", file, "--json")
		if code != 0 || !strings.Contains(out, `"mask_key_id":"`+id(c.key)+`"`) {
			t.Errorf("key file %q: exit %d %q %q, want the key id of %q", c.file, code, out, errOut, c.key)
		}
	}
}

// TestReplayTemplateErrorKeepsTheQuoteAfterAMaskedPassword: a keyword
// password in a parameter that makes a bad window end is masked in the
// error up to the closing quote, which the error keeps (F7).
func TestReplayTemplateErrorKeepsTheQuoteAfterAMaskedPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tpl := filepath.Join(dir, "to.yaml")
	if err := os.WriteFile(tpl, []byte("name: t\nversion: 1\nparams:\n  to: {type: text}\nwindow: {to: '${to}'}\ntarget: {kind: verify}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := exe(t, cleanEnv(), "", "--data-dir", filepath.Join(dir, "src"), "replay", "plan", tpl, "-p", "to=password=PWbb6")
	if code != 2 || !strings.Contains(errOut, `window.to "password=***": must be a position`) || strings.Contains(out+errOut, "PWbb6") {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
}
