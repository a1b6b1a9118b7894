package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/replay/template"
)

// TestReplayRunRefusesTextThatCouldForgeALedgerLine: an actor (--actor or
// $REWIND_ACTOR), a text parameter, a data_dir, a template path and the
// source --data-dir (recorded in the command line) holding a control or
// invisible character are refused by replay run --execute (exit 2) before
// anything is recorded or created, as backfill refuses such an actor; and
// audit log prints no line but those of the good run.
func TestReplayRunRefusesTextThatCouldForgeALedgerLine(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	ok := write("ok.yaml", "name: ok\nversion: 1\ntarget: {kind: verify}\n")
	if code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", ok, "--execute", "--ledger-dsn", db.DSN); code != 0 {
		t.Fatalf("verify run: %d %q %q", code, out, errOut)
	}
	before, _ := ledgerRows(t, db)
	dest := filepath.Join(t.TempDir(), "dest")
	withDest := write("dest.yaml", "name: d\nversion: 1\nparams:\n  dest: {type: text, required: true}\ntarget: {kind: store, data_dir: \"${dest}\"}\n")
	literalDir := write("literal.yaml", "name: l\nversion: 1\ntarget: {kind: store, data_dir: \""+dest+"\\n 997 forged4\"}\n")
	badPath := filepath.Join(filepath.Dir(ok), "x\n 998  2026-12-01T06:11:43Z  replay.run.finished  forged3.yaml")
	if err := os.WriteFile(badPath, []byte("name: ok\nversion: 1\ntarget: {kind: verify}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	forged := "\n   999  2026-12-01T06:11:43Z  replay.run.finished  forged"
	// The source store under a name with a newline: --data-dir is recorded
	// in the entry's command line.
	badSrc := filepath.Join(t.TempDir(), "src"+forged+"5")
	delSrc := filepath.Join(filepath.Dir(badSrc), "src\x7f")
	for _, p := range []string{badSrc, delSrc} {
		if err := os.Symlink(src, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name    string
		env     []string
		args    []string
		key     string
		dataDir string
	}{
		{"actor with a newline", nil, []string{ok, "--actor", "eve" + forged}, "actor", ""},
		{"actor with an escape sequence", nil, []string{ok, "--actor", "\x1b[31mred"}, "actor", ""},
		{"actor with a format character", nil, []string{ok, "--actor", "ev\u202eil"}, "actor", ""},
		{"REWIND_ACTOR with a tab", []string{"REWIND_ACTOR=a\tb"}, []string{ok}, "actor", ""},
		{"text parameter with a newline", nil, []string{withDest, "-p", "dest=" + dest + forged + "2"}, "--param dest", ""},
		{"data_dir with a newline", nil, []string{literalDir}, "target.data_dir", ""},
		{"template path with a newline", nil, []string{badPath}, "template", ""},
		{"actor with a combining grapheme joiner", nil, []string{ok, "--actor", "ad\u034fmin"}, "actor", ""},
		{"actor with a Hangul filler", nil, []string{ok, "--actor", "\u3164"}, "actor", ""},
		{"source --data-dir with a newline", nil, []string{ok}, "--data-dir", badSrc},
		{"source --data-dir with DEL", nil, []string{ok}, "--data-dir", delSrc},
	} {
		dataDir := src
		if c.dataDir != "" {
			dataDir = c.dataDir
		}
		args := append([]string{"--data-dir", dataDir, "replay", "run"}, c.args...)
		args = append(args, "--execute", "--ledger-dsn", db.DSN)
		code, out, errOut := exe(t, append(cleanEnv(), c.env...), "", args...)
		if code != 2 || !strings.Contains(errOut, c.key) {
			t.Errorf("%s: exit %d %q %q, want 2 naming %s", c.name, code, out, errOut, c.key)
		}
		if strings.ContainsAny(out+errOut, "\x1b\t\u202e\x7f\u034f\u3164") || strings.Count(errOut, "\n") > 1 || strings.Contains(out, "forged") {
			t.Errorf("%s: the refusal prints the text raw: %q %q", c.name, out, errOut)
		}
	}
	if n, bodies := ledgerRows(t, db); n != before {
		t.Fatalf("refused runs recorded %d ledger entries: %s", n-before, bodies)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run created its target: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(dest))
	for _, e := range entries {
		t.Errorf("a refused run created %q", e.Name())
	}
	code, out, errOut := exe(t, env, "", "audit", "log", "--dsn", db.DSN)
	if code != 0 || strings.Count(out, "\n") != before || strings.Contains(out, "forged") {
		t.Fatalf("audit log: %d, %d lines for %d entries: %q %q", code, strings.Count(out, "\n"), before, out, errOut)
	}
}

// TestAuditLogPrintsStoredTextEscaped: an entry whose text fields hold
// control, format or invisible characters (written by an earlier version,
// by another program through the library, or by hand) prints as one line
// of audit log, every such value quoted with Go escapes: no stored text can
// forge a line or drive the terminal. A value with a space, '=' or a quote
// is quoted too, so that no value reads as attributes of its own
// (written=999999) or as another field. Plain words print as they are.
// --json escapes the same characters as \u escapes, which decode to the
// stored text.
func TestAuditLogPrintsStoredTextEscaped(t *testing.T) {
	t.Parallel()
	_, db, _ := templateSetup(t)
	ctx := context.Background()
	l, err := auditpg.New(db.Pool, auditpg.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	forged := "\n   999  2026-12-01T06:11:43Z  replay.run.finished  forged"
	stored := []audit.Entry{
		{Kind: "replay.run.started", Subject: "run-1", Origin: audit.Origin{Actor: "alice — fenêtre", Host: "h1"},
			Attrs: map[string]string{"template": "plain", "note": "fenêtre"}},
		{Kind: "replay.run.started", Subject: "run" + forged + "S", Origin: audit.Origin{Actor: "eve" + forged + "A", Host: "h\x1b[31m"},
			Attrs:   map[string]string{"template_file": "x" + forged + "F", "param.dest": "/tmp/x\u202e" + forged + "P", "k\x1b]0;t\x07": "v"},
			Message: "m" + forged + "M"},
		{Kind: "replay.run.started", Subject: "run-3", Origin: audit.Origin{Actor: "ad\u034fmin@h1 written=999998 by", Host: "h\u3164"},
			Attrs: map[string]string{"param.dest": "/x written=999999", "param.q": `a"b c`, "param.eq": "k=v", "param.nb": "a\u00a0b=999997",
				"param.invisible": "x\x7fy\u0085z\u202e\u200b\u034f\u3164"},
			Message: "m\x7f\u0085\u202e\u200b\u034f\u3164"},
	}
	for _, e := range stored {
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Quoted in JSON, a no-break space is harmless; in a line of words it
	// would read as a space.
	const invisible = "\x1b\x07\x7f\u0085\u202e\u200b\u034f\u3164"
	code, out, errOut := exe(t, cleanEnv(), "", "audit", "log", "--dsn", db.DSN)
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("audit log: exit %d, %d lines for 3 entries: %q %q", code, strings.Count(out, "\n"), out, errOut)
	}
	if strings.ContainsAny(out, invisible+"\u00a0") || !utf8.ValidString(out) {
		t.Errorf("audit log prints control, format or invisible characters raw: %q", out)
	}
	for _, want := range []string{`"alice — fenêtre"@h1`, "template=plain", "note=fenêtre", `"eve\n`, `"h\x1b[31m"`, `template_file="x\n`,
		`"k\x1b]0;t\a"=v`, `\u202e`, `param.dest="/x written=999999"`, `param.q="a\"b c"`, `param.eq="k=v"`,
		`param.nb="a\u00a0b=999997"`, `"ad\u034fmin@h1 written=999998 by"@"h\u3164"`,
		`param.invisible="x\x7fy\u0085z\u202e\u200b\u034f\u3164"`, `message="m\x7f\u0085\u202e\u200b\u034f\u3164"`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %s:\n%s", want, out)
		}
	}
	// Read as a person reads it (words, and quoted strings whole), no
	// line holds an attribute that no entry has.
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		for _, w := range words(t, line) {
			if k, _, ok := strings.Cut(w, "="); ok && !strings.HasPrefix(k, `"`) && !strings.HasPrefix(k, "param.") &&
				!slices.Contains([]string{"template", "note", "template_file", "message"}, k) {
				t.Errorf("audit log shows an attribute %s no entry has: %s", w, line)
			}
		}
	}
	code, out, errOut = exe(t, cleanEnv(), "", "audit", "log", "--dsn", db.DSN, "--json")
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("audit log --json: exit %d: %q %q", code, out, errOut)
	}
	if strings.ContainsAny(out, invisible) || !utf8.ValidString(out) {
		t.Errorf("audit log --json prints control, format or invisible characters raw: %q", out)
	}
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var e audit.Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i+1, err, line)
		}
		if e.Actor != stored[i].Actor || e.Host != stored[i].Host || e.Message != stored[i].Message || !maps.Equal(e.Attrs, stored[i].Attrs) {
			t.Errorf("line %d decodes to %+v, stored %+v", i+1, e, stored[i])
		}
	}
}

