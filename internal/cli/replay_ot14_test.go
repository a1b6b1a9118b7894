package cli

import (
	"context"
	"encoding/json"
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
