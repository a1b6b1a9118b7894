package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplayTemplateDSNInNameAndVersionIsMaskedOnStdout: a DSN password
// written into a template's name or version was printed in clear by plan
// and run (text and --json), though the ledger masked it.
func TestReplayTemplateDSNInNameAndVersionIsMaskedOnStdout(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	tpl := write("dsn-name.yaml", "name: \"postgres://admin:Hunter2pw@db/prod\"\nversion: \"password=Hunter2pw\"\n"+
		"target: {kind: verify}\nchecks: {types: {\"postgres://u:Hunter2pw@h/d\": 0}}\n")
	for _, args := range [][]string{
		{"replay", "plan", tpl},
		{"replay", "plan", tpl, "--json"},
		{"replay", "run", tpl},
		{"replay", "run", tpl, "--json"},
		{"replay", "run", tpl, "--execute", "--ledger-dsn", db.DSN},
		{"replay", "run", tpl, "--execute", "--ledger-dsn", db.DSN, "--json"},
	} {
		code, out, errOut := exe(t, env, "", append([]string{"--data-dir", src}, args...)...)
		if code != 0 || strings.Contains(out+errOut, "Hunter2pw") || !strings.Contains(out, "admin:***@db/prod") {
			t.Errorf("%v: exit %d, stdout %q stderr %q: want 0 with the password masked", args, code, out, errOut)
		}
	}
	if _, bodies := ledgerRows(t, db); strings.Contains(bodies, "Hunter2pw") {
		t.Fatalf("the ledger holds the password: %s", bodies)
	}
}

// TestReplayTemplateSecondRunWritesNothingNew: running the same template
// twice into a store target reported (and recorded) the whole window as
// written both times.
func TestReplayTemplateSecondRunWritesNothingNew(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	dest := filepath.Join(t.TempDir(), "copy")
	tpl := write("copy.yaml", "name: copy\nversion: 1\nproduction: true\ntarget: {kind: store, data_dir: "+dest+"}\n")
	for i, want := range []string{"written: 5 events (0 already present", "written: 0 events (5 already present"} {
		code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "--execute", "--ledger-dsn", db.DSN)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("run %d: exit %d %q %q; want %q", i+1, code, out, errOut, want)
		}
	}
	code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", tpl, "--execute", "--ledger-dsn", db.DSN, "--json")
	var rep struct {
		Written        *int64 `json:"written"`
		AlreadyPresent *int64 `json:"already_present"`
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Written == nil || *rep.Written != 0 ||
		rep.AlreadyPresent == nil || *rep.AlreadyPresent != 5 {
		t.Fatalf("third run --json: exit %d %q %q; want written 0, already_present 5", code, out, errOut)
	}
	var written, already int64
	if err := db.Pool.QueryRow(context.Background(), "SELECT (body::jsonb->'counts'->>'written')::bigint, "+
		"coalesce((body::jsonb->'counts'->>'already_present')::bigint, -1) FROM rewind.audit_log "+
		"WHERE body::jsonb->>'kind' = 'replay.run.finished' ORDER BY seq DESC LIMIT 1").Scan(&written, &already); err != nil {
		t.Fatal(err)
	}
	if written != 0 || already != 5 {
		t.Fatalf("the ledger's last replay.run.finished counts written %d, already_present %d; want 0, 5", written, already)
	}
}

