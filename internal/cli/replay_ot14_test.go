package cli

import (
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