// words splits a line of audit log as a person reads it: at spaces,
// except inside a Go-quoted string, which is one word with what is
// attached to it (k="a b").
func words(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for line = strings.TrimLeft(line, " "); line != ""; line = strings.TrimLeft(line, " ") {
		var w strings.Builder
		for line != "" && line[0] != ' ' {
			if line[0] == '"' {
				q, err := strconv.QuotedPrefix(line)
				if err != nil {
					t.Errorf("a quote that does not end: %q", line)
					q = line
				}
				w.WriteString(q)
				line = line[len(q):]
				continue
			}
			w.WriteByte(line[0])
			line = line[1:]
		}
		out = append(out, w.String())
	}
	return out
}

// TestReplayReportPrintsTextEscaped: the text report of replay plan and
// run quotes, with Go escapes, any value that is not one line of plain
// text, whatever field it came through.
func TestReplayReportPrintsTextEscaped(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	a := newApp(nil, &out, &out)
	rep := &template.Report{Template: "t\x1b[2J", Version: "1\n2", Hash: strings.Repeat("a", 64), Target: "store /tmp/x\n 999 forged",
		Params: map[string]string{"dest": "/tmp/x\n 998 forged", "k\x1b": "v"},
		Types:  map[string]int64{"T\u202e": 1},
		Checks: []template.CheckResult{{Name: "types.T\n", Want: "1\x1b", Got: "1", OK: true}},
		Window: replay.Result{Digest: "d\n"}}
	if err := a.printTemplateReport(rep, false, ""); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.ContainsAny(s, "\x1b\u202e") || strings.Contains(s, "\n 99") {
		t.Errorf("report prints text raw:\n%s", s)
	}
	for _, want := range []string{`"/tmp/x\n 998 forged"`, `"store /tmp/x\n 999 forged"`, `"t\x1b[2J"`} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}
