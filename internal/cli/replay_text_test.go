package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rewindhq/rewind/audit"
	"github.com/rewindhq/rewind/audit/auditpg"
	"github.com/rewindhq/rewind/replay"
	"github.com/rewindhq/rewind/replay/template"
)

// TestReplayRunRefusesTextThatCouldForgeALedgerLine: an actor (--actor or
// $REWIND_ACTOR), a text parameter, a data_dir and a template path holding
// a control character are refused by replay run --execute (exit 2) before
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
	for _, c := range []struct {
		name string
		env  []string
		args []string
		key  string
	}{
		{"actor with a newline", nil, []string{ok, "--actor", "eve" + forged}, "actor"},
		{"actor with an escape sequence", nil, []string{ok, "--actor", "\x1b[31mred"}, "actor"},
		{"actor with a format character", nil, []string{ok, "--actor", "ev\u202eil"}, "actor"},
		{"REWIND_ACTOR with a tab", []string{"REWIND_ACTOR=a\tb"}, []string{ok}, "actor"},
		{"text parameter with a newline", nil, []string{withDest, "-p", "dest=" + dest + forged + "2"}, "--param dest"},
		{"data_dir with a newline", nil, []string{literalDir}, "target.data_dir"},
		{"template path with a newline", nil, []string{badPath}, "template"},
	} {
		args := append([]string{"--data-dir", src, "replay", "run"}, c.args...)
		args = append(args, "--execute", "--ledger-dsn", db.DSN)
		code, out, errOut := exe(t, append(cleanEnv(), c.env...), "", args...)
		if code != 2 || !strings.Contains(errOut, c.key) {
			t.Errorf("%s: exit %d %q %q, want 2 naming %s", c.name, code, out, errOut, c.key)
		}
		if strings.ContainsAny(out+errOut, "\x1b\t\u202e") || strings.Count(errOut, "\n") > 1 || strings.Contains(out, "forged") {
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
// control or format characters (written by an earlier version, by another
// program through the library, or by hand) prints as one line of audit
// log, every such value quoted with Go escapes: no stored text can forge a
// line or drive the terminal. Plain text prints as it is.
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
	for _, e := range []audit.Entry{
		{Kind: "replay.run.started", Subject: "run-1", Origin: audit.Origin{Actor: "alice — fenêtre", Host: "h1"},
			Attrs: map[string]string{"template": "plain"}},
		{Kind: "replay.run.started", Subject: "run" + forged + "S", Origin: audit.Origin{Actor: "eve" + forged + "A", Host: "h\x1b[31m"},
			Attrs:   map[string]string{"template_file": "x" + forged + "F", "param.dest": "/tmp/x\u202e" + forged + "P", "k\x1b]0;t\x07": "v"},
			Message: "m" + forged + "M"},
	} {
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := exe(t, cleanEnv(), "", "audit", "log", "--dsn", db.DSN)
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("audit log: exit %d, %d lines for 2 entries: %q %q", code, strings.Count(out, "\n"), out, errOut)
	}
	if strings.ContainsAny(out, "\x1b\x07\u202e") || !utf8.ValidString(out) {
		t.Errorf("audit log prints control or format characters raw: %q", out)
	}
	for _, want := range []string{"alice — fenêtre@h1", "template=plain", `"eve\n`, `"h\x1b[31m"`, `template_file="x\n`,
		`"k\x1b]0;t\a"=v`, `\u202e`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %q:\n%s", want, out)
		}
	}
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