// TestReplayTemplateRefusedUpFront: an empty prefix (written, null, or
// from an optional parameter left empty), a pacing speed or rate so
// small that its waits overflowed into none, an empty target kind, a
// checks.types key that is no event type, and a data_dir that is a
// symbolic link loop or a dangling link were found only once the run was
// recorded (or never: the replay covered every stream). Each is exit 2,
// naming the key, before anything is recorded or created.
func TestReplayTemplateRefusedUpFront(t *testing.T) {
	t.Parallel()
	src, db, write := templateSetup(t)
	env := cleanEnv()
	ok := write("ok.yaml", "name: ok\nversion: 1\ntarget: {kind: verify}\n")
	if code, out, errOut := exe(t, env, "", "--data-dir", src, "replay", "run", ok, "--execute", "--ledger-dsn", db.DSN); code != 0 {
		t.Fatalf("verify run: %d %q %q", code, out, errOut)
	}
	before, _ := ledgerRows(t, db)
	links := t.TempDir()
	loop, dangling := filepath.Join(links, "loop"), filepath.Join(links, "dangling")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(links, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	head := "name: f\nversion: 1\nproduction: true\n"
	for _, c := range []struct{ name, body, key, says string }{
		{"empty prefix", head + "target: {kind: verify}\nfilter: {prefix: \"\"}\n", "filter.prefix", "must not be empty"},
		{"null prefix", head + "target: {kind: verify}\nfilter: {prefix: null}\n", "filter.prefix", "must not be empty"},
		{"prefix from an empty parameter", head + "params: {tenant: {type: text}}\ntarget: {kind: verify}\nfilter: {prefix: \"${tenant}\"}\n",
			"filter.prefix", "must not be empty"},
		{"speed too small", head + "target: {kind: verify}\npacing: {speed: 0.00000000001}\n", "pacing.speed", "from 0.000001"},
		{"rate too small", head + "target: {kind: verify}\npacing: {rate: 0.0000000001}\n", "pacing.rate", "from 0.000001"},
		{"empty kind", head + "target: {kind: \"\"}\n", "target.kind", "or group"},
		{"checks type with a space", head + "target: {kind: verify}\nchecks: {types: {\"bad type\": 0}}\n", "checks.types.bad type", "space"},
		{"data_dir a symlink loop", head + "target: {kind: store, data_dir: " + loop + "}\n", "target.data_dir", "loop"},
		{"data_dir inside a symlink loop", head + "target: {kind: store, data_dir: " + loop + "/x}\n", "target.data_dir", "loop"},
		{"data_dir a dangling symlink", head + "target: {kind: store, data_dir: " + dangling + "}\n", "target.data_dir", "dangling"},
	} {
		tpl := write(strings.ReplaceAll(c.name, " ", "-")+".yaml", c.body)
		for _, sub := range [][]string{{"plan"}, {"run", "--execute", "--ledger-dsn", db.DSN}} {
			args := append([]string{"--data-dir", src, "replay", sub[0], tpl}, sub[1:]...)
			code, out, errOut := exe(t, env, "", args...)
			if code != 2 || !strings.Contains(errOut, c.key) || !strings.Contains(errOut, c.says) || !strings.Contains(errOut, "line ") {
				t.Errorf("%s, %s: exit %d %q %q, want 2 naming %s and its line, saying %q", c.name, sub[0], code, out, errOut, c.key, c.says)
			}
		}
	}
	if n, bodies := ledgerRows(t, db); n != before {
		t.Fatalf("refused runs recorded %d ledger entries: %s", n-before, bodies)
	}
	if _, err := os.Lstat(filepath.Join(links, "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused run created the dangling link's target: %v", err)
	}
}

// TestReplayRunMissingLedgerDatabaseNamesLedgerDSN: with the source in
// --store, a ledger database that does not exist was reported as "check
// the database name in --store (or $REWIND_STORE)".
func TestReplayRunMissingLedgerDatabaseNamesLedgerDSN(t *testing.T) {
	t.Parallel()
	db, pg := migratedPG(t)
	tpl := filepath.Join(t.TempDir(), "t.yaml")
	if err := os.WriteFile(tpl, []byte("name: n\nversion: 1\ntarget: {kind: verify}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := strings.Replace(db.DSN, "/rewind_test_", "/rewind_nosuch_", 1)
	if missing == db.DSN {
		t.Fatalf("cannot derive a missing database from %s", db.DSN)
	}
	code, out, errOut := exe(t, cleanEnv(), "", append(pg, "replay", "run", tpl, "--execute", "--ledger-dsn", missing)...)
	if code != 3 || !strings.Contains(errOut, "does not exist") || !strings.Contains(errOut, "check the database name in --ledger-dsn") {
		t.Fatalf("exit %d %q %q, want not found naming --ledger-dsn", code, out, errOut)
	}
}
